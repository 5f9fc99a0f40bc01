"""The commands on one run: list, train, eval, sample, explore, train-prior, report, runs. Each
command's flags sit beside its handler."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aezoo import distributed, runner
from aezoo.apply import decode_run, encode_run, run_test_data
from aezoo.cli.flags import (
    Command,
    add_config_options,
    add_run_options,
    add_shared,
    add_training_fields,
    options_of,
)
from aezoo.config import TrainConfig
from aezoo.device import resolve_device
from aezoo.explore import SAMPLERS, explore_run, interpolate_run, sample_run
from aezoo.io import atomic_write, check_destination
from aezoo.metrics import evaluate, iwae_nll
from aezoo.models import MODELS, build, count_parameters
from aezoo.models.pixelcnn import PixelCNNConfig
from aezoo.prior import PRIOR_DIR, train_prior
from aezoo.report import write_report
from aezoo.runfiles import check_writable, no_links
from aezoo.runs import load, make_batches
from aezoo.studies.zoo import list_runs, runs_table

RUN_DIR_HELP = "a run folder written by `aezoo train`"
DATASET_HELP = (
    "other data, read with the run's --layout/--scale/--label-column: all of it (a named set: "
    "its test files); default: the run's own test data, re-read from where it was"
)


def _print_summary(summary: dict) -> None:
    for key, value in summary.items():
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")


def _refresh_report(run_dir: str) -> None:
    """Rewrite a run's report.html so it shows the figures a command just added."""
    print(f"report: {write_report(run_dir)}")


def list_flags(p: argparse.ArgumentParser) -> None:
    pass


def cmd_list(args: argparse.Namespace) -> int:
    width = max(len(name) for name in MODELS)
    print(f"{'model':<{width}}  {'params':>10}  summary")
    for name, preset in MODELS.items():
        print(f"{name:<{width}}  {count_parameters(build(name)):>10,}  {preset.describe()}")
    return 0


def train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="a registered model name (see `aezoo list`)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL-TIMESTAMP)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log scalars and image grids "
        "to RUN_DIR/tensorboard (pip install 'aezoo[tensorboard]')",
    )
    add_run_options(p)


def cmd_train(args: argparse.Namespace) -> int:
    options = options_of(args, "model", "resume", "out", "tensorboard")
    run = runner.train(
        args.model,
        out=args.out,
        resume=args.resume,
        quiet=args.quiet,
        tensorboard=args.tensorboard,
        **options,
    )
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    print(f"run folder: {run.path}")
    _print_summary({k: v for k, v in run.summary.items() if isinstance(v, (int, float))})
    return 0


def eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    p.add_argument("--dataset", help=DATASET_HELP)
    add_shared(p, "device")
    p.add_argument(
        "--nll-samples",
        type=int,
        default=0,
        metavar="K",
        help="also estimate the test NLL (test_nll) with the importance-weighted bound "
        "over K posterior samples (VAEs; e.g. 1000)",
    )
    p.add_argument(
        "--nll-subset",
        type=int,
        metavar="N",
        help="estimate test_nll on a stratified, seeded subset of N test images",
    )


def cmd_eval(args: argparse.Namespace) -> int:
    if args.json:
        check_destination(Path(args.json))
    device = resolve_device(args.device)
    run = load(args.run_dir, device=device)
    test = run_test_data(run.spec, args.dataset)
    _, test_batches = make_batches(run.spec, test, test, device)
    metrics = evaluate(run.model, test_batches, seed=run.spec.train.seed)
    if args.nll_samples:
        subset = test if args.nll_subset is None else test.subset(args.nll_subset, seed=0)
        _, nll_batches = make_batches(run.spec, subset, subset, device)
        metrics["test_nll"] = iwae_nll(
            run.model, nll_batches, args.nll_samples, seed=run.spec.train.seed
        )
        metrics.update(nll_samples=args.nll_samples, nll_images=len(subset))
    text = json.dumps(metrics, indent=2)
    if args.json:
        atomic_write(Path(args.json), (text + "\n").encode())
    print(text)
    return 0


def encode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--dataset", help=DATASET_HELP)
    p.add_argument("--out", required=True, metavar="FILE", help="the codes file to write (.npz)")
    add_shared(p, "device")


def cmd_encode(args: argparse.Namespace) -> int:
    print(encode_run(args.run_dir, args.dataset, args.out, resolve_device(args.device)))
    return 0


def decode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("codes", help="a codes file written by `aezoo encode`")
    p.add_argument("--out", required=True, metavar="FILE", help="the data file to write (.npz)")
    add_shared(p, "device")


def cmd_decode(args: argparse.Namespace) -> int:
    print(decode_run(args.run_dir, args.codes, args.out, resolve_device(args.device)))
    return 0


def _latent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument(
        "--sampler",
        choices=list(SAMPLERS),
        default="prior",
        help="latents from the N(0, I) prior or a 10-component Gaussian mixture fitted "
        "on the training latents (lets deterministic AEs generate)",
    )
    add_shared(p, "seed", "device")


def sample_flags(p: argparse.ArgumentParser) -> None:
    _latent_flags(p)
    p.add_argument("--n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--label", type=int, help="conditional models: generate this label only")
    p.add_argument(
        "--mode",
        choices=["uniform", "used", "prior", "all"],
        default="all",
        help="models with discrete codes (VQ-VAE): random codes, codes drawn by their "
        "training frequency, the PixelCNN prior (see train-prior), or all of "
        "them (default; prior only once trained)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="VQ-VAE prior sampling: divide the PixelCNN's logits by this (default 1)",
    )


def cmd_sample(args: argparse.Namespace) -> int:
    check_run_folder(args.run_dir)
    modes = None if args.mode == "all" else (args.mode,)
    for path in sample_run(
        args.run_dir,
        args.n,
        args.sampler,
        args.label,
        args.seed,
        args.device,
        modes=modes,
        temperature=args.temperature,
    ):
        print(path)
    _refresh_report(args.run_dir)
    return 0


def check_run_folder(run_dir: str) -> None:
    """A run folder that figures will be written into: no links in it, and writable."""
    if Path(run_dir).is_dir():
        no_links(run_dir)
        check_writable(run_dir)


def tsne_points(text: str) -> int:
    """0 (no t-SNE) or at least 5 points: t-SNE of fewer shows nothing."""
    value = int(text) if text.strip().lstrip("-").isdigit() else -1
    if value != 0 and value < 5:
        raise argparse.ArgumentTypeError(f"expected 0 (skip) or at least 5, got {text!r}")
    return value


def explore_flags(p: argparse.ArgumentParser) -> None:
    _latent_flags(p)
    p.add_argument(
        "--tsne-points",
        type=tsne_points,
        default=5000,
        help="t-SNE on a seeded subset of this many test latents (0 skips it)",
    )
    p.add_argument(
        "--interpolate",
        nargs=2,
        type=int,
        metavar=("I", "J"),
        help="only interpolate between test rows (or images) I and J "
        "(figures/interpolation-I-J.png)",
    )


def cmd_explore(args: argparse.Namespace) -> int:
    check_run_folder(args.run_dir)
    if args.interpolate:
        paths = interpolate_run(args.run_dir, *args.interpolate, device=args.device)
    else:
        paths = explore_run(args.run_dir, args.sampler, args.tsne_points, args.seed, args.device)
    for path in paths:
        print(path)
    _refresh_report(args.run_dir)
    return 0


# The training options that apply to the prior: no KL schedule, none of the speed options.
PRIOR_SKIPS = ("precision", "compile", "threads", "memory_format")


def train_prior_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a VQ-VAE run folder written by `aezoo train`")
    p.add_argument("--conditional", action="store_true", help="condition the prior on the labels")
    add_shared(p, "quiet", "device", "seed", into_config=True)
    add_config_options(p, [PixelCNNConfig], "prior")
    names = [f for f in TrainConfig.__dataclass_fields__ if not f.startswith("kl_")]
    add_training_fields(p, "training", [f for f in names if f not in PRIOR_SKIPS])


def cmd_train_prior(args: argparse.Namespace) -> int:
    options = options_of(args, "run_dir", "conditional")
    _, summary = train_prior(
        args.run_dir, conditional=args.conditional, quiet=args.quiet, **options
    )
    _refresh_report(args.run_dir)
    print(f"prior folder: {Path(args.run_dir) / PRIOR_DIR}")
    _print_summary(summary)
    return 0


def report_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help=RUN_DIR_HELP)


def cmd_report(args: argparse.Namespace) -> int:
    print(write_report(args.run_dir))
    return 0


def runs_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", default="runs", help="where to look (default runs/)")


def cmd_runs(args: argparse.Namespace) -> int:
    rows = list_runs(args.folder)
    print(runs_table(rows) if rows else f"no runs in {args.folder}")
    return 0


COMMANDS = {
    "list": Command("the registered models with parameter counts", list_flags, cmd_list),
    "train": Command("train a model and write its run folder", train_flags, cmd_train),
    "eval": Command("reload a run and print its test metrics", eval_flags, cmd_eval),
    "encode": Command(
        "write the codes of data under a run's model (μ of a VAE, code indices of a VQ-VAE, z "
        "of an AE) to an .npz",
        encode_flags,
        cmd_encode,
    ),
    "decode": Command(
        "turn a codes .npz (aezoo encode) back into data with a run's model: x as uint8 levels",
        decode_flags,
        cmd_decode,
    ),
    "sample": Command("draw samples of a run into its figures/", sample_flags, cmd_sample),
    "explore": Command(
        "latent-space figures of a run: samples, interpolation, traversals, 2-D map or t-SNE",
        explore_flags,
        cmd_explore,
    ),
    "train-prior": Command(
        "fit a gated PixelCNN prior to a VQ-VAE run's code grids; saved in RUN_DIR/prior/",
        train_prior_flags,
        cmd_train_prior,
    ),
    "report": Command(
        "write a run's self-contained report.html (every figure in its figures/ folder, "
        "metrics and configuration)",
        report_flags,
        cmd_report,
    ),
    "runs": Command("a table of the runs in a folder (any depth)", runs_flags, cmd_runs),
}

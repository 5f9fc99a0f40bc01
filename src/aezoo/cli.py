"""The `aezoo` command line: options are generated from the config dataclasses, each subcommand
calls one library function, and only `main` turns errors into exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from aezoo.errors import TrainingError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


def _parse_sequence(item: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return tuple(item(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {item.__name__}s, got {text!r}"
            ) from None

    return parse


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, hint: Any) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
    if get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif get_origin(hint) is Literal:
        kwargs["choices"] = list(get_args(hint))
    elif get_origin(hint) is tuple:
        kwargs["type"] = _parse_sequence(get_args(hint)[0])
        kwargs["metavar"] = "N,N,..."
    else:
        kwargs["type"] = hint
    parser.add_argument(flag, **kwargs)


def add_config_options(
    parser: argparse.ArgumentParser, classes: Sequence[type], title: str
) -> None:
    """One --option per CLI field of each config class (a name shared by several is added once)."""
    from aezoo.config import cli_fields

    group = parser.add_argument_group(title)
    seen = {a.dest for a in parser._actions}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in cli_fields(cls):
            if f.name not in seen:
                seen.add(f.name)
                _add_field(group, f, hints[f.name])


def build_parser() -> argparse.ArgumentParser:
    from aezoo import __version__
    from aezoo.config import DataConfig, TrainConfig
    from aezoo.models import MODELS

    parser = _Parser(prog="aezoo", description="Train, evaluate and show autoencoders.")
    parser.add_argument("--version", action="version", version=f"aezoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="the registered models with parameter counts")

    p = sub.add_parser("train", help="train a model and write its run folder")
    p.add_argument("model", nargs="?", help="a registered model name (see `aezoo list`)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log scalars and image grids "
        "to RUN_DIR/tensorboard (pip install 'aezoo[tensorboard]')",
    )
    add_config_options(p, [TrainConfig], "training")
    add_config_options(p, [DataConfig], "data")
    model_configs = list(dict.fromkeys(preset.config for preset in MODELS.values()))
    add_config_options(p, model_configs, "model (each applies to the models whose config has it)")

    p = sub.add_parser("eval", help="reload a run and print its test metrics")
    p.add_argument("run_dir", help="a run folder written by `aezoo train`")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
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

    p = sub.add_parser("sample", help="draw samples of a run into its figures/")
    p.add_argument("run_dir", help="a run folder written by `aezoo train`")
    p.add_argument("--n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--label", type=int, help="conditional models: generate this label only")
    _add_latent_options(p)
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

    p = sub.add_parser(
        "train-prior",
        help="fit a gated PixelCNN prior to a VQ-VAE run's code grids; saved in RUN_DIR/prior/",
    )
    p.add_argument("run_dir", help="a VQ-VAE run folder written by `aezoo train`")
    p.add_argument("--conditional", action="store_true", help="condition the prior on the labels")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_prior_options(p)

    p = sub.add_parser(
        "codebook-study",
        help="conv-vqvae with codebook sizes 20, 40, 512, with "
        "and without the codebook-health options: table and usage histograms",
    )
    p.add_argument(
        "--sizes",
        type=_parse_sequence(int),
        default=(20, 40, 512),
        metavar="K,K,...",
        help="codebook sizes (default 20,40,512)",
    )
    p.add_argument("--out", metavar="DIR", help="study folder (default runs/codebook-study-TIME)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_options(p, [TrainConfig], "training")
    add_config_options(p, [DataConfig], "data")

    p = sub.add_parser(
        "explore",
        help="latent-space figures of a run: samples, interpolation, traversals, 2-D map or t-SNE",
    )
    p.add_argument("run_dir", help="a run folder written by `aezoo train`")
    p.add_argument(
        "--tsne-points",
        type=int,
        default=5000,
        help="t-SNE on a seeded subset of this many test latents (0 skips it)",
    )
    _add_latent_options(p)

    p = sub.add_parser("sweep", help="train a model for several β and compare them")
    p.add_argument("model", help="a registered model with a β (e.g. conv-vae)")
    p.add_argument(
        "--beta",
        required=True,
        type=_parse_sequence(float),
        metavar="B,B,...",
        help="the β values, e.g. 1,2,4,10",
    )
    p.add_argument("--out", metavar="DIR", help="sweep folder (default runs/sweep-MODEL-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_options(p, [TrainConfig], "training")
    add_config_options(p, [DataConfig], "data")
    add_config_options(p, model_configs, "model")
    _add_results_parsers(sub)
    _add_anomaly_parsers(sub)
    _add_bench_parser(sub)
    return parser


def _add_prior_options(p: argparse.ArgumentParser) -> None:
    """The PixelCNN's options and the training options that apply to it (no KL schedule; its
    own loop has none of fit's speed options)."""
    from aezoo.config import TrainConfig, cli_fields
    from aezoo.models.pixelcnn import PixelCNNConfig

    add_config_options(p, [PixelCNNConfig], "prior")
    group = p.add_argument_group("training")
    hints = typing.get_type_hints(TrainConfig)
    for f in cli_fields(TrainConfig):
        speed = ("precision", "compile", "threads", "memory_format")
        if not f.name.startswith("kl_") and f.name not in speed:
            _add_field(group, f, hints[f.name])


def _add_latent_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sampler",
        choices=["prior", "gmm"],
        default="prior",
        help="latents from the N(0, I) prior or a 10-component Gaussian mixture fitted "
        "on the training latents (lets deterministic AEs generate)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")


def _options(args: argparse.Namespace, *own: str) -> dict[str, Any]:
    """The config options given on the command line: every parsed value but the command's own."""
    skip = {"command", "debug", *own}
    return {k: v for k, v in vars(args).items() if k not in skip}


def _refresh_report(run_dir: str) -> None:
    """Rewrite a run's report.html so it shows the figures a command just added."""
    from aezoo.report import write_report

    print(f"report: {write_report(run_dir)}")


def cmd_list(args: argparse.Namespace) -> int:
    from aezoo.models import MODELS, build, count_parameters

    width = max(len(name) for name in MODELS)
    print(f"{'model':<{width}}  {'params':>10}  summary")
    for name, preset in MODELS.items():
        print(f"{name:<{width}}  {count_parameters(build(name)):>10,}  {preset.summary}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from aezoo.distributed import is_main
    from aezoo.train import train

    options = _options(args, "model", "resume", "out", "quiet", "tensorboard")
    run = train(
        args.model,
        out=args.out,
        resume=args.resume,
        quiet=args.quiet,
        tensorboard=args.tensorboard,
        **options,
    )
    if not is_main():  # under torchrun, rank 0 reports
        return 0
    shown = {k: v for k, v in run.summary.items() if isinstance(v, (int, float))}
    print(f"run folder: {run.path}")
    for key, value in shown.items():
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from aezoo.checkpoint import atomic_write, load
    from aezoo.evaluate import evaluate
    from aezoo.train import load_data, make_batches, resolve_device

    device = resolve_device(args.device)
    run = load(args.run_dir, device=device)
    _, test = load_data(run.spec.data)
    _, test_batches = make_batches(run.spec, test, test, device)
    metrics = evaluate(run.model, test_batches, seed=run.spec.train.seed)
    if args.nll_samples:
        from aezoo.evaluate import iwae_nll

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


def cmd_sample(args: argparse.Namespace) -> int:
    from aezoo.explore import sample_run

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


def cmd_train_prior(args: argparse.Namespace) -> int:
    from aezoo.prior import PRIOR_DIR, train_prior

    options = _options(args, "run_dir", "conditional", "quiet")
    _, summary = train_prior(
        args.run_dir, conditional=args.conditional, quiet=args.quiet, **options
    )
    _refresh_report(args.run_dir)
    print(f"prior folder: {Path(args.run_dir) / PRIOR_DIR}")
    for key, value in summary.items():
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


def cmd_codebook_study(args: argparse.Namespace) -> int:
    from aezoo.codebook_study import codebook_study

    options = _options(args, "sizes", "out", "quiet")
    result = codebook_study(args.out, tuple(args.sizes), quiet=args.quiet, **options)
    print(result.table)
    print(f"study folder: {result.path}")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from aezoo.explore import explore_run

    for path in explore_run(args.run_dir, args.sampler, args.tsne_points, args.seed, args.device):
        print(path)
    _refresh_report(args.run_dir)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from aezoo.sweep import sweep

    options = _options(args, "model", "beta", "out", "quiet")
    result = sweep(args.model, args.beta, out=args.out, quiet=args.quiet, **options)
    print(result.table)
    print(f"sweep folder: {result.path}")
    return 0


def _add_results_parsers(sub: Any) -> None:
    """report, zoo and runs: the commands that show and compare runs."""
    from aezoo.config import DataConfig, TrainConfig

    p = sub.add_parser(
        "report",
        help="write a run's self-contained report.html (every figure "
        "in its figures/ folder, metrics and configuration)",
    )
    p.add_argument("run_dir", help="a run folder written by `aezoo train`")

    p = sub.add_parser(
        "zoo",
        help="train every model with the same options and compare them: "
        "zoo.html, zoo.md, zoo.json and a reconstruction figure",
    )
    p.add_argument(
        "--models",
        type=_parse_sequence(str),
        metavar="NAME,NAME,...",
        help="the models to train (default: every registered model)",
    )
    p.add_argument("--out", metavar="DIR", help="zoo folder (default runs/zoo-TIMESTAMP)")
    p.add_argument(
        "--sample-quality",
        type=int,
        default=0,
        metavar="N",
        help="judge N samples of each generative model with the reference classifier (trained "
        "once and cached; minutes on a CPU the first time); default 0: skip",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_options(p, [TrainConfig], "training")
    add_config_options(p, [DataConfig], "data")

    p = sub.add_parser("runs", help="a table of the runs in a folder (any depth)")
    p.add_argument("folder", nargs="?", default="runs", help="where to look (default runs/)")


def cmd_report(args: argparse.Namespace) -> int:
    from aezoo.report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from aezoo.zoo import zoo

    options = _options(args, "models", "out", "quiet", "sample_quality")
    result = zoo(
        args.models,
        out=args.out,
        quiet=args.quiet,
        sample_quality=args.sample_quality,
        **options,
    )
    print(result.table)
    print(f"zoo folder: {result.path} (open {result.path / 'zoo.html'})")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from aezoo.zoo import list_runs, runs_table

    rows = list_runs(args.folder)
    print(runs_table(rows) if rows else f"no runs in {args.folder}")
    return 0


def _add_anomaly_parsers(sub: Any) -> None:
    """`aezoo anomaly PROTOCOL`: MNIST with a digit held out, MNIST one-class, tabular rows."""
    from aezoo.config import DataConfig, TrainConfig
    from aezoo.models import MODELS

    group = sub.add_parser(
        "anomaly", help="anomaly detection protocols: mnist-holdout, mnist-one-class, tabular"
    )
    protocols = group.add_subparsers(dest="protocol", required=True, parser_class=_Parser)
    holdout = protocols.add_parser(
        "mnist-holdout",
        help="train on every digit but one; AUROC, average precision and the confusion at the "
        "threshold for normal digits vs the held-out one, with ROC and score figures",
    )
    holdout.add_argument("--anomaly", type=int, default=9, help="the held-out digit (default 9)")
    holdout.add_argument("--model", default="dense-vae", help="a registered model (dense-vae)")
    one_class = protocols.add_parser(
        "mnist-one-class",
        help="for each digit, train on it alone and score the test set (Ruff et al. 2018): "
        "a table of AUROCs per model, as Markdown and JSON",
    )
    one_class.add_argument(
        "--models",
        type=_parse_sequence(str),
        default=("dense-ae", "conv-ae", "dense-vae", "conv-vae"),
        metavar="NAME,NAME,...",
        help="models to compare (default dense-ae,conv-ae,dense-vae,conv-vae)",
    )
    one_class.add_argument(
        "--digits",
        type=_parse_sequence(int),
        default=tuple(range(10)),
        metavar="D,D,...",
        help="the normal classes to run (default all ten)",
    )
    tabular = protocols.add_parser(
        "tabular", help="fit on tabular rows (.npz: x, optional y with 1 = anomaly, x_test, y_test)"
    )
    tabular.add_argument("path", help="an .npz file with x [N, D] and optionally y, x_test, y_test")
    tabular.add_argument("--model", default="dense-ae", help="a dense model (default dense-ae)")
    tabular.add_argument(
        "--fit-on",
        choices=["normal", "all"],
        default="normal",
        help="train on the rows labelled normal, or on all rows (unsupervised); default normal",
    )
    tabular.add_argument(
        "--test-fraction", type=float, default=0.5, help="share of each label held out (0.5)"
    )
    tabular.add_argument("--split-seed", type=int, default=0, help="seed of the split (0)")
    model_configs = list(dict.fromkeys(preset.config for preset in MODELS.values()))
    for p in (holdout, one_class, tabular):
        p.add_argument(
            "--score",
            type=_parse_sequence(str),
            default=("recon",),
            metavar="S,S,...",
            help="anomaly scores, each from the same training: recon, elbo, nll (VAEs), latent "
            "(a Gaussian mixture on the codes); default recon",
        )
        p.add_argument("--out", metavar="DIR", help="write results and figures to this folder")
        p.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        detector = p.add_argument_group("detector")
        detector.add_argument(
            "--contamination",
            type=float,
            default=argparse.SUPPRESS,
            help="share of training rows below the threshold (default 0.05)",
        )
        detector.add_argument(
            "--threshold-percentile",
            type=float,
            default=argparse.SUPPRESS,
            help="threshold at this percentile of training anomaly scores",
        )
        detector.add_argument(
            "--n-samples",
            type=int,
            default=argparse.SUPPRESS,
            help="posterior samples per image for VAE scores (default 10)",
        )
        detector.add_argument(
            "--latent-components",
            type=int,
            default=argparse.SUPPRESS,
            help="Gaussian mixture components for --score latent (default 10)",
        )
        add_config_options(p, [TrainConfig], "training")
        if p is not tabular:
            add_config_options(p, [DataConfig], "data")
        add_config_options(
            p, model_configs, "model (each applies to the models whose config has it)"
        )


def cmd_anomaly(args: argparse.Namespace) -> int:
    from aezoo import anomaly_protocols as protocols
    from aezoo.checkpoint import atomic_write

    options = _options(
        args,
        "protocol",
        "score",
        "out",
        "json",
        "quiet",
        "anomaly",
        "model",
        "models",
        "digits",
        "path",
        "fit_on",
        "test_fraction",
        "split_seed",
    )
    common = {"scores": args.score, "out": args.out, "quiet": args.quiet, **options}
    if args.protocol == "mnist-holdout":
        result = protocols.mnist_holdout(args.anomaly, model=args.model, **common)
    elif args.protocol == "mnist-one-class":
        result = protocols.mnist_one_class(args.models, digits=args.digits, **common)
    else:
        arrays = protocols.load_tabular(args.path)
        result = protocols.evaluate_tabular(
            arrays["x"],
            arrays.get("y"),
            x_test=arrays.get("x_test"),
            y_test=arrays.get("y_test"),
            model=args.model,
            fit_on=args.fit_on,
            test_fraction=args.test_fraction,
            split_seed=args.split_seed,
            **common,
        )
    text = json.dumps(result, indent=2)
    if args.json:
        atomic_write(Path(args.json), (text + "\n").encode())
    print(result.get("table", text))
    return 0


def _add_bench_parser(sub: Any) -> None:
    from aezoo.config import TrainConfig, cli_fields

    p = sub.add_parser(
        "bench",
        help="speed of each model (images/s, peak memory, s/epoch, s to a target quality) beside "
        "the tutorial DataLoader pipeline, and scaling with data and batch size: JSON + Markdown",
    )
    p.add_argument(
        "--models",
        type=_parse_sequence(str),
        metavar="NAME,NAME,...",
        help="models to measure (default: every registered model)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke test: 2000 training images, one timed epoch, one quality "
        "epoch, small scaling",
    )
    p.add_argument("--out", metavar="DIR", help="results folder (default runs/bench-TIMESTAMP)")
    p.add_argument("--repeats", type=int, help="timed epochs per model after a warm-up (3)")
    p.add_argument("--train-images", type=int, help="training images (default all)")
    p.add_argument("--quality-epochs", type=int, help="most epochs spent reaching a target (20)")
    p.add_argument(
        "--scaling-models",
        type=_parse_sequence(str),
        metavar="NAME,NAME,...",
        help="models of the scaling tables (default dense-ae,conv-ae)",
    )
    p.add_argument("--no-quality", action="store_true", help="skip the time to target quality")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling tables")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    group = p.add_argument_group("training (aezoo's side; the reference stays eager fp32)")
    hints = typing.get_type_hints(TrainConfig)
    for f in cli_fields(TrainConfig):
        if f.name in ("device", "precision", "compile", "threads", "batch_size"):
            _add_field(group, f, hints[f.name])


def cmd_bench(args: argparse.Namespace) -> int:
    from datetime import datetime

    from aezoo import bench

    names = ("repeats", "quality_epochs", "scaling_models")
    changes = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.train_images is not None:
        changes["train_images"] = args.train_images
    training = ("device", "precision", "compile", "threads", "batch_size")
    options = tuple((k, getattr(args, k)) for k in training if hasattr(args, k))
    make = bench.Settings.quick if args.quick else bench.Settings
    settings = make(**changes, options=options)
    out = args.out or Path("runs") / datetime.now().strftime("bench-%Y%m%d-%H%M%S")
    path = bench.run(
        args.models,
        out=out,
        settings=settings,
        quality=not args.no_quality,
        scale=not args.no_scaling,
        quiet=args.quiet,
    )
    print(f"results: {path} and {path.with_suffix('.json')}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": cmd_list,
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "explore": cmd_explore,
    "sweep": cmd_sweep,
    "train-prior": cmd_train_prior,
    "codebook-study": cmd_codebook_study,
    "report": cmd_report,
    "zoo": cmd_zoo,
    "runs": cmd_runs,
    "anomaly": cmd_anomaly,
    "bench": cmd_bench,
}


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"aezoo: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one line and return 2, training failures return 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():  # library warnings as one line each (restored after)
            warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except UsageError as err:
        if debug:
            raise
        print(f"aezoo: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        if debug:
            raise
        print(f"aezoo: training stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"aezoo: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `aezoo runs | head`: the reader left early, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0

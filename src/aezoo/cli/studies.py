"""The commands over many runs: sweep, codebook-study, zoo, bench, and the anomaly protocols. Each
command's flags sit beside its handler."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aezoo.anomaly import protocols, tabular_protocol
from aezoo.cli.flags import (
    Command,
    Parser,
    add_config_options,
    add_run_options,
    add_shared,
    add_training_fields,
    model_configs,
    options_of,
    parse_sequence,
    seed,
)
from aezoo.config import DataConfig, TrainConfig
from aezoo.errors import UsageError
from aezoo.io import atomic_write, check_destination, new_output_folder
from aezoo.runs import new_run_dir
from aezoo.studies import bench
from aezoo.studies.codebook import SIZES, codebook_study
from aezoo.studies.sweep import sweep
from aezoo.studies.zoo import zoo

MODELS_HELP = "NAME,NAME,..."


def sweep_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a registered model with a β (e.g. conv-vae)")
    p.add_argument(
        "--beta",
        required=True,
        type=parse_sequence(float),
        metavar="B,B,...",
        help="the β values, e.g. 1,2,4,10",
    )
    p.add_argument("--out", metavar="DIR", help="sweep folder (default runs/sweep-MODEL-TIMESTAMP)")
    add_run_options(p)


def cmd_sweep(args: argparse.Namespace) -> int:
    options = options_of(args, "model", "beta", "out")
    result = sweep(args.model, args.beta, out=args.out, quiet=args.quiet, **options)
    print(result.table)
    print(f"sweep folder: {result.path}")
    return 0


def codebook_study_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        type=parse_sequence(int),
        default=SIZES,
        metavar="K,K,...",
        help="codebook sizes (default 20,40,512)",
    )
    p.add_argument("--out", metavar="DIR", help="study folder (default runs/codebook-study-TIME)")
    add_run_options(p, models=False)


def cmd_codebook_study(args: argparse.Namespace) -> int:
    options = options_of(args, "sizes", "out")
    result = codebook_study(args.out, tuple(args.sizes), quiet=args.quiet, **options)
    print(result.table)
    print(f"study folder: {result.path}")
    return 0


def zoo_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        type=parse_sequence(str),
        metavar=MODELS_HELP,
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
    add_run_options(p, models=False)


def cmd_zoo(args: argparse.Namespace) -> int:
    options = options_of(args, "models", "out", "sample_quality")
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


BENCH_TRAINING = ("device", "precision", "compile", "threads", "batch_size")


def bench_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        type=parse_sequence(str),
        metavar=MODELS_HELP,
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
        type=parse_sequence(str),
        metavar=MODELS_HELP,
        help="models of the scaling tables (default dense-ae,conv-ae)",
    )
    p.add_argument("--no-quality", action="store_true", help="skip the time to target quality")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling tables")
    add_shared(p, "quiet", "device", into_config=True)
    add_training_fields(
        p, "training (aezoo's side; the reference stays eager fp32)", BENCH_TRAINING
    )


def cmd_bench(args: argparse.Namespace) -> int:
    names = ("repeats", "quality_epochs", "scaling_models")
    changes = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.train_images is not None:
        changes["train_images"] = args.train_images
    options = tuple((k, getattr(args, k)) for k in BENCH_TRAINING if hasattr(args, k))
    make = bench.Settings.quick if args.quick else bench.Settings
    settings = make(**changes, options=options)
    out = new_run_dir("bench", args.out)
    check_destination(out, folder=True)  # a folder that may hold earlier results to merge
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


def _detector_flags(p: argparse.ArgumentParser) -> None:
    """The flags every anomaly protocol shares: scores, outputs and the detector's parameters."""
    p.add_argument(
        "--score",
        type=parse_sequence(str),
        default=("auto",),
        metavar="S,S,...",
        help="anomaly scores: auto (the input kind's default), recon, elbo, nll (VAEs), latent "
        "(a Gaussian mixture on the codes), combined (images: the image default); one training "
        "serves a model's scores; default auto",
    )
    p.add_argument("--out", metavar="DIR", help="write results and figures to this folder")
    p.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")
    add_shared(p, "quiet", "device", "seed", into_config=True)
    detector = p.add_argument_group("detector")
    for flag, kind, text in (
        ("--contamination", float, "share of training rows below the threshold (default 0.05)"),
        ("--threshold-percentile", float, "threshold at this percentile of training scores"),
        ("--n-samples", int, "posterior samples per image for VAE scores (default 10)"),
        (
            "--latent-components",
            int,
            "Gaussian mixture components: --score latent (10), combined (50)",
        ),
    ):
        detector.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=text)


def anomaly_flags(group: argparse.ArgumentParser) -> None:
    """`aezoo anomaly PROTOCOL`: MNIST with a digit held out, MNIST one-class, tabular rows."""
    sub = group.add_subparsers(dest="protocol", required=True, parser_class=Parser)
    holdout = sub.add_parser(
        "mnist-holdout",
        help="train on every digit but one; AUROC, average precision and the confusion at the "
        "threshold for normal digits vs the held-out one, with ROC and score figures",
    )
    holdout.add_argument("--anomaly", type=int, default=9, help="the held-out digit (default 9)")
    holdout.add_argument("--model", help="a registered model (default: the detector's, dense-ae)")
    holdout.add_argument(
        "--top-k", type=int, default=16, help="with --out: the k most anomalous test images (16)"
    )
    one_class = sub.add_parser(
        "mnist-one-class",
        help="for each digit, train on it alone and score the test set (Ruff et al. 2018): "
        "a table of AUROCs per model, as Markdown and JSON",
    )
    one_class.add_argument(
        "--models",
        type=parse_sequence(str),
        default=("dense-ae", "conv-ae", "dense-vae", "conv-vae"),
        metavar=MODELS_HELP,
        help="models to compare (default dense-ae,conv-ae,dense-vae,conv-vae)",
    )
    one_class.add_argument(
        "--digits",
        type=parse_sequence(int),
        default=tuple(range(10)),
        metavar="D,D,...",
        help="the normal classes to run (default all ten)",
    )
    tabular = _tabular_flags(sub)
    for p in (holdout, one_class, tabular):
        _detector_flags(p)
        add_config_options(p, [TrainConfig], "training")
        if p is not tabular:
            add_config_options(p, [DataConfig], "data")
        add_config_options(
            p, model_configs(), "model (each applies to the models whose config has it)"
        )


def _tabular_flags(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`aezoo anomaly tabular`: a table file, its label column, and the split."""
    tabular = sub.add_parser(
        "tabular",
        help="fit on tabular rows (.csv/.parquet with --label-column, or .npz: x, "
        "optional y with 1 = anomaly, x_test, y_test)",
    )
    tabular.add_argument("path", nargs="?", help="the table (or give it with --dataset)")
    tabular.add_argument("--dataset", metavar="PATH", help="the table: .csv, .tsv, .parquet, .npz")
    tabular.add_argument(
        "--label-column", metavar="NAME", help="the column of labels, 0 = normal, 1 = anomaly"
    )
    tabular.add_argument(
        "--model", help="a dense model for --score recon/latent/elbo/nll (auto: the recipe)"
    )
    tabular.add_argument(
        "--fit-on",
        choices=["normal", "all"],
        default="normal",
        help="train on the rows labelled normal, or on all rows (unsupervised); default normal",
    )
    tabular.add_argument(
        "--test-fraction", type=float, default=0.5, help="share of each label held out (0.5)"
    )
    tabular.add_argument("--split-seed", type=seed, default=0, help="seed of the split (0)")
    return tabular


ANOMALY_OWN = (
    "protocol",
    "score",
    "out",
    "json",
    "anomaly",
    "model",
    "models",
    "digits",
    "path",
    "top_k",
)


def cmd_anomaly(args: argparse.Namespace) -> int:
    own = ("fit_on", "test_fraction", "split_seed", "dataset", "label_column")
    options = options_of(args, *ANOMALY_OWN, *(own if args.protocol == "tabular" else ()))
    common = {"scores": args.score, "out": args.out, "quiet": args.quiet, **options}
    if args.json:
        check_destination(Path(args.json))
    if args.out is not None:
        new_output_folder(Path(args.out))
    if args.protocol == "mnist-holdout":
        result = protocols.mnist_holdout(args.anomaly, model=args.model, top_k=args.top_k, **common)
    elif args.protocol == "mnist-one-class":
        result = protocols.mnist_one_class(args.models, digits=args.digits, **common)
    else:
        path = args.dataset or args.path
        if path is None or (args.dataset and args.path):
            raise UsageError("anomaly tabular: give the table once, as PATH or --dataset PATH")
        arrays = tabular_protocol.read_rows(path, args.label_column)
        result = tabular_protocol.evaluate_tabular(
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


COMMANDS = {
    "sweep": Command("train a model for several β and compare them", sweep_flags, cmd_sweep),
    "codebook-study": Command(
        "conv-vqvae with codebook sizes 20, 40, 512, with and without the codebook-health "
        "options: table and usage histograms",
        codebook_study_flags,
        cmd_codebook_study,
    ),
    "zoo": Command(
        "train every model with the same options and compare them: zoo.html, zoo.md, zoo.json "
        "and a reconstruction figure",
        zoo_flags,
        cmd_zoo,
    ),
    "anomaly": Command(
        "anomaly detection protocols: mnist-holdout, mnist-one-class, tabular",
        anomaly_flags,
        cmd_anomaly,
    ),
    "bench": Command(
        "speed of each model (images/s, peak memory, s/epoch, s to a target quality) beside the "
        "tutorial DataLoader pipeline, and scaling with data and batch size: JSON + Markdown",
        bench_flags,
        cmd_bench,
    ),
}

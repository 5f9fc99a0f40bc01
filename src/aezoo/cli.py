"""The `aezoo` command line: options are generated from the config dataclasses, each subcommand
calls one library function, and only `main` turns errors into exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
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
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__}s, "
                                             f"got {text!r}") from None
    return parse


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, hint: Any) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata.get("help", "")
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


def add_config_options(parser: argparse.ArgumentParser, classes: Sequence[type],
                       title: str) -> None:
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
    add_config_options(p, [TrainConfig], "training")
    add_config_options(p, [DataConfig], "data")
    model_configs = list(dict.fromkeys(preset.config for preset in MODELS.values()))
    add_config_options(p, model_configs, "model (each applies to the models whose config has it)")

    p = sub.add_parser("eval", help="reload a run and print its test metrics")
    p.add_argument("run_dir", help="a run folder written by `aezoo train`")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from aezoo.models import MODELS, build, count_parameters

    width = max(len(name) for name in MODELS)
    print(f"{'model':<{width}}  {'params':>10}  summary")
    for name, preset in MODELS.items():
        print(f"{name:<{width}}  {count_parameters(build(name)):>10,}  {preset.summary}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from aezoo.train import train

    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "debug", "model", "resume", "out", "quiet")}
    run = train(args.model, out=args.out, resume=args.resume, quiet=args.quiet, **options)
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
    text = json.dumps(metrics, indent=2)
    if args.json:
        atomic_write(Path(args.json), (text + "\n").encode())
    print(text)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": cmd_list, "train": cmd_train, "eval": cmd_eval,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one line and return 2, training failures return 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
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
    except KeyboardInterrupt:
        print("aezoo: interrupted", file=sys.stderr)
        return 130

"""How commands get their flags: generated from the config dataclasses, plus the flags every
command shares (--quiet, --device, --seed), each defined once here."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, get_args, get_origin

from aezoo.config import SEED_HIGH, DataConfig, TrainConfig, cli_fields
from aezoo.errors import UsageError
from aezoo.models import MODELS


def seed(text: str) -> int:
    """A seed: an integer in 0..SEED_HIGH (what every generator it seeds takes)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_HIGH:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{SEED_HIGH}, got {text!r}")
    return value


# The shared flags: the same name, meaning and default in every command that takes one. A command
# whose options go into a TrainConfig leaves them unset when not given, so the config's default
# (the same value) applies and `--resume` sees only what the user typed.
SHARED: dict[str, dict[str, Any]] = {
    "quiet": {"action": "store_true", "help": "no progress output"},
    "device": {
        "default": "auto",
        "help": "auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps (default auto)",
    },
    "seed": {
        "type": seed,
        "default": 0,
        "help": "seed of weights, data order and random draws (default 0)",
    },
}


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


def add_shared(p: argparse.ArgumentParser, *names: str, into_config: bool = False) -> None:
    """The shared flags `names`; `into_config`: left unset unless given (the config decides)."""
    for name in names:
        kwargs = dict(SHARED[name])
        if into_config and name != "quiet":
            kwargs["default"] = argparse.SUPPRESS
        p.add_argument("--" + name, dest=name, **kwargs)


def parse_sequence(item: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return tuple(item(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {item.__name__}s, got {text!r}"
            ) from None

    return parse


def add_field(parser: Any, f: dataclasses.Field, hint: Any) -> None:
    """One --option for a config field, typed and checked by its annotation."""
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
        kwargs["type"] = parse_sequence(get_args(hint)[0])
        kwargs["metavar"] = "N,N,..."
    else:
        kwargs["type"] = hint
    parser.add_argument(flag, **kwargs)


def add_config_options(
    parser: argparse.ArgumentParser, classes: Sequence[type], title: str
) -> None:
    """One --option per CLI field of each config class (a name shared by several is added once)."""
    group = parser.add_argument_group(title)
    seen = {a.dest for a in parser._actions}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in cli_fields(cls):
            if f.name not in seen:
                seen.add(f.name)
                add_field(group, f, hints[f.name])


def add_training_fields(p: argparse.ArgumentParser, title: str, keep: Iterable[str]) -> None:
    """The TrainConfig options named in `keep` only."""
    group = p.add_argument_group(title)
    hints = typing.get_type_hints(TrainConfig)
    wanted = set(keep) - {a.dest for a in p._actions}
    for f in cli_fields(TrainConfig):
        if f.name in wanted:
            add_field(group, f, hints[f.name])


def model_configs() -> list[type]:
    return list(dict.fromkeys(preset.config for preset in MODELS.values()))


def add_run_options(p: argparse.ArgumentParser, *, models: bool = True) -> None:
    """--quiet, --device, --seed and every training and data option (and the models' own)."""
    add_shared(p, "quiet", "device", "seed", into_config=True)
    add_config_options(p, [TrainConfig], "training")
    add_config_options(p, [DataConfig], "data")
    if models:
        add_config_options(
            p, model_configs(), "model (each applies to the models whose config has it)"
        )


def options_of(args: argparse.Namespace, *own: str) -> dict[str, Any]:
    """The config options given on the command line: every parsed value but the command's own."""
    skip = {"command", "debug", "quiet", *own}
    return {k: v for k, v in vars(args).items() if k not in skip}


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its help line, the function that adds its flags, and its handler."""

    help: str
    flags: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

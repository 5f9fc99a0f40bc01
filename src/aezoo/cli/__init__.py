"""The `aezoo` command line: one table of commands, each with its flags beside its handler
(cli/runs.py, cli/studies.py); options are generated from the config dataclasses, each command
calls one library function, and only `main` turns errors into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from aezoo.cli import runs, studies
from aezoo.cli.flags import Command, Parser
from aezoo.errors import TrainingError, UsageError, printable
from aezoo.version import __version__

COMMANDS: dict[str, Command] = {**runs.COMMANDS, **studies.COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="aezoo", description="Train, evaluate and show autoencoders.")
    parser.add_argument("--version", action="version", version=f"aezoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, command in COMMANDS.items():
        command.flags(sub.add_parser(name, help=command.help))
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"aezoo: warning: {printable(str(message))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one line and return 2, training failures return 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():  # library warnings as one line each (restored after)
            warnings.showwarning = _show_warning
            return COMMANDS[args.command].run(args)
    except UsageError as err:
        if debug:
            raise
        print(f"aezoo: error: {printable(str(err))}", file=sys.stderr)
        return 2
    except TrainingError as err:
        if debug:
            raise
        print(f"aezoo: training stopped: {printable(str(err))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"aezoo: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `aezoo runs | head`: the reader left early, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


__all__ = ["COMMANDS", "build_parser", "main"]

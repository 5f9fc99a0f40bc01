"""Property-based tests over the command line and config.json, drawn from the config dataclasses
themselves (types, ranges, choices), so a new option or model is fuzzed the moment it exists.

Valid values train a tiny run (64 images, one epoch) without error; invalid ones (wrong types,
out-of-range numbers, unknown options or fields) are exit code 2 and one line on stderr naming
the option, never a traceback, and nothing is written."""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from conftest import TINY, assert_clean, cli, copy_run, snapshot_folder
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from aezoo import runs as ckpt
from aezoo.cli import build_parser, main
from aezoo.config import DataConfig, TrainConfig, cli_fields
from aezoo.data import sources
from aezoo.data.batches import parse_corruption
from aezoo.data.decide import parse_scale
from aezoo.errors import UsageError
from aezoo.models import MODELS, preset
from aezoo.runs import RunSpec

NAMES = sorted(MODELS)
TRAIN_MODULE = sys.modules["aezoo.rundata"]  # where a run loads its data (load_splits)
# Held fixed: one epoch on a tiny subset of the bundled MNIST, on the CPU.
FIXED = {
    "epochs": 1,
    "train_subset": 64,
    "test_subset": 32,
    "device": "cpu",
    "dataset": "mnist",
    "data_dir": str(sources.REPO_DATA / "mnist"),
    # A named set has its own layout, scale, labels and test files (tests/test_own_data_cli.py).
    "layout": "auto",
    "scale": "auto",
    "label_column": None,
    "test_dataset": None,
}
# Valid but not fuzzed for training: machine-dependent (bf16 needs native support), process-wide
# (threads) or a minutes-long one-off (compile). Their invalid values are fuzzed below.
HELD = {"precision", "threads", "compile"}
# Ends that keep an example to a fraction of a second (the configs allow more).
LOWS: dict[str, float] = {"batch_size": 8, "lr": 1e-5, "sigma": 0.05, "test_fraction": 0.05}
HIGHS: dict[str, float] = {
    "batch_size": 64,
    "lr": 1e-2,
    "weight_decay": 0.1,
    "clip_grad": 10.0,
    "kl_warmup": 3,
    "kl_cycles": 3,
    "seed": 2**31,
    "latent_dim": 8,
    "hidden": 32,
    "channels": 8,
    "codebook_size": 16,
    "embedding_dim": 8,
    "residual_blocks": 1,
    "dead_code_restart": 100,
    "beta": 10.0,
    "free_bits": 2.0,
    "sigma": 1.0,
    "commitment_weight": 2.0,
    "test_fraction": 0.5,
}
SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: CI fails only on a real regression
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# aezoo sets flush-denormal for CPU training (torch.set_flush_denormal), for the whole process.
floats = functools.partial(st.floats, allow_subnormal=False)
WORDS = st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=8)
DEVICES = re.compile(r"auto|(cpu|cuda|mps)(:\d+)?")


def config_fields(*classes: type, cli: bool = True) -> list[tuple[dataclasses.Field, Any]]:
    """(field, type hint) of the classes' fields: those the command line has, or all."""
    out = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        chosen = cli_fields(cls) if cli else dataclasses.fields(cls)
        out += [(f, hints[f.name]) for f in chosen]
    return out


def options_of(model: str) -> list[tuple[dataclasses.Field, Any]]:
    """Every option `aezoo train MODEL` takes."""
    return config_fields(TrainConfig, DataConfig, preset(model).config)


def unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of `X | None`."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(get_args(hint))
    return hint, False


def _parses(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except (ValueError, UsageError):
        return False
    return True


# --- valid values train --------------------------------------------------------------------------


def valid(f: dataclasses.Field, hint: Any) -> st.SearchStrategy:
    """Values the field accepts, within LOWS and HIGHS."""
    tp, optional = unwrap(hint)
    meta = f.metadata
    low = LOWS.get(f.name, meta["low"] if meta.get("low") is not None else int(meta["positive"]))
    high = min(meta["high"] if meta.get("high") is not None else math.inf, HIGHS.get(f.name, 99))
    item = get_args(tp)[0] if get_origin(tp) is tuple else tp
    if f.name == "num_classes":  # MNIST's labels are 0..9: unconditional, or 10 classes or more
        strategy: st.SearchStrategy = st.sampled_from([0, 10, 12])
    elif f.name == "noise":
        kinds = st.sampled_from(["gaussian", "mask", "saltpepper"])
        strategy = st.builds("{}:{:g}".format, kinds, floats(0, 1))
    elif tp is bool:
        strategy = st.booleans()
    elif get_origin(tp) is Literal:
        strategy = st.sampled_from(get_args(tp))
    elif item is int:
        strategy = st.integers(int(low), int(high))
    elif tp is float:
        strategy = floats(max(low, 1e-6) if meta.get("positive") else low, high)
    else:
        raise AssertionError(f"no strategy for {f.name}: {hint}")
    if get_origin(tp) is tuple:
        strategy = st.lists(strategy, min_size=1, max_size=3).map(tuple)
    return st.none() | strategy if optional else strategy


def as_flags(values: dict[str, Any]) -> list[str]:
    args = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            args.append(f"{flag}={','.join(map(str, value))}")
        elif value is not None:
            args.append(f"{flag}={value!r}" if isinstance(value, float) else f"{flag}={value}")
    return args


@st.composite
def valid_options(draw: st.DrawFn, model: str) -> dict[str, Any]:
    """Random values for a random share of the model's options; the rest keep their defaults."""
    values = {}
    for f, hint in options_of(model):
        if f.name not in FIXED and f.name not in HELD and draw(st.booleans()):
            values[f.name] = draw(valid(f, hint))
    if values.get("kl_warmup") and values.get("kl_cycles"):
        del values["kl_cycles"]  # alternatives: setting both is an error
    if values.get("iw_samples", 1) > 1:  # the importance-weighted bound has no KL term to weight
        for name in ("beta", "free_bits", "kl_warmup", "kl_cycles"):
            values.pop(name, None)
    elif values.get("iw_gradient") == "dreg":  # a gradient of the bound: needs iw_samples > 1
        del values["iw_gradient"]
    return values


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for runs; MNIST parsed once for the module, and no figures or report.html (most
    of a tiny run's time; other tests cover them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TRAIN_MODULE, "load_splits", functools.cache(TRAIN_MODULE.load_splits))
        mp.setattr("aezoo.figures.write_run_figures", lambda *args, **kwargs: [])
        mp.setattr("aezoo.report.write_report", lambda *args, **kwargs: None)
        yield tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("model", NAMES)
@settings(SETTINGS, max_examples=3)
@given(data=st.data())
def test_valid_options_train(model: str, data: st.DataObject, quick: Path) -> None:
    values = data.draw(valid_options(model), label="options")
    out = quick / f"run-{len(list(quick.iterdir()))}"
    argv = ["train", model, *as_flags({**FIXED, **values}), "--out", str(out), "--quiet"]
    code, _, err = run_cli(argv)
    assert code == 0, (argv, err)
    summary = json.loads((out / ckpt.SUMMARY).read_text())
    assert summary["epochs"] == 1 and math.isfinite(summary["test_loss"])
    spec = RunSpec.from_json(json.loads((out / ckpt.CONFIG).read_text()))
    for name, value in values.items():  # each option reached its config as given
        config = next(c for c in (spec.train, spec.data, spec.model_config) if hasattr(c, name))
        assert getattr(config, name) == value, name


# --- invalid values: exit code 2, one line naming the option, nothing written ------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line(result: tuple[int, str, str], *names: str) -> None:
    """Exit code 2 and one line on stderr that names one of `names`."""
    code, stdout, stderr = result
    assert code == 2, stderr
    assert stdout == "" and "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aezoo: error: "), stderr
    assert any(name in lines[0] for name in names), f"none of {names} in: {lines[0]}"


def out_of_range(f: dataclasses.Field, tp: Any) -> st.SearchStrategy:
    """Numbers of type `tp` outside the field's range (nothing if it has none)."""
    meta, options = f.metadata, []
    finite = functools.partial(floats, allow_nan=False, allow_infinity=False)
    low = 0 if meta.get("positive") else meta.get("low")
    if low is not None:
        refused = (lambda v: v <= low) if meta.get("positive") else (lambda v: v < low)
        numbers = st.integers(max_value=math.ceil(low)) if tp is int else finite(max_value=low)
        options.append(numbers.filter(refused))
    if meta.get("high") is not None:
        high = meta["high"]
        numbers = st.integers(min_value=math.floor(high)) if tp is int else finite(min_value=high)
        options.append(numbers.filter(lambda v: v > high))
    return st.one_of(*options)


def invalid_text(f: dataclasses.Field, hint: Any) -> st.SearchStrategy[str]:
    """What the command line must refuse as option `f`'s value: unparsable, out of range, not
    one of the choices."""
    tp, _ = unwrap(hint)
    if f.name == "noise":
        return WORDS.filter(lambda s: not _parses(parse_corruption, s))
    if f.name == "scale":
        return WORDS.filter(lambda s: not _parses(parse_scale, s))
    if f.name == "device":
        return WORDS.filter(lambda s: not DEVICES.fullmatch(s))
    if get_origin(tp) is Literal:
        return WORDS.filter(lambda s: s not in get_args(tp))
    item = get_args(tp)[0] if get_origin(tp) is tuple else tp
    words = WORDS.filter(lambda s: "," not in s and not _parses(float, s))
    bad = st.one_of(
        words,
        out_of_range(f, item).map(repr),
        floats(allow_nan=False).filter(lambda v: not v.is_integer()).map(repr)
        if item is int
        else st.sampled_from(["nan", "inf", "-inf"]),
    )
    return bad.map(lambda v: f"1,{v}") if get_origin(tp) is tuple else bad


def train_flags() -> list[str]:
    """Every option string `aezoo train` knows (argparse also takes unique prefixes of them)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices["train"]._option_string_actions)


@st.composite
def invalid_argv(draw: st.DrawFn) -> tuple[list[str], tuple[str, ...]]:
    """(`train` options with one that is bad, the names its error may give)."""
    model = draw(st.sampled_from(NAMES))
    if draw(st.integers(0, 4)) == 0:  # an option nobody has
        known = train_flags()
        unknown = WORDS.map("--{}".format).filter(lambda s: not any(k.startswith(s) for k in known))
        flag = draw(unknown)
        return [model, flag, "1"], (flag,)
    f, hint = draw(st.sampled_from(options_of(model)))
    flag = "--" + f.name.replace("_", "-")
    if f.name in ("dataset", "data_dir", "test_dataset", "label_column"):  # test_cli covers them
        f, hint, flag = next((g, h, "--epochs") for g, h in options_of(model) if g.name == "epochs")
    if unwrap(hint)[0] is bool:  # a switch given a value
        return [model, f"{flag}={draw(WORDS)}"], (flag,)
    return [model, f"{flag}={draw(invalid_text(f, hint))}"], (flag, f.name)


@settings(SETTINGS, max_examples=60)
@given(case=invalid_argv())
def test_invalid_options_are_one_line_and_write_nothing(
    case: tuple[list[str], tuple[str, ...]], tmp_path: Path
) -> None:
    (model, *bad), names = case
    out = tmp_path / "run"
    fixed = as_flags(FIXED)
    assert_one_line(run_cli(["train", model, *fixed, *bad, "--out", str(out), "--quiet"]), *names)
    assert not out.exists()


# --- invalid config.json -------------------------------------------------------------------------

JSON_LEAVES = st.none() | st.booleans() | st.integers() | floats() | WORDS


def wrong_type(tp: Any) -> st.SearchStrategy:
    """JSON values that are not of type `tp` (ints pass as floats; nothing passes as a bool)."""
    containers = st.lists(JSON_LEAVES, max_size=2) | st.dictionaries(WORDS, JSON_LEAVES, max_size=2)
    if tp is bool:
        return (JSON_LEAVES | containers).filter(lambda v: not isinstance(v, bool))
    if tp is int:
        fractions = floats().filter(lambda v: not v.is_integer())
        return st.booleans() | fractions | WORDS | containers
    if tp is float:
        return st.booleans() | WORDS | containers | st.sampled_from([math.nan, math.inf])
    if tp is str:
        return st.booleans() | st.integers() | floats() | containers
    if get_origin(tp) is tuple:
        items = wrong_type(get_args(tp)[0]).filter(lambda v: not isinstance(v, list))
        return st.booleans() | st.integers() | WORDS | st.lists(items, min_size=1, max_size=2)
    raise AssertionError(tp)


def invalid_json(f: dataclasses.Field, hint: Any) -> st.SearchStrategy:
    """JSON values config.json must not get away with for field `f`."""
    tp, optional = unwrap(hint)
    if get_origin(tp) is Literal:
        bad: st.SearchStrategy = (JSON_LEAVES | WORDS).filter(lambda v: v not in get_args(tp))
    elif f.name == "noise":
        bad = wrong_type(str) | WORDS.filter(lambda s: not _parses(parse_corruption, s))
    elif f.name == "device":
        bad = wrong_type(str) | WORDS.filter(lambda s: not DEVICES.fullmatch(s))
    elif f.name == "image_shape":  # (C, H, W)
        bad = wrong_type(tp) | st.lists(st.integers(1, 9), max_size=5).filter(lambda v: len(v) != 3)
    else:
        item = get_args(tp)[0] if get_origin(tp) is tuple else tp
        numbers = out_of_range(f, item) if item in (int, float) else st.nothing()
        if get_origin(tp) is tuple:
            numbers = numbers.map(lambda v: [1, v])
        bad = wrong_type(tp) | numbers
    return bad.filter(lambda v: v is not None) if optional else bad


@st.composite
def invalid_config(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(a config.json with one bad value or unknown field, the names its error may give)."""
    model = draw(st.sampled_from(NAMES))
    p = preset(model)
    spec = RunSpec(model, p.make_config(), TrainConfig(**p.training), DataConfig())
    config = spec.to_json()
    sections = {"train": TrainConfig, "data": DataConfig, "model_config": p.config}
    section = draw(st.sampled_from(["", *sections]))
    where = config[section] if section else config
    kind = draw(st.sampled_from(["value", "value", "value", "unknown field"]))
    if kind == "unknown field" or not section:
        key = draw(WORDS.filter(lambda s: s not in where))
        where[key] = draw(JSON_LEAVES)
        return config, (repr(key),)
    f, hint = draw(st.sampled_from(config_fields(sections[section], cli=False)))
    where[f.name] = draw(invalid_json(f, hint))
    return config, (f.name,)


@settings(SETTINGS, max_examples=60)
@given(case=invalid_config(), command=st.sampled_from(["eval", "resume"]))
def test_invalid_config_json_is_one_line(
    case: tuple[dict[str, Any], tuple[str, ...]], command: str, tmp_path: Path
) -> None:
    config, names = case
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / ckpt.CONFIG).write_text(json.dumps(config))
    argv = ["eval", str(run_dir)] if command == "eval" else ["train", "--resume", str(run_dir)]
    assert_one_line(run_cli(argv), *names)
    assert [p.name for p in run_dir.iterdir()] == [ckpt.CONFIG]


@pytest.mark.parametrize("section", ["top", "train"])
def test_config_json_that_is_not_an_object(section: str, tmp_path: Path) -> None:
    config: Any = [] if section == "top" else {"model": "dense-ae", "train": [1]}
    (tmp_path / ckpt.CONFIG).write_text(json.dumps(config))
    assert_one_line(run_cli(["eval", str(tmp_path)]), "expected a JSON object")


# --- edited run folders: summary.json, metrics.jsonl, checkpoint metadata, symlinks (issue 16) ----

# Examples of a test that fails today are not shrunk: shrinking a known failure costs minutes.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=3),
    max_leaves=6,
)
SECRET = b"\0aezoo-fuzz-secret"
TINY_EPOCHS = TINY["epochs"]


def fresh_copy(source: Path, tmp_path: Path) -> Path:
    """A copy of `source` in a new folder (hypothesis reuses one tmp_path for every example)."""
    return copy_run(source, Path(tempfile.mkdtemp(dir=tmp_path)) / "run")


@st.composite
def edited_json_document(draw: st.DrawFn, original: dict[str, Any]) -> str:
    """The text of a JSON document a user edited: one field changed or added, the whole
    document replaced by another JSON value, or text that is no JSON at all."""
    kind = draw(st.sampled_from(["field", "field", "document", "text"]))
    if kind == "text":
        return draw(st.text(max_size=20))
    if kind == "document":
        return json.dumps(draw(JSON_VALUES))
    edited = dict(original)
    edited[draw(st.sampled_from(sorted(original)) | WORDS)] = draw(JSON_VALUES)
    return json.dumps(edited)


def assert_clean_run_listing(result: tuple[int, str, str]) -> None:
    """`aezoo runs` lists what it can read and skips the rest with a warning: exit code 0."""
    code, _, err = result
    assert code == 0 and "Traceback" not in err, err


@settings(SETTINGS, max_examples=20, phases=NO_SHRINK)
@given(data=st.data(), command=st.sampled_from(["report", "runs"]))
def test_an_edited_summary_json_is_never_a_traceback(
    data: st.DataObject, command: str, tiny_run: Any, tmp_path: Path
) -> None:
    run = fresh_copy(tiny_run.path, tmp_path)
    original = json.loads((run / ckpt.SUMMARY).read_text())
    (run / ckpt.SUMMARY).write_text(data.draw(edited_json_document(original), label="summary"))
    if command == "runs":
        assert_clean_run_listing(cli(["runs", run.parent]))
    else:
        assert_clean(cli(["report", run]))


@st.composite
def edited_metrics(draw: st.DrawFn, lines: list[str]) -> str:
    """metrics.jsonl with its lines kept, dropped, edited (one field), replaced by other JSON
    values or by text."""
    out = []
    for line in lines:
        kind = draw(st.sampled_from(["keep", "keep", "drop", "field", "value", "text"]))
        if kind == "keep":
            out.append(line)
        elif kind == "field":
            record = json.loads(line)
            record[draw(st.sampled_from(sorted(record)))] = draw(JSON_VALUES)
            out.append(json.dumps(record))
        elif kind == "value":
            out.append(json.dumps(draw(JSON_VALUES)))
        elif kind == "text":
            out.append(draw(st.text(max_size=12).filter(lambda s: "\n" not in s)))
    return "".join(line + "\n" for line in out)


@settings(SETTINGS, max_examples=20, phases=NO_SHRINK)
@given(data=st.data(), command=st.sampled_from(["report", "runs", "resume"]))
def test_an_edited_metrics_jsonl_is_never_a_traceback_nor_a_loss(
    data: st.DataObject, command: str, tiny_run: Any, tmp_path: Path
) -> None:
    run = fresh_copy(tiny_run.path, tmp_path)
    lines = (run / ckpt.METRICS).read_text().splitlines()
    (run / ckpt.METRICS).write_text(data.draw(edited_metrics(lines), label="metrics.jsonl"))
    before = snapshot_folder(run)
    if command == "runs":
        assert_clean_run_listing(cli(["runs", run.parent]))
        return
    result = cli(["report", run] if command == "report" else ["train", "--resume", run, "--quiet"])
    assert_clean(result)
    if command == "resume" and result[0] == 2:
        assert snapshot_folder(run) == before
    elif command == "resume":  # a finished run stays finished: its summary is never wiped
        assert json.loads((run / ckpt.SUMMARY).read_text())["epochs"] == TINY_EPOCHS


@st.composite
def edited_metadata(draw: st.DrawFn, metadata: dict[str, str]) -> dict[str, str]:
    """A checkpoint's metadata with one entry replaced: a small integer (epoch), other JSON, a
    JSON object with one value changed, or text."""
    key = draw(st.sampled_from(sorted(metadata)))
    kind = draw(st.sampled_from(["integer", "json", "nested", "text"]))
    if kind == "integer":
        value = str(draw(st.integers(-3, 12)))
    elif kind == "json":
        value = json.dumps(draw(JSON_VALUES))
    elif kind == "nested" and isinstance(json.loads(metadata[key]), (dict, list)):
        parsed = json.loads(metadata[key])
        where = parsed[0] if isinstance(parsed, list) and parsed else parsed
        if isinstance(where, dict) and where:
            where[draw(st.sampled_from(sorted(where)))] = draw(JSON_VALUES)
        value = json.dumps(parsed)
    else:
        value = draw(st.text(max_size=12))
    return {**metadata, key: value}


@settings(SETTINGS, max_examples=20, phases=NO_SHRINK)
@given(data=st.data())
def test_edited_checkpoint_metadata_is_never_a_traceback(
    data: st.DataObject, unfinished_run: Path, tmp_path: Path
) -> None:
    run = fresh_copy(unfinished_run, tmp_path)
    path = run / ckpt.CHECKPOINT
    with safe_open(path, "pt") as f:
        metadata = dict(f.metadata())
    save_file(load_file(path), path, metadata=data.draw(edited_metadata(metadata), label="meta"))
    before = snapshot_folder(run)
    result = cli(["train", "--resume", run, "--quiet"])
    assert_clean(result)
    if result[0] == 2:
        assert snapshot_folder(run) == before


LINKABLE = [
    "config.json",
    "model.safetensors",
    "summary.json",
    "metrics.jsonl",
    "report.html",
    "figures",
    "figures/reconstructions.png",
    "checkpoint",
    "checkpoint/last.safetensors",
]
LINK_COMMANDS = {
    "report": ["report", "{run}"],
    "sample": ["sample", "{run}", "--n=4"],
    "explore": ["explore", "{run}", "--tsne-points=0"],
    "eval": ["eval", "{run}"],
    "resume": ["train", "--resume", "{run}", "--quiet"],
}


@settings(SETTINGS, max_examples=20, phases=NO_SHRINK)
@given(entry=st.sampled_from(LINKABLE), command=st.sampled_from(sorted(LINK_COMMANDS)))
def test_symlinks_in_a_run_folder_are_never_followed_out_of_it(
    entry: str, command: str, tiny_run: Any, unfinished_run: Path, tmp_path: Path
) -> None:
    run = fresh_copy(unfinished_run if command == "resume" else tiny_run.path, tmp_path)
    if not (run / entry).exists():
        return  # an unfinished run has no summary, weights or figures yet
    outside = run.parent / "outside" / entry
    outside.parent.mkdir(parents=True)
    shutil.move(run / entry, outside)
    for png in [outside] if outside.suffix == ".png" else outside.rglob("*.png"):
        png.write_bytes(png.read_bytes() + SECRET)  # a reader that follows the link shows it
    os.symlink(outside, run / entry)
    before = snapshot_folder(run.parent / "outside")
    assert_clean(cli([a.format(run=run) for a in LINK_COMMANDS[command]]))
    assert snapshot_folder(run.parent / "outside") == before
    report = run / "report.html"
    if report.is_file() and not report.is_symlink():
        text = report.read_text()
        uris = re.findall(r"base64,([A-Za-z0-9+/=]+)", text)
        assert not any(SECRET in base64.b64decode(u) for u in uris)

"""The command line through its real entry points: `python -m aezoo` for a few end-to-end calls,
`aezoo.cli.main` for the many fast ones. Bad input is one line on stderr, exit code 2, and
nothing written."""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import json
import os
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import torch
from conftest import recomputed

from aezoo import runs as ckpt
from aezoo.cli import main
from aezoo.config import DataConfig, TrainConfig, cli_fields
from aezoo.data import sources
from aezoo.errors import TrainingError
from aezoo.models import MODELS, build, count_parameters

TRAIN_MODULE = importlib.import_module("aezoo.runner")  # where `aezoo.train` lives
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
ENV.pop("AEZOO_DATA", None)  # the bundled data/ is found without help


def aezoo(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aezoo", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=120,
    )


def run_main(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aezoo: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- end to end through `python -m aezoo` ------------------------------------------------------


def test_list_through_the_entry_point() -> None:
    result = aezoo("list")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "params", "summary"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert list(rows) == list(MODELS)
    for name, params in rows.items():
        assert params == f"{count_parameters(build(name)):,}", name


def test_train_and_eval_through_the_entry_point(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    snapshot: Callable,
    run_files: set[str],
    device: str,
) -> None:
    out = tmp_path / "run"
    result = aezoo(
        "train",
        "dense-ae",
        "--epochs",
        "1",
        "--train-subset",
        "500",
        "--test-subset",
        "200",
        "--out",
        out,
        "--quiet",
        "--device",
        device,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "epoch" not in result.stderr  # --quiet
    assert result.stdout.splitlines()[0] == f"run folder: {out}"
    files = snapshot(out)
    assert set(files) == run_files
    summary = json.loads(files["summary.json"])
    assert summary["epochs"] == 1 and summary["params"] == 476_720
    assert f"  test_mse: {summary['test_mse']:.6g}" in result.stdout.splitlines()
    config = json.loads(files["config.json"])
    assert config["data"]["train_subset"] == 500 and config["train"]["epochs"] == 1

    # eval, in this process (one thread, like the subprocess): the same numbers, bit for bit on
    # the CPU (CUDA's training evaluated under TF32, which eval leaves as this process has it).
    metrics_file = tmp_path / "metrics" / "eval.json"
    code, stdout, err = run_main(capsys, "eval", out, "--json", metrics_file, "--device", device)
    assert (code, err) == (0, "")
    printed, written = json.loads(stdout), json.loads(metrics_file.read_text())
    assert printed == written
    expected = {k: v for k, v in summary.items() if k.startswith("test_")}
    assert written == recomputed(expected, device)
    assert snapshot(out) == files  # eval writes nothing into the run


def test_bad_input_through_the_entry_point(tmp_path: Path) -> None:
    result = aezoo("train", "nosuch-ae", "--out", tmp_path / "run")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("aezoo: error: unknown model 'nosuch-ae'")
    assert not (tmp_path / "run").exists()


# --- fast calls of cli.main --------------------------------------------------------------------


def test_list(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_main(capsys, "list")
    assert (code, err) == (0, "")
    for name, preset in MODELS.items():
        line = next(line for line in out.splitlines() if line.split()[0] == name)
        assert f" {count_parameters(build(name)):,} " in line and preset.describe() in line


def test_eval_matches_summary(
    tiny_run: Any, tmp_path: Path, capsys: pytest.CaptureFixture, snapshot: Callable, device: str
) -> None:
    before = snapshot(tiny_run.path)
    code, out, err = run_main(
        capsys, "eval", tiny_run.path, "--json", tmp_path / "m.json", "--device", device
    )
    assert (code, err) == (0, "")
    summary = json.loads((tiny_run.path / ckpt.SUMMARY).read_text())
    expected = {k: v for k, v in summary.items() if k.startswith("test_")}
    assert json.loads(out) == json.loads((tmp_path / "m.json").read_text())
    assert json.loads(out) == recomputed(expected, device)
    assert snapshot(tiny_run.path) == before


def test_help_lists_options_from_the_configs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for cls in (TrainConfig, DataConfig, *(p.config for p in MODELS.values())):
        for f in cli_fields(cls):
            assert "--" + f.name.replace("_", "-") in out, f.name
    assert "--eval-batch-size" not in out and "--image-shape" not in out  # cli=False fields


def cli_value(hint: Any) -> list[str]:
    """Flag arguments that parse for a field of type `hint` (validation comes later)."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if hint is bool:
        return []
    if get_origin(hint) is Literal:
        return [str(get_args(hint)[0])]
    if get_origin(hint) is tuple:
        return ["1"]
    return {int: ["1"], float: ["0.5"], str: ["x"]}[hint]


def foreign_option() -> list[str] | None:
    """An option some registered model has and dense-ae's config does not, with a value."""
    own = {f.name for f in dataclasses.fields(MODELS["dense-ae"].config)}
    for preset in MODELS.values():
        hints = typing.get_type_hints(preset.config)
        for f in cli_fields(preset.config):
            if f.name not in own:
                return ["--" + f.name.replace("_", "-"), *cli_value(hints[f.name])]
    return None


def corrupted_data(folder: Path, kind: str) -> Path:
    """A data folder with real train labels and train images that are broken in way `kind`."""
    real = sources.REPO_DATA / "mnist"
    if kind == "truncated-gzip":
        data = (real / "train-images-idx3-ubyte.gz").read_bytes()[:5000]
    elif kind == "not-idx":
        data = gzip.compress(b"<html>404 not found</html>")
    else:  # a header that promises 60000 images of 28x28, followed by only 100 of them
        header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (60000, 28, 28))
        data = gzip.compress(header + bytes(100 * 28 * 28))
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(data)
    shutil.copy(real / "train-labels-idx1-ubyte.gz", folder)
    return folder


BAD_TRAIN = {
    "unknown-model": (["nosuch-ae"], ["unknown model 'nosuch-ae'", "dense-ae"]),
    "no-model": ([], ["name a model"]),
    "unknown-dataset": (["dense-ae", "--dataset", "cifar"], ["unknown data set 'cifar'"]),
    "missing-data-dir": (["dense-ae", "--data-dir", "{tmp}/nowhere"], ["nowhere"]),
    "epochs-0": (["dense-ae", "--epochs", "0"], ["epochs: must be > 0, got 0"]),
    "epochs-float": (["dense-ae", "--epochs", "1.5"], ["--epochs", "1.5"]),
    "batch-size-negative": (["dense-ae", "--batch-size", "-1"], ["batch_size: must be > 0"]),
    "lr-zero": (["dense-ae", "--lr", "0"], ["lr: must be > 0"]),
    "noise-blur": (["dense-ae", "--noise", "blur:1"], ["noise 'blur:1'", "gaussian:STD"]),
    "latent-dim-abc": (["dense-ae", "--latent-dim", "abc"], ["--latent-dim", "'abc'"]),
    "hidden-abc": (["dense-ae", "--hidden", "256,abc"], ["--hidden"]),
    "channels-empty": (["conv-ae", "--channels", ","], ["channels"]),
    "loss-l1": (["dense-ae", "--loss", "l1"], ["--loss", "'l1'"]),
    "train-subset-0": (["dense-ae", "--train-subset", "0"], ["train_subset: must be > 0"]),
    "unknown-flag": (["dense-ae", "--epochz", "3"], ["--epochz"]),
    "device-tpu": (["dense-ae", "--device", "tpu"], ["device", "'tpu'"]),
    "dropout-1": (["dense-ae", "--dropout", "1"], ["dropout: must be <= 0.95"]),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_input(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args, needles = BAD_TRAIN[case]
    out = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, stdout, err = run_main(capsys, "train", *args, "--out", out, "--quiet")
    assert_one_line_error(code, err, *needles)
    assert stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("kind", ["truncated-gzip", "not-idx", "truncated-idx"])
def test_corrupted_idx_file(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data_dir = corrupted_data(tmp_path / "data", kind)
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "train", "dense-ae", "--data-dir", data_dir, "--out", out)
    assert_one_line_error(code, err, str(data_dir / "train-images-idx3-ubyte.gz"))
    assert not out.exists()


def test_option_that_does_not_apply(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    option = foreign_option()
    if option is None:
        pytest.skip("every registered model takes every model option")
    out = tmp_path / "run"
    code, _, err = run_main(
        capsys,
        "train",
        "dense-ae",
        *option,
        "--out",
        out,
        "--train-subset",
        "100",
        "--test-subset",
        "100",
    )
    name = option[0][2:].replace("-", "_")
    assert_one_line_error(code, err, f"'{name}' does not apply")
    assert not out.exists()


def test_missing_device(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A device this machine lacks (cuda here, or mps on a CUDA machine) is one line, exit 2."""
    missing = "mps" if torch.cuda.is_available() else "cuda"
    if missing == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has both CUDA and MPS: no device kind is missing")
    code, _, err = run_main(
        capsys, "train", "dense-ae", "--device", missing, "--out", tmp_path / "run"
    )
    assert_one_line_error(code, err, f"'{missing}' is not available")
    assert not (tmp_path / "run").exists()


def test_out_is_an_existing_run(
    tiny_run: Any, capsys: pytest.CaptureFixture, snapshot: Callable
) -> None:
    before = snapshot(tiny_run.path)
    code, _, err = run_main(
        capsys,
        "train",
        "dense-ae",
        "--out",
        tiny_run.path,
        "--train-subset",
        "100",
        "--test-subset",
        "100",
    )
    assert_one_line_error(code, err, "already exists and is not empty", "--resume")
    assert snapshot(tiny_run.path) == before


@pytest.fixture
def finished_run(tiny_run: Any, tmp_path: Path) -> Path:
    """A private copy of the tiny run, free to be damaged."""
    return Path(shutil.copytree(tiny_run.path, tmp_path / "finished"))


def test_resume_without_a_checkpoint(
    finished_run: Path, capsys: pytest.CaptureFixture, snapshot: Callable
) -> None:
    shutil.rmtree(finished_run / "checkpoint")
    before = snapshot(finished_run)
    code, _, err = run_main(capsys, "train", "--resume", finished_run)
    assert_one_line_error(code, err, "no checkpoint to resume from")
    assert snapshot(finished_run) == before


@pytest.mark.parametrize(
    "extra", [["--epochs", "5"], ["--lr", "0.1"], ["--noise", "mask:0.5"], ["--latent-dim", "8"]]
)
def test_resume_with_options(
    extra: list[str], finished_run: Path, capsys: pytest.CaptureFixture, snapshot: Callable
) -> None:
    before = snapshot(finished_run)
    code, _, err = run_main(capsys, "train", "--resume", finished_run, *extra)
    name = extra[0][2:].replace("-", "_")
    assert_one_line_error(code, err, "--resume takes the run's options", f"'{name}'")
    assert snapshot(finished_run) == before


def test_resume_of_what_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, snapshot: Callable
) -> None:
    code, _, err = run_main(capsys, "train", "--resume", tmp_path / "nowhere")
    assert_one_line_error(code, err, "is not a run folder")
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_main(capsys, "train", "--resume", tmp_path)
    assert_one_line_error(code, err, "is not a run folder")
    assert snapshot(tmp_path) == {"notes.txt": b"mine"}


def test_eval_of_bad_runs(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, snapshot: Callable
) -> None:
    metrics = tmp_path / "m.json"
    code, _, err = run_main(capsys, "eval", tmp_path / "nowhere", "--json", metrics)
    assert_one_line_error(code, err, "is not a run folder")
    (finished_run / ckpt.WEIGHTS).write_bytes(b"\x80\x04\x95 a pickle, not safetensors")
    before = snapshot(finished_run)
    code, _, err = run_main(capsys, "eval", finished_run, "--json", metrics)
    assert_one_line_error(code, err, "not a safetensors file")
    assert not metrics.exists()
    assert snapshot(finished_run) == before


def test_usage_errors(capsys: pytest.CaptureFixture) -> None:
    for args in ([], ["fly"], ["eval"], ["list", "--epochs", "3"]):
        code, _, err = run_main(capsys, *args)
        assert_one_line_error(code, err)


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture) -> None:
    from aezoo.errors import UsageError

    with pytest.raises(UsageError, match="unknown model"):
        main(["--debug", "train", "nosuch-ae"])


def test_training_failure_is_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def failing_train(*args: object, **kwargs: object) -> None:
        raise TrainingError("the loss became non-finite at step 3")

    monkeypatch.setattr(TRAIN_MODULE, "train", failing_train)
    code, _, err = run_main(capsys, "train", "dense-ae")
    assert code == 1
    assert err.splitlines() == ["aezoo: training stopped: the loss became non-finite at step 3"]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(TRAIN_MODULE, "train", interrupted)
    code, _, err = run_main(capsys, "train", "dense-ae")
    assert (code, err) == (130, "aezoo: interrupted\n")


def test_cli_options_reach_the_configs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    seen: dict[str, Any] = {}

    def recording_train(model: str | None, **kwargs: Any) -> None:
        seen.update(kwargs, model=model)
        raise TrainingError("stop here")

    monkeypatch.setattr(TRAIN_MODULE, "train", recording_train)
    run_main(
        capsys,
        "train",
        "conv-ae",
        "--epochs",
        "4",
        "--lr",
        "3e-4",
        "--channels",
        "8,16",
        "--no-batchnorm",
        "--noise",
        "mask:0.5",
        "--out",
        "somewhere",
    )
    config_fields = {
        f.name
        for cls in (TrainConfig, DataConfig, *(p.config for p in MODELS.values()))
        for f in dataclasses.fields(cls)
    }
    # Exactly the options given reach the configs (parsed); the rest keep the configs' defaults.
    assert {k: v for k, v in seen.items() if k in config_fields} == {
        "epochs": 4,
        "lr": 3e-4,
        "channels": (8, 16),
        "batchnorm": False,
        "noise": "mask:0.5",
    }
    assert (seen["model"], seen["out"], seen["resume"], seen["quiet"]) == (
        "conv-ae",
        "somewhere",
        None,
        False,
    )

"""Issue 16, tracebacks that ordinary input reaches: each ends as one line on stderr and exit
code 2 (a ValueError of one line in the API), with nothing lost or half written. Only the
command line and the public API are used."""

from __future__ import annotations

import builtins
import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    TINY_FLAGS,
    assert_clean,
    assert_one_line,
    cli,
    copy_run,
    snapshot_folder,
    tabular_npz,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_breast_cancer, load_digits

import aezoo

CHECKPOINT = Path("checkpoint") / "last.safetensors"


# --- valid JSON of the wrong shape in a run's files ----------------------------------------------

WRONG_SHAPES = {
    "summary.json is a list": ("summary.json", "[1, 2]"),
    "summary.json test_mse is a list": ("summary.json", '{"epochs": 3, "test_mse": [1]}'),
    "metrics.jsonl line is a list": ("metrics.jsonl", "[1, 2]\n"),
    "metrics.jsonl test_loss is text": ("metrics.jsonl", '{"epoch": 1, "test_loss": "low"}\n'),
    "config.json data is a list": ("config.json", None),  # {..., "data": []}
}


def damage(run: Path, case: str) -> str:
    """Write the case's valid-JSON-of-the-wrong-shape into its file; returns the file's name."""
    name, text = WRONG_SHAPES[case]
    if name == "config.json":
        config = json.loads((run / name).read_text())
        config["data"] = []
        text = json.dumps(config)
    (run / name).write_text(text)
    return name


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_report_on_a_file_of_the_wrong_shape(case: str, tiny_run, tmp_path: Path) -> None:
    run = copy_run(tiny_run.path, tmp_path / "run")
    name = damage(run, case)
    result = cli(["report", run])
    if result[0] != 0:
        assert_one_line(result, name)


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_runs_skips_a_bad_run_with_a_warning(case: str, tiny_run, tmp_path: Path) -> None:
    good = copy_run(tiny_run.path, tmp_path / "runs" / "good")
    bad = copy_run(tiny_run.path, tmp_path / "runs" / "bad")
    damage(bad, case)
    code, out, err = cli(["runs", tmp_path / "runs"])
    assert code == 0 and "Traceback" not in err, err
    assert any(line.split()[0] == good.name for line in out.splitlines()[1:]), out
    listed = any(line.split()[0] == bad.name for line in out.splitlines()[1:])
    warned = [line for line in err.splitlines() if line.startswith("aezoo: warning:")]
    assert listed or (len(warned) == 1 and bad.name in warned[0]), (out, err)


# --- destinations checked before the work --------------------------------------------------------


@pytest.mark.parametrize("command", ["eval --json", "anomaly --json", "bench --out"])
def test_a_destination_that_cannot_be_written_is_refused_first(
    command: str, tiny_run, tmp_path: Path
) -> None:
    folder = tmp_path / "a folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("the user's\n")
    npz = tabular_npz(tmp_path / "rows.npz")
    argv = {
        "eval --json": ["eval", tiny_run.path, "--json", folder],
        "anomaly --json": ["anomaly", "tabular", npz, "--epochs=1", "--quiet", "--json", folder],
        "bench --out": [
            "bench",
            "--quick",
            "--models=dense-ae",
            "--no-quality",
            "--no-scaling",
            "--repeats=1",
            "--train-images=200",
            "--quiet",
            "--out",
            folder / "keep.txt",
        ],
    }[command]
    before = snapshot_folder(folder)
    result = cli(argv)
    assert_one_line(result, "a folder")
    assert result[1] == ""  # nothing done: no metrics, no table printed
    assert snapshot_folder(folder) == before


# --- a read-only run folder ----------------------------------------------------------------------


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch):
    """Make a folder read-only the way a read-only mount is: every way of creating, changing or
    removing a file under it fails with EROFS (the tests run as root, whom chmod does not stop)."""
    folders: list[Path] = []

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return False
        p = Path(os.fsdecode(path)).absolute()
        return any(p == f or f in p.parents for f in folders)

    def refuse(path: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open, real_mkstemp = builtins.open, os.open, tempfile.mkstemp
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def open_(file, mode="r", *args, **kwargs):
        if inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & writes:
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and inside(dir):
            refuse(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    def guard(real, *paths_at):
        def wrapper(*args, **kwargs):
            for i in paths_at:
                if len(args) > i and inside(args[i]):
                    refuse(args[i])
            return real(*args, **kwargs)

        return wrapper

    def make(folder: Path) -> None:
        folders.append(Path(folder).absolute())
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        for name in ("mkdir", "unlink", "remove", "rmdir"):
            monkeypatch.setattr(os, name, guard(getattr(os, name), 0))
        for name in ("replace", "rename"):
            monkeypatch.setattr(os, name, guard(getattr(os, name), 0, 1))

    return make


@pytest.mark.parametrize("command", ["report", "sample", "explore", "resume"])
def test_a_read_only_run_folder_is_one_line(
    command: str, tiny_run, unfinished_run: Path, tmp_path: Path, read_only
) -> None:
    run = copy_run(unfinished_run if command == "resume" else tiny_run.path, tmp_path / "run")
    before = snapshot_folder(run)
    argv = {
        "report": ["report", run],
        "sample": ["sample", run, "--n=4"],
        "explore": ["explore", run, "--tsne-points=0"],
        "resume": ["train", "--resume", run, "--quiet"],
    }[command]
    read_only(run)
    assert_one_line(cli(argv), "read-only", "Read-only")
    assert snapshot_folder(run) == before


# --- seeds, tiny data, odd options ---------------------------------------------------------------


def test_a_seed_out_of_range_is_refused_before_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_one_line(
        cli(["train", "dense-ae", *TINY_FLAGS, "--seed=100000000000000", "--out", out]), "seed"
    )
    assert not out.exists()


def test_explore_with_one_tsne_point(tiny_run, tmp_path: Path) -> None:
    run = copy_run(tiny_run.path, tmp_path / "run")
    assert_clean(cli(["explore", run, "--tsne-points=1"]))


def test_explore_a_run_trained_on_one_image(tmp_path: Path) -> None:
    run = tmp_path / "run"
    options = [a for a in TINY_FLAGS if "subset" not in a]
    code, _, err = cli(
        ["train", "dense-ae", *options, "--train-subset=1", "--test-subset=1", "--out", run]
    )
    assert code == 0, err
    assert_clean(cli(["explore", run, "--tsne-points=10"]))


def test_sample_gmm_with_a_negative_seed(tiny_run, tmp_path: Path) -> None:
    run = copy_run(tiny_run.path, tmp_path / "run")
    before = snapshot_folder(run)
    assert_one_line(cli(["sample", run, "--sampler=gmm", "--seed=-1", "--n=4"]), "seed")
    assert snapshot_folder(run) == before


# --- crafted checkpoint metadata -----------------------------------------------------------------


def rewrite_checkpoint(
    path: Path, metadata: dict[str, str] | None = None, extra: dict | None = None
) -> None:
    with safe_open(path, "pt") as f:
        meta = dict(f.metadata())
    meta.update(metadata or {})
    save_file({**load_file(path), **(extra or {})}, path, metadata=meta)


CRAFTED = {
    "param_groups not a list": {"param_groups": "5"},
    "param_groups of the wrong keys": {"param_groups": '[{"lr": "fast"}]'},
    "param_groups params not indices": {"param_groups": '[{"params": ["a"], "lr": 0.001}]'},
    "optim_scalars not an object": {"optim_scalars": "[1]"},
    "optim_scalars index not a number": {"optim_scalars": '{"first": {"step": 1}}'},
    "optim_scalars slots not an object": {"optim_scalars": '{"0": 5}'},
    "state seed not a number": {"state": '{"seed": "zero"}'},
    "tensor optim.x": "optim.x",
    "tensor optim.a.exp_avg": "optim.a.exp_avg",
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_checkpoint_metadata_is_one_line(
    case: str, unfinished_run: Path, tmp_path: Path
) -> None:
    run = copy_run(unfinished_run, tmp_path / "run")
    crafted = CRAFTED[case]
    if isinstance(crafted, dict):
        rewrite_checkpoint(run / CHECKPOINT, metadata=crafted)
    else:
        rewrite_checkpoint(run / CHECKPOINT, extra={crafted: torch.zeros(3)})
    before = snapshot_folder(run)
    assert_one_line(cli(["train", "--resume", run, "--quiet"]), "last.safetensors")
    assert snapshot_folder(run) == before


# --- tabular data, devices -----------------------------------------------------------------------


def test_tabular_x_test_of_another_width(tmp_path: Path) -> None:
    npz = tabular_npz(tmp_path / "rows.npz", test_width=20)
    out = tmp_path / "out"
    assert_one_line(
        cli(["anomaly", "tabular", npz, "--epochs=1", "--quiet", "--out", out]), "x_test"
    )
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_on_cuda_without_cuda_is_a_value_error(tiny_run) -> None:
    with pytest.raises(Exception) as info:
        aezoo.load(tiny_run.path, device="cuda")
    assert isinstance(info.value, ValueError), repr(info.value)
    assert "cuda" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skip(
    reason="SIGBUS from a memory-mapped .npy truncated mid-training: the signal comes on the page "
    "the loop touches first after the truncation, which depends on the page cache and on when the "
    "truncation lands, and SIGBUS kills the pytest process itself unless the run is a subprocess "
    "racing a truncation; no deterministic black-box trigger was found (issue 16)"
)
def test_a_truncated_memory_mapped_npy_is_a_clear_message() -> None:
    raise AssertionError("unreachable")


# --- a kill during the very first config.json write ----------------------------------------------


def test_a_kill_during_the_first_config_write_leaves_a_usable_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.x8k2m1.tmp").write_text('{"aezoo": "0.')  # what SIGKILL left
    argv = ["train", "dense-ae", *TINY_FLAGS, "--out", run]
    results = [cli(argv), cli(["train", "--resume", run, "--quiet"])]
    assert any(code == 0 for code, _, _ in results), [err for _, _, err in results]
    assert (run / "summary.json").exists()


# --- errors longer than one line -----------------------------------------------------------------


@pytest.mark.parametrize("where", ["dataset", "label_column"])
def test_an_array_refused_is_a_one_line_error(tmp_path: Path, where: str) -> None:
    """Arrays are data since issue 14; one that is refused (digits 0..16 with no stated scale, or
    an array where a column name belongs) is still one line, never the array printed."""
    images = load_digits().images[:64]  # [64, 8, 8], values 0..16
    options = {"dataset": images} if where == "dataset" else {"label_column": images}
    with pytest.raises(ValueError) as info:
        aezoo.train("dense-ae", epochs=1, out=tmp_path / "run", quiet=True, **options)
    assert "\n" not in str(info.value), str(info.value)
    assert len(str(info.value)) < 300
    assert not (tmp_path / "run").exists()


def test_one_dimensional_tabular_rows_are_a_one_line_error() -> None:
    x = load_breast_cancer().data[:, 0].astype(np.float32)
    with pytest.raises(ValueError) as info:
        aezoo.AnomalyDetector(epochs=1).fit(x)
    assert "\n" not in str(info.value), str(info.value)


def test_a_path_with_a_newline_is_one_line(tmp_path: Path) -> None:
    assert_one_line(cli(["eval", tmp_path / "no\nsuch run"]))

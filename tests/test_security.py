"""Issue 16, security: symlinks inside a run folder are never followed out of it (reading or
writing); what a run folder holds never reaches a terminal or a Markdown page as control
sequences or raw HTML; atomic writes respect the umask; one huge number in a file is refused
before anything is allocated. Only the command line and the public API are used."""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    MNIST_DIR,
    TINY_FLAGS,
    assert_clean,
    assert_one_line,
    cli,
    copy_run,
    snapshot_folder,
)

import aezoo

SECRET = b"\0aezoo-test-secret-3f9a"


def embedded(report: Path) -> list[bytes]:
    """The bytes of every data: URI in a report page."""
    text = report.read_text()
    return [
        base64.b64decode(m) for m in re.findall(r"data:[\w/+.-]+;base64,([A-Za-z0-9+/=]+)", text)
    ]


# --- 5. symlinks inside a run folder -------------------------------------------------------------


@pytest.mark.parametrize("target", ["/proc/self/environ", "outside file"])
def test_report_never_embeds_a_file_outside_the_run(target: str, tiny_run, tmp_path: Path) -> None:
    run = copy_run(tiny_run.path, tmp_path / "run")
    if target == "outside file":  # a real PNG, with a secret after its end (viewers ignore it)
        outside = tmp_path / "outside.png"
        outside.write_bytes((run / "figures" / "reconstructions.png").read_bytes() + SECRET)
        target, secret = str(outside), SECRET
    else:
        secret = b"PATH="
    os.symlink(target, run / "figures" / "env.png")
    assert_clean(cli(["report", run]))
    if (run / "report.html").exists():
        assert not any(secret in data for data in embedded(run / "report.html"))


def outside_folder(run: Path, name: str, tmp_path: Path) -> Path:
    """Move RUN/name out of the run and leave a symlink to it in its place."""
    outside = tmp_path / "outside" / name
    outside.parent.mkdir()
    shutil.move(run / name, outside)
    os.symlink(outside, run / name)
    return outside


@pytest.mark.parametrize(
    "command",
    [["sample", "{run}", "--n=4"], ["explore", "{run}", "--tsne-points=0"]],
    ids=["sample", "explore"],
)
def test_a_figures_symlink_is_never_written_through(
    command: list[str], tiny_run, tmp_path: Path
) -> None:
    run = copy_run(tiny_run.path, tmp_path / "run")
    outside = outside_folder(run, "figures", tmp_path)
    before = snapshot_folder(outside)
    result = cli([a.format(run=run) for a in command])
    assert_clean(result)
    assert snapshot_folder(outside) == before


def test_a_checkpoint_symlink_is_never_written_through(
    unfinished_run: Path, tmp_path: Path
) -> None:
    run = copy_run(unfinished_run, tmp_path / "run")
    outside = outside_folder(run, "checkpoint", tmp_path)
    before = snapshot_folder(outside)
    assert_clean(cli(["train", "--resume", run, "--quiet"]))
    assert snapshot_folder(outside) == before


# --- 6. control sequences, raw HTML, the umask ---------------------------------------------------

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")


def test_runs_prints_no_terminal_escape_sequences(tiny_run, tmp_path: Path) -> None:
    run = copy_run(tiny_run.path, tmp_path / "runs" / "run")
    config = json.loads((run / "config.json").read_text())
    config["data"]["dataset"] = "mnist\x1b]0;pwned\x07\x1b[2J\x1b[31m"
    (run / "config.json").write_text(json.dumps(config))
    code, out, err = cli(["runs", tmp_path / "runs"])
    assert code == 0, err
    assert not CONTROL.search(out + err), repr(out + err)


def test_zoo_markdown_escapes_html(tmp_path: Path) -> None:
    data_dir = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(MNIST_DIR, data_dir)
    out = tmp_path / "zoo"
    options = [a for a in TINY_FLAGS if not a.startswith("--data-dir")]
    code, _, err = cli(
        ["zoo", "--models=dense-ae", *options, f"--data-dir={data_dir}", "--out", out]
    )
    assert code == 0, err
    assert "onerror" in (out / "zoo.md").read_text()  # the options are shown ...
    assert "<img" not in (out / "zoo.md").read_text()  # ... as text, never as markup


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """os.umask for the test, the process's own umask restored after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask 022", "umask 027"])
def test_written_files_respect_the_umask(mask: int, umask, tiny_run, tmp_path: Path) -> None:
    run = copy_run(tiny_run.path, tmp_path / "run")
    umask(mask)
    assert cli(["eval", run, "--json", tmp_path / "metrics.json"])[0] == 0
    assert cli(["report", run])[0] == 0
    expected = 0o666 & ~mask
    for path in (tmp_path / "metrics.json", run / "report.html"):
        assert path.stat().st_mode & 0o777 == expected, f"{path.name}: {path.stat().st_mode:o}"


# --- 7. one huge number: refused with a clear limit before allocating -------------------------

ADDRESS_SPACE = 6 * 2**30  # the child may map 6 GiB: an allocation of terabytes fails at once


def cli_limited(argv: list[object], tmp_path: Path) -> tuple[int, str, str]:
    """`python -m aezoo *argv` with its address space capped, so that a bug which allocates
    terabytes fails fast instead of swapping the machine."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "aezoo", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=cap,
        timeout=300,
        cwd=tmp_path,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_huge_latent_dim_in_config_json_is_refused(
    command: str, tiny_run, tmp_path: Path
) -> None:
    run = copy_run(tiny_run.path, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["model_config"]["latent_dim"] = 10**9
    (run / "config.json").write_text(json.dumps(config))
    argv = ["eval", run] if command == "eval" else ["train", "--resume", run]
    assert_one_line(cli_limited(argv, tmp_path), "latent_dim")


def mnist_npz(path: Path, labels: np.ndarray | None = None) -> Path:
    data = aezoo.load_dataset("mnist", data_dir=MNIST_DIR).subset(200, seed=0)
    y = data.labels.numpy() if labels is None else labels
    np.savez(path, x=data.images.numpy(), y=y, x_test=data.images.numpy()[:100], y_test=y[:100])
    return path


def test_a_huge_label_is_refused(tmp_path: Path) -> None:
    data = aezoo.load_dataset("mnist", data_dir=MNIST_DIR).subset(200, seed=0)
    labels = data.labels.numpy().astype(np.int64)
    labels[0] = 10**12
    npz = mnist_npz(tmp_path / "labels.npz", labels)
    out = tmp_path / "run"
    result = cli_limited(
        ["train", "cvae", f"--dataset={npz}", "--epochs=1", "--out", out], tmp_path
    )
    assert_one_line(result, "label")
    assert not out.exists()


def bomb(path: Path) -> Path:
    """An .npz whose one member announces 10**12 bytes of images in its header (what a
    decompression bomb announces) and holds a few: a reader that trusts the header allocates
    a terabyte before it finds out."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**12 // 784, 28, 28)}
    buffer = np.lib.format.header_data_from_array_1_0(np.zeros((1, 28, 28), np.uint8))
    buffer.update(header)
    import io

    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, buffer)
    member.write(bytes(784))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", member.getvalue())
    return path


@pytest.mark.parametrize(
    "command",
    [
        "train",  # through load_splits since issue 14, which checks the header's size
        "anomaly tabular",  # the same check (aezoo.data.check_npz_size) before np.load
    ],
)
def test_an_npz_bomb_is_refused_before_allocating(command: str, tmp_path: Path) -> None:
    npz = bomb(tmp_path / "bomb.npz")
    out = tmp_path / "out"
    if command == "train":
        argv = ["train", "dense-ae", f"--dataset={npz}", "--epochs=1", "--out", out]
    else:
        argv = ["anomaly", "tabular", npz, "--epochs=1", "--out", out]
    assert_one_line(cli_limited(argv, tmp_path), "bomb.npz")
    assert not out.exists()

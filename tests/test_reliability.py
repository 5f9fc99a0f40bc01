"""Crash safety end to end. A real `aezoo train` is killed with SIGKILL at several points (and
stopped once with Ctrl-C); `aezoo train --resume` then finishes the very run an uninterrupted one
gives. In-process, Ctrl-C stops after a whole step and the resumed run is bit-identical; a full
disk or a read-only folder is one clear error that keeps the last checkpoint; a run writes nothing
outside its folder."""

from __future__ import annotations

import builtins
import dataclasses
import errno
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import aezoo
from aezoo import runs as ckpt
from aezoo.cli import main
from aezoo.data import sources
from aezoo.data.batches import Batches, parse_corruption
from aezoo.errors import Interrupted, TrainingError, UsageError
from aezoo.models import VAE
from aezoo.resume import Progress, StopOnSigint
from aezoo.runs import read_metrics

MNIST_DIR = sources.REPO_DATA / "mnist"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
ENV.pop("AEZOO_DATA", None)
TIMING = {"seconds", "eval_seconds", "train_seconds"}
RUN_FILES = {
    "config.json",
    "model.safetensors",
    "checkpoint/last.safetensors",
    "metrics.jsonl",
    "summary.json",
}


def strip(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in TIMING}


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical final weights and checkpoints, and the same metrics and summary (timing
    aside)."""
    assert (a / ckpt.WEIGHTS).read_bytes() == (b / ckpt.WEIGHTS).read_bytes()
    ta, tb = load_file(a / ckpt.CHECKPOINT), load_file(b / ckpt.CHECKPOINT)
    assert sorted(ta) == sorted(tb)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert [strip(r) for r in read_metrics(a)] == [strip(r) for r in read_metrics(b)]
    summary = [json.loads((d / ckpt.SUMMARY).read_text()) for d in (a, b)]
    assert strip(summary[0]) == strip(summary[1])


def files_of(run_dir: Path) -> set[str]:
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}


def flags(options: dict[str, Any]) -> list[str]:
    return [a for k, v in options.items() for a in ("--" + k.replace("_", "-"), str(v))]


@pytest.fixture
def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip figures and report.html (most of a tiny run's time; other tests cover them)."""
    monkeypatch.setattr("aezoo.figures.write_run_figures", lambda *args, **kwargs: [])
    monkeypatch.setattr("aezoo.report.write_report", lambda *args, **kwargs: None)


# --- SIGKILL and SIGINT on a real `aezoo train` ---------------------------------------------------

# About 0.3 s per epoch on one core, so that a poll every millisecond can land mid-epoch.
KILL_RUN = {
    "epochs": 6,
    "batch_size": 32,
    "train_subset": 3000,
    "test_subset": 200,
    "seed": 0,
    "device": "cpu",
    "data_dir": MNIST_DIR,
}


class Watch:
    """What a test polling a run folder sees while `aezoo train` writes it."""

    def __init__(self, run_dir: Path, epoch_seconds: float) -> None:
        self.run_dir, self.epoch_seconds = run_dir, epoch_seconds
        self._checkpoint = self._identity()
        self._metrics = self._size(ckpt.METRICS)
        self._first_seen: float | None = None

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.run_dir / ckpt.CHECKPOINT)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns  # a rename brings a new inode

    def _size(self, name: str) -> int:
        try:
            return os.stat(self.run_dir / name).st_size
        except FileNotFoundError:
            return 0

    def exists(self, name: str) -> bool:
        return (self.run_dir / name).exists()

    def checkpoint_replaced(self) -> bool:
        return self._identity() != self._checkpoint

    def writing_checkpoint(self) -> bool:
        folder = self.run_dir / ckpt.CHECKPOINT.parent
        return folder.is_dir() and any(folder.glob(ckpt.TEMPORARY))

    def metrics_grew(self) -> bool:
        return self._size(ckpt.METRICS) > self._metrics

    def epochs_after(self, condition: Callable[[], bool], epochs: float) -> bool:
        """True once `epochs` epochs' time has passed since `condition` was first seen true."""
        if self._first_seen is None and condition():
            self._first_seen = time.monotonic()
        if self._first_seen is None:
            return False
        return time.monotonic() - self._first_seen >= epochs * self.epoch_seconds


@dataclass(frozen=True)
class KillPoint:
    name: str
    reached: Callable[[Watch], bool]  # polled every millisecond
    signal: int = signal.SIGKILL
    # False where the kill may land after summary.json: the final files follow each other within
    # a millisecond, so a kill "while writing them" can arrive after the last one.
    before_summary: bool = True


# The phases of one run, in order: each starts `aezoo train` (then `--resume`), waits for its
# point and signals it. After the last, `aezoo train --resume` finishes the run.
KILL_POINTS = [
    KillPoint(
        "mid-epoch 1, before any checkpoint",
        lambda w: w.epochs_after(lambda: w.exists(ckpt.CONFIG), 0.4),
    ),
    KillPoint("just after a checkpoint was renamed into place", Watch.checkpoint_replaced),
    KillPoint(
        "mid-epoch, half an epoch after a checkpoint",
        lambda w: w.epochs_after(w.checkpoint_replaced, 0.5),
    ),
    KillPoint(
        "during a checkpoint write (its temporary file seen; else just after the rename)",
        lambda w: w.writing_checkpoint() or w.checkpoint_replaced(),
    ),
    KillPoint("between an epoch's metrics line and its checkpoint", Watch.metrics_grew),
    KillPoint(
        "Ctrl-C (SIGINT) a third of an epoch after a checkpoint",
        lambda w: w.epochs_after(w.checkpoint_replaced, 0.33),
        signal.SIGINT,
    ),
    KillPoint(
        "while writing the final files (after model.safetensors)",
        lambda w: w.exists(ckpt.WEIGHTS),
        before_summary=False,
    ),
]


def interrupt_at(point: KillPoint, args: list[str], watch: Watch) -> tuple[int | None, str]:
    """Run `aezoo *args` until `point` is reached, signal it, and return (exit code, stderr);
    the exit code is None when the run ended before the point came."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aezoo", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        # Python turns SIGINT into KeyboardInterrupt only where it is not ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 90
    try:
        while proc.poll() is None and not point.reached(watch):
            assert time.monotonic() < deadline, f"{point.name}: never reached"
            time.sleep(0.001)
        reached = proc.poll() is None
        if reached:
            proc.send_signal(point.signal)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return (proc.returncode if reached else None), err


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_run(tmp_path: Path, no_figures: None) -> None:
    reference = tmp_path / "reference"
    assert main(["train", "dense-ae", *flags(KILL_RUN), "--out", str(reference), "--quiet"]) == 0
    epoch_seconds = sum(r["seconds"] for r in read_metrics(reference)) / KILL_RUN["epochs"]

    run_dir = tmp_path / "killed"
    args = ["train", "dense-ae", *flags(KILL_RUN), "--out", str(run_dir), "--quiet"]
    for point in KILL_POINTS:
        code, err = interrupt_at(point, args, Watch(run_dir, epoch_seconds))
        assert code is not None, f"the run finished before {point.name!r}: {err}"
        if point.signal == signal.SIGKILL:
            assert code == -signal.SIGKILL, (point.name, err)
        else:
            assert code == 130, (point.name, err)
            lines = err.splitlines()
            assert len(lines) == 1 and "Traceback" not in err, err
            assert re.fullmatch(
                rf"aezoo: interrupted: stopped (at step \d+ of epoch \d+|after epoch \d+), "
                rf"checkpoint saved; continue with: aezoo train --resume {re.escape(str(run_dir))}",
                lines[0],
            ), lines[0]
        if point.before_summary:
            assert not (run_dir / ckpt.SUMMARY).exists(), point.name
        args = ["train", "--resume", str(run_dir), "--quiet"]

    assert main(args) == 0
    assert_same_run(reference, run_dir)
    assert files_of(run_dir) == RUN_FILES  # no temporary file a kill left behind


# --- Ctrl-C in-process: stop after the step, resume exactly ---------------------------------------

# Reparameterisation noise, dynamic binarisation and input noise: every RNG a resume must restore.
VAE_RUN = {
    "epochs": 3,
    "batch_size": 64,
    "train_subset": 640,  # 10 steps per epoch
    "test_subset": 200,
    "binarize": "dynamic",
    "noise": "gaussian:0.3",
    "seed": 0,
    "device": "cpu",
    "data_dir": str(MNIST_DIR),
}
STEPS = 10


@pytest.fixture(scope="module")
def vae_reference(tmp_path_factory: pytest.TempPathFactory, device: str) -> Path:
    out = tmp_path_factory.mktemp("vae") / "reference"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("aezoo.figures.write_run_figures", lambda *args, **kwargs: [])
        mp.setattr("aezoo.report.write_report", lambda *args, **kwargs: None)
        aezoo.train("dense-vae", out=out, quiet=True, **{**VAE_RUN, "device": device})
    return out


@pytest.fixture
def sigint_at(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """sigint_at(step, times=1, evaluating=False): a real SIGINT to this process from inside the
    model's loss during training step `step` (from 1), or during the evaluation after it."""

    def arm(step: int, times: int = 1, evaluating: bool = False) -> None:
        loss, calls = VAE.loss, {"train": 0}

        def signalling(self: VAE, *args: Any) -> Any:
            if self.training:
                calls["train"] += 1
            if calls["train"] == step and self.training != evaluating:
                calls["train"] = -1  # once
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
            return loss(self, *args)

        monkeypatch.setattr(VAE, "loss", signalling)

    return arm


@pytest.mark.parametrize(
    ("step", "times", "evaluating", "message", "saved"),
    [
        (1, 1, False, "at step 1 of epoch 1", (0, 1)),
        (14, 1, False, "at step 4 of epoch 2", (1, 4)),
        (STEPS, 1, False, "after epoch 1", (1, None)),  # the epoch's last step: finish it
        (STEPS, 1, True, "after epoch 1", (1, None)),  # during the evaluation
        (14, 2, False, "after 1 complete epoch", (1, None)),  # Ctrl-C twice: stop at once
    ],
    ids=["first-step", "mid-epoch", "last-step", "evaluating", "twice"],
)
def test_ctrl_c_stops_after_the_step_and_resumes_exactly(
    step: int,
    times: int,
    evaluating: bool,
    message: str,
    saved: tuple[int, int | None],
    sigint_at: Callable[..., None],
    vae_reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_figures: None,
    device: str,
) -> None:
    handler = signal.getsignal(signal.SIGINT)
    run_dir = tmp_path / "run"
    sigint_at(step, times, evaluating)
    with pytest.raises(
        Interrupted, match=rf"stopped {message}.*--resume {re.escape(str(run_dir))}"
    ):
        aezoo.train("dense-vae", out=run_dir, quiet=True, **{**VAE_RUN, "device": device})
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is handler  # the handler is fit's only while it runs

    model = aezoo.build("dense-vae")
    epoch, state = ckpt.load_checkpoint(run_dir, model, torch.optim.AdamW(model.parameters()))
    assert (epoch, state.get("step")) == saved
    assert len(read_metrics(run_dir)) == epoch

    aezoo.train(resume=run_dir, quiet=True)  # on the device of its config.json
    assert_same_run(vae_reference, run_dir)


def test_batches_fast_forward_to_the_very_batches_left() -> None:
    """epoch(k, start, noise) with the noise generator where the first `start` batches left it
    yields the rest of the epoch exactly: order, binarisation and corruption."""
    data = aezoo.load_dataset("mnist", "test", data_dir=MNIST_DIR).subset(300, seed=0)
    corruption = parse_corruption("saltpepper:0.2")
    batches = Batches(data, 64, seed=3, binarize="dynamic", corruption=corruption)
    noise = batches.noise(1)
    whole = list(batches.epoch(1, noise=noise))
    noise = batches.noise(1)
    head = list(itertools.islice(batches.epoch(1, noise=noise), 2))
    state = noise.get_state()
    noise = batches.noise(1)
    noise.set_state(state)
    rest = list(batches.epoch(1, start=2, noise=noise))
    assert len(rest) == len(whole) - 2 == 3
    for a, b in zip(head + rest, whole, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.x_in, b.x_in) and torch.equal(a.y, b.y)


def test_a_damaged_interrupted_epoch_state_is_refused(tmp_path: Path) -> None:
    progress = Progress.capture(
        1, 3, 192, {"loss": torch.tensor(5.0)}, torch.Generator(), torch.device("cpu")
    )
    state, tensors = progress.to_checkpoint()
    model = aezoo.build("dense-ae")
    optimizer = torch.optim.AdamW(model.parameters())
    del tensors["noise"]
    ckpt.save_checkpoint(tmp_path, model, optimizer, 1, {"seed": 0, **state}, tensors)
    epoch, loaded = ckpt.load_checkpoint(tmp_path, model, optimizer)
    with pytest.raises(UsageError, match=r"interrupted-epoch state is incomplete .*'noise'"):
        Progress.from_checkpoint(epoch, loaded)
    with pytest.raises(UsageError, match="interrupted mid-epoch on cuda; resume it with --device"):
        dataclasses.replace(progress, device="cuda").restore(torch.Generator(), torch.device("cpu"))


def test_sigint_handler_only_in_the_main_thread_and_never_over_ignore() -> None:
    default = signal.getsignal(signal.SIGINT)
    seen: list[Any] = []

    def in_thread() -> None:
        with StopOnSigint() as stop:
            seen.append((signal.getsignal(signal.SIGINT), stop.requested))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [(default, False)]

    with StopOnSigint() as stop:
        assert signal.getsignal(signal.SIGINT) == stop._handle
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is default

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSigint():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, default)


# --- a full disk, a read-only folder ------------------------------------------------------------


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes of every checkpoint written, in order."""
    written: list[bytes] = []
    save = ckpt.save_checkpoint

    def recording(run_dir: Path, *args: Any, **kwargs: Any) -> None:
        save(run_dir, *args, **kwargs)
        written.append((Path(run_dir) / ckpt.CHECKPOINT).read_bytes())

    monkeypatch.setattr(ckpt, "save_checkpoint", recording)
    return written


TRAIN_MODULE = sys.modules["aezoo.runner"]  # where `aezoo.train` appends metrics.jsonl


def fail_writes(monkeypatch: pytest.MonkeyPatch, target: str, nth: int, error: int) -> None:
    """Make the `nth` write of `target` (a run file's name) fail with OSError `error`: the rename
    of its temporary file, or for metrics.jsonl the append."""
    count = {"n": 0}

    def failing(path: Any) -> bool:
        if Path(path).name != Path(target).name:
            return False
        count["n"] += 1
        return count["n"] == nth

    if target == ckpt.METRICS:

        def append(path: Any, *args: Any, **kwargs: Any) -> Any:
            if failing(path):
                raise OSError(error, os.strerror(error))
            return builtins.open(path, *args, **kwargs)

        monkeypatch.setattr(TRAIN_MODULE, "open", append, raising=False)
    else:
        rename = os.replace

        def replace(src: Any, dst: Any) -> None:
            if failing(dst):
                raise OSError(error, os.strerror(error))
            rename(src, dst)

        monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize(
    ("target", "nth", "what"),
    [
        (str(ckpt.CHECKPOINT), 2, "epoch 2's metrics and checkpoint"),
        (ckpt.METRICS, 2, "epoch 2's metrics and checkpoint"),
        (ckpt.WEIGHTS, 1, "the final weights, summary and figures"),
    ],
    ids=["checkpoint", "metrics", "final-weights"],
)
def test_a_full_disk_stops_with_one_clear_error_and_keeps_the_checkpoint(
    target: str,
    nth: int,
    what: str,
    checkpoints: list[bytes],
    vae_reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_figures: None,
) -> None:
    run_dir = tmp_path / "run"
    fail_writes(monkeypatch, target, nth, errno.ENOSPC)
    with pytest.raises(TrainingError) as err:
        aezoo.train("dense-vae", out=run_dir, quiet=True, **VAE_RUN)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write {what} in {run_dir} (No space left on device)")
    assert message.endswith(f"continue with: aezoo train --resume {run_dir}")
    assert (run_dir / ckpt.CHECKPOINT).read_bytes() == checkpoints[-1]  # the last good one
    assert not list(run_dir.rglob(ckpt.TEMPORARY))  # the failed write cleaned up after itself
    monkeypatch.undo()
    aezoo.train(resume=run_dir, quiet=True)
    assert_same_run(vae_reference, run_dir)


def test_a_full_disk_when_saving_an_interrupted_epoch(
    sigint_at: Callable[..., None],
    checkpoints: list[bytes],
    vae_reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_figures: None,
) -> None:
    run_dir = tmp_path / "run"
    sigint_at(14)
    fail_writes(monkeypatch, str(ckpt.CHECKPOINT), 2, errno.ENOSPC)
    with pytest.raises(TrainingError, match=r"^cannot write the checkpoint of the interrupted"):
        aezoo.train("dense-vae", out=run_dir, quiet=True, **VAE_RUN)
    assert (run_dir / ckpt.CHECKPOINT).read_bytes() == checkpoints[0]  # after epoch 1
    monkeypatch.undo()
    aezoo.train(resume=run_dir, quiet=True)
    assert_same_run(vae_reference, run_dir)


def test_a_full_disk_through_the_cli_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, no_figures: None
) -> None:
    run_dir = tmp_path / "run"
    fail_writes(monkeypatch, str(ckpt.CHECKPOINT), 1, errno.ENOSPC)
    code = main(["train", "dense-ae", *flags({**VAE_RUN, "epochs": 1}), "--out", str(run_dir)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err[-1].startswith("aezoo: training stopped: cannot write epoch 1's metrics")
    assert "Traceback" not in "\n".join(err)


def test_a_read_only_run_folder_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("tempfile.mkstemp", read_only)  # tests run as root: chmod would not stop
    code = main(["train", "dense-ae", *flags({**VAE_RUN, "epochs": 1}), "--out", str(run_dir)])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"aezoo: error: cannot write to the run folder {run_dir} (Read-only file system)"
    ]


@pytest.mark.parametrize("fails", ["write", "fsync", "replace"])
def test_atomic_write_cleans_up_after_a_full_disk(
    fails: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint" / "last.safetensors"
    ckpt.atomic_write(path, b"old")
    if fails == "write":
        fdopen = os.fdopen

        class Full:
            def __init__(self, f: Any) -> None:
                self.f = f

            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()

            def write(self, data: bytes) -> None:
                self.f.write(data[: len(data) // 2])
                no_space()

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(fdopen(fd, mode)))
    else:
        monkeypatch.setattr(os, fails, no_space)
    with pytest.raises(OSError, match="No space left on device"):
        ckpt.atomic_write(path, b"new and longer")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(path.parent) == ["last.safetensors"]


def test_resume_removes_what_a_kill_in_mid_write_left(tmp_path: Path) -> None:
    for name in ("checkpoint/.last.safetensors.a1b2.tmp", ".metrics.jsonl.x.tmp", "figures/.r.tmp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("mine")
    ckpt.remove_temporaries(tmp_path)
    assert files_of(tmp_path) == {"notes.tmp"}


# --- nothing is written outside the run folder --------------------------------------------------


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path created or renamed into place while the test runs."""
    paths: list[Path] = []
    rename, mkstemp = os.replace, __import__("tempfile").mkstemp

    def replace(src: Any, dst: Any) -> None:
        paths.append(Path(dst).resolve())
        rename(src, dst)

    def make_temporary(*args: Any, **kwargs: Any) -> Any:
        fd, name = mkstemp(*args, **kwargs)
        paths.append(Path(name).resolve())
        return fd, name

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr("tempfile.mkstemp", make_temporary)
    return paths


def test_a_run_writes_only_inside_its_folder(
    written: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Figure names and the checkpoint/ and figures/ subfolders all stay in RUN_DIR (no name a
    run writes comes from a user's string: figure names are fixed, options are validated)."""
    run_dir = tmp_path / "deep" / "run"
    options = {"epochs": 1, "train_subset": 64, "test_subset": 32, "batch_size": 32}
    code = main(["train", "conv-vqvae", *flags(options), "--out", str(run_dir), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert written and all(p.is_relative_to(run_dir.resolve()) for p in written), written
    assert {"figures/code-usage.png", "figures/reconstructions.png"} <= files_of(run_dir)


def test_docs_state_the_kill_points() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text()
    stated = re.search(r"(\d+) kill points tried", doc)
    assert stated is not None and int(stated.group(1)) == len(KILL_POINTS), (
        f"docs/reliability.md should say {len(KILL_POINTS)} kill points tried"
    )
    listed = re.findall(r"^\d+\. (.+)$", doc, flags=re.MULTILINE)
    assert listed == [point.name for point in KILL_POINTS]

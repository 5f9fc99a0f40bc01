"""Shared fixtures: the device the integration tests run on (--device), one tiny trained run
reused by many tests, and helpers to snapshot folders."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import aezoo
from aezoo.data import sources

# Two CPU cores are shared by several people; one thread also makes CPU results bit-reproducible.
torch.set_num_threads(1)

MNIST_DIR = sources.REPO_DATA / "mnist"

DEVICES = ("cpu", "cuda", "auto")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        choices=DEVICES,
        default=os.environ.get("AEZOO_TEST_DEVICE", "cpu"),
        help="where the integration tests (marker `device`) train, evaluate, resume, sample and "
        "score: cpu (default), cuda, or auto (cuda when there is one); env AEZOO_TEST_DEVICE",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "device: an integration test that runs on --device (pytest -m device --device cuda)",
    )
    name = config.getoption("--device")
    if name not in DEVICES:  # from AEZOO_TEST_DEVICE, which argparse does not check
        raise pytest.UsageError(
            f"--device / AEZOO_TEST_DEVICE: expected cpu, cuda or auto, got {name!r}"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda: this machine has no CUDA device")
    config.stash[DEVICE_KEY] = name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that takes the `device` fixture, directly or through another, is marked."""
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


DEVICE_KEY = pytest.StashKey[str]()


def rel_tol(device: str) -> float:
    """Tolerance of a figure recomputed outside its run: exact on the CPU (bar summation order);
    CUDA multiplies fp32 matrices in TF32 while training (aezoo.device.set_up_device)."""
    return 1e-5 if device == "cpu" else 1e-3


def recomputed(expected: Any, device: str) -> Any:
    """What a figure recomputed outside its run equals: itself on the CPU, near it on CUDA."""
    return expected if device == "cpu" else pytest.approx(expected, rel=rel_tol(device))


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> str:
    """The device of the integration tests: "cpu" or "cuda" (--device, AEZOO_TEST_DEVICE)."""
    return pytestconfig.stash[DEVICE_KEY]


# The tiny run: small enough to train in well under a second, big enough for the loss to fall.
TINY = {
    "epochs": 3,
    "batch_size": 64,
    "train_subset": 1000,
    "test_subset": 300,
    "device": "cpu",
    "seed": 0,
    "data_dir": str(MNIST_DIR),
}
TIMING_KEYS = {"seconds", "eval_seconds", "train_seconds"}


@dataclasses.dataclass(frozen=True)
class TinyRun:
    """A dense-ae trained once per session with TINY's options; tests must not modify it."""

    path: Path
    run: aezoo.Run
    options: dict[str, Any]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, device: str) -> TinyRun:
    path = tmp_path_factory.mktemp("tiny") / "run"
    options = {**TINY, "device": device}
    run = aezoo.train("dense-ae", out=path, quiet=True, **options)
    return TinyRun(path, run, options)


def snapshot_folder(path: Path) -> dict[str, bytes] | None:
    """Every file under `path` (relative name → bytes), or None when `path` does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, bytes] | None]:
    return snapshot_folder


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record or summary without its wall-clock fields (which no rerun reproduces)."""
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


@pytest.fixture
def strip_timing() -> Callable[[dict[str, Any]], dict[str, Any]]:
    return without_timing


# ---- headless Chromium, for tests that open the HTML pages aezoo writes --------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
)


@dataclasses.dataclass(frozen=True)
class RenderedPage:
    """What a browser made of a page: its images, its console errors and a screenshot."""

    title: str
    images: list[dict[str, Any]]  # alt, decoded, width, height (natural size) of each <img>
    errors: list[str]  # console messages at level SEVERE (CSP violations, failed loads, ...)
    screenshot: Path


def _chromium() -> str | None:
    import shutil

    return next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )


def _browser_missing() -> str | None:
    import importlib.util
    import shutil

    if _chromium() is None:
        return "no chromium on PATH"
    if shutil.which("chromedriver") is None:
        return "no chromedriver on PATH"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed"
    return None


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A function (html_path, screenshot_path) -> RenderedPage driving headless Chromium through
    Debian's chromedriver. Skips when Chromium is absent, unless AEZOO_REQUIRE_BROWSER is set
    (as CI does), where that is a failure."""
    import os
    import shutil

    missing = _browser_missing()
    if missing:
        why = (
            f"headless Chromium unavailable ({missing}); install it with `apt-get install "
            "chromium chromium-driver` and `pip install -e .[dev]` (README, Tests)"
        )
        if os.environ.get("AEZOO_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)

    def render(page: Path, screenshot: Path, width: int = 1280) -> RenderedPage:
        driver.set_window_size(width, 900)
        driver.get(Path(page).resolve().as_uri())
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        images = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const imgs = Array.from(document.images);"
            "Promise.all(imgs.map(i => i.decode().then(() => true, () => false))).then(ok =>"
            "  done(imgs.map((i, k) => ({alt: i.alt, decoded: ok[k], width: i.naturalWidth,"
            "                            height: i.naturalHeight}))));"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height), 12000))
        driver.save_screenshot(str(screenshot))
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        return RenderedPage(driver.title, images, errors, Path(screenshot))

    yield render
    driver.quit()


@pytest.fixture(scope="session")
def run_files() -> set[str]:
    """Every file a finished run folder holds (and nothing else: no temporary files)."""
    return {
        "config.json",
        "model.safetensors",
        "checkpoint/last.safetensors",
        "metrics.jsonl",
        "summary.json",
        "figures/reconstructions.png",
        "figures/training_curves.png",
        "report.html",
    }


# ---- an unfinished run, and the command line as a user meets it ---------------------------------

UNFINISHED = [
    "--epochs=8",
    "--train-subset=200",
    "--test-subset=100",
    "--batch-size=20",
    "--seed=0",
    "--device=cpu",
    f"--data-dir={MNIST_DIR}",
]


@pytest.fixture(scope="session")
def unfinished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dense-ae run SIGKILLed by the test just after its first checkpoint, as a user leaves one;
    metrics.jsonl is cut to the epochs the checkpoint holds and temporary files are removed, so
    the folder is exactly what `--resume` continues from. Tests must copy it, not modify it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors import safe_open

    path = tmp_path_factory.mktemp("unfinished") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aezoo", "train", "dense-ae", *UNFINISHED, "--out", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    checkpoint = path / "checkpoint" / "last.safetensors"
    deadline = time.monotonic() + 120
    while proc.poll() is None and not checkpoint.exists():
        assert time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (path / "summary.json").exists(), "the run finished before the kill"
    for tmp in path.rglob(".*.tmp"):
        tmp.unlink()
    with safe_open(checkpoint, "pt") as f:
        epoch = int(f.metadata()["epoch"])
    lines = (path / "metrics.jsonl").read_text().splitlines(keepends=True)[:epoch]
    (path / "metrics.jsonl").write_text("".join(lines))
    return path


def cli(argv: list[Any]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `aezoo *argv` in this process; an exception the CLI lets
    through is exit code 1 with its traceback on stderr, as `python -m aezoo` would show it."""
    import contextlib
    import io
    import traceback

    from aezoo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    return code, out.getvalue(), err.getvalue()


def assert_one_line(result: tuple[int, str, str], *names: str) -> None:
    """Exit code 2 and one line on stderr (no traceback) that names one of `names`."""
    code, _, stderr = result
    assert "Traceback" not in stderr, stderr
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aezoo: error: "), stderr
    assert not names or any(name in lines[0] for name in names), f"none of {names} in {lines[0]}"


def assert_clean(result: tuple[int, str, str]) -> None:
    """Done (exit code 0), or refused in one line (exit code 2); never a traceback."""
    code, _, stderr = result
    assert "Traceback" not in stderr, stderr
    if code != 0:
        assert_one_line(result)


# Command-line options of a run that takes about a second: one epoch of 200 MNIST images.
TINY_FLAGS = [
    "--train-subset=200",
    "--test-subset=100",
    "--epochs=1",
    "--device=cpu",
    f"--data-dir={MNIST_DIR}",
    "--quiet",
]


def tabular_npz(path: Path, test_width: int | None = None) -> Path:
    """Breast-cancer rows as an .npz for `aezoo anomaly tabular` (1 = malignant, the anomaly);
    with `test_width`, x_test/y_test of that many columns."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x, y = x.astype(np.float32), (y == 0).astype(np.int64)
    arrays = {"x": x[:400], "y": y[:400]}
    if test_width is not None:
        arrays.update(x_test=x[400:, :test_width], y_test=y[400:])
    np.savez(path, **arrays)
    return path


def copy_run(source: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(source, dest, symlinks=True)
    return dest

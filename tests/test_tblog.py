"""--tensorboard: metrics records as scalars, image grids, and a clear error without the extra."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import aezoo
from aezoo.cli import main
from aezoo.errors import UsageError
from aezoo.loop import PosteriorCollapseWarning
from aezoo.runs import read_metrics
from aezoo.tblog import IMAGES, LOG_DIR


def test_scalars_and_images(tiny_run: Any, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    options = {**tiny_run.options, "epochs": 2, "train_subset": 200, "test_subset": 100}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorCollapseWarning)
        run = aezoo.train("cvae", out=tmp_path / "run", quiet=True, tensorboard=True, **options)
    events = EventAccumulator(str(run.path / LOG_DIR))
    events.Reload()
    records = read_metrics(run.path)
    for key, tag in (("train_loss", "train/loss"), ("test_kl", "test/kl"), ("lr", "other/lr")):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([r[key] for r in records], rel=1e-6)
    assert "test/kl_per_dim" not in events.Tags()["scalars"]  # lists are not scalars
    recon, samples = events.Images("reconstructions"), events.Images("samples")
    assert [i.step for i in recon] == [1, 2] and len(samples) == 2
    assert (recon[-1].height, recon[-1].width) == (2 * 28, IMAGES * 28)  # originals over recons
    assert (samples[-1].height, samples[-1].width) == (28, IMAGES * 28)


def test_missing_tensorboard_is_a_usage_error(
    tiny_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(UsageError, match=r"pip install 'aezoo\[tensorboard\]'"):
        aezoo.train("dense-ae", out=tmp_path / "run", tensorboard=True, **tiny_run.options)
    assert main(["train", "dense-ae", "--tensorboard", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "tensorboard" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written

"""The zoo (every number read from the runs it trained) and `aezoo runs` (the runs of a folder)."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from aezoo import runs as ckpt
from aezoo.cli import main
from aezoo.errors import UsageError
from aezoo.loop import PosteriorCollapseWarning
from aezoo.studies.zoo import FIGURE, list_runs, zoo

MODELS = ("dense-ae", "cvae", "dense-vqvae")  # one of each kind of row: plain, posterior, codebook


@pytest.fixture(scope="module")
def small_zoo(tiny_run: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    options = {**tiny_run.options, "epochs": 1, "train_subset": 300, "test_subset": 100}
    with warnings.catch_warnings():  # one epoch on 300 images: the VAE's posterior collapses
        warnings.simplefilter("ignore", PosteriorCollapseWarning)
        return zoo(MODELS, out=tmp_path_factory.mktemp("zoo") / "zoo", quiet=True, **options)


def test_rows_are_read_from_each_runs_summary(small_zoo: Any) -> None:
    saved = json.loads((small_zoo.path / "zoo.json").read_text())
    assert saved["rows"] == small_zoo.rows and saved["dataset"] == "mnist"
    assert [row["model"] for row in saved["rows"]] == list(MODELS)
    for row in saved["rows"]:
        summary = json.loads((small_zoo.path / row["run"] / ckpt.SUMMARY).read_text())
        for key in ("params", "epochs", "train_seconds", "test_mse", "test_bce"):
            assert row[key] == summary[key], key
        assert row["test_neg_elbo"] == summary.get("test_elbo")
        assert row["active_units"] == summary.get("test_active_units")
        assert row["codes_used"] == summary.get("test_codes_used")
        assert (small_zoo.path / row["run"] / "report.html").is_file()
    ae, vae, vq = saved["rows"]
    assert ae["test_neg_elbo"] is None and ae["active_units"] is None and ae["codes_used"] is None
    assert vae["test_neg_elbo"] > 0 and vae["latent_dim"] == 20 and vq["codebook_size"] == 512


def test_tables_and_figure(small_zoo: Any) -> None:
    md = (small_zoo.path / "zoo.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in lines] == list(MODELS)
    ae, vae, vq = small_zoo.rows
    assert f"{ae['test_mse']:.5f}" in lines[0] and lines[0].count("—") == 3
    assert (
        f"{vae['test_neg_elbo']:.2f}" in lines[1] and f"{vae['active_units']}/20 units" in lines[1]
    )
    assert f"{vq['codes_used']}/512 codes" in lines[2]
    html = (small_zoo.path / "zoo.html").read_text()
    assert re.findall(r'<a href="([^"]+)"', html) == [f"{m}/report.html" for m in MODELS]
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    height, width = imread(small_zoo.path / FIGURE).shape[:2]
    assert height > 4 * 28 * 2 and width > 10 * 28 * 2  # original + 3 models, digits ≥ 2× size


def test_zoo_page_renders_in_chromium(browser: Any, small_zoo: Any, tmp_path: Path) -> None:
    page = browser(small_zoo.path / "zoo.html", tmp_path / "zoo.png")
    assert page.errors == [] and len(page.images) == 1
    assert page.images[0]["decoded"] and page.images[0]["width"] > 500


def test_bad_requests_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        zoo(["dense-ae", "nope"], out=tmp_path / "a")
    with pytest.raises(UsageError, match="latent_dim"):
        zoo(["dense-ae"], out=tmp_path / "b", latent_dim=4)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        zoo(["dense-ae"], out=tmp_path / "c")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c", "keep.txt"]


def test_runs_lists_finished_and_unfinished_runs(
    small_zoo: Any, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shutil.copytree(small_zoo.path, tmp_path / "zoo")
    (tmp_path / "zoo" / "cvae" / ckpt.SUMMARY).unlink()  # as if it had crashed after epoch 1
    rows = list_runs(tmp_path)
    assert [r["run"] for r in rows] == [f"zoo/{m}" for m in MODELS]
    assert [r["finished"] for r in rows] == [True, False, True]
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["run", "model", "dataset", "epochs"] and len(out) == 4
    assert "zoo/cvae" in out[2] and "1/1 (unfinished)" in out[2]
    assert f"{small_zoo.rows[0]['test_mse']:.5f}" in out[1]
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_sample_quality_judges_the_generative_models(tmp_path: Path, monkeypatch) -> None:
    """--sample-quality N adds the classifier's verdict to generative models' rows only."""
    import aezoo.classifier as classifier

    judge = classifier.ReferenceClassifier().eval()  # untrained: the numbers, not their quality
    monkeypatch.setattr(classifier, "reference_classifier", lambda *a, **k: judge)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorCollapseWarning)
        result = zoo(
            ["dense-ae", "cvae"],
            out=tmp_path / "zoo",
            quiet=True,
            sample_quality=200,
            epochs=1,
            train_subset=300,
            test_subset=200,
            device="cpu",
        )
    rows = {r["run"]: r for r in result.rows}
    assert rows["dense-ae"]["fld"] is None
    assert rows["cvae"]["fld"] > 0 and rows["cvae"]["fld_samples"] == 200
    assert 0.0 <= rows["cvae"]["label_accuracy"] <= 1.0
    assert "labels)" in result.table

"""report.html: self-contained (every figure embedded, nothing fetched, no scripts), its panels
follow the figures a run has, and it renders in a real browser: every image decoded, no errors."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from aezoo import runs as ckpt
from aezoo.cli import main
from aezoo.report import REPORT, render_report, write_report
from aezoo.viz import training_curves

IMG_SRC = re.compile(r'<img src="([^"]*)"')
DIGIT = 28  # pixels of an MNIST digit


def embedded_pngs(html: str) -> list[bytes]:
    sources = IMG_SRC.findall(html)
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def titles(html: str) -> list[str]:
    return re.findall(r"<figure><h3>([^<]*)</h3>", html)


@pytest.fixture
def run_copy(tiny_run: Any, tmp_path: Path) -> Path:
    """A copy of the tiny run with figures a model family would add: one known, one in a
    subfolder, one that no table knows."""
    path = tmp_path / "run"
    shutil.copytree(tiny_run.path, path)
    figures = path / "figures"
    png = (figures / "reconstructions.png").read_bytes()
    (figures / "samples-prior.png").write_bytes(png)
    (figures / "anomaly").mkdir()
    (figures / "anomaly" / "roc.png").write_bytes(png)
    (figures / "mystery_plot.png").write_bytes(png)
    return path


def test_every_run_writes_a_self_contained_report(tiny_run: Any) -> None:
    html = (tiny_run.path / REPORT).read_text()
    figures = sorted((tiny_run.path / "figures").glob("*.png"))
    assert sorted(embedded_pngs(html)) == sorted(p.read_bytes() for p in figures)
    assert titles(html) == ["Training curves", "Reconstructions"]
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "default-src 'none'; img-src data:" in html  # the browser itself forbids fetching
    summary = tiny_run.run.summary
    assert f">{summary['params']:,}<" in html and f"{summary['test_mse']:.5g}" in html
    assert ">batch_size</td><td>64</td>" in html and ">train_subset</td><td>1,000</td>" in html
    assert "3 epochs" in html and "Unfinished" not in html


def test_panels_follow_the_figures(run_copy: Path) -> None:
    html = render_report(run_copy)
    assert titles(html) == [
        "Training curves",
        "Reconstructions",
        "Samples from the prior",
        "ROC curve (anomaly)",
        "Mystery plot",
    ]
    assert len(embedded_pngs(html)) == 5
    (run_copy / "figures" / "training_curves.png").unlink()  # curves come from metrics.jsonl
    html = render_report(run_copy)
    assert titles(html)[0] == "Training curves" and "(drawn from metrics.jsonl)" in html
    assert len(embedded_pngs(html)) == 5


def test_unfinished_run_says_so(tiny_run: Any, tmp_path: Path) -> None:
    for name in (ckpt.CONFIG, ckpt.METRICS):
        (tmp_path / name).write_bytes((tiny_run.path / name).read_bytes())
    html = render_report(tmp_path)
    assert "Unfinished run: 3 of 3 epochs" in html and f"--resume {tmp_path}" in html
    assert titles(html) == ["Training curves"]


def test_evaluation_folders_get_a_page_too(run_copy: Path, tmp_path: Path) -> None:
    """An anomaly protocol writes results.json and figures/, no config.json."""
    folder = tmp_path / "holdout"
    (folder / "figures").mkdir(parents=True)
    png = (run_copy / "figures" / "reconstructions.png").read_bytes()
    for name in ("roc.png", "scores_recon.png", "scores_elbo.png"):
        (folder / "figures" / name).write_bytes(png)
    results = {
        "protocol": "mnist-holdout",
        "model": "dense-vae",
        "anomaly": 9,
        "scores": {
            "recon": {"auroc": 0.91, "confusion": {"tp": 3, "fp": 1}},
            "elbo": {"auroc": 0.93, "confusion": {"tp": 4, "fp": 0}},
        },
    }
    ckpt.write_json(folder / "results.json", results)
    html = render_report(folder)
    assert "<h1>dense-vae · mnist-holdout</h1>" in html
    assert titles(html) == ["ROC curve", "Score histogram (elbo)", "Score histogram (recon)"]
    assert ">auroc</th>" in html and ">0.93<" in html and ">tp 4, fp 0<" in html


def test_report_command(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (run_copy / REPORT).unlink()
    assert main(["report", str(run_copy)]) == 0
    assert capsys.readouterr().out.strip() == str(run_copy / REPORT)
    assert len(titles((run_copy / REPORT).read_text())) == 5
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is not a run folder" in err[0]
    assert not (tmp_path / "nothing").exists()


def test_figures_are_legible(tiny_run: Any) -> None:
    from aezoo.runs import read_metrics

    fig = training_curves(read_metrics(tiny_run.path))
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["recon", "loss", "test MSE", "test BCE"]
    for ax in shown:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
        assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 8
    height, width = imread(tiny_run.path / "figures" / "reconstructions.png").shape[:2]
    assert height / 2 >= 3 * DIGIT and width / 10 >= 3 * DIGIT  # each digit drawn ≥ 3× its size


def test_report_renders_in_chromium(browser: Any, run_copy: Path, tmp_path: Path) -> None:
    page = browser(write_report(run_copy), tmp_path / "report.png")
    assert page.errors == []
    assert page.title.startswith("aezoo · dense-ae")
    assert len(page.images) == 5
    for image in page.images:
        assert image["decoded"] and image["width"] > 100 and image["height"] > 100, image
    shot = imread(page.screenshot)
    assert shot.shape[1] == 1280 and shot.shape[0] > 2000  # the whole page, figures included
    assert np.std(shot[..., :3]) > 0.05  # something was drawn


def test_browser_check_catches_a_broken_page(browser: Any, run_copy: Path, tmp_path: Path) -> None:
    """The checks above can fail: a corrupt image and a script (refused by the page's policy)."""
    html = render_report(run_copy).replace(
        "</main>",
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="corrupt">'
        "<script>document.title = 'ran'</script></main>",
    )
    (tmp_path / "broken.html").write_text(html)
    page = browser(tmp_path / "broken.html", tmp_path / "broken.png")
    corrupt = [i for i in page.images if i["alt"] == "corrupt"]
    assert corrupt == [{"alt": "corrupt", "decoded": False, "width": 0, "height": 0}]
    assert page.title != "ran" and any("Content Security Policy" in e for e in page.errors)


def test_markdown_table_formats_floats_and_leaves_missing_cells_empty() -> None:
    from aezoo.tables import markdown_table

    rows = [{"a": 0.123456, "b": None}, {"a": 3, "c": "x"}]
    assert markdown_table(rows, ["a", "b", "c"]).splitlines() == [
        "| a | b | c |",
        "|---|---|---|",
        "| 0.1235 |  |  |",
        "| 3 |  | x |",
    ]

"""Words and figures that match the data (issue 14, items 3 and 6): model summaries computed from
the run's shapes, nats only on log-likelihood curves, vectors drawn as vectors, and interpolation
between two chosen test rows. Real data: the sample photos cut into 32×32 patches and scikit-learn's
breast-cancer table scaled per column."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_one_line, cli
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from sklearn.datasets import load_breast_cancer, load_sample_images

import aezoo
from aezoo.data import load_splits
from aezoo.explore import interpolate
from aezoo.figures import curve_units, figure_info, reconstruction_figure
from aezoo.models import MODELS
from aezoo.report import render_report
from aezoo.runs import load, load_data, make_batches, read_metrics
from aezoo.viz import image_rows, training_curves


def patches(image: np.ndarray) -> np.ndarray:
    """32×32 RGB patches [N, 32, 32, 3] uint8 of one photo."""
    h, w = image.shape[0] // 32 * 32, image.shape[1] // 32 * 32
    cut = image[:h, :w].reshape(h // 32, 32, w // 32, 32, 3).swapaxes(1, 2)
    return cut.reshape(-1, 32, 32, 3)


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """dense-ae (MSE loss) on patches of the china photo, tested on the flower's: a 3×32×32 run."""
    china, flower = load_sample_images().images
    path = tmp_path_factory.mktemp("photos") / "patches.npz"
    np.savez(path, x=patches(china), x_test=patches(flower)[:40])
    out = tmp_path_factory.mktemp("runs") / "photo"
    return aezoo.train("dense-ae", dataset=str(path), epochs=2, batch_size=64, out=out, quiet=True)


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """dense-vae on the breast-cancer table (30 features, min-max per column): a vector run."""
    bunch = load_breast_cancer()
    train, test, _ = load_splits(bunch.data, scale="minmax-columns", seed=0)
    assert train.kind == "vectors" and train.image_shape == (1, 1, 30)
    path = tmp_path_factory.mktemp("table") / "cancer.npz"
    np.savez(path, x=train.images[:, 0, 0].numpy(), x_test=test.images[:, 0, 0].numpy())
    out = tmp_path_factory.mktemp("runs") / "vectors"
    return aezoo.train("dense-vae", dataset=str(path), epochs=2, batch_size=64, out=out, quiet=True)


def test_summaries_are_computed_from_the_shapes() -> None:
    ae, conv, vqvae = MODELS["dense-ae"], MODELS["conv-ae"], MODELS["conv-vqvae"]
    assert "784-256-128-32" in ae.describe()  # the presets' own 1×28×28
    assert "3072-256-128-32" in ae.describe(ae.make_config(image_shape=(3, 32, 32)))
    assert "32→16→8→4" in conv.describe(conv.make_config(image_shape=(3, 32, 32)))
    assert "30×40→15×20→8×10→4×5" in conv.describe(conv.make_config(image_shape=(3, 30, 40)))
    assert "8×8" in vqvae.describe(vqvae.make_config(image_shape=(3, 32, 32)))
    vae = MODELS["dense-vae"]
    assert "1024-400-400" in vae.describe(vae.make_config(image_shape=(1, 1, 1024)))
    for name, preset in MODELS.items():
        shown = preset.describe(preset.make_config(image_shape=(3, 32, 32)))
        assert "784" not in shown and "28→" not in shown, (name, shown)


def test_a_photo_run_reports_its_own_architecture(photo_run: Any) -> None:
    html = render_report(photo_run.path)
    assert "dense-ae" in html and "MLP autoencoder 3072-256-128-32" in html
    assert "784" not in html and "digit" not in html


def test_an_mse_curve_says_no_nats(photo_run: Any) -> None:
    config = dataclasses.asdict(photo_run.model.config)
    units = curve_units(config)
    fig = training_curves(read_metrics(photo_run.path), units=units)
    labels = {ax.get_title(): ax.get_ylabel() for ax in fig.axes if ax.get_title()}
    assert labels["loss"] == labels["recon"] == "squared error per image"
    assert labels["test MSE"] == "per pixel" and labels["test BCE"] == "nats per image"
    _, _, caption = figure_info("training_curves.png")
    assert "nats" not in caption
    vae = dataclasses.asdict(MODELS["dense-vae"].make_config())
    assert curve_units(vae)["loss"] == "nats per image"
    bce_ae = dataclasses.asdict(MODELS["dense-ae"].make_config(loss="bce"))
    assert curve_units(bce_ae)["recon"] == "nats per image"


def test_vectors_are_drawn_as_vectors(vector_run: Any) -> None:
    run = load(vector_run.path)
    train, test = load_data(run.spec.data)
    _, test_batches = make_batches(run.spec, train, test, torch.device("cpu"))
    fig = reconstruction_figure(run.model, test_batches, n=10)
    strips = [im.get_array().shape for ax in fig.axes for im in ax.images]
    assert strips == [(10, 30), (10, 30)]  # original and reconstruction: 10 rows of 30 features
    lines = [ln for ax in fig.axes for ln in ax.lines if isinstance(ln, Line2D)]
    assert lines and all(len(ln.get_xdata()) == 30 for ln in lines)
    assert not any(isinstance(im, AxesImage) and im.get_array().shape[0] == 1 for im in strips)
    html = render_report(vector_run.path)
    assert "Test vectors (top panel)" in html and "heat-strips" in html
    assert "nats per vector" in html and "per image" not in html and "pixel" not in html
    assert "per vector" in " ".join(curve_units(dataclasses.asdict(run.model.config)).values())


def test_interpolate_between_two_test_rows(vector_run: Any, photo_run: Any) -> None:
    for run, i, j in ((vector_run, 3, 17), (photo_run, 0, 39)):
        code, out, err = cli(["explore", run.path, "--interpolate", i, j])
        assert (code, err) == (0, ""), err
        figure = Path(run.path) / "figures" / f"interpolation-{i}-{j}.png"
        assert out.splitlines()[0] == str(figure) and figure.stat().st_size > 1000
        assert f"interpolation-{i}-{j}.png" in (Path(run.path) / "report.html").read_text()
    run = load(vector_run.path)
    _, test = load_data(run.spec.data)
    x = test.images[[3, 17]].float().div(255)
    steps = interpolate(run.model, x[0], x[1], 5)
    ends = run.model.decode(run.model.encode(x))
    torch.testing.assert_close(steps[[0, -1]], ends)


def test_interpolate_refuses_an_index_outside_the_test_set(vector_run: Any) -> None:
    before = sorted(p.name for p in (Path(vector_run.path) / "figures").iterdir())
    result = cli(["explore", vector_run.path, "--interpolate", 0, 10_000])
    assert_one_line(result, "10000")
    assert sorted(p.name for p in (Path(vector_run.path) / "figures").iterdir()) == before


def test_vector_samples_are_one_strip_and_images_stay_images() -> None:
    bunch = load_breast_cancer()
    _, test, _ = load_splits(bunch.data, scale="minmax-columns", seed=0)
    rows = test.images[:40].float().div(255)  # (40, 1, 1, 30), as samplers return them
    fig = image_rows(list(rows.split(10)), title="samples")
    assert [im.get_array().shape for ax in fig.axes for im in ax.images] == [(40, 30)]
    china = patches(load_sample_images().images[0])[:4]
    pixels = torch.from_numpy(china).permute(0, 3, 1, 2).float().div(255)  # (4, 3, 32, 32)
    fig = image_rows([pixels])
    assert [im.get_array().shape for ax in fig.axes for im in ax.images] == [(32, 32, 3)] * 4


def test_sampling_a_vector_run_draws_vectors(vector_run: Any) -> None:
    code, out, err = cli(["sample", vector_run.path, "--n", 20])
    assert (code, err) == (0, ""), err
    figure = Path(vector_run.path) / "figures" / "samples-prior.png"
    assert out.splitlines()[0] == str(figure)
    html = (Path(vector_run.path) / "report.html").read_text()
    assert "Samples from the prior" in html and "heat-strips" in html

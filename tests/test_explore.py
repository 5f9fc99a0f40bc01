"""Latent-space tools and the judge of generated images: samplers, interpolation, traversal,
manifold, the Fréchet distance, and the CLI commands on a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aezoo.classifier import ReferenceClassifier, frechet_distance
from aezoo.cli import main
from aezoo.errors import UsageError
from aezoo.explore import fit_gmm, generate, interpolate, manifold, traverse
from aezoo.models import build


def fresh(name: str = "dense-vae", **options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(name, **options).eval()


def test_generate_from_the_prior_and_a_mixture_is_seeded() -> None:
    model = fresh("dense-ae")  # deterministic AEs generate too
    a, b = generate(model, 6, (32,), "prior", seed=3), generate(model, 6, (32,), "prior", seed=3)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b)
    codes = np.random.default_rng(0).normal(size=(200, 32))
    mixture = fit_gmm(codes, seed=0)
    c = generate(model, 6, (32,), mixture, seed=1)
    assert c.shape == (6, 1, 28, 28) and torch.equal(c, generate(model, 6, (32,), mixture, seed=1))
    with pytest.raises(UsageError, match="sampler"):
        generate(model, 2, (32,), "uniform")
    with pytest.raises(UsageError, match="at least 10"):
        fit_gmm(codes[:5])


def test_interpolation_ends_at_the_two_reconstructions() -> None:
    model = fresh()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    path = interpolate(model, x[0], x[1], steps=5)
    assert path.shape == (5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(path[[0, -1]], model(x))


def test_conditional_interpolation_switches_label_half_way() -> None:
    model = fresh("cvae")
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    path = interpolate(model, x[0], x[1], steps=4, y1=4, y2=9)
    with torch.no_grad():
        torch.testing.assert_close(path[[0, -1]], model(x, torch.tensor([4, 9])))


def test_traversal_changes_only_one_dimension() -> None:
    model = fresh(latent_dim=4)
    values = torch.linspace(-3, 3, 5)
    rows = traverse(model, torch.zeros(4), [2, 0], values)
    assert len(rows) == 2 and rows[0].shape == (5, 1, 28, 28)
    z = torch.zeros(5, 4)
    z[:, 2] = values
    with torch.no_grad():
        torch.testing.assert_close(rows[0], model.decode(z))
    grid = manifold(fresh(latent_dim=2), n=3)
    assert len(grid) == 3 and grid[0].shape == (3, 1, 28, 28)


def test_frechet_distance() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)
    assert frechet_distance(a, a + 2.0) == pytest.approx(12.0, abs=1e-3)  # 3 dims × 2²
    b = rng.normal(size=(4000, 3)) * 2.0  # Tr(I + 4I − 2·2I) = 3
    assert frechet_distance(a, b) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(UsageError, match="28, 28"):
        ReferenceClassifier().features(torch.zeros(2, 1, 32, 32))


@pytest.mark.slow  # draws ~300 images into 5 figures
def test_sample_and_explore_commands(tiny_run, tmp_path, capsys, device) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.path, run_dir)
    on = ["--device", device]
    assert main(["explore", str(run_dir), "--sampler", "gmm", "--tsne-points", "100", *on]) == 0
    printed = capsys.readouterr().out
    for name in (
        "samples-gmm.png",
        "interpolation.png",
        "traversal-zero.png",
        "traversal-image.png",
        "tsne.png",
    ):
        assert (run_dir / "figures" / name).exists() and name in printed
    assert main(["sample", str(run_dir), "--sampler", "flow"]) == 2  # one line, exit code 2

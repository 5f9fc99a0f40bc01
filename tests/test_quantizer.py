"""VectorQuantizer, VQ-VAE and PixelCNN prior: gradients, codebook updates, usage, causality."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY
from torch import nn

import aezoo
from aezoo.errors import UsageError
from aezoo.models.pixelcnn import PixelCNN, PixelCNNConfig
from aezoo.models.quantizer import VectorQuantizer, kmeans, perplexity
from aezoo.prior import crossfade_codes, load_prior, train_prior, write_code_samples
from aezoo.runs import read_metrics

torch.set_num_threads(1)


def codebook_of(rows: list[list[float]], **options: object) -> VectorQuantizer:
    """A quantiser whose codes are exactly `rows`."""
    q = VectorQuantizer(len(rows), len(rows[0]), **options)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor(rows))
        q.embed_sum.copy_(q.codebook)
    return q


def test_straight_through_gradient_reaches_the_encoder_unchanged() -> None:
    torch.manual_seed(0)
    encoder, decoder = nn.Linear(5, 4), nn.Linear(4, 3)
    q = VectorQuantizer(8, 4)
    x = torch.randn(10, 5)
    z_e = encoder(x)
    z_e.retain_grad()
    out = q(z_e)
    out.z_q.retain_grad()
    decoder(out.z_q).square().sum().backward()
    assert out.z_q.grad.abs().sum() > 0
    torch.testing.assert_close(z_e.grad, out.z_q.grad, rtol=0, atol=0)  # ∂L/∂z_e = ∂L/∂z_q
    assert encoder.weight.grad.abs().sum() > 0
    torch.testing.assert_close(out.z_q, q.codebook[out.indices])  # forward: the codes themselves


def test_nearest_code_is_the_brute_force_argmin() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(37, 6)
    nn.init.normal_(q.codebook)
    z = torch.randn(4, 9, 6)
    brute = ((z[..., None, :] - q.codebook) ** 2).sum(-1).argmin(-1)
    assert torch.equal(q.nearest(z), brute)


def test_codebook_loss_moves_only_the_codebook_and_commitment_only_the_encoder() -> None:
    torch.manual_seed(0)
    encoder = nn.Linear(5, 4)
    q = VectorQuantizer(8, 4)
    x = torch.randn(10, 5)
    out = q(encoder(x))
    out.terms["codebook"].backward(retain_graph=True)
    assert q.codebook.grad.abs().sum() > 0
    assert encoder.weight.grad is None
    # ∂/∂e_k of mean_i ‖z_i − e_k‖² over the vectors assigned to k: 2 Σ (e_k − z_i) / B
    z = encoder(x).detach()
    expected = torch.zeros_like(q.codebook).index_add_(
        0, out.indices, 2 * (q.codebook.detach()[out.indices] - z) / len(x)
    )
    torch.testing.assert_close(q.codebook.grad, expected)
    q.codebook.grad = None
    out.terms["commitment"].backward()
    assert q.codebook.grad is None
    assert encoder.weight.grad.abs().sum() > 0


def test_ema_moves_a_code_towards_the_mean_of_its_vectors() -> None:
    q = codebook_of([[0.0, 0.0], [10.0, 10.0]], ema=0.9).train()
    assert not q.codebook.requires_grad and set(q(torch.zeros(1, 2)).terms.weights) == {
        "commitment"
    }
    generator = torch.Generator().manual_seed(0)
    vectors = torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(50, 2, generator=generator)
    target = vectors.mean(0)
    before = q.codebook[0].clone()
    q(vectors)
    step = q.codebook[0] - before
    assert torch.cosine_similarity(step, target - before, dim=0) > 0.999
    assert (q.codebook[0] - target).norm() < (before - target).norm()
    for _ in range(200):
        q(vectors)
    torch.testing.assert_close(q.codebook[0], target, atol=1e-3, rtol=0)
    q.eval()  # no updates outside training
    frozen = q.codebook.clone()
    q(vectors + 5)
    assert torch.equal(q.codebook, frozen)


def test_a_dead_code_is_restarted_from_the_batch() -> None:
    q = codebook_of([[0.0, 0.0], [1.0, 1.0], [1000.0, 1000.0]], dead_code_restart=2).train()
    vectors = torch.tensor([[0.1, 0.0], [0.9, 1.0], [1.1, 0.9], [-0.1, 0.1]])
    q(vectors)
    assert int(q.restarts) == 0 and q.codebook[2, 0] == 1000.0  # unused for one step only
    q(vectors)
    assert int(q.restarts) == 1 and int(q.steps_unused[2]) == 0
    assert (q.codebook[2] == vectors).all(1).any()  # now one of the batch's vectors
    torch.testing.assert_close(q.codebook[:2], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert int(q(vectors).indices.eq(2).sum()) >= 1  # and in use again


def test_perplexity_is_k_for_uniform_use_and_1_for_a_single_code() -> None:
    k = 16
    assert float(perplexity(torch.ones(k) * 7)) == pytest.approx(k)
    assert float(perplexity(torch.tensor([0.0, 0.0, 12.0, 0.0]))) == pytest.approx(1.0)
    q = codebook_of(torch.eye(k).tolist()).train()
    q(torch.eye(k).repeat(3, 1))  # every code used equally
    assert float(q.perplexity) == pytest.approx(k) and int(q.dead_codes) == 0
    assert torch.equal(q.code_counts, torch.full((k,), 3.0))
    q(torch.eye(k)[[5] * 20])  # one code only
    assert float(q.perplexity) == pytest.approx(1.0)


def test_kmeans_initialisation_finds_the_clusters() -> None:
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    points = centres.repeat(40, 1) + 0.1 * torch.randn(120, 2)
    found = kmeans(points, 3)
    nearest = torch.cdist(centres, found).min(1).values
    assert (nearest < 0.1).all()
    q = VectorQuantizer(3, 2, init="kmeans").train()
    q(points)
    assert bool(q.initialised) and (torch.cdist(centres, q.codebook).min(1).values < 0.1).all()


@pytest.mark.parametrize("conditional", [False, True])
def test_pixelcnn_masks_are_causal(conditional: bool) -> None:
    """Logits at raster position i depend only on the codes at positions < i."""
    torch.manual_seed(0)
    prior = PixelCNN(
        PixelCNNConfig(
            codebook_size=7,
            code_shape=(5, 5),
            channels=16,
            layers=4,
            num_classes=3 if conditional else 0,
        )
    ).eval()
    y = torch.tensor([1]) if conditional else None
    codes = torch.randint(7, (1, 5, 5))
    base = prior(codes, y).flatten(2)  # (1, K, 25)
    for i in range(25):
        changed = codes.clone().flatten()
        changed[i] = (changed[i] + 1) % 7
        out = prior(changed.view(1, 5, 5), y).flatten(2)
        moved = (out - base).abs().amax(1)[0]  # (25,)
        assert (moved[: i + 1] == 0).all(), f"position {i} leaks into positions <= {i}"
        if i < 24:
            assert moved[i + 1] > 0  # and the next position does see it (no blind spot there)


def test_conv_vqvae_trains_saves_and_reloads(tmp_path, strip_timing) -> None:
    options = {**TINY, "epochs": 2, "batch_size": 100}
    run = aezoo.train("conv-vqvae", out=tmp_path / "run", quiet=True, **options)
    records = read_metrics(tmp_path / "run")
    assert records[1]["train_loss"] < records[0]["train_loss"]
    assert 0 < run.summary["test_codes_used"] <= 512 and run.summary["test_perplexity"] >= 1
    loaded = aezoo.load(tmp_path / "run")
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), run.model(x))
        idx = loaded.model.encode_indices(x)
        assert idx.shape == (4, 7, 7) and torch.equal(idx, run.model.encode_indices(x))
        torch.testing.assert_close(loaded.model.decode_indices(idx), loaded.model(x))
    assert torch.equal(loaded.model.quantizer.code_counts, run.model.quantizer.code_counts)
    with pytest.raises(UsageError, match=r"0\.\.511, got 0\.\.512"):
        loaded.model.decode_indices(torch.full((1, 7, 7), 512).index_fill(1, torch.tensor(0), 0))
    # The prior over its code grids: trained and saved in the run folder, reloaded identically,
    # and every sampling mode draws a figure.
    prior, summary = train_prior(
        tmp_path / "run", epochs=1, channels=8, layers=2, quiet=True, device="cpu"
    )
    assert (tmp_path / "run" / "prior" / "model.safetensors").is_file() and summary["test_nll"] > 0
    codes = loaded.model.encode_indices(x)
    with torch.no_grad():
        assert torch.equal(load_prior(tmp_path / "run")(codes), prior(codes))
    paths = write_code_samples(tmp_path / "run", n=12, temperature=0.9)
    assert [p.name for p in paths] == [
        "samples-uniform.png",
        "samples-used.png",
        "samples-prior.png",
    ]
    assert all(p.stat().st_size > 0 for p in paths)
    assert (tmp_path / "run" / "figures" / "crossfade.png").is_file()


def test_crossfade_replaces_codes_in_raster_order() -> None:
    a, b = torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)
    frames = crossfade_codes(a, b, 4)  # 0, 2, 4, 6 positions taken from b
    assert frames.shape == (4, 2, 3)
    assert frames.flatten(1).sum(1).tolist() == [0, 2, 4, 6]
    assert frames[1].flatten().tolist() == [1, 1, 0, 0, 0, 0]

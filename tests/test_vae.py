"""The VAE family: reparameterisation, the ELBO and its importance-weighted tightening, KL
schedules, free bits, likelihoods, conditioning, test metrics, the collapse watch, and a short
real training.

Parametrised over every registered model with a Gaussian posterior (a `posterior` method), so a new
VAE preset is tested here the moment it is registered.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from conftest import TINY

import aezoo
from aezoo.cli import main
from aezoo.config import TrainConfig
from aezoo.data import Dataset
from aezoo.data.batches import Batches
from aezoo.errors import UsageError
from aezoo.loop import PosteriorCollapseWarning, collapse_message
from aezoo.losses import bernoulli_nll, gaussian_kl, gaussian_nll
from aezoo.metrics import iwae_nll
from aezoo.models import MODELS, build
from aezoo.models.blocks import sample_labels
from aezoo.models.vae import VAE

VAE_NAMES = sorted(name for name, p in MODELS.items() if hasattr(p.model, "posterior"))
CONDITIONAL = [name for name in VAE_NAMES if MODELS[name].options.get("num_classes", 0)]
SAMPLES = 400  # posterior samples per image in the Monte-Carlo checks


def fresh(name: str = "dense-vae", **options: object) -> VAE:
    torch.manual_seed(0)
    return build(name, **options).eval()


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def labels_for(model: VAE, n: int = 8) -> torch.Tensor | None:
    return torch.arange(n) % model.num_classes if model.num_classes else None


def batches(n: int = 40, batch_size: int = 16, seed: int = 0) -> Batches:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return Batches(Dataset(pixels, torch.arange(n) % 10), batch_size, shuffle=False)


def test_registry_has_the_vae_family() -> None:
    assert {"dense-vae", "conv-vae", "cvae"} <= set(VAE_NAMES)
    assert "cvae" in CONDITIONAL


def test_reparameterised_gradients_reach_mu_and_log_var() -> None:
    mu = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    log_var = torch.tensor([[0.0, -2.0, 1.0]], requires_grad=True)
    z = VAE.reparameterize(mu, log_var, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, mu + torch.exp(0.5 * log_var) * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))  # ∂z/∂μ = 1
    torch.testing.assert_close(log_var.grad, 0.5 * torch.exp(0.5 * log_var.detach()) * eps)


def test_reparameterised_samples_have_the_posterior_moments() -> None:
    mu, log_var = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, math.log(0.25)]])
    z = VAE.reparameterize(mu, log_var, 100_000, torch.Generator().manual_seed(1))  # (K, 1, 2)
    torch.testing.assert_close(z.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([[1.0, 0.5]]), atol=0.01, rtol=0)


@pytest.mark.parametrize("name", VAE_NAMES)
def test_loss_gradients_reach_the_posterior(name: str) -> None:
    model = fresh(name).train()
    x = images()
    mu, log_var = model.posterior(x, labels_for(model))
    mu.retain_grad()
    log_var.retain_grad()
    z = model.reparameterize(mu, log_var)
    recon = model.nll(model.decode_logits(z, labels_for(model)), x)
    (recon + gaussian_kl(mu, log_var).sum(1)).mean().backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert log_var.grad is not None and log_var.grad.abs().sum() > 0


@pytest.mark.parametrize("name", VAE_NAMES)
def test_loss_is_recon_plus_beta_kl(name: str) -> None:
    model = fresh(name, beta=4.0)
    x, y = images(), labels_for(fresh(name))
    with torch.no_grad():
        terms = model.loss(x, y)
        mu, log_var = model.posterior(x, y)
    assert terms.weights == {"recon": 1.0, "kl": 4.0}
    assert float(terms.total) == pytest.approx(float(terms["recon"] + 4.0 * terms["kl"]), rel=1e-6)
    assert float(terms["elbo"]) == pytest.approx(float(terms["recon"] + terms["kl"]), rel=1e-6)
    torch.testing.assert_close(terms["kl"], gaussian_kl(mu, log_var).sum(1).mean())


@pytest.mark.parametrize("name", VAE_NAMES)
def test_encode_is_the_posterior_mean(name: str) -> None:
    model = fresh(name)
    x, y = images(), labels_for(fresh(name))
    mu, log_var = model.posterior(x, y)
    assert mu.shape == log_var.shape == (8, model.config.latent_dim)
    torch.testing.assert_close(model.encode(x, y), mu)
    torch.testing.assert_close(model(x, y), model.decode(mu, y))


@pytest.mark.parametrize(
    "epochs, expected",
    [
        (TrainConfig(epochs=6, kl_warmup=4), [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]),
        (TrainConfig(epochs=8, kl_cycles=2), [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]),
        (TrainConfig(epochs=3), [1.0, 1.0, 1.0]),
    ],
    ids=["warmup", "cycles", "constant"],
)
def test_schedules_give_the_documented_beta_per_epoch(
    epochs: TrainConfig, expected: list[float]
) -> None:
    config = epochs
    weights = [config.kl_weight(epoch) for epoch in range(config.epochs)]
    assert weights == pytest.approx(expected)
    model = fresh("dense-vae", beta=2.0)
    terms = model.loss(images())
    for epoch, w in enumerate(expected):  # the loop applies the factor to the model's β
        assert terms.reweight("kl", config.kl_weight(epoch)).weights["kl"] == pytest.approx(2 * w)


def test_warmup_rises_within_an_epoch() -> None:
    config = TrainConfig(epochs=4, kl_warmup=2)
    assert config.kl_weight(0, 0.5) == pytest.approx(0.25)
    assert config.kl_weight(1, 0.5) == pytest.approx(0.75)


def test_free_bits_floor_the_optimised_kl_and_keep_the_true_one() -> None:
    plain, floored = fresh("dense-vae"), fresh("dense-vae", free_bits=0.5)
    x = images()
    torch.manual_seed(1)
    terms = plain.loss(x)
    torch.manual_seed(1)  # the same posterior sample for both
    free = floored.loss(x)
    # an untrained encoder's KL per dimension lies far below 0.5 nats: every dimension is floored
    assert float(free["kl"].detach()) == pytest.approx(0.5 * 20)
    torch.testing.assert_close(free["kl_true"], terms["kl"])
    torch.testing.assert_close(free["elbo"], terms["elbo"])
    floored.train()
    free = floored.loss(x)
    free["kl"].backward()
    assert floored.mu.weight.grad is None or floored.mu.weight.grad.abs().sum() == 0


def test_gaussian_likelihood_with_fixed_and_learned_sigma() -> None:
    model = fresh("dense-vae", likelihood="gaussian", sigma=0.2)
    x = images()
    logits = model.decode_logits(model.encode(x))
    torch.testing.assert_close(
        model.nll(logits, x), gaussian_nll(torch.sigmoid(logits), x, 2 * math.log(0.2))
    )
    assert not model.pixel_log_var.requires_grad
    learned = fresh("dense-vae", likelihood="gaussian", learn_sigma=True).train()
    learned.loss(x).total.backward()
    assert learned.pixel_log_var.grad is not None and learned.pixel_log_var.grad != 0
    default = fresh("dense-vae")
    torch.testing.assert_close(default.nll(logits, x), bernoulli_nll(logits, x))


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_sample_has_the_requested_labels(name: str) -> None:
    model = fresh(name)
    g = torch.Generator().manual_seed(0)
    assert model.sample(7, y=3, generator=g).shape == (7, 1, 28, 28)
    assert model.sample(4, y=torch.tensor([0, 1, 2, 9])).shape == (4, 1, 28, 28)
    assert sample_labels(12, None, 10, torch.device("cpu")).tolist() == [*range(10), 0, 1]
    z = torch.zeros(2, model.config.latent_dim)
    different = model.decode(z, torch.tensor([0, 1]))
    assert not torch.equal(different[0], different[1])  # the label changes the image
    with pytest.raises(UsageError, match=r"0\.\.9"):
        model.sample(3, y=10)
    with pytest.raises(UsageError, match=r"0\.\.9"):
        model.encode(images(2), torch.tensor([0, -1]))


@pytest.mark.parametrize("name", VAE_NAMES)
def test_sample_is_seeded_and_checks_its_input(name: str) -> None:
    model = fresh(name)
    a = model.sample(3, generator=torch.Generator().manual_seed(5))
    b = model.sample(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    with pytest.raises(UsageError):
        model.sample(0)
    with pytest.raises(UsageError, match=r"\(B, 20\)"):
        model.decode(torch.zeros(3, 21), labels_for(model, 3))


@pytest.mark.parametrize("name", VAE_NAMES)
def test_iwae_with_one_sample_is_the_elbo_in_expectation(name: str) -> None:
    model = fresh(name)
    x, y = images(4), labels_for(fresh(name), 4)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, y, SAMPLES, torch.Generator().manual_seed(0))
        mu, log_var = model.posterior(x, y)
        kl = gaussian_kl(mu, log_var).sum(1)  # (B,)
        z = model.reparameterize(mu, log_var, SAMPLES, torch.Generator().manual_seed(0))
        recon = model.nll(
            model.decode_logits(z.flatten(0, 1), None if y is None else y.repeat(SAMPLES)),
            x.repeat(SAMPLES, 1, 1, 1),
        )
    assert log_w.shape == (SAMPLES, 4)
    elbo = -(recon.view(SAMPLES, 4).mean(0) + kl)  # same z: only the KL is closed-form here
    stderr = log_w.std(0) / math.sqrt(SAMPLES)
    assert ((log_w.mean(0) - elbo).abs() < 5 * stderr + 1e-3).all()


def test_iwae_nll_falls_with_more_samples() -> None:
    model = fresh("dense-vae")
    test = batches(n=16)
    nll = [iwae_nll(model, test, k, seed=1) for k in (1, 10, 100)]
    assert nll[0] > nll[1] > nll[2]
    assert math.isfinite(nll[2])
    chunked = iwae_nll(model, test, 10, seed=1, chunk=16)  # one sample per decoder call
    assert chunked == pytest.approx(nll[1], rel=1e-3)
    with pytest.raises(UsageError, match="posterior"):
        iwae_nll(build("dense-ae"), test, 5)


@pytest.mark.parametrize("name", VAE_NAMES)
def test_iwae_training_objective_is_minus_log_mean_weight(name: str) -> None:
    """iw_samples K > 1: the optimised term is −L_K = log K − logsumexp_k log w_k, computed from
    the same K posterior samples as log_importance_weights; recon/kl/elbo stay as diagnostics."""
    k = 5
    model = fresh(name, iw_samples=k)
    x, y = images(4), labels_for(fresh(name), 4)
    with torch.no_grad():
        torch.manual_seed(3)
        terms = model.loss(x, y)
        torch.manual_seed(3)
        log_w = model.log_importance_weights(x, y, k)  # (K, B), the same draws
    assert terms.weights == {"iwae": 1.0}
    expected = (math.log(k) - torch.logsumexp(log_w, 0)).mean()
    torch.testing.assert_close(terms["iwae"], expected)
    torch.testing.assert_close(terms.total, terms["iwae"])
    # Jensen, draw by draw: log mean w ≥ mean log w, so −L_K ≤ the sampled negative ELBO
    assert float(terms["iwae"]) <= float(-log_w.mean()) + 1e-4
    assert float(terms["elbo"]) == pytest.approx(float(terms["recon"] + terms["kl"]), rel=1e-6)


def test_iwae_objective_trains_encoder_and_decoder() -> None:
    model = fresh("dense-vae", iw_samples=4).train()
    model.loss(images(), None).total.backward()
    for name in ("mu.weight", "log_var.weight", "trunk.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    decoder = [p.grad for p in model.decoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in decoder)


def _grads(model: VAE) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def test_dreg_gradients_match_their_formula() -> None:
    """iw_gradient dreg: the decoder gets the plain IWAE gradient; the encoder gets
    −Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ, built here by hand as the gradient of −Σ_k sg(w̃_k²) log w_k
    with q's parameters detached inside log w (z_k still depends on φ)."""
    k, x = 6, images(5)
    plain, dreg = fresh(iw_samples=k).train(), fresh(iw_samples=k, iw_gradient="dreg").train()
    torch.manual_seed(2)
    dreg_terms = dreg.loss(x)
    dreg_terms.total.backward()
    got = _grads(dreg)
    torch.manual_seed(2)
    plain_terms = plain.loss(x)
    plain_terms.total.backward()
    iwae = _grads(plain)
    torch.testing.assert_close(dreg_terms["iwae"], plain_terms["iwae"])  # the same bound
    torch.manual_seed(2)
    mu, log_var = dreg.posterior(x)
    z = dreg.reparameterize(mu, log_var, k)
    log_w = dreg.log_weights_at(x, None, z, mu.detach(), log_var.detach())[0]  # (K, B)
    w = torch.softmax(log_w.detach(), 0)
    (-(w.square() * log_w).sum(0).mean()).backward()
    by_hand = _grads(dreg)
    decoder = {n for n, _ in dreg.named_parameters() if n.startswith("decoder.")}
    encoder = set(got) - decoder
    assert decoder and encoder
    for name in decoder:
        torch.testing.assert_close(got[name], iwae[name], msg=name)
    for name in encoder:
        torch.testing.assert_close(got[name], by_hand[name], msg=name)
    assert any(not torch.allclose(got[n], iwae[n]) for n in encoder)  # DReG is not IWAE there


def test_iwae_objective_refuses_kl_weights_and_schedules() -> None:
    with pytest.raises(UsageError, match="beta 1 and no free bits"):
        build("dense-vae", iw_samples=5, beta=4.0)
    with pytest.raises(UsageError, match="beta 1 and no free bits"):
        build("dense-vae", iw_samples=5, free_bits=0.5)
    with pytest.raises(UsageError, match="set iw_samples > 1"):
        build("dense-vae", iw_gradient="dreg")
    with pytest.raises(UsageError, match="kl_warmup and kl_cycles weight a KL term"):
        aezoo.train("dense-vae", iw_samples=5, kl_warmup=2, **{**TINY, "epochs": 1})


@pytest.mark.filterwarnings("ignore::aezoo.loop.PosteriorCollapseWarning")  # 2 tiny epochs
def test_iwae_training_end_to_end(tmp_path, capsys, device) -> None:
    """A dense-vae trained on the K = 4 bound: the bound falls, it is tighter than the ELBO on the
    test set, and the CLI takes --iw-samples (and rejects it beside a KL warm-up, in one line)."""
    options = {**TINY, "epochs": 2, "device": device}
    run = aezoo.train("dense-vae", out=tmp_path / "run", quiet=True, iw_samples=4, **options)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert records[1]["train_iwae"] < records[0]["train_iwae"]
    assert run.summary["test_iwae"] < run.summary["test_elbo"]
    assert run.spec.model_config.iw_samples == 4
    loaded = aezoo.load(tmp_path / "run")
    assert loaded.spec.model_config.iw_samples == 4
    argv = ["train", "dense-vae", "--iw-samples", "3", "--kl-warmup", "2", "--epochs", "1"]
    assert main([*argv, "--out", str(tmp_path / "bad")]) != 0
    err = capsys.readouterr().err.strip()
    assert "iw_samples > 1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name", VAE_NAMES)
def test_test_metrics(name: str) -> None:
    model = fresh(name)
    test = batches()
    metrics = aezoo.evaluate(model, test, seed=0)
    d = model.config.latent_dim
    assert len(metrics["test_kl_per_dim"]) == d
    assert metrics["test_kl"] == pytest.approx(sum(metrics["test_kl_per_dim"]))
    assert 0 <= metrics["test_active_units"] <= d
    for key in ("test_elbo", "test_recon", "test_recon_mean", "test_loss"):
        assert math.isfinite(metrics[key]), key
    batch = next(iter(test.epoch(0)))  # recon_mean decodes z = μ
    with torch.no_grad():
        logits = model.decode_logits(model.encode(batch.x, batch.y), batch.y)
    assert metrics["test_recon_mean"] == pytest.approx(metrics["test_bce"], rel=1e-5)
    assert float(bernoulli_nll(logits, batch.x).mean()) == pytest.approx(
        metrics["test_recon_mean"], rel=0.2
    )


def test_active_units_count_dimensions_that_vary_with_x() -> None:
    model = fresh("dense-vae", latent_dim=3)
    with torch.no_grad():  # μ_0 follows the image, μ_1 is constant, μ_2 varies only a little
        model.mu.weight.zero_()
        model.mu.bias.zero_()
        model.mu.weight[0] = 100.0
        model.mu.weight[2] = 1e-4
    spread = model.encode(next(iter(batches().epoch(0))).x).var(0)
    assert spread[0] > 0.01 and spread[1] == 0 and 0 < spread[2] < 0.01
    assert model.test_metrics(batches())["test_active_units"] == 1


def test_collapse_message() -> None:
    healthy = {"epoch": 3, "test_active_units": 12, "test_kl": 25.0}
    assert collapse_message(healthy) is None
    assert collapse_message({"epoch": 1, "test_loss": 3.0}) is None  # not a VAE: nothing to say
    for collapsed in ({**healthy, "test_active_units": 0}, {**healthy, "test_kl": 0.1}):
        message = collapse_message(collapsed)
        assert message is not None and "epoch 3" in message
        assert all(word in message for word in ("--kl-warmup", "--free-bits", "decoder"))
    # a run on the importance-weighted bound cannot take a KL weight: go back to the ELBO first
    message = collapse_message({**healthy, "test_active_units": 0, "test_iwae": 90.0})
    assert message is not None and "--iw-samples 1" in message and "β" not in message


def test_training_dense_vae_end_to_end(tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)  # a healthy run must not warn
        run = aezoo.train(
            "dense-vae", out=tmp_path / "run", quiet=True, **{**TINY, "epochs": 2, "kl_warmup": 1}
        )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert records[1]["train_loss"] < records[0]["train_loss"]
    assert [r["kl_weight"] for r in records] == pytest.approx([1.0 - 1 / 16, 1.0])
    for key in ("test_elbo", "test_recon_mean", "test_kl", "test_active_units"):
        assert key in run.summary, key
    loaded = aezoo.load(tmp_path / "run")
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), run.model(x))
        mu, log_var = run.model.posterior(x)
        again = loaded.model.posterior(x)
    assert torch.equal(mu, again[0]) and torch.equal(log_var, again[1])
    g = torch.Generator
    assert torch.equal(
        loaded.model.sample(4, generator=g().manual_seed(0)),
        run.model.sample(4, generator=g().manual_seed(0)),
    )
    argv = ["eval", str(tmp_path / "run"), "--nll-samples", "3", "--nll-subset", "20"]
    assert main([*argv, "--json", str(tmp_path / "eval.json")]) == 0
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["nll_images"] == 20 and math.isfinite(metrics["test_nll"])


def test_collapse_is_warned_once(tmp_path) -> None:
    with pytest.warns(PosteriorCollapseWarning, match="posterior collapse") as caught:
        aezoo.train(
            "dense-vae",
            out=tmp_path / "run",
            quiet=True,
            **{**TINY, "epochs": 2, "train_subset": 300, "beta": 200.0},
        )
    assert sum(isinstance(w.message, PosteriorCollapseWarning) for w in caught) == 1

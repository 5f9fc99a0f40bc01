"""The loss maths: closed forms against Monte-Carlo estimates, and the bounds' invariants."""

from __future__ import annotations

import math

import pytest
import torch

from aezoo.losses import free_bits, gaussian_kl, gaussian_log_density, iw_bound


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def posterior(batch: int = 5, dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)


def test_kl_is_zero_at_the_prior() -> None:
    zeros = torch.zeros(3, 7)
    assert torch.equal(gaussian_kl(zeros, zeros), zeros)


def test_kl_is_positive_away_from_the_prior() -> None:
    mu, log_var = posterior()
    kl = gaussian_kl(mu, log_var)
    assert kl.shape == mu.shape
    assert (kl > 0).all()


def test_kl_matches_monte_carlo() -> None:
    mu, log_var = posterior(batch=3, dim=4, seed=1)
    mu, log_var = mu.double(), log_var.double()
    samples = 200_000
    eps = torch.randn(samples, *mu.shape, generator=gen(2), dtype=torch.float64)
    z = mu + torch.exp(0.5 * log_var) * eps  # (S, B, D)
    # per dimension: log q(z_j|x) − log p(z_j), each a one-dimensional Gaussian density
    log_ratio = gaussian_log_density(
        z.unsqueeze(-1), mu.unsqueeze(-1), log_var.unsqueeze(-1)
    ) - gaussian_log_density(z.unsqueeze(-1))  # (S, B, D)
    estimate = log_ratio.mean(0)
    stderr = log_ratio.std(0) / math.sqrt(samples)
    closed = gaussian_kl(mu, log_var)
    assert ((estimate - closed).abs() < 5 * stderr + 1e-9).all()


def test_log_density_matches_torch_distributions() -> None:
    mu, log_var = posterior()
    z = torch.randn(mu.shape, generator=gen(3))
    normal = torch.distributions.Normal(mu, torch.exp(0.5 * log_var))
    torch.testing.assert_close(gaussian_log_density(z, mu, log_var), normal.log_prob(z).sum(-1))
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_density(z), standard)


def test_free_bits_batch_mean_is_the_floored_sum() -> None:
    kl = torch.tensor([[0.0, 1.0, 3.0], [0.2, 2.0, 5.0]])  # batch means 0.1, 1.5, 4.0
    floored = free_bits(kl, 2.0)
    assert floored.shape == (2,)
    assert float(floored.mean()) == pytest.approx(2.0 + 2.0 + 4.0)
    torch.testing.assert_close(free_bits(kl, 0.0), kl.sum(1))


def test_free_bits_stops_gradients_below_the_floor() -> None:
    kl = torch.tensor([[0.0, 1.0, 3.0], [0.2, 2.0, 5.0]], requires_grad=True)
    free_bits(kl, 2.0).mean().backward()
    expected = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5]])  # only the dimension above λ
    torch.testing.assert_close(kl.grad, expected)


def test_iw_bound_with_one_sample_is_that_sample() -> None:
    log_w = torch.randn(1, 6, generator=gen(4))
    torch.testing.assert_close(iw_bound(log_w), log_w[0])


def test_iw_bound_is_a_log_mean_exp() -> None:
    log_w = torch.randn(8, 6, generator=gen(5), dtype=torch.float64)
    torch.testing.assert_close(iw_bound(log_w), log_w.exp().mean(0).log())
    assert (iw_bound(log_w) >= log_w.mean(0)).all()  # Jensen: never below the ELBO average
    constant = torch.full((5, 3), -2.5)
    torch.testing.assert_close(iw_bound(constant), torch.full((3,), -2.5))


def test_iw_bound_is_stable_for_large_magnitudes() -> None:
    log_w = torch.tensor([[-10_000.0, 5_000.0], [-10_001.0, 5_001.0]])
    bound = iw_bound(log_w)
    assert torch.isfinite(bound).all()
    expected = torch.logsumexp(torch.tensor([0.0, -1.0]), 0) - math.log(2)
    torch.testing.assert_close(bound[0], -10_000.0 + expected)


def test_iw_bound_rises_with_k_in_expectation() -> None:
    # log w = log p(x) + log (w / p(x)): importance ratios with E[w] = p(x) (log-normal ratios)
    log_px, spread, reps = -90.0, 2.0, 4000
    means = []
    for k in (1, 5, 50):
        eps = torch.randn(k, reps, generator=gen(k), dtype=torch.float64)
        log_w = log_px + spread * eps - spread**2 / 2  # E[exp(log w)] = exp(log p(x))
        means.append(float(iw_bound(log_w).mean()))
    assert means[0] < means[1] < means[2] < log_px
    assert means[0] == pytest.approx(log_px - spread**2 / 2, abs=0.2)  # K = 1: the ELBO

"""Variational autoencoders (Kingma & Welling 2014), trained on the negative ELBO, nats per image:

    q(z|x) = N(μ(x), diag σ²(x)),  p(z) = N(0, I),  p(x|z) Bernoulli or Gaussian, mean sigmoid(g(z))
    −ELBO(x) = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z))

β-VAE (Higgins et al. 2017) is `beta`; free bits (Kingma et al. 2016) is `free_bits`; the
conditional VAE (Sohn et al. 2015) is `num_classes > 0`: the one-hot label joins the encoder's and
the decoder's input. KL warm-up and cyclical schedules live in the training loop (TrainConfig).

`iw_samples = K > 1` trains on the importance-weighted bound instead (IWAE, Burda et al. 2015):

    −L_K(x) = −log (1/K) Σ_k w_k,  w_k = p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x)

which is the negative ELBO at K = 1 and tightens towards −log p(x) as K grows; the decoder sees
K samples per image, so a step costs about K times a VAE step's decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from aezoo.config import option, validate
from aezoo.errors import UsageError
from aezoo.losses import bernoulli_nll, free_bits, gaussian_kl, gaussian_log_density, gaussian_nll
from aezoo.models.blocks import (
    ConvEncoder,
    TransposedDecoder,
    conv_sizes,
    mlp,
    one_hot,
    sample_labels,
)
from aezoo.models.terms import Terms, check_images, check_latent, check_targets

ACTIVE_THRESHOLD = 0.01  # a unit is active when Cov_x(E_q[z|x]) exceeds this (Burda et al. 2015)


@dataclass(frozen=True)
class VAEConfig:
    arch: Literal["dense", "conv"] = option(
        "dense", "dense (MLP) or conv (strided convs, linear heads, transposed convs)"
    )
    image_shape: tuple[int, ...] = option(
        (1, 28, 28), "(C, H, W) of the images", positive=True, cli=False
    )
    latent_dim: int = option(20, "width of the latent z", positive=True)
    hidden: tuple[int, ...] = option((400, 400), "dense: hidden layer widths", positive=True)
    channels: tuple[int, ...] = option(
        (32, 64), "conv: channels of each stride-2 stage", positive=True
    )
    batchnorm: bool = option(False, "conv: BatchNorm after each convolution")
    beta: float = option(1.0, "weight β on the KL term (β-VAE when > 1)", low=0.0)
    free_bits: float = option(
        0.0,
        "per-dimension KL floor λ in nats (free bits); the reported KL stays the true one",
        low=0.0,
    )
    likelihood: Literal["bernoulli", "gaussian"] = option(
        "bernoulli", "p(x|z): bernoulli (BCE) or gaussian with mean sigmoid(logits)"
    )
    sigma: float = option(
        0.1, "gaussian: pixel noise std σ (the initial value if learn_sigma)", positive=True
    )
    learn_sigma: bool = option(False, "gaussian: learn σ (one value shared by all pixels)")
    num_classes: int = option(0, "condition on labels 0..K-1 (a CVAE); 0 = unconditional", low=0)
    iw_samples: int = option(
        1,
        "train on the importance-weighted bound over K posterior samples (IWAE, Burda et al. "
        "2015); 1 = the ELBO. Tighter bound, better test NLL, about K times the decoding",
        positive=True,
    )
    iw_gradient: Literal["iwae", "dreg"] = option(
        "iwae",
        "iw_samples > 1: the encoder's gradient estimator: iwae (the bound's plain gradient) or "
        "dreg (doubly reparameterised, Tucker et al. 2019: lower variance as K grows)",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.iw_samples > 1 and (self.beta != 1.0 or self.free_bits > 0):
            raise UsageError(
                "iw_samples > 1 trains the importance-weighted bound, which has no separate KL "
                "term to weight: use it with beta 1 and no free bits"
            )
        if self.iw_gradient == "dreg" and self.iw_samples == 1:
            raise UsageError("iw_gradient dreg is a gradient of the bound: set iw_samples > 1")
        if len(self.image_shape) != 3:
            raise UsageError(f"image_shape: expected (C, H, W), got {self.image_shape}")
        if self.arch == "dense" and not self.hidden:
            raise UsageError("hidden: a dense VAE needs at least one hidden layer")
        if self.arch == "conv" and not self.channels:
            raise UsageError("channels: a conv VAE needs at least one stage")


class VAE(nn.Module):
    """A (β-, conditional) VAE; see the module docstring. `encode` gives the point latent μ."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        c, h, w = config.image_shape
        k, d = config.num_classes, config.latent_dim
        if config.arch == "dense":
            pixels = c * h * w
            self.features = nn.Flatten()  # (B, C·H·W)
            self.trunk = mlp([pixels + k, *config.hidden], final_activation=True)  # (B, hidden)
            width = config.hidden[-1]
            self.decoder = nn.Sequential(
                mlp([d + k, *config.hidden[::-1], pixels]), nn.Unflatten(1, (c, h, w))
            )
        else:
            sizes = conv_sizes(config.image_shape, len(config.channels))
            feat = (config.channels[-1], *sizes[-1])  # (C', h', w'), e.g. (64, 7, 7)
            self.features = nn.Sequential(
                ConvEncoder(c, config.channels, config.batchnorm), nn.Flatten()
            )  # (B, C'·h'·w')
            self.trunk = nn.Identity()
            width = math.prod(feat) + k
            self.decoder = nn.Sequential(
                nn.Linear(d + k, math.prod(feat)),
                nn.ReLU(),
                nn.Unflatten(1, feat),
                TransposedDecoder(config.channels[::-1], c, sizes[::-1], config.batchnorm),
            )
        self.mu = nn.Linear(width, d)
        self.log_var = nn.Linear(width, d)
        if config.likelihood == "gaussian":
            # log σ² of the pixel noise: a parameter either way, trained only if learn_sigma
            self.pixel_log_var = nn.Parameter(
                torch.tensor(2.0 * math.log(config.sigma)), requires_grad=config.learn_sigma
            )

    def _with_label(self, h: Tensor, y: Tensor | None) -> Tensor:
        """[h, one_hot(y)] for a conditional model; h itself otherwise."""
        if not self.num_classes:
            return h
        return torch.cat([h, one_hot(y, self.num_classes, h.shape[0], h.device).to(h.dtype)], 1)

    # --- encoder: q(z|x) ---------------------------------------------------------------------

    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x) = N(μ, diag σ²) as (μ, log σ²), each (B, latent_dim)."""
        check_images(x, self.config.image_shape)
        h = self.trunk(self._with_label(self.features(x), y))  # (B, width)
        return self.mu(h), self.log_var(h)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The point latent μ = E_q[z|x], used by reconstructions and the latent-space tools."""
        return self.posterior(x, y)[0]  # (B, latent_dim)

    @staticmethod
    def reparameterize(
        mu: Tensor,
        log_var: Tensor,
        samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """z = μ + σ·ε, σ = exp(½ log σ²), ε ~ N(0, I): (B, D), or (samples, B, D) if given."""
        shape = mu.shape if samples is None else (samples, *mu.shape)
        eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * log_var) * eps

    # --- decoder: p(x|z) ---------------------------------------------------------------------

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Logits g(z) whose sigmoid is the mean of p(x|z) (for both likelihoods)."""
        check_latent(z, (self.config.latent_dim,))
        return self.decoder(self._with_label(z, y))  # (B, C, H, W)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Pixel values E[x|z] = sigmoid(g(z)) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, y))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The reconstruction decode(μ(x)), in pixel values."""
        return self.decode(self.encode(x, y), y)

    def nll(self, logits: Tensor, x: Tensor) -> Tensor:
        """−log p(x|z) per image in nats: Σ BCE, or ½ Σ [log 2πσ² + (x − sigmoid(g))²/σ²]."""
        if self.config.likelihood == "bernoulli":
            return bernoulli_nll(logits, x)  # (B,)
        return gaussian_nll(torch.sigmoid(logits), x, self.pixel_log_var)  # (B,)

    # --- loss ----------------------------------------------------------------------------------

    def loss(self, x: Tensor, y: Tensor | None = None, x_in: Tensor | None = None) -> Terms:
        """recon + β·kl, batch means in nats per image, with one posterior sample per image.

        `kl` is the optimised term (floored per dimension under free bits); `elbo` is the negative
        ELBO recon + KL and `kl_true` the unfloored KL (diagnostics, not optimised). With
        iw_samples K > 1 the optimised term is `iwae`, −L_K, and recon (the mean over the K
        samples), kl and elbo are diagnostics."""
        check_targets(self, x, x_in, bernoulli=self.config.likelihood == "bernoulli")
        mu, log_var = self.posterior(x if x_in is None else x_in, y)  # (B, D) each
        kl_per_dim = gaussian_kl(mu, log_var)  # ½ (μ² + σ² − 1 − log σ²), (B, D)
        kl = kl_per_dim.sum(1)  # (B,)
        samples = self.config.iw_samples
        if samples > 1:
            z = self.reparameterize(mu, log_var, samples)  # (K, B, D)
            dreg = self.config.iw_gradient == "dreg" and torch.is_grad_enabled()
            q = (mu.detach(), log_var.detach()) if dreg else (mu, log_var)
            log_w, recon_k = self.log_weights_at(x, y, z, *q)  # (K, B) each
            iwae = math.log(samples) - torch.logsumexp(log_w, 0)  # −L_K, (B,)
            if dreg:
                _dreg_hook(log_w, z)  # the encoder's gradient becomes DReG's
            recon = recon_k.mean(0)  # (B,)
            terms = {"iwae": iwae.mean(), "recon": recon.mean(), "kl": kl.mean()}
            terms["elbo"] = (recon + kl).mean()
            return Terms(terms, weights={"iwae": 1.0})
        z = self.reparameterize(mu, log_var)  # (B, D)
        recon = self.nll(self.decode_logits(z, y), x)  # −log p(x|z), (B,)
        terms = {"recon": recon.mean(), "kl": kl.mean(), "elbo": (recon + kl).mean()}
        if self.config.free_bits > 0:
            terms["kl"] = free_bits(kl_per_dim, self.config.free_bits).mean()
            terms["kl_true"] = kl.mean()
        return Terms(terms, weights={"recon": 1.0, "kl": self.config.beta})

    def log_weights_at(
        self, x: Tensor, y: Tensor | None, z: Tensor, mu: Tensor, log_var: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(log w, −log p(x|z)) for given posterior samples z (K, B, D) of q = N(μ, diag σ²): each
        (K, B), log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x). The K·B images decode as one
        batch. Given z, so that a caller can score every row with the same draws."""
        samples = z.shape[0]
        targets = x.expand(samples, *x.shape).flatten(0, 1)  # (K·B, C, H, W)
        labels = None if y is None else y.repeat(samples)  # (K·B,), matching z.flatten(0, 1)
        recon = self.nll(self.decode_logits(z.flatten(0, 1), labels), targets)  # (K·B,)
        recon = recon.view(samples, -1)  # (K, B)
        log_pz = gaussian_log_density(z)  # (K, B)
        log_qz = gaussian_log_density(z, mu, log_var)  # (K, B)
        return -recon + log_pz - log_qz, recon

    def log_importance_weights(
        self,
        x: Tensor,
        y: Tensor | None = None,
        samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x), z_k ~ q(z|x): (samples, B)."""
        mu, log_var = self.posterior(x, y)  # (B, D)
        z = self.reparameterize(mu, log_var, samples, generator)  # (K, B, D)
        return self.log_weights_at(x, y, z, mu, log_var)[0]

    # --- test metrics and sampling -------------------------------------------------------------

    @torch.inference_mode()
    def test_metrics(self, batches: Any) -> dict[str, Any]:
        """test_recon_mean: −log p(x|z=μ) (optimistic beside test_recon's posterior samples);
        test_kl: the true closed-form KL, also per dimension; test_active_units: dimensions with
        Cov_x(E_q[z|x]) > 0.01 (Burda et al. 2015). Per image, over every test image."""
        d = self.config.latent_dim
        device = self.mu.weight.device
        recon = torch.zeros((), dtype=torch.float64, device=device)
        kl, mu_sum, mu_sq = (torch.zeros(d, dtype=torch.float64, device=device) for _ in range(3))
        count = 0
        for batch in batches.epoch(0):
            mu, log_var = self.posterior(batch.x_in, batch.y)  # (B, D)
            recon += self.nll(self.decode_logits(mu, batch.y), batch.x).sum()
            kl += gaussian_kl(mu, log_var).sum(0)
            mu_sum += mu.sum(0)
            mu_sq += mu.square().sum(0)
            count += mu.shape[0]
        variance = mu_sq / count - (mu_sum / count).square()  # Cov_x(E_q[z|x]) diagonal, (D,)
        kl_per_dim = (kl / count).tolist()
        return {
            "test_recon_mean": float(recon) / count,
            "test_kl": sum(kl_per_dim),
            "test_kl_per_dim": kl_per_dim,
            "test_active_units": int((variance > ACTIVE_THRESHOLD).sum()),
        }

    @torch.no_grad()
    def sample(
        self, n: int, y: int | Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """n images E[x|z], z ~ N(0, I) drawn from `generator` (on its own device); a conditional
        model generates label y (an int, (n,) labels, or 0..K−1 in turn)."""
        if n < 1:
            raise UsageError(f"sample: expected a positive number of images, got {n}")
        device = self.mu.weight.device
        where = generator.device if generator is not None else device
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=where)  # (n, D)
        return self.decode(
            z.to(device), sample_labels(n, y, self.num_classes, device)
        )  # (n, C, H, W)


def _dreg_hook(log_w: Tensor, z: Tensor) -> None:
    """Turn the bound's gradient into the doubly reparameterised estimator (DReG, Tucker et al.
    2019). With q's parameters detached in log w, ∇(−L_K) = −Σ_k w̃_k ∇ log w_k, w̃ = softmax_k
    log w, reaches the decoder θ directly and the encoder φ only through z_k = μ + σ ε_k; scaling
    the gradient at z_k by w̃_k once more gives DReG's encoder gradient

        ∇_φ(−L_K) = −Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ

    and leaves the decoder's (the plain IWAE gradient) as it is. Without the score-function term
    the encoder's gradient keeps its signal as K grows (it fades for the plain one, Rainforth et
    al. 2018)."""
    if z.requires_grad:
        weights = torch.softmax(log_w.detach(), 0).unsqueeze(-1)  # w̃, (K, B, 1)
        z.register_hook(lambda grad: grad * weights)

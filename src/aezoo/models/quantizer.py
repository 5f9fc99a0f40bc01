"""Vector quantisation (van den Oord et al. 2017): each vector z_e is replaced by its nearest code.

    k = argmin_j ‖z_e − e_j‖²                 nearest code, no one-hot matrix
    z_q = z_e + sg[e_k − z_e]                 straight-through: forward e_k, backward identity
    codebook   = ‖sg[z_e] − e_k‖²             moves the codes (unless `ema` does that instead)
    commitment = ‖z_e − sg[e_k]‖²             keeps the encoder near its codes; weight β

Options keep the codebook healthy: `ema` (codes as moving averages of their vectors, with Laplace
smoothing; Razavi et al. 2019), `dead_code_restart` (a code unused for N training steps is
re-initialised from a vector of the current batch) and `init="kmeans"` (k-means on the first
training batch). Usage counts, the batch perplexity and the dead-code count are buffers, updated
on the device every training step (no host syncs) and saved with the weights.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from aezoo.models.terms import Terms

DEAD_AFTER = 100  # steps unused that count a code as dead when restarts are off
KMEANS_ITERATIONS = 10


class Quantized(NamedTuple):
    z_q: Tensor  # (..., D) the straight-through quantised vectors
    terms: Terms  # codebook, commitment (weighted) and batch_perplexity (a diagnostic)
    indices: Tensor  # (...) int64 code indices


def perplexity(counts: Tensor) -> Tensor:
    """exp(H(p)) of the usage p = counts / Σ counts: K for uniform use, 1 for a single code."""
    p = counts.float() / counts.float().sum().clamp_min(1e-12)
    return torch.exp(-torch.special.xlogy(p, p).sum())  # H = −Σ p log p, with 0 log 0 = 0


class VectorQuantizer(nn.Module):
    """`codebook_size` codes of width `embedding_dim`; inputs are (..., D), channels last."""

    def __init__(
        self,
        codebook_size: int,
        embedding_dim: int,
        *,
        beta: float = 0.25,
        ema: float = 0.0,
        dead_code_restart: int = 0,
        init: Literal["uniform", "kmeans"] = "uniform",
        epsilon: float = 1e-5,
    ) -> None:
        super().__init__()
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema: expected a decay in [0, 1), got {ema}")
        if init not in ("uniform", "kmeans"):
            raise ValueError(f"init: expected 'uniform' or 'kmeans', got {init!r}")
        self.codebook_size, self.embedding_dim = codebook_size, embedding_dim
        self.beta, self.ema, self.epsilon = beta, ema, epsilon
        self.dead_code_restart, self.init = dead_code_restart, init
        k, d = codebook_size, embedding_dim
        # e_j ~ U(−1/K, 1/K), the original initialisation; EMA codes are not trained by gradients.
        self.codebook = nn.Parameter(
            torch.empty(k, d).uniform_(-1 / k, 1 / k), requires_grad=not ema
        )
        self.register_buffer("cluster_size", torch.ones(k))  # N_k, EMA of assignment counts
        self.register_buffer("embed_sum", self.codebook.detach().clone())  # m_k, EMA of Σ z
        self.register_buffer("initialised", torch.tensor(init != "kmeans"))
        self.register_buffer("code_counts", torch.zeros(k))  # assignments over all training steps
        self.register_buffer("steps_unused", torch.zeros(k, dtype=torch.long))
        self.register_buffer("perplexity", torch.tensor(0.0))  # of the last training batch
        self.register_buffer("dead_codes", torch.tensor(0, dtype=torch.long))
        self.register_buffer("restarts", torch.tensor(0, dtype=torch.long))  # codes re-initialised
        self._needs_init: bool | None = None  # host copy of ¬initialised, read once
        self.register_load_state_dict_post_hook(
            lambda module, _: setattr(module, "_needs_init", None)
        )

    # --- lookup ----------------------------------------------------------------------------
    @torch.no_grad()
    def nearest(self, z: Tensor) -> Tensor:
        """argmin_j ‖z − e_j‖² = argmin_j (‖e_j‖² − 2 z·e_j): ‖z‖² is the same for every j."""
        flat = z.reshape(-1, self.embedding_dim)  # (N, D)
        e = self.codebook
        scores = torch.addmm(e.square().sum(1), flat, e.t(), alpha=-2.0)  # (N, K)
        return scores.argmin(1).reshape(z.shape[:-1])  # (...)

    def lookup(self, indices: Tensor) -> Tensor:
        """The code vectors e_k for indices of any shape: (...) → (..., D)."""
        return nn.functional.embedding(indices, self.codebook)

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor]:
        """(z_q, indices) with the straight-through z_q = z_e + sg[e_k − z_e]; no state changes."""
        indices = self.nearest(z_e)
        return z_e + (self.lookup(indices) - z_e).detach(), indices

    # --- forward: loss terms, and in training the codebook and usage updates ----------------
    def forward(self, z_e: Tensor) -> Quantized:
        if torch.is_autocast_enabled(z_e.device.type):  # bf16 training: codes found in fp32
            with torch.autocast(z_e.device.type, enabled=False):
                return self.forward(z_e.float())
        if self.training:
            self._maybe_initialise(z_e.detach())
        indices = self.nearest(z_e)  # (...)
        e = self.lookup(indices)  # (..., D)
        z_q = z_e + (e - z_e).detach()  # straight-through
        per_item = tuple(range(1, z_e.dim()))  # sums over all but the batch dimension
        codebook = (z_e.detach() - e).square().sum(per_item).mean()  # ‖sg[z_e] − e‖²
        commitment = (z_e - e.detach()).square().sum(per_item).mean()  # ‖z_e − sg[e]‖²
        flat_idx = indices.reshape(-1)  # (N,)
        counts = torch.zeros_like(self.code_counts).scatter_add_(
            0, flat_idx, torch.ones_like(flat_idx, dtype=self.code_counts.dtype)
        )  # (K,) n_k
        batch_perplexity = perplexity(counts)
        if self.training:
            self._update(
                z_e.detach().reshape(-1, self.embedding_dim), flat_idx, counts, batch_perplexity
            )
        weights = {"commitment": self.beta}  # under EMA the codebook term is a diagnostic
        if not self.ema:
            weights["codebook"] = 1.0
        terms = Terms(
            {"codebook": codebook, "commitment": commitment, "batch_perplexity": batch_perplexity},
            weights,
        )
        return Quantized(z_q, terms, indices)

    @torch.no_grad()
    def _update(self, z: Tensor, idx: Tensor, counts: Tensor, batch_perplexity: Tensor) -> None:
        """One training step's bookkeeping: usage, EMA codes, dead-code restarts."""
        self.code_counts += counts
        self.perplexity.copy_(batch_perplexity)
        self.steps_unused.copy_(torch.where(counts > 0, 0, self.steps_unused + 1))
        dead = self.steps_unused >= (self.dead_code_restart or DEAD_AFTER)  # (K,)
        self.dead_codes.copy_(dead.sum())
        if self.ema:
            # N_k ← γ N_k + (1−γ) n_k ;  m_k ← γ m_k + (1−γ) Σ_{i: k_i = k} z_i
            self.cluster_size.lerp_(counts, 1 - self.ema)
            sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, z)  # (K, D)
            self.embed_sum.lerp_(sums, 1 - self.ema)
            # Laplace smoothing keeps N_k > 0: Ñ_k = (N_k + ε) / (n + K ε) · n ;  e_k = m_k / Ñ_k
            n = self.cluster_size.sum()
            k, eps = self.codebook_size, self.epsilon
            smoothed = (self.cluster_size + eps) / (n + k * eps) * n  # (K,)
            self.codebook.copy_(self.embed_sum / smoothed[:, None])
        if self.dead_code_restart:
            # Every dead code takes a random vector of this batch; computed for all codes and
            # selected with `where`, so there is no data-dependent branch (no host sync).
            pick = torch.randint(len(z), (self.codebook_size,), device=z.device)
            self._set_codes(dead, z[pick])
            self.restarts += self.dead_codes
            self.steps_unused.masked_fill_(dead, 0)

    def _set_codes(self, which: Tensor, vectors: Tensor) -> None:
        """Codes where `which` is true become `vectors` (and their EMA statistics restart there)."""
        mask = which[:, None]  # (K, 1)
        self.codebook.copy_(torch.where(mask, vectors, self.codebook))
        self.embed_sum.copy_(torch.where(mask, vectors, self.embed_sum))
        self.cluster_size.copy_(torch.where(which, 1.0, self.cluster_size))

    @torch.no_grad()
    def _maybe_initialise(self, z: Tensor) -> None:
        """init="kmeans": k-means on the first training batch (one host read, then cached)."""
        if self._needs_init is None:
            self._needs_init = not bool(self.initialised)
        if not self._needs_init:
            return
        everything = torch.ones(self.codebook_size, dtype=torch.bool, device=z.device)
        self._set_codes(everything, kmeans(z.reshape(-1, self.embedding_dim), self.codebook_size))
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)
        self._needs_init = False


def kmeans(z: Tensor, k: int, iterations: int = KMEANS_ITERATIONS) -> Tensor:
    """Lloyd's k-means on z (N, D) → centres (k, D), started by k-means++ (each next start drawn
    with probability ∝ squared distance to the nearest start so far); an empty cluster keeps its
    centre. Uses the global RNG, which the trainer seeds."""
    centres = z.new_empty(k, z.shape[1])
    nearest_sq = torch.full((len(z),), float("inf"), device=z.device, dtype=z.dtype)  # (N,)
    weights = torch.ones_like(nearest_sq)
    for j in range(k):
        start = z.index_select(0, torch.multinomial(weights, 1))  # (1, D)
        centres[j] = start[0]
        nearest_sq = torch.minimum(nearest_sq, (z - start).square().sum(1))
        weights = nearest_sq + 1e-12  # D² sampling; the floor keeps it valid when all are covered
    for _ in range(iterations):
        assign = torch.addmm(centres.square().sum(1), z, centres.t(), alpha=-2.0).argmin(1)  # (N,)
        sums = torch.zeros_like(centres).index_add_(0, assign, z)  # (k, D)
        counts = torch.zeros(k, device=z.device, dtype=z.dtype).index_add_(
            0, assign, torch.ones_like(assign, dtype=z.dtype)
        )  # (k,)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    return centres

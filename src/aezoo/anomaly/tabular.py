"""The tabular default of `AnomalyDetector`: an ensemble of small dense autoencoders beside an
IsolationForest, on standardised columns (issue 15; measured in docs/benchmarks.md).

1. Columns are standardised (mean / std; a constant column keeps scale 1).
2. `n_members` autoencoders d → h → k → h → d (h = clip(2d, 16, 128), k = clip(d/4, 2, 32), ReLU),
   each trained on its own bootstrap of `subsample` rows for `epochs` passes. Small bags and a short
   budget keep the members from learning the outliers they are fitted on (why IsolationForest
   samples 256 rows). Per member, two anomaly scores:
     recon  = mean_j e_j / m_j, e_j the squared error of feature j, m_j its median in-bag error;
     latent = mean distance to the `n_neighbors` nearest in-bag codes (codes scaled per dimension);
   each robust-z-normalised (median / IQR) on the rows the member did not train on (out-of-bag).
   The AE score is the mean over members of recon_z + latent_z.
3. IsolationForest (`n_trees` trees) on the same standardised columns.
4. anomaly = w·max(z_AE, 0) + (1 − w)·z_IF, each z by median / IQR of the training rows' scores
   (out-of-bag for the members). One-sided: a row the members find typical is no evidence of
   normality (clustered outliers reconstruct well), so the AE only adds suspicion.

The training rows' out-of-bag anomaly scores behave like those of new rows, so the threshold set on
them holds on new data. `use_ae=False` is the ablation: the same forest on the same columns alone.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from torch import nn

MIN_OOB = 20  # fewer out-of-bag rows than this: normalise on every row instead
CHUNK = 256  # rows per forward pass, the last chunk padded: every row meets the same arithmetic


def robust_location(values: np.ndarray) -> tuple[float, float]:
    """(median, IQR) of a score; the IQR floored so that a flat score does not divide by zero."""
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return float(median), float(max(q75 - q25, 1e-12))


class Member(nn.Module):
    """One small autoencoder, its in-bag error and code scales, and the in-bag codes' index."""

    def __init__(self, features: int, hidden: int, code: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, code)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, features)
        )

    @torch.inference_mode()
    def errors(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(e_j / m_j per feature (N, D), code (N, k)) of standardised rows z."""
        errors, codes = [], []
        for start in range(0, len(z), CHUNK):
            x = torch.from_numpy(z[start : start + CHUNK])
            n = len(x)
            x = torch.cat([x, x.new_zeros((CHUNK - n, x.shape[1]))])  # (CHUNK, D)
            code = self.encoder(x)  # (CHUNK, k)
            errors.append((self.decoder(code) - x)[:n].square().double().numpy())
            codes.append(code[:n].numpy())
        return np.concatenate(errors) / self.error_scale, np.concatenate(codes)

    def raw(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(recon, latent) anomaly scores before normalisation: (N,) each."""
        err, code = self.errors(z)
        distance, _ = self.neighbours.kneighbors(code / self.code_scale)
        return err.mean(1), distance.mean(1)

    def calibrate(self, z_in: np.ndarray, z_ref: np.ndarray, n_neighbors: int) -> None:
        """Scales from the in-bag rows z_in, robust-z locations from the reference rows z_ref."""
        self.error_scale = np.ones(z_in.shape[1])
        err, code = self.errors(z_in)
        self.error_scale = np.maximum(np.median(err, axis=0), 1e-6)  # (D,)
        self.code_scale = code.std(0) + 1e-6  # (k,)
        self.neighbours = NearestNeighbors(
            n_neighbors=min(n_neighbors, len(code)), algorithm="ball_tree"
        )  # exact distances row by row (brute force's matrix products depend on the batch)
        self.neighbours.fit(code / self.code_scale)
        recon, latent = self.raw(z_ref)
        self.norms = (robust_location(recon), robust_location(latent))

    def score(self, z: np.ndarray) -> np.ndarray:
        """recon_z + latent_z: (N,)."""
        recon, latent = self.raw(z)
        (m1, s1), (m2, s2) = self.norms
        return (recon - m1) / s1 + (latent - m2) / s2


class TabularEnsemble:
    """The recipe above, fitted on float64 rows [N, D]; `anomaly(X)` is higher for outliers."""

    def __init__(
        self,
        seed: int,
        *,
        n_members: int = 5,
        subsample: int = 256,
        epochs: int = 60,
        batch_size: int = 128,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        n_neighbors: int = 10,
        n_trees: int = 300,
        ae_weight: float = 0.25,
        use_ae: bool = True,
    ) -> None:
        self.seed = seed
        self.n_members, self.subsample, self.epochs = n_members, subsample, epochs
        self.batch_size, self.lr, self.weight_decay = batch_size, lr, weight_decay
        self.n_neighbors, self.n_trees, self.ae_weight = n_neighbors, n_trees, ae_weight
        self.use_ae = use_ae

    def fit(self, x: np.ndarray) -> np.ndarray:
        """Fit on rows x; returns the training rows' out-of-bag anomaly scores (N,)."""
        self.mean = x.mean(0)
        std = x.std(0)
        self.scale = np.where(std > 1e-12, std, 1.0)
        z = self.standardise(x)
        raw = {}
        if self.use_ae:
            raw["ae"] = self._fit_members(z, np.random.RandomState(self.seed))
        # Seeded on its own, so that the ablation (use_ae=False) grows the very same forest.
        self.forest = IsolationForest(n_estimators=self.n_trees, random_state=self.seed).fit(z)
        raw["forest"] = -self.forest.score_samples(z)
        self.norms = {k: robust_location(v) for k, v in raw.items()}
        return self.combine(self.normalise(raw))

    def _fit_members(self, z: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """Train the members; each training row's AE score over the members it is out-of-bag of."""
        n, d = z.shape
        hidden, code = int(np.clip(2 * d, 16, 128)), int(np.clip(round(d / 4), 2, 32))
        self.members: list[Member] = []
        oob_sum, oob_count, all_sum = np.zeros(n), np.zeros(n), np.zeros(n)
        with torch.random.fork_rng():  # the caller's global generator stays as it was
            torch.manual_seed(self.seed)
            for index in range(self.n_members):
                bag = rng.choice(n, size=min(n, self.subsample), replace=True)
                in_bag = np.unique(bag)
                oob = np.setdiff1d(np.arange(n), in_bag)
                member = Member(d, hidden, code)
                self._train(member, z[bag], index)
                member.eval()
                reference = oob if len(oob) >= MIN_OOB else np.arange(n)
                member.calibrate(z[in_bag], z[reference], self.n_neighbors)
                score = member.score(z)
                all_sum += score
                oob_sum[oob] += score[oob]
                oob_count[oob] += 1
                self.members.append(member)
        # A row every member trained on (rare: small tables) falls back to its in-bag mean.
        return np.where(oob_count > 0, oob_sum / np.maximum(oob_count, 1), all_sum / self.n_members)

    def _train(self, member: Member, rows: np.ndarray, index: int) -> None:
        optimiser = torch.optim.Adam(
            member.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        x = torch.from_numpy(rows)
        order = torch.Generator().manual_seed(self.seed * 1000 + index)
        for _ in range(self.epochs):
            for rows_of_step in torch.randperm(len(x), generator=order).split(self.batch_size):
                batch = x[rows_of_step]
                loss = (member.decoder(member.encoder(batch)) - batch).square().mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)

    def normalise(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: (v - self.norms[k][0]) / self.norms[k][1] for k, v in raw.items()}

    def combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """w·max(z_AE, 0) + (1 − w)·z_IF, or z_IF alone for the ablation."""
        if "ae" not in parts:
            return parts["forest"]
        return (
            self.ae_weight * np.maximum(parts["ae"], 0.0) + (1 - self.ae_weight) * parts["forest"]
        )

    def parts(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Each part's normalised anomaly score: {"ae", "forest"} → (N,)."""
        z = self.standardise(x)
        raw = {"forest": -self.forest.score_samples(z)}
        if self.use_ae:
            raw["ae"] = np.mean([m.score(z) for m in self.members], axis=0)
        return self.normalise(raw)

    def anomaly(self, x: np.ndarray) -> np.ndarray:
        """The combined anomaly score of rows x: (N,), higher = more anomalous."""
        return self.combine(self.parts(x))

    def feature_contributions(self, x: np.ndarray) -> np.ndarray:
        """(N, D): c_j = mean over members of (e_j/m_j − median) / (D·IQR) of the recon part, so a
        row's c_j sum to the members' mean normalised reconstruction score."""
        z = self.standardise(x)
        total = np.zeros(z.shape, dtype=np.float64)
        for member in self.members:
            err, _ = member.errors(z)
            median, iqr = member.norms[0]
            total += (err - median) / (z.shape[1] * iqr)
        return total / len(self.members)

    def reconstruction_part(self, x: np.ndarray) -> np.ndarray:
        """The members' mean normalised reconstruction score (N,): what contributions sum to."""
        z = self.standardise(x)
        values = []
        for member in self.members:
            recon, _ = member.raw(z)
            median, iqr = member.norms[0]
            values.append((recon - median) / iqr)
        return np.mean(values, axis=0)

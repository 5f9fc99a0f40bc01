"""Anomaly detection with autoencoders: `AnomalyDetector`, a scikit-learn outlier detector (the
protocols built on it live in anomaly_protocols.py).

Train on normal data only; score new data by how well the fitted model explains it. Signs follow
scikit-learn: `score_samples` is higher for more normal data, `decision_function(X) =
score_samples(X) − offset_`, and `predict` gives +1 (inlier) or −1 (outlier).

Scores are deterministic and row-wise: a row's score depends on the row and the fitted detector
only, never on the other rows scored with it, their order or the call. Posterior samples use the
same seeded draws ε_1..ε_S for every row (common random numbers), and rows go through the model in
chunks of one fixed size (the last one padded), so every row meets the same arithmetic.

Tabular rows [N, D] go through the dense models as 1×D images: features are standardised with a
StandardScaler fitted on the training rows, then mapped linearly to pixel values u = ½ + z/8, so
±4 standard deviations span [0, 1], the range of the decoder's sigmoid mean. The losses become
Gaussian (AE: `loss="mse"`; VAE: `likelihood="gaussian"` with a learned σ). Training stores rows as
the batch iterator's uint8 pixels (256 levels over ±4σ, a step of 0.03σ, clipped there); scoring
uses the exact, unclipped values, so a far outlier keeps a large and growing error.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from torch import Tensor, nn

from aezoo.data import Dataset, binarize_once
from aezoo.device import resolve_device
from aezoo.errors import UsageError
from aezoo.explore import fit_gmm
from aezoo.loop import fit as fit_loop
from aezoo.loop import make_optimizer
from aezoo.losses import gaussian_kl, gaussian_log_density, iw_bound, reconstruction_loss
from aezoo.metrics import evaluator
from aezoo.models import MODELS, preset
from aezoo.runs import make_batches, make_spec

SCORES = ("recon", "elbo", "nll", "latent")
TABULAR_RANGE = 4.0  # standard deviations mapped onto [0, 1] either side of the mean
SCORE_BUDGET = 2048  # decoded rows per scoring step: chunk = SCORE_BUDGET // posterior samples
EVAL_ROWS = 1000  # training rows the training loop's per-epoch evaluation looks at
MIN_SAMPLES = 2  # standardisation and a training batch need two rows at least
MAX_CODE_WIDTH = 1024  # a full-covariance mixture on wider codes would not fit in memory
# Options a detector sets with its own parameters, or that mean nothing for an in-memory fit.
RESERVED_OPTIONS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "random_state",
    "device": "device",
    "dataset": None,
    "data_dir": None,
    "train_subset": None,
    "test_subset": None,
}


def has_posterior(model: nn.Module | type) -> bool:
    """Whether a model (or model class) has a Gaussian posterior q(z|x): a VAE."""
    return hasattr(model, "posterior")


def posterior_models() -> list[str]:
    """Registered unconditional models with a posterior: those `elbo` and `nll` apply to."""
    return [
        name
        for name, p in MODELS.items()
        if has_posterior(p.model) and not p.options.get("num_classes", 0)
    ]


def python_scalar(value: Any) -> Any:
    """numpy scalars → Python numbers, so configs accept parameter grids built with numpy."""
    return value.item() if isinstance(value, np.generic) else value


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """An autoencoder trained on normal data; how well it explains a row is the row's score.

    Parameters
    ----------
    model : a registered model name (`aezoo list`); tabular data needs a dense one.
    anomaly_score : "recon" (the reconstruction loss −log p(x|z), averaged over posterior samples
        for a VAE), "elbo" (−ELBO), "nll" (−log p̂(x), the importance-weighted bound over
        `n_samples`; "elbo" and "nll" need a VAE), or "latent" (−log density of the code
        encode(x) under a Gaussian mixture fitted to the training codes). `score_samples` is
        minus this. (Not `score`: scikit-learn reserves that name for a method.)
    contamination : the share of training rows that fall below the threshold, in (0, 0.5].
    threshold_percentile : if given, the threshold is this percentile of the training rows'
        anomaly scores (95 ↔ contamination 0.05) and `contamination` is not used.
    epochs, batch_size : training passes and rows per step (clipped to the number of rows).
    lr : learning rate; None takes the model preset's.
    n_samples : posterior samples per row for a VAE's recon, elbo and nll.
    latent_components : components of the mixture behind anomaly_score="latent".
    random_state : int, RandomState or None: weights, batch order, mixture and score draws.
    device : "cpu", "cuda", "cuda:N", "mps" or "auto".
    model_options : model, training and batch options as `aezoo train` takes them, e.g.
        {"latent_dim": 16, "kl_warmup": 5, "noise": "gaussian:0.2"}.

    Attributes
    ----------
    model_ : the trained model (eval mode). scaler_ : the StandardScaler of tabular input (None
    for images). latent_density_ : the fitted GaussianMixture (anomaly_score="latent" only).
    offset_ : `decision_function = score_samples − offset_`. threshold_ : −offset_, the cutoff on
    the anomaly score; rows above it are outliers. n_features_in_ : values per row (pixels for
    images). loss_curve_ : the training loss of each epoch.
    """

    def __init__(
        self,
        model: str = "dense-vae",
        anomaly_score: str = "recon",
        contamination: float = 0.05,
        threshold_percentile: float | None = None,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float | None = None,
        n_samples: int = 10,
        latent_components: int = 10,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
        model_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.anomaly_score = anomaly_score
        self.contamination = contamination
        self.threshold_percentile = threshold_percentile
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_samples = n_samples
        self.latent_components = latent_components
        self.random_state = random_state
        self.device = device
        self.model_options = model_options

    # --- fit ------------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> AnomalyDetector:
        """Train the model on X (normal rows; `y` is ignored) and set the threshold."""
        self._check_params()
        x = self._input(X, reset=True)  # (N, C, H, W) float32 on the CPU
        tabular = self.scaler_ is not None
        seed = self._draw_seed()
        options = self._options(tabular)
        options.update(
            epochs=python_scalar(self.epochs),
            batch_size=min(python_scalar(self.batch_size), len(x)),
            seed=seed,
            device=self.device,
        )
        if self.lr is not None:
            options["lr"] = float(self.lr)
        data = Dataset(torch.from_numpy(_to_uint8(x.numpy())), None, "training rows")
        spec = make_spec(self.model, options, data)
        self._check_model(spec.model_config, tabular)
        device = resolve_device(spec.train.device)
        if spec.data.binarize == "static":
            data = binarize_once(data, seed=seed)
        train, evaluation = make_batches(
            spec, data, data.select(range(min(EVAL_ROWS, len(data)))), device
        )
        # The training loop reseeds the global RNG; leave the caller's generators as they were.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            net = preset(spec.model).model(spec.model_config).to(device)
            records = fit_loop(
                net,
                make_optimizer(net, spec.train),
                train,
                evaluator(evaluation, seed=spec.train.seed),
                spec.train,
                quiet=True,
            )
        self.model_ = net.eval()
        self.loss_curve_ = [r["train_loss"] for r in records]
        self._seed = seed
        return self._fit_score(x)

    def _fit_score(self, x: Tensor) -> AnomalyDetector:
        """The score's own fitted parts (the latent mixture) and the threshold, from training x."""
        self.__dict__.pop("latent_density_", None)  # a refit with another score drops the old
        if self.anomaly_score == "latent":
            codes = self._codes(x)
            if codes.shape[1] > MAX_CODE_WIDTH:
                raise UsageError(
                    f"anomaly_score='latent' needs codes of at most {MAX_CODE_WIDTH} "
                    f"values; {self.model}'s have {codes.shape[1]}"
                )
            components = self.latent_components
            if components > len(codes):
                warnings.warn(
                    f"latent_components ({components}) is greater than the number of "
                    f"samples ({len(codes)}); using {len(codes)}",
                    stacklevel=3,
                )
                components = len(codes)
            self.latent_density_ = fit_gmm(codes, components, seed=self._seed)
        if self.threshold_percentile is not None:
            percentile = 100.0 - float(self.threshold_percentile)
        else:
            percentile = 100.0 * float(self.contamination)
        self.offset_ = float(np.percentile(self._score(x), percentile))
        self.threshold_ = -self.offset_
        return self

    def _check_params(self) -> None:
        name = type(self).__name__
        preset(self.model)  # an unknown name is an error listing the known ones
        if self.anomaly_score not in SCORES:
            raise UsageError(
                f"The 'anomaly_score' parameter of {name} must be one of "
                f"{', '.join(map(repr, SCORES))}. Got {self.anomaly_score!r} "
                "instead."
            )
        c = self.contamination
        if not isinstance(c, numbers.Real) or not 0.0 < c <= 0.5:
            raise UsageError(
                f"The 'contamination' parameter of {name} must be a float in the "
                f"range (0.0, 0.5]. Got {c!r} instead."
            )
        t = self.threshold_percentile
        if t is not None and (not isinstance(t, numbers.Real) or not 0.0 < t <= 100.0):
            raise UsageError(
                f"The 'threshold_percentile' parameter of {name} must be None or a "
                f"float in the range (0.0, 100.0]. Got {t!r} instead."
            )
        for param in ("epochs", "batch_size", "n_samples", "latent_components"):
            value = getattr(self, param)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise UsageError(
                    f"The '{param}' parameter of {name} must be an int in the "
                    f"range [1, inf). Got {value!r} instead."
                )
        if self.model_options is not None and not isinstance(self.model_options, Mapping):
            raise UsageError(
                f"The 'model_options' parameter of {name} must be a dict or None. "
                f"Got {self.model_options!r} instead."
            )
        for key in self.model_options or {}:
            if key in RESERVED_OPTIONS:
                param = RESERVED_OPTIONS[key]
                reason = (
                    f"set it with the '{param}' parameter"
                    if param
                    else "the detector trains on the rows given to fit"
                )
                raise UsageError(f"model_options: {key!r} is not a model option ({reason})")

    def _draw_seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral) and self.random_state >= 0:
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _options(self, tabular: bool) -> dict[str, Any]:
        """model_options, plus the Gaussian losses tabular data needs unless set there."""
        options = {k: python_scalar(v) for k, v in (self.model_options or {}).items()}
        fields = {f.name for f in dataclasses.fields(preset(self.model).config)}
        if tabular and "likelihood" in fields:
            options.setdefault("likelihood", "gaussian")
            options.setdefault("learn_sigma", True)
        if tabular and "loss" in fields:
            options.setdefault("loss", "mse")
        return options

    def _check_model(self, config: Any, tabular: bool) -> None:
        arch = getattr(config, "arch", None)
        if tabular and arch != "dense":
            dense = [n for n, p in MODELS.items() if p.options.get("arch") == "dense"]
            raise UsageError(
                f"tabular rows [N, D] need a dense model ({', '.join(dense)}); "
                f"{self.model} is {arch}. Images go in as [N, H, W] or [N, C, H, W]"
            )
        if getattr(config, "num_classes", 0):
            raise UsageError(
                f"{self.model} is conditioned on labels, which an outlier detector "
                "does not have; use an unconditional model"
            )
        if self.anomaly_score in ("elbo", "nll") and not has_posterior(preset(self.model).model):
            raise UsageError(
                f"anomaly_score={self.anomaly_score!r} needs a model with a "
                f"posterior q(z|x) ({', '.join(posterior_models())}); {self.model} "
                "has none: use 'recon' or 'latent'"
            )

    # --- input ----------------------------------------------------------------------------------

    def _input(self, X: Any, reset: bool) -> Tensor:
        """Validated model input, float32 (N, C, H, W) on the CPU; on reset, learns its shape."""
        if reset:
            ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
            tabular = ndim <= 2  # 1-D is refused below with scikit-learn's message
        else:
            check_is_fitted(self)
            tabular = self.scaler_ is not None
        if tabular:
            rows = validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_min_samples=MIN_SAMPLES if reset else 1,
            )
            if reset:
                self.scaler_ = StandardScaler().fit(rows)
            u = 0.5 + self.scaler_.transform(rows) / (2 * TABULAR_RANGE)  # ±4σ → [0, 1]
            return torch.from_numpy(u.astype(np.float32))[:, None, None, :]  # (N, 1, 1, D)
        images = check_array(
            X, allow_nd=True, dtype="numeric", ensure_min_samples=MIN_SAMPLES if reset else 1
        )
        if images.ndim not in (3, 4):
            raise UsageError(
                f"expected images [N, H, W] or [N, C, H, W], got an array of shape {images.shape}"
            )
        if images.ndim == 3:
            images = images[:, None]
        pixels = _pixel_values(images)
        if reset:
            self.scaler_ = None
            self.n_features_in_ = math.prod(pixels.shape[1:])
        else:
            expected = tuple(self.model_.config.image_shape)
            if pixels.shape[1:] != expected:
                raise UsageError(
                    f"X has images of shape {pixels.shape[1:]}, but "
                    f"{type(self).__name__} is expecting images of shape {expected} "
                    "as input."
                )
        return torch.from_numpy(pixels)

    # --- scores ---------------------------------------------------------------------------------

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality of each row, minus its anomaly score: higher is more normal."""
        return self._score(self._input(X, reset=False))

    def decision_function(self, X: Any) -> np.ndarray:
        """score_samples − offset_: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, −1 for outliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def _score(self, x: Tensor) -> np.ndarray:
        model = self.model_
        if self.anomaly_score == "latent":
            return self.latent_density_.score_samples(self._codes(x))
        if not has_posterior(model):
            return self._chunked(
                x, 1, lambda c: -reconstruction_nll(model, model.decode_logits(model.encode(c)), c)
            )
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(self._seed)
        eps = torch.randn(
            (self.n_samples, 1, model.config.latent_dim), generator=generator, device=device
        )  # (S, 1, D), the same draws for every row
        return self._chunked(
            x, self.n_samples, lambda c: posterior_scores(model, c, eps)[self.anomaly_score]
        )

    def _codes(self, x: Tensor) -> np.ndarray:
        """The point codes encode(x) (μ for a VAE), flattened: (N, code width)."""
        return self._chunked(x, 1, lambda c: self.model_.encode(c).flatten(1))

    @torch.inference_mode()
    def _chunked(self, x: Tensor, samples: int, fn: Any) -> np.ndarray:
        """fn over chunks of x of one fixed size (the last padded with zeros), as float64."""
        device = next(self.model_.parameters()).device
        rows = max(1, SCORE_BUDGET // samples)
        parts = []
        for start in range(0, len(x), rows):
            chunk = x[start : start + rows]
            n = len(chunk)
            if n < rows:
                chunk = torch.cat([chunk, chunk.new_zeros((rows - n, *chunk.shape[1:]))])
            parts.append(fn(chunk.to(device))[:n].double().cpu())
        return torch.cat(parts).numpy()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def reconstruction_nll(model: nn.Module, logits: Tensor, x: Tensor) -> Tensor:
    """−log p(x|z) per row: the model's likelihood if it has one, else its reconstruction loss."""
    if hasattr(model, "nll"):
        return model.nll(logits, x)  # (B,)
    return reconstruction_loss(logits, x, getattr(model.config, "loss", "mse"))  # (B,)


def posterior_scores(model: nn.Module, x: Tensor, eps: Tensor) -> dict[str, Tensor]:
    """A VAE's normality scores (B,) with given noise ε (S, 1, D): z_s = μ + σ ε_s.

    recon = (1/S) Σ_s log p(x|z_s); elbo = recon − KL(q(z|x) ‖ p(z)); nll = log (1/S) Σ_s w_s
    with log w_s = log p(x|z_s) + log p(z_s) − log q(z_s|x), the importance-weighted bound as
    `log_importance_weights` computes it, but with the same draws for every row.
    """
    mu, log_var = model.posterior(x)  # (B, D)
    z = mu + torch.exp(0.5 * log_var) * eps  # (S, B, D)
    s = z.shape[0]
    targets = x.expand(s, *x.shape).flatten(0, 1)  # (S·B, C, H, W)
    logits = model.decode_logits(z.flatten(0, 1))  # (S·B, C, H, W)
    log_px = -reconstruction_nll(model, logits, targets).view(s, -1)  # (S, B)
    log_w = log_px + gaussian_log_density(z) - gaussian_log_density(z, mu, log_var)  # (S, B)
    recon = log_px.mean(0)
    return {"recon": recon, "elbo": recon - gaussian_kl(mu, log_var).sum(1), "nll": iw_bound(log_w)}


SCORING_PARAMS = (
    "anomaly_score",
    "n_samples",
    "latent_components",
    "contamination",
    "threshold_percentile",
)


def rescore(detector: AnomalyDetector, X: Any, **params: Any) -> AnomalyDetector:
    """A fitted copy of `detector` that shares its trained model but scores with other scoring
    parameters (SCORING_PARAMS), e.g. rescore(d, X, anomaly_score="latent"); X is the training
    data, for the latent mixture and the threshold. The model is not trained again."""
    check_is_fitted(detector)
    other = sorted(set(params) - set(SCORING_PARAMS))
    if other:
        raise UsageError(f"rescore: {other[0]!r} changes the training; fit a new detector")
    new = clone(detector).set_params(**params)
    new._check_params()
    if new.anomaly_score in ("elbo", "nll") and not has_posterior(detector.model_):
        raise UsageError(f"anomaly_score={new.anomaly_score!r} needs a model with a posterior")
    for name in ("model_", "scaler_", "n_features_in_", "loss_curve_", "_seed"):
        setattr(new, name, getattr(detector, name))
    if hasattr(detector, "feature_names_in_"):
        new.feature_names_in_ = detector.feature_names_in_
    return new._fit_score(new._input(X, reset=False))


def _pixel_values(images: np.ndarray) -> np.ndarray:
    """uint8 (or integer 0..255) images → float32 in [0, 1]; floats must already lie there."""
    if not np.issubdtype(images.dtype, np.floating):
        low, high = images.min(), images.max()
        if low < 0 or high > 255:
            raise UsageError(
                f"integer images must lie in 0..255, got {low}..{high}; tabular "
                "rows go in as a 2-D array [N, D]"
            )
        return images.astype(np.float32) / 255.0
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise UsageError(
            f"float images must lie in [0, 1], got values in {low:g}..{high:g}; "
            "tabular rows go in as a 2-D array [N, D]"
        )
    return images.astype(np.float32)


def _to_uint8(u: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped there) as the batch iterator's uint8 pixels."""
    return np.rint(np.clip(u, 0.0, 1.0) * 255).astype(np.uint8)

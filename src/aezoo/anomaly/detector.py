"""`AnomalyDetector`: a scikit-learn outlier detector built on aezoo's autoencoders (the protocols
built on it live in protocols.py and tabular_protocol.py).

Fit on normal data; score new data. Signs follow scikit-learn: `score_samples` is higher for more
normal data, `decision_function(X) = score_samples(X) − offset_`, `predict` gives +1 (inlier) or −1
(outlier). With no arguments the detector is the best aezoo offers for the input kind
(`anomaly_score="auto"`): tables [N, D] get the tabular recipe (tabular.py: an ensemble of small
autoencoders beside an IsolationForest), images get dense-ae's "combined" score (combined.py: its
codes under a Gaussian mixture, plus the share of each image it fails to reconstruct, plus the
image's leading principal components under a mixture of their own). Every score
of a registered model stays selectable.

Scores are deterministic and row-wise: a row's score depends on the row and the fitted detector
only. The threshold (offset_) is set on training rows the scorer did not learn from (out-of-bag
rows of the recipe; a seeded tenth of the rows held out of a registered model's training), so the
flagged share of new normal rows follows `contamination`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from aezoo.anomaly import fitting, scoring
from aezoo.anomaly.inputs import MIN_SAMPLES, image_pixels, in_layout, input_ndim, table_values
from aezoo.anomaly.params import SCORES, check_params, draw_seed, plan
from aezoo.anomaly.tabular import TabularEnsemble
from aezoo.errors import UsageError

__all__ = ["SCORES", "AnomalyDetector"]


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """An autoencoder-based outlier detector; how well it explains a row is the row's score.

    Parameters
    ----------
    model : a registered model name (`aezoo list`), or None: dense-ae for images (dense-vae for
        "elbo"/"nll"); with anomaly_score="auto" on tables the recipe trains its own ensemble.
    anomaly_score : "auto" (the input kind's best, above), "recon" (−log p(x|z), averaged over
        posterior samples for a VAE), "elbo" (−ELBO), "nll" (the importance-weighted bound over
        `n_samples`; these two need a VAE), "latent" (−log density of encode(x) under a Gaussian
        mixture fitted to the training codes) or "combined" (images only: the image default,
        combined.py). `score_samples` is minus this.
    contamination : the share of held-out training rows that fall below the threshold, (0, 0.5].
    threshold_percentile : if given, the threshold is this percentile of the held-out training
        rows' anomaly scores (95 ↔ contamination 0.05) and `contamination` is not used.
    epochs, batch_size, lr : a registered model's training (lr None: the preset's). epochs None:
        20 on tables; on images at least 20 and enough for 4,000 optimiser steps.
    n_samples : posterior samples per row for a VAE's recon, elbo and nll.
    latent_components : mixture components for "latent" and "combined"; None: 50 for
        "combined" (and "auto" on images), 10 for "latent".
    random_state : int, RandomState or None (default 0: the same call gives the same result).
    device : "cpu", "cuda", "cuda:N", "mps" or "auto".
    layout : "auto", "nchw" or "nhwc": how 4-D images are laid out (ambiguous shapes need it).
    model_options : model, training and batch options as `aezoo train` takes them.

    Attributes
    ----------
    anomaly_score_ : the score in use ("recipe" for the tabular default). model_ : the trained
    model (None for the recipe). ensemble_ : the tabular recipe (None otherwise). scaler_ : the
    StandardScaler of tabular input to a model (None otherwise). latent_density_ : the mixture
    ("latent" only). combined_ : the fitted parts of the "combined" score. offset_, threshold_
    (= −offset_). n_features_in_. loss_curve_ : the model's training loss per epoch (empty for
    the recipe).
    """

    def __init__(
        self,
        model: str | None = None,
        anomaly_score: str = "auto",
        contamination: float = 0.05,
        threshold_percentile: float | None = None,
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float | None = None,
        n_samples: int = 10,
        latent_components: int | None = None,
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
        layout: str = "auto",
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
        self.layout = layout
        self.model_options = model_options

    # --- fit ------------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> AnomalyDetector:
        """Train on X (normal rows; `y` is ignored) and set the threshold on held-out rows."""
        check_params(self)
        tabular = input_ndim(X) <= 2  # 1-D is refused with scikit-learn's message
        model, score, components = plan(
            self.model, self.anomaly_score, tabular, self.latent_components
        )
        self._seed = draw_seed(self.random_state)
        self.anomaly_score_, self._components = score, components
        if score == "recipe":
            if self.model_options:
                raise UsageError(
                    "model_options apply to a registered model; the tabular recipe "
                    "(anomaly_score='auto') has none"
                )
            rows = self._rows(X, reset=True)
            self.ensemble_ = TabularEnsemble(self._seed)
            self.model_, self.scaler_, self.loss_curve_ = None, None, []
            fitting.forget_score(self)
            return self._set_offset(-self.ensemble_.fit(rows))
        self.ensemble_ = None
        x = self._input(X, reset=True, tabular=tabular)
        return fitting.fit_model(self, model, x, tabular)

    def _set_offset(self, held_out_scores: np.ndarray) -> AnomalyDetector:
        """offset_ from the normality scores of training rows the scorer did not learn from."""
        if self.threshold_percentile is not None:
            percentile = 100.0 - float(self.threshold_percentile)
        else:
            percentile = 100.0 * float(self.contamination)
        self.offset_ = float(np.percentile(held_out_scores, percentile))
        self.threshold_ = -self.offset_
        return self

    # --- input ----------------------------------------------------------------------------------

    def _rows(self, X: Any, reset: bool) -> np.ndarray:
        try:
            rows = validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_min_samples=MIN_SAMPLES if reset else 1,
            )
        except ValueError as err:  # scikit-learn's message may print the whole array: one line
            lines = str(err).splitlines()
            raise UsageError(" ".join([lines[0], *lines[-1:]][: len(lines)])) from None
        return rows.astype(np.float64)

    def _input(self, X: Any, reset: bool, tabular: bool | None = None) -> np.ndarray:
        """A registered model's input: float32 (N, C, H, W) values (tables: (N, 1, 1, D))."""
        if not reset:
            check_is_fitted(self)
            tabular = self.scaler_ is not None
        if tabular:
            rows = self._rows(X, reset)
            if reset:
                self.scaler_ = StandardScaler().fit(rows)
            return table_values(self.scaler_.transform(rows))
        return self._images(X, reset)[0]

    def _images(self, X: Any, reset: bool) -> tuple[np.ndarray, str]:
        """(float32 pixels (N, C, H, W) in [0, 1], the layout the data layer decided)."""
        pixels, layout = image_pixels(X, self.layout, reset)
        if reset:
            self.scaler_ = None
            self.n_features_in_ = math.prod(pixels.shape[1:])
        else:
            expected = tuple(self.model_.config.image_shape)
            if pixels.shape[1:] != expected:
                raise UsageError(
                    f"X has images of shape {pixels.shape[1:]}, but {type(self).__name__} is "
                    f"expecting images of shape {expected} as input."
                )
        return pixels.astype(np.float32) / 255.0, layout

    # --- scores ---------------------------------------------------------------------------------

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality of each row, minus its anomaly score: higher is more normal."""
        check_is_fitted(self)
        if self.ensemble_ is not None:
            return -self.ensemble_.anomaly(self._rows(X, reset=False))
        return fitting.normality(self, self._input(X, reset=False))

    def decision_function(self, X: Any) -> np.ndarray:
        """score_samples − offset_: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, −1 for outliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    # --- where ----------------------------------------------------------------------------------

    def anomaly_map(self, X: Any) -> np.ndarray:
        """Per-value squared reconstruction error |x − x̂|², x̂ = decode(encode(x)) (the posterior
        mean for a VAE), shaped like the images given ([N, H, W], NCHW or NHWC). A row's map sums
        to ‖x − x̂‖², its `recon` anomaly score for a model trained with loss="mse"."""
        check_is_fitted(self)
        if self.ensemble_ is not None or self.scaler_ is not None:
            raise UsageError("anomaly_map is for images; for tables use feature_contributions")
        x, layout = self._images(X, reset=False)
        maps = scoring.squared_errors(self.model_, fitting.as_tensor(x))
        return in_layout(maps, layout)

    def feature_contributions(self, X: Any) -> np.ndarray:
        """Per-feature contribution to each row's score, (N, D). Recipe: the reconstruction part
        of the members' score, split over features (rows sum to it: `reconstruction_part`); a
        registered model: the squared error of each standardised feature (rows sum to ‖u − û‖²)."""
        check_is_fitted(self)
        if self.ensemble_ is not None:
            return self.ensemble_.feature_contributions(self._rows(X, reset=False))
        if self.scaler_ is None:
            raise UsageError("feature_contributions is for tables; for images use anomaly_map")
        x = self._input(X, reset=False)
        return scoring.squared_errors(self.model_, fitting.as_tensor(x))[:, 0, 0, :]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

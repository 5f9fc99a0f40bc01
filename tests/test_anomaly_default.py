"""The default detector (issue 15): the tabular recipe's maths, the threshold on new normal rows,
anomaly maps and feature contributions, and `aezoo anomaly tabular` on a CSV, all on real data
(scikit-learn's breast-cancer and digits sets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MNIST_DIR
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from aezoo import AnomalyDetector
from aezoo.anomaly import scoring
from aezoo.anomaly.combined import (
    NUDGED_SHRINKAGE,
    SHRINKAGE,
    VIEWS,
    combine,
    fit_pixel_density,
    nudged,
    relative_error,
    shrink_covariances,
)
from aezoo.anomaly.combined import (
    moved as moved_images,
)
from aezoo.anomaly.fitting import rescore
from aezoo.anomaly.params import SHIFT, auto_epochs, auto_shift
from aezoo.cli import main
from aezoo.data import load_dataset
from aezoo.explore import fit_gmm


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training benign rows, new benign rows, malignant rows), a seeded split."""
    x, y = load_breast_cancer(return_X_y=True)
    benign = x[y == 1][np.random.default_rng(0).permutation(int((y == 1).sum()))]
    return benign[:250], benign[250:], x[y == 0]


@pytest.fixture(scope="module")
def fitted(cancer: tuple[np.ndarray, ...]) -> AnomalyDetector:
    return AnomalyDetector().fit(cancer[0])


def test_default_on_tables_is_the_seeded_recipe(fitted: AnomalyDetector, cancer: tuple) -> None:
    train, new, malignant = cancer
    assert fitted.anomaly_score_ == "recipe" and fitted.random_state == 0
    assert fitted.model_ is None and len(fitted.ensemble_.members) == 5
    again = AnomalyDetector().fit(train)  # seeded by default: the same call, the same scores
    np.testing.assert_array_equal(again.score_samples(new), fitted.score_samples(new))
    other = AnomalyDetector(random_state=1).fit(train)
    assert not np.array_equal(other.score_samples(new), fitted.score_samples(new))
    # higher = more normal: malignant rows score lower than new benign ones
    scores = fitted.score_samples(np.concatenate([new, malignant]))
    is_anomaly = np.r_[np.zeros(len(new)), np.ones(len(malignant))]
    assert roc_auc_score(is_anomaly, -scores) > 0.9


def test_recipe_signs_and_row_independence(fitted: AnomalyDetector, cancer: tuple) -> None:
    _, new, malignant = cancer
    rows = np.concatenate([new[:20], malignant[:20]])
    scores = fitted.score_samples(rows)
    np.testing.assert_array_equal(fitted.decision_function(rows), scores - fitted.offset_)
    np.testing.assert_array_equal(fitted.predict(rows), np.where(scores < fitted.offset_, -1, 1))
    assert set(np.unique(fitted.predict(rows))) == {-1, 1}
    alone = np.array([fitted.score_samples(r[None])[0] for r in rows[:8]])
    np.testing.assert_array_equal(alone, scores[:8])  # bit for bit, whatever else is scored
    order = np.random.default_rng(1).permutation(len(rows))
    np.testing.assert_array_equal(fitted.score_samples(rows[order]), scores[order])


def test_recipe_parts_combine_to_the_score(fitted: AnomalyDetector, cancer: tuple) -> None:
    """anomaly = 0.25·max(z_AE, 0) + 0.75·z_IF, each part robust-z on the training rows."""
    rows = cancer[1]
    parts = fitted.ensemble_.parts(rows)
    expected = 0.25 * np.maximum(parts["ae"], 0) + 0.75 * parts["forest"]
    np.testing.assert_allclose(-fitted.score_samples(rows), expected, rtol=1e-12)


@pytest.mark.parametrize("c", [0.05, 0.1])
def test_threshold_holds_on_new_normal_rows(cancer: tuple, c: float) -> None:
    train, new, _ = cancer
    detector = AnomalyDetector(contamination=c).fit(train)
    flagged = (detector.predict(new) == -1).mean()
    assert c / 1.5 <= flagged <= c * 1.5, flagged


def test_threshold_holds_for_an_image_model() -> None:
    """The image default's threshold comes from held-out training images, so new images of the
    same kind are flagged at about the contamination (400 held-out images: a 10% quantile
    estimated to about ±0.015)."""
    images = load_dataset("mnist", "test", data_dir=MNIST_DIR).images.numpy()[:, 0]  # uint8
    order = np.random.default_rng(0).permutation(len(images))
    train, new = images[order[:4000]], images[order[4000:7000]]
    detector = AnomalyDetector(contamination=0.1, epochs=5).fit(train)
    assert detector.anomaly_score_ == "combined" and detector._components == 50
    assert len(detector._threshold_rows) == 400
    flagged = (detector.predict(new) == -1).mean()
    assert 0.1 / 1.5 <= flagged <= 0.1 * 1.5, flagged


def test_feature_contributions_sum_to_the_reconstruction_part(
    fitted: AnomalyDetector, cancer: tuple
) -> None:
    rows = np.concatenate([cancer[1][:10], cancer[2][:10]])
    contributions = fitted.feature_contributions(rows)
    assert contributions.shape == (20, 30)
    np.testing.assert_allclose(
        contributions.sum(1), fitted.ensemble_.reconstruction_part(rows), rtol=1e-9, atol=1e-9
    )
    # malignant rows carry more reconstruction suspicion than benign ones, on the whole
    assert contributions[10:].sum(1).mean() > contributions[:10].sum(1).mean()


def test_anomaly_map_is_shaped_like_the_images_and_sums_to_the_error() -> None:
    digits = load_digits()
    images = (digits.images * 255 / 16).round().astype(np.uint8)  # [N, 8, 8] pixels
    detector = AnomalyDetector(
        "dense-ae", anomaly_score="recon", epochs=3, model_options={"loss": "mse"}
    ).fit(images[:600])
    maps = detector.anomaly_map(images[600:620])
    assert maps.shape == (20, 8, 8) and (maps >= 0).all()
    np.testing.assert_allclose(
        maps.sum((1, 2)), -detector.score_samples(images[600:620]), rtol=1e-5
    )
    channels_last = detector.anomaly_map(images[600:620, :, :, None])  # [N, H, W, 1]
    assert channels_last.shape == (20, 8, 8, 1)
    np.testing.assert_array_equal(channels_last[..., 0], maps)
    with pytest.raises(ValueError, match="for tables use feature_contributions"):
        AnomalyDetector().fit(digits.data[:100]).anomaly_map(digits.data[:5])


def test_cli_tabular_reads_a_csv_with_a_label_column(tmp_path: Path, capsys) -> None:
    x, y = load_breast_cancer(return_X_y=True)
    names = [f"f{i}" for i in range(x.shape[1])]
    lines = [",".join([*names, "malignant"])]
    lines += [
        ",".join([*(f"{v:.6g}" for v in row), str(1 - t)]) for row, t in zip(x, y, strict=False)
    ]
    (tmp_path / "cancer.csv").write_text("\n".join(lines) + "\n")
    results = []
    for run in range(2):
        argv = ["anomaly", "tabular", "--dataset", str(tmp_path / "cancer.csv")]
        argv += ["--label-column", "malignant", "--quiet", "--json", str(tmp_path / f"{run}.json")]
        assert main(argv) == 0
        capsys.readouterr()
        results.append(json.loads((tmp_path / f"{run}.json").read_text()))
    del results[0]["train_seconds"], results[1]["train_seconds"]
    assert results[0] == results[1]  # seeded by default
    entry = results[0]["scores"]["auto"]
    assert results[0]["model"] == "auto" and results[0]["params"]["random_state"] == 0
    assert entry["auroc"] > 0.9 and results[0]["train_rows"] == 179  # half the benign rows
    assert (
        main(
            [
                "anomaly",
                "tabular",
                "--dataset",
                str(tmp_path / "cancer.csv"),
                "--label-column",
                "nosuch",
            ]
        )
        == 2
    )
    assert "no column 'nosuch'" in capsys.readouterr().err


ODDS = next(
    (
        p / "shared" / "data" / "odds"
        for p in Path(__file__)
        .resolve()
        .parents[2:4]  # ../shared from the repository root, or ../..
        if (p / "shared" / "data" / "odds").is_dir()
    ),
    None,
)


@pytest.mark.skipif(ODDS is None, reason="the ODDS tables (../shared/data/odds) are not here")
@pytest.mark.parametrize("table", ["vowels", "thyroid"])
def test_threshold_holds_on_odds_normal_rows(table: str) -> None:
    """The ODDS protocol's split (60/40, stratified, seed 0), fitted on the normal training rows:
    the flagged share of the test normal rows stays within ×1.5 of contamination."""
    with np.load(ODDS / f"{table}.npz") as npz:
        x, y = npz["X"].astype(np.float64), npz["y"]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.4, stratify=y, random_state=0)
    detector = AnomalyDetector(contamination=0.1).fit(xtr[ytr == 0])
    flagged = (detector.predict(xte[yte == 0]) == -1).mean()
    assert 0.1 / 1.5 <= flagged <= 0.1 * 1.5, flagged


# --- the image default: the combined score --------------------------------------------------


@pytest.fixture(scope="module")
def digit_images() -> dict[str, np.ndarray]:
    """scikit-learn's 8×8 digits as uint8 pixels [N, 8, 8], seeded: 1,000 training images of
    every digit but 1, the other such images as new normal ones, and the ones."""
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    images = np.rint(digits.images[order] * 255 / 16).astype(np.uint8)
    labels = digits.target[order]
    normal = images[labels != 1]
    return {"train": normal[:1000], "new": normal[1000:], "ones": images[labels == 1]}


@pytest.fixture(scope="module")
def image_default(digit_images: dict[str, np.ndarray]) -> AnomalyDetector:
    return AnomalyDetector().fit(digit_images["train"])


def test_image_default_trains_enough_steps_and_finds_the_unseen_digit(
    image_default: AnomalyDetector, digit_images: dict[str, np.ndarray]
) -> None:
    assert image_default.anomaly_score_ == "combined" and image_default._model_name == "dense-ae"
    # 900 training images (100 held out) are 8 batches: 4,000 steps would be 500 epochs, capped
    assert len(image_default.loss_curve_) == auto_epochs(900, 128, tabular=False) == 200
    new, ones = digit_images["new"], digit_images["ones"]
    scores = -image_default.score_samples(np.concatenate([new, ones]))
    assert roc_auc_score(np.r_[np.zeros(len(new)), np.ones(len(ones))], scores) > 0.8


def test_auto_epochs_reach_the_step_count_within_bounds() -> None:
    assert auto_epochs(54_000, 128, tabular=False) == 20  # 422 steps an epoch: 20 is plenty
    assert auto_epochs(4_500, 128, tabular=False) == 112  # ⌈4000 / 36⌉
    assert auto_epochs(100, 128, tabular=False) == 200  # one step an epoch: capped
    assert auto_epochs(100, 128, tabular=True) == 20


def test_combined_score_is_its_parts_in_robust_units(
    image_default: AnomalyDetector, digit_images: dict[str, np.ndarray]
) -> None:
    """anomaly = z(latent) + ½·max(z(recon), 0) + max(z(pixels), 0), every part median 0, IQR 1
    on the held-out training images; the recon part is the log share of each image's energy left
    unexplained."""
    model, combined = image_default.model_, image_default.combined_
    pixels = digit_images["new"][:40]
    new = pixels[:, None].astype(np.float32) / 255.0  # the model's input [N, 1, 8, 8]
    parts = combined.parts(model, torch.from_numpy(new))
    assert set(parts) == {"latent", "recon", "pixels"}
    clipped = {part: np.maximum(parts[part], 0) for part in ("recon", "pixels")}
    expected = parts["latent"] + 0.5 * clipped["recon"] + clipped["pixels"]
    assert (parts["pixels"] > 0).any() and (parts["pixels"] < 0).any()  # the clip is not idle
    np.testing.assert_allclose(-image_default.score_samples(pixels), expected, rtol=1e-12)
    with torch.no_grad():
        rebuilt = model.decode(model.encode(torch.from_numpy(new))).double().numpy()
    x = new.astype(np.float64)
    error, energy = ((x - rebuilt) ** 2).sum((1, 2, 3)), (x**2).sum((1, 2, 3))
    np.testing.assert_allclose(
        relative_error(model, torch.from_numpy(new)),
        np.log(error + 1e-3) - np.log(energy + 1e-3),
        rtol=1e-6,
    )
    held = digit_images["train"][image_default._threshold_rows][:, None].astype(np.float32) / 255
    for part in combined.parts(model, torch.from_numpy(held)).values():
        assert abs(np.median(part)) < 1e-9
        q1, q3 = np.percentile(part, [25, 75])
        assert q3 - q1 == pytest.approx(1.0)


def test_shrunk_mixture_is_the_gaussian_density_of_its_shrunk_covariances(
    image_default: AnomalyDetector, digit_images: dict[str, np.ndarray]
) -> None:
    """Σ_k ← (1 − λ)Σ_k + λ·Σ_j π_j Σ_j, and the log density is computed from those Σ_k."""
    from sklearn.mixture import GaussianMixture

    pixels = torch.from_numpy(digit_images["train"][:, None].astype(np.float32) / 255)
    codes = scoring.codes(image_default.model_, pixels)
    plain = GaussianMixture(5, covariance_type="full", reg_covar=1e-4, random_state=0).fit(codes)
    before = plain.covariances_.copy()
    pooled = np.einsum("k,kij->ij", plain.weights_, before)
    shrunk = shrink_covariances(plain, 0.3)
    np.testing.assert_allclose(shrunk.covariances_, 0.7 * before + 0.3 * pooled, rtol=1e-12)
    # log p(z) = log Σ_k π_k N(z; μ_k, Σ_k), written out with numpy
    z = codes[:7]
    dense = []
    for w, mu, cov in zip(shrunk.weights_, shrunk.means_, shrunk.covariances_, strict=True):
        diff = z - mu
        maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        logdet = np.linalg.slogdet(cov)[1]
        dense.append(np.log(w) - 0.5 * (maha + logdet + len(mu) * np.log(2 * np.pi)))
    expected = np.logaddexp.reduce(np.array(dense), axis=0)
    np.testing.assert_allclose(shrunk.score_samples(z), expected, rtol=1e-9)
    # the default's mixture is the plain one on its training codes, shrunk by SHRINKAGE
    training = np.delete(codes, image_default._threshold_rows, axis=0)
    refit = fit_gmm(training, image_default._components, seed=image_default._seed)
    unshrunk = refit.covariances_.copy()
    fitted = image_default.combined_.density
    np.testing.assert_allclose(
        fitted.covariances_, shrink_covariances(refit, SHRINKAGE).covariances_
    )
    assert 0 < SHRINKAGE < 1 and not np.allclose(fitted.covariances_, unshrunk)


def test_pixel_part_is_a_shrunk_mixture_on_the_training_images_principal_components(
    image_default: AnomalyDetector, digit_images: dict[str, np.ndarray]
) -> None:
    """p(x) = −log q(W(x − μ)): as many principal axes of the training rows (threshold rows held
    out) as the code is wide, a mixture of `latent_components` on the projections, shrunk by
    SHRINKAGE; the benchmark's no-autoencoder ablation is this part alone."""
    from sklearn.decomposition import PCA

    images = digit_images["train"][:, None].astype(np.float32) / 255
    train = np.delete(images, image_default._threshold_rows, axis=0)
    part = image_default.combined_.pixels
    expected = PCA(32, random_state=0).fit(train.reshape(len(train), -1))
    assert part.pca.n_components_ == image_default.model_.config.latent_dim == 32
    np.testing.assert_allclose(part.pca.mean_, expected.mean_, rtol=1e-6)
    points = expected.transform(train.reshape(len(train), -1))
    mixture = shrink_covariances(fit_gmm(points, 50, seed=0), SHRINKAGE)
    np.testing.assert_allclose(part.density.means_, mixture.means_, rtol=1e-4, atol=1e-6)
    new = digit_images["new"][:25, None].astype(np.float32) / 255
    flat = new.reshape(len(new), -1)
    np.testing.assert_allclose(
        part.anomaly(new), -mixture.score_samples(expected.transform(flat)), rtol=1e-4
    )
    # the same fit, from the function the benchmark's ablation calls
    again = fit_pixel_density([train], 32, 50, 0, SHRINKAGE)
    np.testing.assert_array_equal(again.anomaly(new), part.anomaly(new))


def test_combined_score_of_a_blank_image_is_finite(image_default: AnomalyDetector) -> None:
    blank = np.zeros((2, 8, 8), dtype=np.uint8)
    assert np.isfinite(image_default.score_samples(blank)).all()


def test_combined_score_is_for_images(cancer: tuple) -> None:
    with pytest.raises(ValueError, match="'combined' is for images"):
        AnomalyDetector(anomaly_score="combined").fit(cancer[0])


def test_rescore_from_the_image_default_shares_its_model(
    image_default: AnomalyDetector, digit_images: dict[str, np.ndarray]
) -> None:
    latent = rescore(image_default, digit_images["train"], anomaly_score="latent")
    assert latent.model_ is image_default.model_ and latent.anomaly_score_ == "latent"
    assert not hasattr(latent, "combined_") and latent.latent_density_.n_components == 10
    back = rescore(latent, digit_images["train"], anomaly_score="auto")
    new = digit_images["new"][:20]
    np.testing.assert_array_equal(back.score_samples(new), image_default.score_samples(new))


def test_nudged_images_move_one_pixel_each_way() -> None:
    x = load_dataset("mnist", "test", data_dir=MNIST_DIR).images[:3].numpy() / np.float32(255)
    down, up, right, left = nudged(x)
    np.testing.assert_array_equal(down[..., 1:, :], x[..., :-1, :])
    np.testing.assert_array_equal(up[..., :-1, :], x[..., 1:, :])
    np.testing.assert_array_equal(right[..., :, 1:], x[..., :, :-1])
    np.testing.assert_array_equal(left[..., :, :-1], x[..., :, 1:])
    for moved, edge in ((down, down[..., 0, :]), (up, up[..., -1, :])):
        assert not edge.any() and moved.dtype == x.dtype
    assert not right[..., 0].any() and not left[..., -1].any()


def test_moved_images_are_a_window_of_the_zero_padded_images() -> None:
    """moved_images(x, dy, dx)[i, j] = x[i − dy, j − dx], zero where that is out of frame."""
    x = load_dataset("mnist", "test", data_dir=MNIST_DIR).images[:3].numpy() / np.float32(255)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            window = padded[..., 2 - dy : 30 - dy, 2 - dx : 30 - dx]
            np.testing.assert_array_equal(moved_images(x, dy, dx), window)
    assert len(set(VIEWS)) == 9 and {abs(d) for v in VIEWS for d in v} == {0, 1}


def test_image_default_trains_on_moved_images_and_fits_nudged_codes() -> None:
    """On 28×28 images the default trains with shift 1 and fits its mixture to the training
    images' codes and those of their four one-pixel nudges; model_options={'shift': 0} trains
    and fits on the images as given."""
    images = load_dataset("mnist", "test", data_dir=MNIST_DIR).images.numpy()[:600, 0]
    moved = AnomalyDetector(epochs=2).fit(images)
    still = AnomalyDetector(epochs=2, model_options={"shift": 0}).fit(images)
    assert moved._shift == SHIFT == 1 and still._shift == 0
    assert moved.loss_curve_ != still.loss_curve_  # the moves change what the model sees
    train = np.delete(images, moved._threshold_rows, axis=0)[:, None] / np.float32(255)
    codes = [scoring.codes(moved.model_, torch.from_numpy(x)) for x in (train, *nudged(train))]
    expected = shrink_covariances(fit_gmm(np.concatenate(codes), 50, seed=0), NUDGED_SHRINKAGE)
    np.testing.assert_allclose(moved.combined_.density.means_, expected.means_, rtol=1e-6)
    np.testing.assert_allclose(  # shrunk by NUDGED_SHRINKAGE: five codes per image
        moved.combined_.density.covariances_, expected.covariances_, rtol=1e-6, atol=1e-12
    )
    pixels = fit_pixel_density([train, *nudged(train)], 32, 50, 0, NUDGED_SHRINKAGE)
    np.testing.assert_allclose(  # so does the pixel part's
        moved.combined_.pixels.density.means_, pixels.density.means_, rtol=1e-5, atol=1e-6
    )
    plain = fit_gmm(
        scoring.codes(still.model_, torch.from_numpy(train)), 50, seed=0
    )  # the unshifted detector's mixture sees the images as given
    np.testing.assert_allclose(still.combined_.density.means_, plain.means_, rtol=1e-6)
    # a model trained on moves scores each image by its best-aligned one-pixel view, and its
    # threshold comes from the held-out images scored the same way; the other, as given
    assert moved.combined_.aligned and not still.combined_.aligned
    new = load_dataset("mnist", "train", data_dir=MNIST_DIR).images.numpy()[:30]
    x = new / np.float32(255)
    views = [
        combine(moved.combined_.parts(moved.model_, torch.from_numpy(moved_images(x, dy, dx))))
        for dy, dx in VIEWS
    ]
    np.testing.assert_allclose(-moved.score_samples(new[:, 0]), np.min(views, 0), rtol=1e-12)
    assert (np.min(views, 0) < views[0]).any()  # some digit sits better a pixel off
    held = images[moved._threshold_rows]
    np.testing.assert_allclose(moved.offset_, np.percentile(moved.score_samples(held), 5.0))
    as_given = combine(still.combined_.parts(still.model_, torch.from_numpy(x)))
    np.testing.assert_allclose(-still.score_samples(new[:, 0]), as_given, rtol=1e-12)


def test_image_default_moves_only_a_small_set_of_large_enough_images(
    image_default: AnomalyDetector,
) -> None:
    assert image_default._shift == 0  # 8×8: one pixel is an eighth of the image
    assert auto_shift(4_500, (28, 28)) == SHIFT  # the 5,000-image case: moved
    assert auto_shift(48_600, (28, 28)) == 0  # MNIST's full hold-out set: as given
    assert auto_shift(4_500, (8, 8)) == 0


def test_shift_is_refused_on_tables_and_beyond_the_frame(
    cancer: tuple, digit_images: dict[str, np.ndarray]
) -> None:
    with pytest.raises(ValueError, match="'shift' moves images"):
        AnomalyDetector(anomaly_score="latent", model_options={"shift": 1}).fit(cancer[0])
    with pytest.raises(ValueError, match="'shift' 8 would move the 8-pixel-wide images"):
        AnomalyDetector(model_options={"shift": 8}).fit(digit_images["train"])

"""The reference MNIST classifier that judges generated digits: a small CNN trained once (test
accuracy >= 99%) and cached as safetensors under the user cache folder.

It gives two numbers for a generative model: the fraction of a conditional model's `sample(y=k)`
classified as k, and a "Fréchet LeNet distance" (FLD): the Fréchet distance between Gaussians fitted
to the classifier's 128-d penultimate features of generated and of test images. FLD values are
comparable with each other, not with Inception-based FIDs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aezoo.config import TrainConfig
from aezoo.data import Dataset, load_dataset
from aezoo.data.batches import Batches
from aezoo.data.sources import cache_dir
from aezoo.errors import TrainingError, UsageError
from aezoo.io import atomic_write
from aezoo.loop import fit, make_optimizer
from aezoo.models import Generative, Terms
from aezoo.runs import load_weights, save_weights

VERSION = "mnist-cnn-v1"  # bump when the architecture or the recipe changes
MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics
TARGET_ACCURACY = 0.99


class ReferenceClassifier(nn.Module):
    """conv 32 → pool → conv 64 → pool → 128 (the features) → 10 logits, on (B, 1, 28, 28)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),  # (B, 128)
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(128, 10))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, 128) of images in [0, 1]."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise UsageError(
                f"the reference classifier takes (B, 1, 28, 28) images, got {tuple(x.shape)}"
            )
        return self.body((x - MEAN) / STD)

    def loss(self, x: Tensor, y: Tensor, x_in: Tensor | None = None) -> Terms:
        """Cross-entropy of the labels, batch mean: the training loop's loss."""
        return Terms({"ce": F.cross_entropy(self(x), y)}, {"ce": 1.0})

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, 10) logits


def train_classifier(
    train: Dataset,
    test: Dataset,
    *,
    epochs: int = 4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    quiet: bool = True,
) -> tuple[ReferenceClassifier, float]:
    """Adam, lr 2e-3 on a cosine to 0, through the training loop; returns the eval-mode
    classifier and its test accuracy."""
    config = TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, lr_schedule="cosine", seed=seed)
    torch.manual_seed(seed)
    model = ReferenceClassifier().to(device)
    batches = Batches(train, config.batch_size, device=device, seed=seed, shuffle=True)

    def evaluate(net: nn.Module) -> dict[str, Any]:
        return {"test_accuracy": classify_accuracy(net, test, device)}

    def report(epoch: int, record: dict[str, Any]) -> None:
        if not quiet:
            print(f"classifier epoch {epoch}/{epochs}: test accuracy {record['test_accuracy']:.4f}")

    optimizer = make_optimizer(model, config)
    records = fit(
        model, optimizer, batches, evaluate, config, quiet=True, on_epoch=report, lr_floor=0
    )
    return model.eval(), records[-1]["test_accuracy"]


@torch.inference_mode()
def predict(model: ReferenceClassifier, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted labels (N,) of float images (N, 1, 28, 28)."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(x.to(device)).argmax(1).cpu() for x in images.split(batch_size)])


@torch.inference_mode()
def features(model: ReferenceClassifier, images: Tensor, batch_size: int = 1000) -> np.ndarray:
    """Penultimate features (N, 128), float64, of float images (N, 1, 28, 28)."""
    model.eval()
    device = next(model.parameters()).device
    parts = [model.features(x.to(device)).double().cpu() for x in images.split(batch_size)]
    return torch.cat(parts).numpy()


def classify_accuracy(
    model: ReferenceClassifier, data: Dataset, device: str | torch.device = "cpu"
) -> float:
    """Fraction of a labelled data set classified correctly."""
    predicted = predict(model, data.images.float().div(255).to(device))
    return float((predicted == data.labels.cpu()).double().mean())


def reference_classifier(
    device: str | torch.device = "cpu",
    *,
    folder: str | Path | None = None,
    data_dir: str | None = None,
    quiet: bool = True,
) -> ReferenceClassifier:
    """The cached classifier; trained (on MNIST, a minute or two on a GPU, longer on a CPU) and
    cached the first time. A classifier below 99% test accuracy is refused, not cached."""
    folder = Path(folder) if folder is not None else cache_dir()
    weights, info = folder / f"{VERSION}.safetensors", folder / f"{VERSION}.json"
    model = ReferenceClassifier()
    if weights.exists():
        load_weights(model, weights)
        return model.to(device).eval()
    train = load_dataset("mnist", "train", data_dir)
    test = load_dataset("mnist", "test", data_dir)
    model, accuracy = train_classifier(train, test, device=device, quiet=quiet)
    if accuracy < TARGET_ACCURACY:
        raise TrainingError(
            f"the reference classifier reached {accuracy:.4f} test accuracy, below "
            f"{TARGET_ACCURACY}; not cached"
        )
    save_weights(model, weights)
    atomic_write(info, json.dumps({"version": VERSION, "test_accuracy": accuracy}).encode())
    return model


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖m_a − m_b‖² + Tr(C_a + C_b − 2 (C_a C_b)^½) between Gaussians fitted to feature rows."""
    from scipy import linalg

    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eps = 1e-6 * np.eye(len(cov_a))  # dead ReLU features make the covariances singular
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    trace = np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real)
    return float(np.sum((mean_a - mean_b) ** 2) + trace)


@torch.inference_mode()
def generation_metrics(
    model: nn.Module,
    test: Dataset,
    classifier: ReferenceClassifier,
    *,
    n: int = 10_000,
    seed: int = 0,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """fld: Fréchet LeNet distance of n samples to the test images; label_accuracy (conditional
    models): the fraction of samples classified as the label they were generated for."""
    if not isinstance(model, Generative):
        raise UsageError("generation metrics need a generative model (one with `sample`)")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    k = model.num_classes
    labels = torch.arange(n) % k if k else None
    chunks = []
    for index in torch.arange(n).split(batch_size):
        y = None if labels is None else labels[index]
        chunks.append(model.sample(len(index), y, generator).cpu())
    samples = torch.cat(chunks)  # (n, 1, 28, 28)
    test_images = test.images.float().div(255)
    metrics = {
        "fld": frechet_distance(features(classifier, samples), features(classifier, test_images)),
        "fld_samples": n,
    }
    if k:
        metrics["label_accuracy"] = float((predict(classifier, samples) == labels).double().mean())
    return metrics

"""aezoo: the autoencoder family — train, measure, show — on PyTorch."""

__version__ = "0.1.0"

from aezoo.checkpoint import Run, load
from aezoo.config import DataConfig, TrainConfig
from aezoo.data import Dataset, load_dataset
from aezoo.errors import TrainingError, UsageError
from aezoo.evaluate import evaluate
from aezoo.models import MODELS, build
from aezoo.train import train


def __getattr__(name: str) -> object:
    # AnomalyDetector is imported on first use: scikit-learn would add a second to every start.
    if name == "AnomalyDetector":
        from aezoo.anomaly import AnomalyDetector

        return AnomalyDetector
    raise AttributeError(f"module 'aezoo' has no attribute {name!r}")


__all__ = [
    "MODELS",
    "AnomalyDetector",
    "DataConfig",
    "Dataset",
    "Run",
    "TrainConfig",
    "TrainingError",
    "UsageError",
    "__version__",
    "build",
    "evaluate",
    "load",
    "load_dataset",
    "train",
]

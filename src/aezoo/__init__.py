"""aezoo: the autoencoder family — train, measure, show — on PyTorch.

The public names below are functions and classes; every module keeps its own name (no function
here shadows a module), so `import aezoo.runner` gives the module and `aezoo.train` the function.
"""

from aezoo.config import DataConfig, TrainConfig
from aezoo.data import Dataset, load_dataset, load_splits
from aezoo.errors import TrainingError, UsageError
from aezoo.metrics import evaluate
from aezoo.models import MODELS, build
from aezoo.runner import train
from aezoo.runs import Run, load
from aezoo.version import __version__


def __getattr__(name: str) -> object:
    # AnomalyDetector is imported on first use: scikit-learn's estimators would add to every start.
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
    "load_splits",
    "train",
]

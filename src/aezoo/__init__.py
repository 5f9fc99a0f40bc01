"""aezoo: the autoencoder family — train, measure, show — on PyTorch."""

__version__ = "0.1.0"

from aezoo.checkpoint import Run, load  # noqa: E402
from aezoo.config import DataConfig, TrainConfig  # noqa: E402
from aezoo.data import Dataset, load_dataset  # noqa: E402
from aezoo.errors import TrainingError, UsageError  # noqa: E402
from aezoo.evaluate import evaluate  # noqa: E402
from aezoo.models import MODELS, build  # noqa: E402
from aezoo.train import train  # noqa: E402

__all__ = [
    "MODELS",
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

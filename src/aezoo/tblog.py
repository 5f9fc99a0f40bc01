"""TensorBoard logging of a run (the optional `tensorboard` extra, imported only when asked).

Every epoch: each number of the metrics record as a scalar (train/<term>, test/<term>, and lr,
kl_weight, seconds under other/), the same test images over their reconstructions, and, for a
generative model, samples from fixed latents. View with `tensorboard --logdir RUN_DIR/tensorboard`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aezoo.errors import UsageError
from aezoo.models.protocols import Generative

LOG_DIR = "tensorboard"
IMAGES = 8  # test images (and samples) per grid


def summary_writer_class() -> Any:
    """torch's SummaryWriter, or a UsageError saying how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(
            "--tensorboard needs the tensorboard package: pip install 'aezoo[tensorboard]' "
            "(or pip install tensorboard)"
        ) from None
    return SummaryWriter


def image_grid(rows: list[Tensor]) -> Tensor:
    """Rows of n images (n, C, H, W) in [0, 1] → one (C, rows·H, n·W) image."""
    return torch.cat([torch.cat(list(row), dim=-1) for row in rows], dim=-2).clamp(0, 1)


class TensorBoardLog:
    """Writes one run's scalars and image grids to RUN_DIR/tensorboard."""

    def __init__(
        self,
        run_dir: str | Path,
        model: nn.Module,
        test_batches: Any,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.writer = summary_writer_class()(log_dir=str(Path(run_dir) / LOG_DIR))
        self.model = model
        batch = next(iter(test_batches.epoch(0)))
        self.x, self.x_in = batch.x[:IMAGES], batch.x_in[:IMAGES]
        self.denoising = batch.x_in is not batch.x
        self.y = batch.y[:IMAGES] if batch.y is not None else None
        if config is not None:
            self.writer.add_text("config", f"```\n{json.dumps(config, indent=2)}\n```", 0)

    def log(self, epoch: int, record: dict[str, Any]) -> None:
        """Scalars of the epoch's metrics record and the image grids, at step `epoch`."""
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            split, _, term = key.partition("_")
            tag = f"{split}/{term}" if split in ("train", "test") else f"other/{key}"
            self.writer.add_scalar(tag, value, epoch)
        self._images(epoch)
        self.writer.flush()

    @torch.inference_mode()
    def _images(self, epoch: int) -> None:
        model, was_training = self.model, self.model.training
        model.eval()
        recon = model.decode(model.encode(self.x_in, self.y), self.y)
        rows = [self.x, self.x_in, recon] if self.denoising else [self.x, recon]
        self.writer.add_image("reconstructions", image_grid([r.float().cpu() for r in rows]), epoch)
        if isinstance(model, Generative):
            device = next(model.parameters()).device
            generator = torch.Generator(device).manual_seed(0)  # the same latents every epoch
            samples = model.sample(IMAGES, None, generator).float().cpu()
            self.writer.add_image("samples", image_grid([samples]), epoch)
        model.train(was_training)

    def close(self) -> None:
        self.writer.close()

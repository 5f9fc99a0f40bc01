"""A trained run applied to data: its own test data read again (from any folder, checked against
the recorded checksum) or other data read with the run's options; codes out (`encode_run`: μ for a
Gaussian posterior, code indices for a codebook, z otherwise) and back to data (`decode_run`)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aezoo.data import Dataset
from aezoo.errors import UsageError
from aezoo.io import atomic_write
from aezoo.models import DiscreteLatent, GaussianLatent
from aezoo.rundata import new_data, reread
from aezoo.runs import RunSpec, check_part, load

# What a codes file's `kind` says its codes are.
CODE_KINDS = {"indices": "code indices (a codebook)", "mu": "posterior means μ", "z": "latents z"}


def run_test_data(spec: RunSpec, dataset: str | None = None) -> Dataset:
    """The run's test data read again as recorded, or all of `dataset` (a named set: its test
    files) read with the run's layout, scale and label options; it must fit the model."""
    if dataset is None:
        return reread(spec.data, spec.data_info)[1]
    data = new_data(spec.data, dataset, spec.data_info)
    check_part(spec, "given", data)
    return data


@torch.inference_mode()
def encode_data(model: torch.nn.Module, data: Dataset, batch_size: int = 1000) -> dict:
    """{"codes", "kind"} of every row of `data` (and "y", its labels, where it has them)."""
    device = next(model.parameters()).device
    kind = "indices" if isinstance(model, DiscreteLatent) else "z"
    kind = "mu" if isinstance(model, GaussianLatent) else kind
    parts = []
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size].to(device).float().div(255)
        y = _labels(model, data.labels, start, batch_size, device)
        if isinstance(model, DiscreteLatent):
            parts.append(model.encode_indices(x, y))  # (B, *code_shape)
        elif isinstance(model, GaussianLatent):
            parts.append(model.posterior(x, y)[0])  # μ: (B, latent_dim)
        else:
            parts.append(model.encode(x, y))  # z: (B, latent_dim)
    out: dict[str, Any] = {"codes": torch.cat(parts).cpu().numpy(), "kind": np.array(kind)}
    if data.labels is not None:
        out["y"] = data.labels.cpu().numpy()
    return out


@torch.inference_mode()
def decode_codes(
    model: torch.nn.Module, codes: np.ndarray, labels: np.ndarray | None, batch_size: int = 1000
) -> torch.Tensor:
    """Pixel values (N, C, H, W) in [0, 1] of codes that `encode_data` wrote."""
    device = next(model.parameters()).device
    if model.num_classes and labels is None:
        raise UsageError("the model is conditioned on labels: the codes file needs y")
    tensor = torch.from_numpy(np.ascontiguousarray(codes))
    label_tensor = None if labels is None else torch.from_numpy(np.asarray(labels, np.int64))
    parts = []
    for start in range(0, len(tensor), batch_size):
        z = tensor[start : start + batch_size].to(device)
        y = _labels(model, label_tensor, start, batch_size, device)
        if isinstance(model, DiscreteLatent):
            if z.is_floating_point():
                raise UsageError("the model has a codebook: codes must be integer indices")
            parts.append(model.decode_indices(z, y))
        else:
            parts.append(model.decode(z.float(), y))
    return torch.cat(parts).float().cpu()


def _labels(
    model: torch.nn.Module, labels: torch.Tensor | None, start: int, n: int, device: Any
) -> torch.Tensor | None:
    """The batch's labels for a conditional model; None for the others."""
    if not model.num_classes or labels is None:
        return None
    return labels[start : start + n].to(device)


def encode_run(
    run_dir: str | Path, dataset: str | None, out: str | Path, device: str = "cpu"
) -> Path:
    """Write the codes of `dataset` (default: the run's test data) under a run's model to `out`
    (.npz: codes, kind, and y where the data has labels). An existing `out` is refused."""
    out = _new_file(out)
    run = load(run_dir, device=device)
    data = run_test_data(run.spec, dataset)
    arrays = encode_data(run.model, data, run.spec.train.eval_batch_size)
    _write_npz(out, arrays)
    return out


def decode_run(
    run_dir: str | Path, codes: str | Path, out: str | Path, device: str = "cpu"
) -> Path:
    """Turn a codes file back into data with a run's model: `out` (.npz) holds x as uint8 pixel
    levels, [N, H, W] grey, [N, H, W, C] colour or [N, D] vectors, and y where the codes had it."""
    out = _new_file(out)
    run = load(run_dir, device=device)
    arrays = _read_npz(Path(codes))
    if "codes" not in arrays:
        raise UsageError(f"{codes}: no array 'codes' (write it with aezoo encode)")
    pixels = decode_codes(
        run.model, arrays["codes"], arrays.get("y"), run.spec.train.eval_batch_size
    )
    levels = pixels.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()  # (N, C, H, W)
    result = {"x": as_stored(levels, run.spec.data_info)}
    if "y" in arrays:
        result["y"] = arrays["y"]
    _write_npz(out, result)
    return out


def as_stored(levels: np.ndarray, info: dict | None) -> np.ndarray:
    """uint8 (N, C, H, W) as data is usually held: [N, D] vectors, [N, H, W] grey, NHWC colour."""
    if info is not None and info.get("kind") == "vectors":
        return levels.reshape(len(levels), -1)
    if levels.shape[1] == 1:
        return levels[:, 0]
    return np.ascontiguousarray(levels.transpose(0, 2, 3, 1))


def _new_file(out: str | Path) -> Path:
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out} already exists; choose another --out")
    return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write(path, buffer.getvalue())
    except OSError as err:
        raise UsageError(f"cannot write {path} ({err.strerror or err})") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path}: not a codes .npz file ({err})") from None

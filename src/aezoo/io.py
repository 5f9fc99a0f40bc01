"""Bytes to disk and back: atomic writes, JSON, safetensors. Nothing here ever unpickles: a file
that is not safetensors or JSON is refused."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from aezoo.errors import UsageError

TEMPORARY = ".*.tmp"  # the names of atomic_write's temporary files


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`: a
    reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp's 0600, made what open() would give
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _new_file_mode() -> int:
    """The mode a new file gets under the process's umask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def remove_temporaries(folder: Path) -> None:
    """Delete what atomic writes killed mid-way (SIGKILL, power cut) left in `folder`, at any
    depth: temporary files no reader ever takes for the real ones."""
    for tmp in Path(folder).rglob(TEMPORARY):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def load_json(path: Path) -> Any:
    """Read a JSON file, turning every way it can fail into a UsageError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: not a readable JSON file ({err})") from None


def read_file(path: str | os.PathLike) -> bytes:
    """A file's bytes; a missing or unreadable file is one line naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read it ({err.strerror or err})") from None


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; anything else is refused with the file named."""
    data = read_file(path)
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as err:
        raise UsageError(
            f"{path}: not a safetensors file ({err}); aezoo loads nothing else"
        ) from None
    return tensors, metadata


def write_safetensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Tensors (moved to the CPU, made contiguous) as a safetensors file, atomically."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, st_save(cpu, metadata=dict(metadata) if metadata else None))


def check_destination(path: Path, *, folder: bool = False) -> None:
    """Where a command will write (a file, or a `folder`) is checked before the work: not a
    folder where a file is meant (nor the reverse), under a writable folder."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a folder; choose another --out")
    if not folder and path.is_dir():
        raise UsageError(f"{path} is a folder; give the name of a file to write")
    above = next(
        p for p in [path.parent, *path.parent.parents] if p.exists() or p == Path(p.anchor)
    )
    if not above.is_dir() or not os.access(above, os.W_OK):
        raise UsageError(f"cannot write {path}: {above} is not a writable folder")


def new_output_folder(path: Path) -> Path:
    """The rule of every --out folder: absent or empty, so no user file is ever overwritten."""
    path = Path(path)
    check_destination(path, folder=True)
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"{path} already exists and is not empty; choose another --out")
    return path

"""IDX files (the MNIST format): read with header checks, write for fixtures and exports.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension and the values in C order. Files may be gzip-compressed; we tell by the magic bytes, not
by the name, because a decompressed copy often keeps its `.gz` name (and the other way round).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from aezoo.errors import UsageError
from aezoo.io import read_file

GZIP_MAGIC = b"\x1f\x8b"
# The type codes of the IDX specification (big-endian on disk).
DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's contents, gunzipped when they start with the gzip magic bytes."""
    raw = read_file(path)
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise UsageError(
            f"{path}: not a valid gzip file ({err}); the download may be truncated or corrupted"
        ) from None


def parse_idx(data: bytes, source: str | os.PathLike) -> np.ndarray:
    """Decode IDX bytes; `source` names the file in error messages."""
    if len(data) < 4 or data[:2] != b"\0\0":
        raise UsageError(
            f"{source}: not an IDX file (magic bytes {data[:4].hex() or 'missing'}, "
            "expected 0000 followed by a type code and the number of dimensions)"
        )
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        raise UsageError(
            f"{source}: unknown IDX type code 0x{code:02x} "
            f"(expected one of {', '.join(f'0x{c:02x}' for c in DTYPES)})"
        )
    header = 4 + 4 * ndim
    if ndim == 0:
        raise UsageError(f"{source}: IDX header declares no dimensions")
    if len(data) < header:
        raise UsageError(
            f"{source}: IDX header too short for {ndim} dimensions ({len(data)} bytes in all)"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "trailing bytes after the data"
        raise UsageError(
            f"{source}: header says shape {shape} ({expected} bytes of data) but "
            f"the file holds {len(data) - header} ({what})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native order, and a writable copy


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw; a malformed file is a UsageError naming it."""
    return parse_idx(read_bytes(path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` as IDX, gzip-compressed when `path` ends in `.gz`."""
    array = np.asarray(array)
    code = CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise UsageError(
            f"{path}: IDX holds arrays of at least one dimension of "
            f"uint8, int8, int16, int32, float32 or float64, got {array.dtype} "
            f"with shape {array.shape}"
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0: the same array gives the same bytes
    Path(path).write_bytes(data)

"""Image folders read with Pillow: root/<class>/*.png|jpg|... (labels from the sorted folder
names) or a flat folder (no labels); one size and one of grey or colour throughout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aezoo.data.raw import IMAGE_SUFFIXES, Raw, record_of
from aezoo.errors import UsageError


def read_folder(root: Path, max_bytes: int) -> Raw:
    """root/<class>/*.png|jpg|... (labels from the sorted folder names) or root/*.png (no labels),
    read with Pillow. All images share one size and one of grey (L) or colour (RGB)."""
    files, y, classes = folder_files(root)
    x, alpha = _read_images(root, files, max_bytes)
    record = record_of(root, "folder", folder_sha256(root, files))
    record["labels"] = "folder names" if classes else None
    raw = Raw(x, y, root.name, record, layout="nhwc" if x.ndim == 4 else "nhw", classes=classes)
    raw.extra["alpha_dropped"] = alpha
    return raw


def folder_files(root: Path) -> tuple[list[Path], np.ndarray | None, tuple[str, ...]]:
    """(image files in reading order, their labels or None, the class names) of a folder."""
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    flat = _images_in(root)
    if subfolders and flat:
        raise UsageError(
            f"{root}: holds both images ({flat[0].name}) and folders ({subfolders[0].name}); "
            "put every image in a class folder, or all of them in one flat folder"
        )
    classes: tuple[str, ...] = ()
    if subfolders:
        classes = tuple(p.name for p in subfolders)
        files, labels = [], []
        for label, folder in enumerate(subfolders):
            found = _images_in(folder)
            if not found:
                raise UsageError(f"{folder}: a class folder with no images ({_SUFFIX_LIST})")
            files += found
            labels += [label] * len(found)
        y = np.array(labels, dtype=np.int64)
    else:
        files, y = flat, None
        if not files:
            raise UsageError(f"{root}: no images ({_SUFFIX_LIST}) and no class folders")
    return files, y, classes


def folder_sha256(root: Path, files: list[Path]) -> str:
    """sha256 over the files' relative names and bytes, in reading order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


_SUFFIX_LIST = "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


GREY_MODES = {"1": "L", "L": "L", "LA": "LA"}
COLOUR_MODES = {"RGB": "RGB", "RGBA": "RGBA", "P": None, "PA": "RGBA"}


def _read_images(root: Path, files: list[Path], max_bytes: int) -> tuple[np.ndarray, bool]:
    """uint8 [N, H, W] (grey) or [N, H, W, 3] (colour); an opaque alpha channel is dropped."""
    first: tuple[Path, tuple[int, int], str] | None = None
    out = np.empty(0, dtype=np.uint8)
    alpha = False
    for i, path in enumerate(files):
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened)  # as a viewer shows it (camera rotation)
                mode, size = image.mode, image.size
                if mode in GREY_MODES:
                    target, group = GREY_MODES[mode], "grey"
                elif mode in COLOUR_MODES:
                    group = "colour"
                    target = COLOUR_MODES[mode] or (
                        "RGBA" if "transparency" in image.info else "RGB"
                    )
                else:
                    raise UsageError(
                        f"{path}: image mode {mode} is neither grey (L) nor colour (RGB); "
                        "convert it to 8-bit L or RGB"
                    )
                pixels = np.asarray(image.convert(target))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
            raise UsageError(f"{path}: not a readable image ({err})") from None
        if pixels.ndim == 3 and pixels.shape[2] in (2, 4):  # LA or RGBA: keep only if opaque
            if not (pixels[..., -1] == 255).all():
                raise UsageError(
                    f"{path}: has transparent pixels; aezoo reads grey or RGB images: composite "
                    "them on a background (Pillow: Image.alpha_composite) or save without alpha"
                )
            pixels, alpha = pixels[..., 0] if group == "grey" else pixels[..., :3], True
        if first is None:
            first = (path, size, group)
            total = len(files) * pixels.nbytes
            if total > max_bytes:
                raise UsageError(
                    f"{root}: {len(files)} images of {size[0]}×{size[1]} would take "
                    f"{total / 2**30:.1f} GiB, over the limit of {max_bytes / 2**30:.1f} GiB"
                )
            out = np.empty((len(files), *pixels.shape), dtype=np.uint8)
        elif (size, group) != first[1:]:
            a, b = first[0].relative_to(root), path.relative_to(root)
            raise UsageError(
                f"{root}: images differ: {a} is {first[1][0]}×{first[1][1]} {first[2]}, {b} is "
                f"{size[0]}×{size[1]} {group}; resize/convert them to one size and one mode "
                "(e.g. Pillow: image.convert('RGB').resize((W, H)))"
            )
        out[i] = pixels
    return out, alpha

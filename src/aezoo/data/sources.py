"""Named data sets: where their files are looked for, how they are checked, where they come from.

Search order, first hit wins: an explicit data_dir (never falls through), $AEZOO_DATA, the
repository's own data/ folder, the user cache (~/.cache/aezoo or $XDG_CACHE_HOME/aezoo), and only
then a download into the cache.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch

from aezoo.data.idx import parse_idx, read_bytes
from aezoo.errors import UsageError

# (images, labels) file names per split, the same for every MNIST-shaped set.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_NAMES = (*MNIST_FILES["train"], *MNIST_FILES["test"])
# src/aezoo/data/sources.py → the checkout's root; absent when aezoo is installed from a wheel.
REPO_DATA = Path(__file__).resolve().parents[3] / "data"


@dataclass(frozen=True)
class Source:
    """A downloadable data set: its mirrors and the checksums that say a file is the right one."""

    name: str
    mirrors: tuple[str, ...]
    md5: tuple[str, ...]  # the published MD5 of each .gz, in FILE_NAMES order
    sha256: tuple[str, ...] = ()  # the SHA-256 of each decompressed file, where known

    def checksums(self, stem: str) -> tuple[str | None, str | None]:
        """(MD5 of the .gz, SHA-256 of the decompressed file) for file `stem`; None if unknown."""
        i = FILE_NAMES.index(stem)
        return self.md5[i], (self.sha256[i] if self.sha256 else None)


SOURCES = {
    s.name: s
    for s in (
        Source(
            "mnist",
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
            (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
        Source(
            "fashion-mnist",
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        Source(
            "kmnist",
            ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
        ),
    )
}


def get_source(name: str) -> Source:
    """The registered data set called `name`."""
    if name not in SOURCES:
        raise UsageError(
            f"unknown data set {name!r} (known: {', '.join(SOURCES)}, "
            "or a path to a .npz/.npy file)"
        )
    return SOURCES[name]


def cache_dir() -> Path:
    """Where downloads go: $XDG_CACHE_HOME/aezoo, else ~/.cache/aezoo."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aezoo"


def _find(folder: Path, stem: str) -> Path | None:
    """`folder/stem.gz` or `folder/stem`, whichever exists first."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _find_pair(folder: Path, stems: tuple[str, str]) -> tuple[Path, Path] | None:
    images, labels = (_find(folder, stem) for stem in stems)
    return (images, labels) if images and labels else None


def locate(name: str, split: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The (images, labels) files of a named set's split, downloading them as a last resort."""
    source = get_source(name)
    if split not in MNIST_FILES:
        raise UsageError(f"split: expected one of {', '.join(MNIST_FILES)}, got {split!r}")
    stems = MNIST_FILES[split]
    if data_dir is not None:
        for folder in (Path(data_dir) / name, Path(data_dir)):
            if found := _find_pair(folder, stems):
                return found
        raise UsageError(
            f"no {name} files in {data_dir} (looked for {stems[0]}[.gz] and "
            f"{stems[1]}[.gz] there and in {Path(data_dir) / name})"
        )
    env = os.environ.get("AEZOO_DATA")
    roots = [*([Path(env)] if env else []), REPO_DATA, cache_dir()]
    for root in roots:
        if found := _find_pair(root / name, stems):
            return found
    return _download(source, stems, looked=[root / name for root in roots])


def _download(source: Source, stems: tuple[str, str], looked: list[Path]) -> tuple[Path, Path]:
    folder = cache_dir() / source.name
    paths = []
    for stem in stems:
        fname, errors = f"{stem}.gz", []
        for mirror in source.mirrors:
            try:
                path = pooch.retrieve(
                    mirror + fname,
                    known_hash=f"md5:{source.checksums(stem)[0]}",
                    fname=fname,
                    path=folder,
                    progressbar=False,
                )
                break
            except (OSError, ValueError) as err:  # network: OSError; bad hash: ValueError
                errors.append(f"{mirror + fname}: {err}")
        else:
            where = ", ".join(str(p) for p in looked)
            raise UsageError(
                f"no {source.name} files in {where}, and could not download them "
                f"({'; '.join(errors)}); put the files in a folder and pass "
                "--data-dir"
            )
        paths.append(Path(path))
    return paths[0], paths[1]


def _verified(source: Source, path: Path) -> bytes:
    """The decompressed bytes of `path`, after checking them against the published checksums."""
    stem = path.name.removesuffix(".gz")
    data = read_bytes(path)
    md5, sha256 = source.checksums(stem)
    if sha256:
        ok = hashlib.sha256(data).hexdigest() == sha256
    elif path.name.endswith(".gz"):
        ok = hashlib.md5(path.read_bytes()).hexdigest() == md5
    else:
        ok = True  # a decompressed file with no published checksum: the IDX header checks remain
    if not ok:
        raise UsageError(
            f"{path}: checksum mismatch: the file is corrupted or not the "
            f"{source.name} file it is named after"
        )
    return data


def load_arrays(
    name: str, split: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A named set's split as (images uint8 [N, H, W], labels [N]), checksums verified."""
    source = get_source(name)
    image_path, label_path = locate(name, split, data_dir)
    images = parse_idx(_verified(source, image_path), image_path)
    labels = parse_idx(_verified(source, label_path), label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UsageError(
            f"{image_path}: expected uint8 images [N, H, W], got {images.dtype} "
            f"with shape {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise UsageError(f"{label_path}: expected {len(images)} labels, got shape {labels.shape}")
    return images, labels

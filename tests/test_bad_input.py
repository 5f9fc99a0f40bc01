"""Bad input everywhere, as one catalogue: each case is a call that must fail with a UsageError of
one line naming what was expected and what came. It adds to the input checks tested beside their
code (test_data, test_models, test_config, test_cli): the cases here are the ones those lack, run
over the registry where they concern models. docs/reliability.md states how many there are."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import aezoo
from aezoo.data import Dataset, load_dataset, sources
from aezoo.data.batches import Batches
from aezoo.errors import UsageError
from aezoo.models import MODELS, build

MNIST_DIR = sources.REPO_DATA / "mnist"
NAMES = sorted(MODELS)
RUN = {"epochs": 1, "train_subset": 64, "test_subset": 32, "device": "cpu", "quiet": True}


@dataclass(frozen=True)
class Case:
    call: Callable[[Path], object]  # given a fresh temporary folder
    expected: str  # what the message says was expected
    got: str  # and what it says came


def bernoulli(name: str) -> nn.Module:
    """`name` with a Bernoulli likelihood: bce for the AEs and VQ-VAEs, the VAEs' default."""
    options = {"loss": "bce"} if MODELS[name].config.__name__ != "VAEConfig" else {}
    return build(name, **options)


def images(model: nn.Module, fill: float | None = None) -> torch.Tensor:
    """Four random images in [0, 1], the first pixel set to `fill` if given."""
    x = torch.rand((4, *model.config.image_shape), generator=torch.Generator().manual_seed(0))
    if fill is not None:
        x[0, 0, 0, 0] = fill
    return x


def labels(model: nn.Module) -> torch.Tensor | None:
    return torch.arange(4) % model.num_classes if model.num_classes else None


def codes(m: nn.Module, value: float, extra: tuple[int, ...] = (), **kw: object) -> torch.Tensor:
    return torch.full((2, *m.code_shape, *extra), value, **kw)


NAN, INF = float("nan"), float("inf")
# (what, which models, call(model, x, y), expected, got). Formatted with k: the classes or codes,
# last = k − 1, grid: the code grid's shape.
MODEL_CASES: list[tuple[str, str, Callable, str, str]] = [
    ("NaN pixel", "all", lambda m, x, y: m.loss(images(m, NAN), y), "finite", "NaN"),
    (
        "infinite input pixel",
        "all",
        lambda m, x, y: m.loss(x, y, images(m, INF)),
        "finite",
        "infinite input images (1 of 3136 values)",
    ),
    ("pixels 0..255, Bernoulli", "all", lambda m, x, y: m.loss(x * 255, y), "[0, 1]", "got 0.0"),
    ("negative pixels, Bernoulli", "all", lambda m, x, y: m.loss(x - 0.5, y), "[0, 1]", "got -0.4"),
    (
        "label k to loss",
        "conditional",
        lambda m, x, y: m.loss(x, torch.full((4,), m.num_classes)),
        "0..{last}",
        "got {k}..{k}",
    ),
    (
        "label -1 to decode",
        "conditional",
        lambda m, x, y: m.decode(m.encode(x, y), torch.full((4,), -1)),
        "0..{last}",
        "got -1..-1",
    ),
    (
        "sample label k",
        "conditional",
        lambda m, x, y: m.sample(4, m.num_classes),
        "0..",
        "{k}..{k}",
    ),
    ("labels (4, 1)", "conditional", lambda m, x, y: m.loss(x, y[:, None]), "(4,)", "(4, 1)"),
    (
        "code index k",
        "codes",
        lambda m, x, y: m.decode_indices(codes(m, m.config.codebook_size)),
        "0..{last}",
        "got {k}..{k}",
    ),
    ("code index -1", "codes", lambda m, x, y: m.decode_indices(codes(m, -1)), "0..", "-1..-1"),
    (
        "float code indices",
        "codes",
        lambda m, x, y: m.decode_indices(codes(m, 0.0)),
        "integer code indices of shape (B",
        "got (2{grid}",
    ),
    (
        "a code grid of the wrong shape",
        "codes",
        lambda m, x, y: m.decode_indices(codes(m, 0, (2,), dtype=torch.long)),
        "code indices of shape (B{grid})",
        "got (2{grid}, 2)",
    ),
]


def model_cases() -> dict[str, Case]:
    """Every case that applies to each registered model; each call builds its model afresh (a
    passed pixel check is not repeated on a model)."""
    cases = {}
    for name in NAMES:
        model = bernoulli(name)
        kinds = {
            "all",
            "conditional" if model.num_classes else "",
            "codes" if hasattr(model, "decode_indices") else "",
        }
        k = model.num_classes or getattr(model.config, "codebook_size", 0)
        grid = "".join(f", {s}" for s in getattr(model, "code_shape", ()))
        for what, kind, call, expected, got in MODEL_CASES:
            if kind in kinds:
                fields = {"k": k, "last": k - 1, "grid": grid}
                cases[f"{name}: {what}"] = Case(
                    lambda _, name=name, call=call: call(*fresh(name)),
                    expected.format(**fields),
                    got.format(**fields),
                )
    return cases


def fresh(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
    model = bernoulli(name)
    return model, images(model), labels(model)


def npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def mnist_like(n: int, size: int = 28, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), np.arange(n) % classes


def data_cases() -> dict[str, Case]:
    x, y = mnist_like(64)
    small, _ = mnist_like(32, size=20)
    cases = {
        "test images of another size than the training images": Case(
            lambda tmp: aezoo.train(
                "dense-ae",
                out=tmp / "run",
                **RUN,
                dataset=str(npz(tmp / "d.npz", x=x, x_test=small)),
            ),
            "the test part is images of shape (1, 20, 20)",
            "the training part images of shape (1, 28, 28)",
        ),
        "a model config's image shape that is not the data's": Case(
            lambda tmp: aezoo.train(
                "conv-ae", out=tmp / "run", **RUN, data_dir=str(MNIST_DIR), image_shape=(3, 28, 28)
            ),
            "conv-ae expects (3, 28, 28)",
            "are (1, 28, 28)",
        ),
        "training labels beyond --num-classes": Case(
            lambda tmp: aezoo.train("cvae", out=tmp / "run", **RUN, num_classes=5),
            "takes labels 0..4",
            "go up to 9",
        ),
        "test labels beyond the training labels": Case(
            lambda tmp: aezoo.train(
                "cvae",
                out=tmp / "run",
                **RUN,
                dataset=str(npz(tmp / "d.npz", x=x, y=y, x_test=x[:8], y_test=np.full(8, 12))),
            ),
            "takes labels 0..9",
            "test labels of d go up to 12",
        ),
        "a conditional model on data without labels": Case(
            lambda tmp: aezoo.train(
                "cvae", out=tmp / "run", **RUN, dataset=str(npz(tmp / "d.npz", x=x, x_test=x))
            ),
            "conditioned on labels",
            "has none",
        ),
        "an empty data set to batch": Case(
            lambda _: Batches(Dataset(torch.zeros((0, 1, 28, 28), dtype=torch.uint8), None), 8),
            "no images to make batches of",
            "an empty data set",
        ),
        "an empty .npz array": Case(
            lambda tmp: load_dataset(npz(tmp / "d.npz", x=np.zeros((0, 28, 28), np.uint8))),
            "no images",
            "(0, 28, 28)",
        ),
        "float pixels above 1 in a file": Case(
            lambda tmp: load_dataset(npz(tmp / "d.npz", x=np.full((2, 28, 28), 2.0))),
            "[0, 1]",
            "got 2..2",
        ),
        "infinite pixels in a file": Case(
            lambda tmp: load_dataset(npz(tmp / "d.npz", x=np.full((2, 28, 28), np.inf))),
            "images contain NaN or infinite values",
            "d:",
        ),
        "four-channel images": Case(
            lambda tmp: load_dataset(npz(tmp / "d.npz", x=np.zeros((2, 28, 28, 4), np.uint8))),
            "C = 1 or 3",
            "(2, 28, 28, 4)",
        ),
        "labels of another length than the images": Case(
            lambda tmp: load_dataset(npz(tmp / "d.npz", x=x, y=y[:10])),
            "expected 64 labels",
            "(10,)",
        ),
        "float labels": Case(
            lambda tmp: load_dataset(npz(tmp / "d.npz", x=x, y=y + 0.5)),
            "labels must be integers",
            "float64",
        ),
        "negative labels": Case(
            lambda tmp: load_dataset(npz(tmp / "d.npz", x=x, y=y - 1)),
            "non-negative",
            "-1",
        ),
    }
    return cases


CASES = {**model_cases(), **data_cases()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_error(case: str, tmp_path: Path) -> None:
    c = CASES[case]
    with pytest.raises(UsageError) as err:
        c.call(tmp_path)
    message = str(err.value)
    assert "\n" not in message, message
    assert c.expected in message, f"expected part {c.expected!r} missing: {message}"
    assert c.got in message, f"got part {c.got!r} missing: {message}"
    assert not (tmp_path / "run").exists()  # refused before a run folder was made


def test_the_first_batch_is_checked_and_later_ones_cost_nothing() -> None:
    """Pixels are scanned on a model's first loss only (a host sync per step would stall an
    accelerator); a failed check is repeated until one passes."""
    model = bernoulli("dense-vae")
    x = images(model)
    with pytest.raises(UsageError):
        model.loss(x * 255)
    model.loss(x)
    model.loss(x * 255)  # no longer scanned: aezoo's batches come from checked uint8 data


def test_docs_state_the_number_of_cases() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text()
    stated = re.search(r"(\d+) bad-input cases", doc)
    assert stated is not None and int(stated.group(1)) == len(CASES), (
        f"docs/reliability.md should say {len(CASES)} bad-input cases"
    )

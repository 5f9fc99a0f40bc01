"""A model's one-line summary in words computed from its config, so the shapes shown match the
data it was built for ("3072-256-128-32" for 3×32×32 images, "784-…" only for 28×28 greys)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from aezoo.models.blocks import conv_sizes


def _size(h: int, w: int) -> str:
    return str(h) if h == w else f"{h}×{w}"


def shape_words(config: Any) -> dict[str, str]:
    """Fields of `config` plus the words its summary template uses: `inputs` (C·H·W), `trunk`
    (inputs-hidden…), `dense` (trunk-latent), `conv` (28→14→7), `grid` (7×7), `input` (1×28×28
    or 1024-d for vectors)."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    shape = tuple(fields.get("image_shape", (1, 28, 28)))
    inputs = math.prod(shape)
    hidden = [str(n) for n in fields.get("hidden", ())]
    latent = fields.get("latent_dim", fields.get("embedding_dim"))
    sizes = conv_sizes(shape, len(fields.get("channels", ())))
    words = {
        "inputs": str(inputs),
        "trunk": "-".join([str(inputs), *hidden]),
        "dense": "-".join([str(inputs), *hidden, *([str(latent)] if latent else [])]),
        "conv": "→".join(_size(h, w) for h, w in sizes),
        "grid": "×".join(str(n) for n in sizes[-1]),
        "input": f"{shape[-1]}-d" if shape[:2] == (1, 1) else "×".join(map(str, shape)),
    }
    return {**{k: str(v) for k, v in fields.items()}, **words}

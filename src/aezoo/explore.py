"""Latent-space tools for any model with `encode`/`decode`: samplers (the N(0, I) prior and an
ex-post Gaussian mixture on the training latents, Ghosh et al. 2020, so deterministic AEs generate),
interpolation, traversals, the 2-D map and manifold, and t-SNE. `sample_run` and `explore_run`
draw them into a run folder's figures/.

Latents are the point codes μ = encode(x); dimensions are ranked by their KL where the model reports
`test_kl_per_dim`, else by the variance of μ over the test set.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.mixture import GaussianMixture
from torch import Tensor, nn

from aezoo.device import resolve_device
from aezoo.errors import UsageError
from aezoo.models.blocks import sample_labels
from aezoo.models.protocols import DiscreteLatent
from aezoo.prior import write_code_samples
from aezoo.rundata import RESTORE_DATA, own_data
from aezoo.runs import load, make_batches
from aezoo.viz import are_vectors, image_rows, latent_scatter, save_figure

Sampler = Literal["prior", "gmm"]
SAMPLERS = ("prior", "gmm")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def class_labels(model: nn.Module, n: int, y: int | Tensor | None = None) -> Tensor | None:
    """Labels to decode n latents with: None for an unconditional model (see sample_labels)."""
    return sample_labels(n, y, model.num_classes, _device(model))


@torch.inference_mode()
def latents(
    model: nn.Module, batches: Any, max_images: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Point latents μ = encode(x) of the batches' clean images, flattened to (N, D), and labels."""
    model.eval()
    codes, labels, count = [], [], 0
    for batch in batches.epoch(0):
        codes.append(model.encode(batch.x, batch.y).flatten(1).float().cpu())
        if batch.y is not None:
            labels.append(batch.y.cpu())
        count += batch.x.shape[0]
        if max_images is not None and count >= max_images:
            break
    mu = torch.cat(codes)[:max_images].numpy()
    return mu, (torch.cat(labels)[:max_images].numpy() if labels else None)


def fit_gmm(codes: np.ndarray, components: int = 10, seed: int = 0) -> Any:
    """An ex-post density on the latents: a full-covariance Gaussian mixture (scikit-learn)."""
    if len(codes) < components:
        raise UsageError(f"gmm sampler: need at least {components} latents, got {len(codes)}")
    mixture = GaussianMixture(components, covariance_type="full", reg_covar=1e-4, random_state=seed)
    return mixture.fit(codes)


@torch.inference_mode()
def generate(
    model: nn.Module,
    n: int,
    latent_shape: tuple[int, ...],
    sampler: Any = "prior",
    y: int | Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """n images decoded from latents drawn from `sampler`: "prior" (N(0, I)) or a fitted mixture."""
    if n < 1:
        raise UsageError(f"expected a positive number of samples, got {n}")
    model.eval()
    if isinstance(sampler, str):
        if sampler != "prior":
            raise UsageError(f"sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn((n, *latent_shape), generator=generator)  # z ~ N(0, I)
    else:
        drawn, _ = sampler.sample(n)  # grouped by component: shuffle, seeded
        order = np.random.default_rng(seed).permutation(n)
        z = torch.as_tensor(drawn[order], dtype=torch.float32).view(n, *latent_shape)
    return model.decode(z.to(_device(model)), class_labels(model, n, y))


@torch.inference_mode()
def interpolate(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    steps: int = 10,
    y1: int | None = None,
    y2: int | None = None,
) -> Tensor:
    """decode((1 − α) μ₁ + α μ₂) for α from 0 to 1; a conditional model keeps y1 for α < ½ and y2
    from there on. x1, x2: single images (C, H, W)."""
    model.eval()
    device = _device(model)
    ends = torch.stack([x1, x2]).to(device)  # (2, C, H, W)
    labels = class_labels(model, 2, None if y1 is None else torch.tensor([y1, y2]))
    mu = model.encode(ends, labels)  # (2, ...)
    alpha = torch.linspace(0, 1, steps, device=device).view(-1, *[1] * (mu.dim() - 1))
    z = (1 - alpha) * mu[0] + alpha * mu[1]  # (steps, ...)
    path = None if labels is None else torch.where(alpha.flatten() < 0.5, labels[0], labels[1])
    return model.decode(z, path)


@torch.inference_mode()
def traverse(
    model: nn.Module, base: Tensor, dims: Iterable[int], values: Tensor, y: int | None = None
) -> list[Tensor]:
    """One row per dimension d: decode(base with z_d set to each of `values`). base: (D,)."""
    model.eval()
    rows = []
    for d in dims:
        z = base.to(_device(model)).repeat(len(values), 1)  # (V, D)
        z[:, d] = values.to(z.device)
        rows.append(model.decode(z, class_labels(model, len(values), y)))
    return rows


@torch.inference_mode()
def manifold(model: nn.Module, n: int = 15, span: float = 3.0) -> list[Tensor]:
    """The decoded grid over [−span, span]² of a 2-D latent, one row per z₂ (top = largest)."""
    model.eval()
    grid = torch.linspace(-span, span, n, device=_device(model))
    rows = []
    for z2 in grid.flip(0):
        z = torch.stack([grid, z2.expand(n)], dim=1)  # (n, 2)
        rows.append(model.decode(z, class_labels(model, n, 0)))
    return rows


def tsne(codes: np.ndarray, points: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE of a seeded subset of `points` latents; returns (embedding, chosen indices)."""
    chosen = np.sort(np.random.default_rng(seed).permutation(len(codes))[:points])
    perplexity = min(30.0, max(2.0, (len(chosen) - 1) / 3), len(chosen) - 1)  # < n, as TSNE needs
    embedding = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        codes[chosen]
    )
    return embedding, chosen


def first_of_labels(labels: np.ndarray | None, wanted: tuple[int, int]) -> tuple[int, int]:
    """Indices of the first image of each wanted label (default pair: the first 4 and first 9),
    or (0, 1) without labels."""
    if labels is None or not all((labels == w).any() for w in wanted):
        return 0, 1
    return tuple(int(np.argmax(labels == w)) for w in wanted)  # type: ignore[return-value]


def sampler_for(
    name: str, model: nn.Module, train_batches: Any, seed: int = 0, max_images: int = 20_000
) -> Any:
    """ "prior", or a 10-component mixture fitted on (up to `max_images`) training latents."""
    if name not in SAMPLERS:
        raise UsageError(f"sampler: expected one of {', '.join(SAMPLERS)}, got {name!r}")
    if name == "prior":
        return "prior"
    codes, _ = latents(model, train_batches, max_images)
    return fit_gmm(codes, seed=seed)


def latent_shape(model: nn.Module, batches: Any) -> tuple[int, ...]:
    """The shape of one image's latent, e.g. (20,) or (64, 7, 7)."""
    batch = next(iter(batches.epoch(0)))
    y = None if batch.y is None else batch.y[:1]
    with torch.inference_mode():
        return tuple(model.eval().encode(batch.x[:1], y).shape[1:])


def recorded_latent_shape(model: nn.Module, info: dict[str, Any] | None) -> tuple[int, ...] | None:
    """The shape of one latent, from the input shape config.json records (data_info "shape"):
    what sampling from the prior needs, without the data. None for a run that lacks it."""
    if not info or not info.get("shape"):
        return None
    device = _device(model)
    x = torch.zeros((1, *info["shape"]), device=device)
    y = torch.zeros(1, dtype=torch.long, device=device) if model.num_classes else None
    with torch.inference_mode():
        return tuple(model.eval().encode(x, y).shape[1:])


def _open(run_dir: str | Path, device: str, data: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The run and batches of its own data (_batches)."""
    dev = resolve_device(device)
    run = load(run_dir, device=dev)
    return (run, *_batches(run, dev, data))


def _batches(run: Any, device: torch.device, data: dict[str, Any]) -> tuple[Any, Any]:
    """(train, test) batches of the run's own data: read again, or the in-memory arrays it was
    trained on given again as `data` (dataset=, labels=, test=; rundata.own_data checks them)."""
    train, test = own_data(run.spec.data, run.spec.data_info, RESTORE_DATA, **data)
    return make_batches(run.spec, train, test, device)


def _draw_samples(
    run: Any,
    train_batches: Any,
    shape: tuple[int, ...],
    n: int,
    sampler: Sampler,
    label: int | None,
    seed: int,
) -> list[Path]:
    model, out = run.model, Path(run.path) / "figures"
    source = sampler_for(sampler, model, train_batches, seed)
    images = generate(model, n, shape, source, label, seed)
    paths = [out / f"samples-{sampler}.png"]
    title = f"{run.spec.model}: {sampler} samples" + ("" if label is None else f", label {label}")
    save_figure(image_rows(list(images.split(10)), title=title), paths[0])
    k = model.num_classes
    if k and label is None:
        rows = [generate(model, 10, shape, source, c, seed) for c in range(k)]
        paths.append(out / f"samples-by-label-{sampler}.png")
        save_figure(
            image_rows(
                rows,
                [str(c) for c in range(k)],
                title=f"{run.spec.model}: {sampler} samples by label",
            ),
            paths[-1],
        )
    return paths


def sample_run(
    run_dir: str | Path,
    n: int = 100,
    sampler: Sampler = "prior",
    label: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    *,
    modes: tuple[str, ...] | None = None,
    temperature: float = 1.0,
    dataset: Any = None,
    labels: Any = None,
    test: Any = None,
) -> list[Path]:
    """figures/samples-<sampler>.png (n samples, 10 per row) and, for a conditional model without
    `label`, figures/samples-by-label-<sampler>.png (one row per label). A model with discrete
    codes samples code grids instead, in each of `modes` (uniform, used, prior; default: all that
    apply), see aezoo.prior.write_code_samples. `dataset`, `labels`, `test`: a run trained on
    in-memory data needs its arrays again (as aezoo.train took them)."""
    data = {"dataset": dataset, "labels": labels, "test": test}
    dev = resolve_device(device)
    run = load(run_dir, device=dev)
    if isinstance(run.model, DiscreteLatent):  # code grids: no data needed
        return write_code_samples(
            run_dir, modes, n, temperature=temperature, label=label, seed=seed, device=device
        )
    if sampler == "prior":  # z ~ N(0, I) needs only the latents' shape: no data either
        shape = recorded_latent_shape(run.model, run.spec.data_info)
        if shape is not None:
            return _draw_samples(run, None, shape, n, sampler, label, seed)
    train_batches, test_batches = _batches(run, dev, data)
    shape = latent_shape(run.model, test_batches)
    return _draw_samples(run, train_batches, shape, n, sampler, label, seed)


def _interpolation_figure(run: Any, test_batches: Any, i: int, j: int, path: Path) -> Path:
    """Decoded points between the latent codes of test items i and j (10 steps), into `path`."""
    x = test_batches.images[[i, j]].float().div(255)  # (2, C, H, W)
    labels = test_batches.labels
    y = (None, None) if labels is None else (int(labels[i]), int(labels[j]))
    steps = interpolate(run.model, x[0], x[1], 10, *y)
    items = "vectors" if are_vectors([x]) else "images"
    title = f"{run.spec.model}: interpolation, test {items} {i} → {j}"
    save_figure(image_rows([steps], ["α = 0 → 1"], title=title), path)
    return path


def interpolate_run(
    run_dir: str | Path,
    i: int,
    j: int,
    device: str = "cpu",
    *,
    dataset: Any = None,
    labels: Any = None,
    test: Any = None,
) -> list[Path]:
    """figures/interpolation-I-J.png: decoded points on the line between the latent codes of the
    test set's rows (or images) i and j, for any model with encode/decode; in-memory data given
    again as in sample_run."""
    data = {"dataset": dataset, "labels": labels, "test": test}
    run, _, test_batches = _open(run_dir, device, data)
    n = len(test_batches.images)
    for which, k in (("I", i), ("J", j)):
        if not 0 <= k < n:
            raise UsageError(f"interpolate: {which} = {k} is not a test index (0..{n - 1})")
    return [
        _interpolation_figure(
            run, test_batches, i, j, _figures(run_dir) / f"interpolation-{i}-{j}.png"
        )
    ]


def _figures(run_dir: str | Path) -> Path:
    return Path(run_dir) / "figures"


def explore_run(
    run_dir: str | Path,
    sampler: Sampler = "prior",
    tsne_points: int = 5000,
    seed: int = 0,
    device: str = "cpu",
    *,
    dataset: Any = None,
    labels: Any = None,
    test: Any = None,
) -> list[Path]:
    """Every latent-space figure of a run into figures/: samples, interpolation, traversals (flat
    latents), and the 2-D map + manifold (2-D latents) or t-SNE (wider; tsne_points=0 skips it).
    A run trained on in-memory data needs its arrays again: dataset=, labels=, test= as
    aezoo.train took them (checked against the recorded sha256)."""
    data = {"dataset": dataset, "labels": labels, "test": test}
    run, train_batches, test_batches = _open(run_dir, device, data)
    model, name, out = run.model, run.spec.model, Path(run_dir) / "figures"
    shape = latent_shape(model, test_batches)
    paths = _draw_samples(run, train_batches, shape, 100, sampler, None, seed)
    codes, labels = latents(model, test_batches)
    if len(codes) < 2:  # an interpolation needs two test images
        raise UsageError(f"{run_dir}: explore needs at least 2 test images, the run has 1")
    i, j = first_of_labels(labels, (4, 9))
    y = (None, None) if labels is None else (int(labels[i]), int(labels[j]))
    paths.append(_interpolation_figure(run, test_batches, i, j, out / "interpolation.png"))
    if len(shape) == 1:  # traversals and maps need flat latents
        rank = np.asarray(run.summary.get("test_kl_per_dim", codes.var(0)))  # KL, else Var(μ)
        dims = [int(d) for d in np.argsort(-rank, kind="stable")[:10]]
        values = torch.linspace(-3, 3, 11)
        for base_name, base in (
            ("zero", torch.zeros(shape)),
            ("image", torch.from_numpy(codes[i])),
        ):
            rows = traverse(model, base, dims, values, y[0])
            paths.append(out / f"traversal-{base_name}.png")
            save_figure(
                image_rows(
                    rows,
                    [f"z{d} ({rank[d]:.2g})" for d in dims],
                    title=f"{name}: traversal over [−3, 3] from {base_name}",
                ),
                paths[-1],
            )
    if shape == (2,):
        paths.append(out / "latent-2d.png")
        save_figure(latent_scatter(codes, labels, f"{name}: test μ"), paths[-1])
        paths.append(out / "manifold.png")
        save_figure(
            image_rows(manifold(model), title=f"{name}: decoded [−3, 3]²", cell=0.5), paths[-1]
        )
    elif tsne_points > 0:
        embedding, chosen = tsne(codes, tsne_points, seed)
        paths.append(out / "tsne.png")
        picked = None if labels is None else labels[chosen]
        save_figure(
            latent_scatter(
                embedding, picked, f"{name}: t-SNE of test μ ({len(chosen)} points)", "t-SNE"
            ),
            paths[-1],
        )
    return paths

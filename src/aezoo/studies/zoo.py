"""The zoo: train the family on one data set and compare the runs (zoo.json, zoo.md, zoo.html and
one figure of the same test images reconstructed by every model); `list_runs`: a folder's runs.

Every number in a table is read from a run's summary.json and config.json; nothing is typed here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import torch

from aezoo import classifier, tables
from aezoo import runs as ckpt
from aezoo.config import DataConfig, from_dict, split_options
from aezoo.data import Dataset
from aezoo.device import machine_text
from aezoo.errors import UsageError, printable
from aezoo.io import atomic_write, new_output_folder, write_json
from aezoo.models import MODELS, Generative, preset
from aezoo.report import REPORT, data_uri, format_value, page
from aezoo.rundata import unfit_reason
from aezoo.runfiles import read_config, read_summary
from aezoo.runner import train
from aezoo.runs import find_runs, new_run_dir, read_data, read_metrics
from aezoo.viz import image_rows, save_figure

FIGURE = "zoo-reconstructions.png"


@dataclass(frozen=True)
class Column:
    """A table column: its key in a row, its heading, and what it means."""

    key: str
    heading: str
    meaning: str


COLUMNS = (
    Column("model", "model", "registry name (aezoo list)"),
    Column("params", "params", "trainable parameters"),
    Column("epochs", "epochs", "completed epochs"),
    Column("train_seconds", "train s", "seconds in training steps (evaluation excluded)"),
    Column("test_mse", "test MSE", "per pixel, of decode(encode(x)) on the test set"),
    Column("test_bce", "test BCE", "nats per image, of decode(encode(x)) on the test set"),
    Column(
        "neg_elbo_or_nll",
        "−ELBO / NLL",
        "nats per image: the importance-weighted NLL where "
        "the run has one, else the negative ELBO (models with a posterior)",
    ),
    Column(
        "usage",
        "active units / codes used",
        "latent dimensions in use (VAEs) or codebook entries used on the test set (VQ-VAEs)",
    ),
    Column(
        "sample_quality",
        "sample FLD",
        "Fréchet LeNet distance of samples to test images "
        "(generative models, where measured; lower is better)",
    ),
)


def _first(summary: dict[str, Any], *keys: str) -> Any:
    return next((summary[k] for k in keys if summary.get(k) is not None), None)


def _data_name(dataset: Any) -> Any:
    """A run's data set as a table shows it: a named set, "array", or a path's last part (the
    run records the whole resolved path)."""
    return (
        Path(dataset).name if isinstance(dataset, str) and Path(dataset).is_absolute() else dataset
    )


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """One zoo row from a run folder's summary.json and config.json (None where undefined)."""
    run_dir = Path(run_dir)
    config, summary = read_config(run_dir), read_summary(run_dir)
    model_config = config["model_config"]
    row: dict[str, Any] = {
        "model": config.get("model"),
        "dataset": _data_name(config["data"].get("dataset")),
        "params": summary.get("params"),
        "epochs": summary.get("epochs"),
        "train_seconds": summary.get("train_seconds"),
        "test_mse": summary.get("test_mse"),
        "test_bce": summary.get("test_bce"),
        "test_nll": summary.get("test_nll"),
        "test_neg_elbo": summary.get("test_elbo"),  # the summary's test_elbo is −ELBO, in nats
        "active_units": summary.get("test_active_units"),
        "latent_dim": model_config.get("latent_dim") if "test_active_units" in summary else None,
        "codes_used": summary.get("test_codes_used"),
        "codebook_size": model_config.get("codebook_size"),
        "perplexity": summary.get("test_perplexity"),
        "fld": _first(summary, "test_fld", "sample_fld", "fld"),
        "label_accuracy": _first(
            summary, "test_label_accuracy", "sample_label_accuracy", "label_accuracy"
        ),
    }
    if row["codes_used"] is None:
        row["codebook_size"] = None
    return row


def _cell(row: dict[str, Any], key: str) -> str:
    """A row's value for a column, as text ('—' where the model does not define it)."""
    if key == "neg_elbo_or_nll":
        if row.get("test_nll") is not None:
            return f"{row['test_nll']:.2f} (NLL)"
        return "—" if row.get("test_neg_elbo") is None else f"{row['test_neg_elbo']:.2f}"
    if key == "usage":
        if row.get("active_units") is not None:
            return f"{row['active_units']}/{row['latent_dim']} units"
        if row.get("codes_used") is not None:
            return f"{row['codes_used']}/{row['codebook_size']} codes"
        return "—"
    if key == "sample_quality":
        if row.get("fld") is None:
            return "—"
        accuracy = row.get("label_accuracy")
        return f"{row['fld']:.3g}" + ("" if accuracy is None else f" ({accuracy:.1%} labels)")
    value = row.get(key)
    if value is None:
        return "—"
    if key == "test_mse":
        return f"{value:.5f}"
    if key in ("test_bce", "train_seconds"):
        return f"{value:.1f}"
    return format_value(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column] = COLUMNS) -> str:
    """The zoo's table: model names as code, numbers right-aligned, '—' where undefined."""

    def cell(row: dict[str, Any], key: str) -> str:
        return f"`{row['model']}`" if key == "model" else _cell(row, key)

    keys = [c.key for c in columns]
    headings = [c.heading for c in columns]
    right = [c.key != "model" for c in columns]
    return tables.markdown_table(rows, keys, headings=headings, right=right, cell=cell).rstrip()


def text_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, for a terminal."""
    rows = [[printable(str(c)) for c in r] for r in rows]  # a run's files never drive a tty
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [list(header), *rows]
    )


def _html_table(rows: Sequence[dict[str, Any]], link: Callable[[dict[str, Any]], str]) -> str:
    head = "".join(f'<th title="{escape(c.meaning)}">{escape(c.heading)}</th>' for c in COLUMNS)
    body = []
    for row in rows:
        cells = [f'<td><a href="{escape(link(row))}">{escape(str(row["model"]))}</a></td>']
        cells += [f'<td class="num">{escape(_cell(row, c.key))}</td>' for c in COLUMNS[1:]]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>\n" + "\n".join(body) + "</table>"


def pick_digits(labels: torch.Tensor | None, n: int = 10) -> list[int]:
    """Indices of the first test image of each label 0..n−1 (the first n images without labels)."""
    if labels is None:
        return list(range(n))
    picked = [int(torch.nonzero(labels == k)[0]) for k in range(n) if bool((labels == k).any())]
    return picked or list(range(n))


@torch.inference_mode()
def reconstruct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """decode(encode(x)) on the model's device, back on the CPU; the label goes to conditional
    models only."""
    device = next(model.parameters()).device
    y = y.to(device) if y is not None and model.num_classes else None
    return model.decode(model.encode(x.to(device), y), y).float().cpu()


@dataclass(frozen=True)
class ZooResult:
    path: Path
    rows: list[dict[str, Any]]
    table: str


def _check(models: Sequence[str], options: dict[str, Any]) -> dict[str, Any]:
    """Unknown or repeated models and model options are errors before anything runs; returns
    the data options."""
    for name in models:
        preset(name)
    if len(set(models)) != len(models):
        raise UsageError("zoo: a model is named twice in --models")
    _, data_opts, model_opts = split_options(options)
    if model_opts:
        raise UsageError(
            f"zoo: option {sorted(model_opts)[0]!r} is not a training or data "
            "option (every model of the zoo gets the same options)"
        )
    return data_opts


def zoo(
    models: Sequence[str] | None = None,
    *,
    out: str | Path | None = None,
    quiet: bool = False,
    sample_quality: int = 0,
    **options: Any,
) -> ZooResult:
    """Train each of `models` (default: every registered model) with the same training and data
    options into OUT/MODEL/; then write OUT/zoo.json, zoo.md, zoo.html and the FIGURE. With
    `sample_quality` = n > 0, each generative model's n samples are judged by the reference
    classifier (Fréchet LeNet distance; label accuracy for conditional models)."""
    models = list(models) if models else list(MODELS)
    data_opts = _check(models, options)
    path = new_output_folder(new_run_dir("zoo", out))

    test, models, skipped = _applicable(models, sample_quality, data_opts)
    index = pick_digits(test.labels)
    x = test.images[index].float().div(255)  # (10, C, H, W)
    y = test.labels[index] if test.labels is not None else None

    started = time.perf_counter()
    rows, recons = [], []
    judge = None
    for name in models:
        run = train(name, out=path / name, quiet=quiet, **options)
        row = {**run_row(run.path), "run": name}
        if sample_quality > 0 and isinstance(run.model, Generative):
            device = next(run.model.parameters()).device
            judge = judge or classifier.reference_classifier(device, quiet=quiet)
            row.update(classifier.generation_metrics(run.model, test, judge, n=sample_quality))
        rows.append(row)
        recons.append(reconstruct(run.model, x, y))
    seconds = time.perf_counter() - started

    save_figure(
        image_rows(
            [x, *recons],
            ["original", *models],
            title=f"the same test {test.kind}, reconstructed by each model",
        ),
        path / FIGURE,
    )
    table = markdown_table(rows) + "".join(
        f"\n\nSkipped `{name}`: {why}." for name, why in skipped.items()
    )
    meta = {
        "dataset": rows[0]["dataset"],
        "options": options,
        "skipped": skipped,
        "seconds": round(seconds, 1),
        "machine": machine_text(),
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    write_json(path / "zoo.json", {**meta, "rows": rows})
    atomic_write(path / "zoo.md", _markdown_page(meta, table).encode())
    atomic_write(path / "zoo.html", _html_page(path, meta, rows).encode())
    return ZooResult(path, rows, table)


def _applicable(
    models: list[str], sample_quality: int, data_opts: dict[str, Any]
) -> tuple[Dataset, list[str], dict[str, str]]:
    """(the test data, the models that apply to the data, {skipped model: why}), checked before
    anything trains: conditional models need labels, convolutional ones images."""
    train_data, test, _ = read_data(from_dict(DataConfig, data_opts))
    _check_sample_quality(sample_quality, test)
    skipped = {name: why for name in models if (why := unfit_reason(name, train_data))}
    models = [name for name in models if name not in skipped]
    if not models:
        raise UsageError(f"zoo: no model of --models applies: {next(iter(skipped.values()))}")
    return test, models, skipped


def _check_sample_quality(sample_quality: int, test: Dataset) -> None:
    """The reference classifier judges 28×28 greyscale images only: refused before training."""
    if sample_quality > 0 and (test.kind, test.image_shape) != ("images", (1, 28, 28)):
        c, h, w = test.image_shape
        raise UsageError(
            "--sample-quality judges samples with a classifier of 28×28 greyscale digits; "
            f"{test.name} holds {test.kind} of shape {c}×{h}×{w}: drop --sample-quality"
        )


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def _markdown_page(meta: dict[str, Any], table: str) -> str:
    return (
        f"# aezoo zoo on {tables.markdown_text(meta['dataset'])}\n\n"
        f"Options: {tables.markdown_text(_options_text(meta['options']))}. "
        f"Machine: {tables.markdown_text(meta['machine'])}. "
        f"Total {meta['seconds']} s ({meta['created']}).\n\n"
        f"{table}\n\n![reconstructions]({FIGURE})\n\n"
        + "\n".join(f"- **{c.heading}**: {c.meaning}" for c in COLUMNS[1:])
        + "\n"
    )


def _html_page(path: Path, meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    body = [
        f"<h1>aezoo zoo on {escape(str(meta['dataset']))}</h1>",
        f'<p class="sub">Options: {escape(_options_text(meta["options"]))} · '
        f"{escape(meta['machine'])} · {meta['seconds']} s in all · {meta['created']}</p>",
        _html_table(rows, lambda row: f"{row['run']}/{REPORT}"),
        *(
            f"<p>Skipped <b>{escape(n)}</b>: {escape(why)}.</p>"
            for n, why in meta["skipped"].items()
        ),
        "<ul>"
        + "".join(f"<li><b>{escape(c.heading)}</b>: {escape(c.meaning)}</li>" for c in COLUMNS[1:])
        + "</ul>",
        "<h2>Reconstructions</h2>",
        f'<figure><img src="{data_uri((path / FIGURE).read_bytes())}" alt="reconstructions">'
        "<figcaption>One test item of each class (the first ten without labels; top row) and its "
        "reconstruction decode(encode(x)) by every model; the model names link to each run's "
        "report."
        "</figcaption></figure>",
    ]
    return page(f"aezoo zoo · {meta['dataset']}", "\n".join(body))


# ---- the runs of a folder ----------------------------------------------------------------------

RUNS_HEADER = ("run", "model", "dataset", "epochs", "test MSE", "−ELBO / NLL", "started")


def list_runs(folder: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run under `folder`, oldest first: zoo columns plus run, status and date."""
    folder = Path(folder)
    rows = []
    for run_dir in find_runs(folder):
        try:  # one damaged run is skipped, never the whole table
            row, config = run_row(run_dir), read_config(run_dir)
            done = row["epochs"]
            if done is None:  # unfinished: count the completed epochs in metrics.jsonl
                done = len(read_metrics(run_dir))
        except UsageError as err:
            warnings.warn(f"skipping {run_dir}: {err}", stacklevel=2)
            continue
        row.update(
            run=run_dir.relative_to(folder).as_posix() or ".",
            done=done,
            planned=config["train"].get("epochs"),
            finished=(run_dir / ckpt.SUMMARY).exists(),
            started=datetime.fromtimestamp((run_dir / ckpt.CONFIG).stat().st_mtime).strftime(
                "%Y-%m-%d %H:%M"
            ),
        )
        rows.append(row)
    return rows


def runs_table(rows: Sequence[dict[str, Any]]) -> str:
    """`list_runs` rows as an aligned text table."""
    cells = []
    for row in rows:
        epochs = (
            f"{row['done']}" if row["finished"] else f"{row['done']}/{row['planned']} (unfinished)"
        )
        cells.append(
            [
                row["run"],
                row["model"],
                row["dataset"],
                epochs,
                _cell(row, "test_mse"),
                _cell(row, "neg_elbo_or_nll"),
                row["started"],
            ]
        )
    return text_table(RUNS_HEADER, cells)

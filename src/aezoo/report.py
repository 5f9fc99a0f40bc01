"""Run folder → one self-contained report.html: what was trained, how it went, and every figure.

The page holds the summary metrics, the per-epoch metrics, the configuration and each PNG under
figures/ (subfolders too), embedded as base64 data URIs with inline CSS: no scripts, no network, and
a Content-Security-Policy that forbids both, so it opens from disk anywhere. Which panels appear is
decided by which figures exist; FIGURES gives the known ones a title, a caption and a place.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aezoo import runs as ckpt
from aezoo.config import from_dict, load_json
from aezoo.errors import UsageError
from aezoo.figures import FIGURES_DIR, curve_units, drawn_as, figure_info, find_figures
from aezoo.io import atomic_write
from aezoo.models import MODELS
from aezoo.runfiles import check_writable, no_links, read_config, read_summary
from aezoo.runs import read_metrics
from aezoo.viz import training_curves

REPORT = "report.html"
RESULTS = "results.json"  # what an evaluation without training writes (anomaly protocols)

METRIC_HELP: Mapping[str, str] = {
    "test_mse": "mean squared error per pixel of decode(encode(x))",
    "test_bce": "binary cross-entropy of decode(encode(x)), Σ over pixels, nats per image",
    "test_recon": "the reconstruction term of the loss, per image",
    "test_recon_mean": "−log p(x | z = μ), nats per image (decoding the posterior mean)",
    "test_kl": "KL(q(z|x) ‖ p(z)), nats per image",
    "test_kl_per_dim": "KL per latent dimension, nats",
    "test_elbo": "negative ELBO = recon + KL, nats per image (an upper bound on −log p(x))",
    "test_nll": "importance-weighted estimate of −log p(x), nats per image",
    "test_loss": "the weighted total that training minimises",
    "test_active_units": "latent dimensions whose posterior mean varies over the test set",
    "test_codebook": "codebook loss ‖sg[z_e] − e‖²",
    "test_commitment": "commitment loss ‖z_e − sg[e]‖² (before its weight β)",
    "test_codes_used": "codebook entries used at least once on the test set",
    "test_codes_used_pct": "the same, as a percentage of the codebook",
    "test_perplexity": "exp(entropy) of the test set's code usage: the effective codebook size",
    "test_batch_perplexity": "code-usage perplexity within one test batch, averaged",
    "params": "trainable parameters",
    "train_seconds": "wall-clock seconds spent in training steps (evaluation excluded)",
}

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       background: #f4f5f7; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid #d5d9e0; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 0 0 6px; }
.sub { color: #58606b; margin: 0 0 18px; }
.banner { background: #fff4d6; border: 1px solid #e8c96a; padding: 8px 12px; border-radius: 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 8px 14px;
        min-width: 120px; }
.card .k { color: #58606b; font-size: 12px; }
.card .v { font-size: 20px; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; background: #fff; margin: 4px 0 12px; font-size: 14px; }
th, td { border: 1px solid #dde1e7; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef0f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.help { color: #58606b; }
.configs { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; margin: 0 0 18px;
         padding: 12px 14px; }
figure img { display: block; max-width: 100%; height: auto; margin: 6px 0; }
figcaption { color: #3b434e; }
.path { color: #8a929c; font-size: 12px; font-family: ui-monospace, monospace; }
details summary { cursor: pointer; color: #3b434e; margin-bottom: 6px; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_value(value: Any) -> str:
    """A metric or config value as short text: integers with separators, floats to 5 digits,
    long lists summarised."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if len(value) > 8 and all(isinstance(v, (int, float)) for v in value):
            head = ", ".join(format_value(v) for v in value[:6])
            return f"{len(value)} values: {head}, …"
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def _table(
    rows: Iterable[Sequence[Any]], header: Sequence[str] = (), numeric: Sequence[bool] = ()
) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
            cls = ' class="help"' if header and header[i] == "meaning" else cls
            cells.append(f"<td{cls}>{_esc(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_html(title: str, caption: str, png: bytes, where: str) -> str:
    return (
        f'<figure><h3>{_esc(title)}</h3><img src="{data_uri(png)}" alt="{_esc(title)}">'
        f'<figcaption>{_esc(caption)} <span class="path">{_esc(where)}</span></figcaption>'
        "</figure>"
    )


def _curves_png(records: Sequence[Mapping[str, Any]], model_config: Mapping[str, Any]) -> bytes:
    """Training curves drawn from metrics.jsonl, for a run whose figure is not (yet) written."""
    buf = io.BytesIO()
    units = curve_units(model_config)
    training_curves(list(records), units=units).savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _when(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")


def _about(model: str, model_config: Any) -> str:
    """The model's summary with the shapes of the run's own config (empty if it cannot tell)."""
    if model not in MODELS or not isinstance(model_config, Mapping):
        return ""
    try:
        return MODELS[model].describe(from_dict(MODELS[model].config, model_config))
    except UsageError:  # a config.json this version cannot read: no summary rather than a wrong one
        return ""


def _header(
    run_dir: Path,
    config: Mapping[str, Any],
    summary: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
) -> str:
    model, data = str(config.get("model", "?")), config.get("data") or {}
    about = _about(model, config.get("model_config"))
    finished = f" · finished {_when(run_dir / ckpt.SUMMARY)}" if summary else ""
    parts = [
        f"<h1>{_esc(model)} on {_esc(data.get('dataset', '?'))}</h1>",
        f'<p class="sub">{_esc(about)}<br>run folder <code>{_esc(run_dir.resolve())}</code>'
        f" · started {_when(run_dir / ckpt.CONFIG)}{finished}"
        f" · aezoo {_esc(config.get('aezoo', '?'))}</p>",
    ]
    if not summary:
        planned = (config.get("train") or {}).get("epochs", "?")
        parts.append(
            f'<p class="banner">Unfinished run: {len(records)} of {_esc(planned)} epochs '
            f"completed (continue it with <code>aezoo train --resume {_esc(run_dir)}"
            "</code>).</p>"
        )
    cards = [
        ("epochs", summary.get("epochs", len(records))),
        ("parameters", summary.get("params")),
        ("train seconds", summary.get("train_seconds")),
        ("test MSE", summary.get("test_mse")),
        ("test BCE (nats)", summary.get("test_bce")),
    ]
    parts.append(
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="k">{_esc(k)}</div>'
            f'<div class="v">{_esc(format_value(v))}</div></div>'
            for k, v in cards
            if v is not None
        )
        + "</div>"
    )
    return "\n".join(parts)


def _for_vectors(text: str) -> str:
    """A metric's meaning worded for vectors: per vector, over features."""
    return (
        text.replace("per image", "per vector")
        .replace("over pixels", "over features")
        .replace("per pixel", "per feature")
    )


def _summary_section(summary: Mapping[str, Any], model_config: Any = None) -> str:
    vectors = drawn_as(model_config if isinstance(model_config, Mapping) else {}) == "vectors"
    metrics = [
        (
            k,
            format_value(v),
            _for_vectors(METRIC_HELP.get(k, "")) if vectors else METRIC_HELP.get(k, ""),
        )
        for k, v in summary.items()
        if k not in ("model", "dataset", "epochs")
    ]
    if not metrics:
        return ""
    return "<h2>Summary metrics</h2>\n" + _table(
        metrics, ("metric", "value", "meaning"), (False, True)
    )


def _figures_section(
    run_dir: Path, records: Sequence[Mapping[str, Any]], model_config: Any = None
) -> str:
    """Every PNG under figures/, in FIGURES order, captioned for the run's data; training curves
    from the metrics if the run has no figure of them."""
    root, figures = run_dir / FIGURES_DIR, find_figures(run_dir)
    model_config = model_config if isinstance(model_config, Mapping) else {}
    kind = drawn_as(model_config)
    parts = ["<h2>Figures</h2>"]
    if records and not any(p.name == "training_curves.png" for p in figures):
        _, title, caption = figure_info("training_curves.png", kind)
        png = _curves_png(records, model_config)
        parts.append(_figure_html(title, caption, png, f"(drawn from {ckpt.METRICS})"))
    for path in figures:
        relative = path.relative_to(root).as_posix()
        _, title, caption = figure_info(relative, kind)
        parts.append(_figure_html(title, caption, path.read_bytes(), f"{FIGURES_DIR}/{relative}"))
    if len(parts) == 1:
        parts.append("<p>No figures yet.</p>")
    return "\n".join(parts)


def _epochs_section(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return ""
    columns = [c for c in EPOCH_COLUMNS if any(c in r for r in records)]
    rows = [
        [r.get("epoch", i + 1)] + [format_value(r[c]) if c in r else "" for c in columns]
        for i, r in enumerate(records)
    ]
    return (
        f"<h2>Per-epoch metrics</h2>\n<details{' open' if len(rows) <= 12 else ''}>"
        f"<summary>{len(rows)} epochs (every term in {ckpt.METRICS})</summary>\n"
        + _table(rows, ("epoch", *columns), (True,) * (len(columns) + 1))
        + "</details>"
    )


def _config_section(config: Mapping[str, Any]) -> str:
    sections = [
        ("model", config.get("model_config")),
        ("training", config.get("train")),
        ("data", config.get("data")),
    ]
    return (
        '<h2>Configuration</h2>\n<div class="configs">'
        + "".join(
            f"<div><h3>{name}</h3>"
            + _table([(k, format_value(v)) for k, v in (values or {}).items()], ("option", "value"))
            + "</div>"
            for name, values in sections
        )
        + "</div>"
    )


EPOCH_COLUMNS = ("train_loss", "test_loss", "test_mse", "test_bce", "lr", "kl_weight", "seconds")


def _results_section(results: Mapping[str, Any]) -> str:
    """A results.json as tables: its plain values, then one table per nested object (a table of
    rows when the object maps names to objects, as results["scores"] does)."""
    plain = [(k, format_value(v)) for k, v in results.items() if not isinstance(v, Mapping)]
    parts = ["<h2>Results</h2>", _table(plain, ("field", "value"))]
    for key, value in results.items():
        if not isinstance(value, Mapping):
            continue
        parts.append(f"<h3>{_esc(key)}</h3>")
        if value and all(isinstance(v, Mapping) for v in value.values()):
            columns = list(dict.fromkeys(c for v in value.values() for c in v))
            rows = [
                [name, *(format_value(v.get(c, "")) for c in columns)] for name, v in value.items()
            ]
            parts.append(_table(rows, (key, *columns), (False,) + (True,) * len(columns)))
        else:
            parts.append(
                _table([(k, format_value(v)) for k, v in value.items()], ("name", "value"))
            )
    return "\n".join(parts)


def render_report(run_dir: str | Path) -> str:
    """The HTML text of a run folder's report: a training run (config.json) or an evaluation that
    wrote results.json and figures/ (the anomaly protocols)."""
    run_dir = Path(run_dir)
    no_links(run_dir)  # a figure linked from elsewhere is never embedded
    if not (run_dir / ckpt.CONFIG).is_file() and (run_dir / RESULTS).is_file():
        results = load_json(run_dir / RESULTS)
        if isinstance(results, dict):
            name = " · ".join(str(results[k]) for k in ("model", "protocol") if k in results)
            body = [
                f"<h1>{_esc(name or run_dir.name)}</h1>",
                _results_section(results),
                _figures_section(run_dir, []),
            ]
            return page(f"aezoo · {name} · {run_dir.name}", "\n".join(body))
    if not (run_dir / ckpt.CONFIG).is_file():
        raise UsageError(f"{run_dir} is not a run folder (no {ckpt.CONFIG} or {RESULTS})")
    config = read_config(run_dir)
    summary = read_summary(run_dir)
    records = read_metrics(run_dir)
    body = [
        _header(run_dir, config, summary, records),
        _summary_section(summary, config.get("model_config")),
        _figures_section(run_dir, records, config.get("model_config")),
        _epochs_section(records),
        _config_section(config),
    ]
    title = f"aezoo · {config.get('model', '?')} · {run_dir.name}"
    return page(title, "\n".join(part for part in body if part))


def page(title: str, body: str) -> str:
    """A complete HTML document with the report's CSS; scripts and network fetches forbidden."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_esc(title)}</title>\n<style>{CSS}</style></head>\n"
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html (atomically) and return its path."""
    path = Path(run_dir) / REPORT
    text = render_report(run_dir)
    check_writable(run_dir)
    atomic_write(path, text.encode("utf-8"))
    return path

"""Speed options of training (bf16 autocast, torch.compile, threads) and the benchmark harness:
they run, keep the numbers, and `aezoo bench --quick` writes its tables. No timing is asserted."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY

import aezoo
from aezoo.cli import main
from aezoo.config import TrainConfig
from aezoo.errors import UsageError
from aezoo.models import MODELS, build

train_module = importlib.import_module("aezoo.device")  # LossOf, bf16 detection, set-up


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = build(name).train()
    x = torch.rand(4, 1, 28, 28)
    loss = train_module.LossOf(model, "bf16")(x, torch.arange(4), x)
    assert torch.isfinite(loss.total)
    loss.total.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_bf16_needs_native_support(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(train_module, "_native_bf16", lambda device: False)
    with pytest.raises(UsageError, match="precision bf16: cpu has no native bfloat16"):
        aezoo.train("dense-ae", out=tmp_path / "run", quiet=True, precision="bf16", **TINY)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(
    not train_module._native_bf16(torch.device("cpu")), reason="this CPU has no native bf16"
)
def test_bf16_training_lands_near_fp32(tmp_path: Path) -> None:
    options = {**TINY, "epochs": 1}
    fp32 = aezoo.train("dense-ae", out=tmp_path / "fp32", quiet=True, **options)
    bf16 = aezoo.train("dense-ae", out=tmp_path / "bf16", quiet=True, precision="bf16", **options)
    assert bf16.spec.train.precision == "bf16"
    assert bf16.summary["test_loss"] == pytest.approx(fp32.summary["test_loss"], rel=0.05)


def test_compile_trains_the_same_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--compile goes through torch.compile; the aot_eager backend traces the same graphs as the
    default one without its minutes of code generation on a small CPU."""
    compiled, compile = [], torch.compile

    def compile_eagerly(module: torch.nn.Module) -> torch.nn.Module:
        compiled.append(module)
        return compile(module, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    options = {**TINY, "epochs": 1}
    eager = aezoo.train("dense-ae", out=tmp_path / "eager", quiet=True, **options)
    fast = aezoo.train("dense-ae", out=tmp_path / "compiled", quiet=True, compile=True, **options)
    assert len(compiled) == 1 and isinstance(compiled[0], train_module.LossOf)
    assert fast.summary["test_loss"] == pytest.approx(eager.summary["test_loss"], rel=1e-4)


def test_threads_option_sets_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    train_module.set_up_device(torch.device("cpu"), TrainConfig(threads=3))
    assert asked == [3]
    with pytest.raises(UsageError, match="threads"):
        TrainConfig(threads=0)


def test_bench_quick_writes_json_and_markdown(tmp_path: Path) -> None:
    argv = ["bench", "--quick", "--models", "dense-ae", "--train-images", "600", "--quiet"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench-cpu-quick.json").read_text())
    [row] = result["models"]
    assert row["model"] == "dense-ae" and row["train_images"] == 600
    assert row["train_images_per_s"] > 0 and row["eval_images_per_s"] > 0
    assert row["speedup"] == pytest.approx(row["reference_epoch_s"] / row["epoch_s"], rel=0.02)
    assert row["peak_memory_mb"] is None or row["peak_memory_mb"] > 0
    assert row["quality"]["metric"] == "test_mse" and row["quality"]["epochs"] == 1
    points = {(r["images"], r["batch_size"]) for r in result["scaling"]}
    assert points == {(500, 128), (600, 64), (600, 256), (600, 1024)}
    table = (tmp_path / "bench-cpu-quick.md").read_text()
    assert "| dense-ae | 476,720 |" in table and "Scaling" in table
    # A later call on other models keeps dense-ae's rows: a long benchmark runs in parts.
    argv = ["bench", "--quick", "--models", "dense-vqvae", "--train-images", "600", "--quiet"]
    assert main([*argv, "--no-scaling", "--no-quality", "--out", str(tmp_path)]) == 0
    merged = json.loads((tmp_path / "bench-cpu-quick.json").read_text())
    assert [r["model"] for r in merged["models"]] == ["dense-ae", "dense-vqvae"]
    assert merged["models"][0] == row and merged["scaling"] == result["scaling"]
    table = (tmp_path / "bench-cpu-quick.md").read_text()
    assert "| dense-ae | 476,720 |" in table and "| dense-vqvae |" in table


def test_bench_refuses_unknown_models_and_bad_counts(tmp_path: Path) -> None:
    assert main(["bench", "--quick", "--models", "nope", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--quick", "--repeats", "0", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())

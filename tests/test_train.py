"""The trainer end to end on a small MNIST subset: what a run folder holds, reproducibility,
resuming after a crash, denoising, the non-finite guard, and never overwriting a run."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import rel_tol
from safetensors.torch import load_file

import aezoo
from aezoo import runs as ckpt
from aezoo.config import TrainConfig
from aezoo.device import place_model
from aezoo.errors import TrainingError, UsageError
from aezoo.figures import reconstruction_figure
from aezoo.losses import bernoulli_nll
from aezoo.models import AE, count_parameters
from aezoo.runs import RunSpec, load_data, make_batches, make_spec, read_metrics

PIXELS = 28 * 28


class Crash(Exception):
    """Stands in for the process dying (power cut, kill -9) at a chosen point of training."""


def crash_at_checkpoint(monkeypatch: pytest.MonkeyPatch, epoch: int, *, before: bool) -> None:
    """Make the run die when it checkpoints `epoch`: before writing it, or just after."""
    save = ckpt.save_checkpoint

    def dying_save(run_dir: Path, model: Any, optimizer: Any, done: int, state: Any) -> None:
        if done == epoch and before:
            raise Crash(f"died before checkpoint {done}")
        save(run_dir, model, optimizer, done, state)
        if done == epoch:
            raise Crash(f"died after checkpoint {done}")

    monkeypatch.setattr(ckpt, "save_checkpoint", dying_save)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # (width, height) from the IHDR chunk


def assert_same_run(a: Path, b: Path, strip_timing: Callable[[dict], dict]) -> None:
    """Two run folders hold bit-identical weights, checkpoints and (timing aside) metrics."""
    assert (a / ckpt.WEIGHTS).read_bytes() == (b / ckpt.WEIGHTS).read_bytes()
    ta, tb = load_file(a / ckpt.CHECKPOINT), load_file(b / ckpt.CHECKPOINT)
    assert sorted(ta) == sorted(tb)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    ma, mb = read_metrics(a), read_metrics(b)
    assert [strip_timing(r) for r in ma] == [strip_timing(r) for r in mb]
    sa = json.loads((a / ckpt.SUMMARY).read_text())
    sb = json.loads((b / ckpt.SUMMARY).read_text())
    assert strip_timing(sa) == strip_timing(sb)


def test_loss_falls(tiny_run: Any) -> None:
    records = read_metrics(tiny_run.path)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    train_loss = [r["train_loss"] for r in records]
    test_loss = [r["test_loss"] for r in records]
    assert train_loss == sorted(train_loss, reverse=True) and train_loss[-1] < 0.6 * train_loss[0]
    assert test_loss == sorted(test_loss, reverse=True)
    untrained = aezoo.build("dense-ae").eval()
    images = aezoo.load_dataset("mnist", "test", data_dir=tiny_run.options["data_dir"]).images
    x = images[:300].float() / 255
    with torch.no_grad():
        untrained_mse = float((untrained(x) - x).square().mean())
    assert records[-1]["test_mse"] < 0.5 * untrained_mse


def test_run_folder_contents(tiny_run: Any, snapshot: Callable, run_files: set[str]) -> None:
    files = snapshot(tiny_run.path)
    assert set(files) == run_files  # and no temp files left behind
    spec = RunSpec.from_json(json.loads(files["config.json"]))
    assert spec == tiny_run.run.spec
    assert (spec.model, spec.train.epochs, spec.train.batch_size) == ("dense-ae", 3, 64)
    assert (spec.data.train_subset, spec.data.test_subset) == (1000, 300)

    records = read_metrics(tiny_run.path)
    assert len(files["metrics.jsonl"].decode().splitlines()) == len(records) == 3
    for record in records:
        for key in (
            "train_recon",
            "train_loss",
            "test_recon",
            "test_loss",
            "test_mse",
            "test_bce",
            "seconds",
            "eval_seconds",
            "lr",
            "kl_weight",
        ):
            assert isinstance(record[key], float), key
        assert record["seconds"] >= 0.0 and record["test_mse"] > 0.0
        assert record["train_loss"] == record["train_recon"]  # one weighted term, weight 1
        # mse loss: recon is Σ_pixels (x̂ − x)² per image, test_mse the same per pixel
        assert record["test_recon"] == pytest.approx(record["test_mse"] * PIXELS, rel=1e-5)

    summary = json.loads(files["summary.json"])
    assert summary == tiny_run.run.summary
    assert summary["epochs"] == 3 and summary["model"] == "dense-ae"
    assert summary["params"] == count_parameters(tiny_run.run.model) == 476_720
    assert summary["train_seconds"] == pytest.approx(sum(r["seconds"] for r in records), abs=2e-3)
    last = records[-1]
    assert {k: v for k, v in summary.items() if k.startswith("test_")} == {
        k: v for k, v in last.items() if k.startswith("test_")
    }
    assert {"test_mse", "test_bce"} <= set(summary)

    checkpoint = load_file(tiny_run.path / ckpt.CHECKPOINT)
    weights = load_file(tiny_run.path / ckpt.WEIGHTS)
    assert all(torch.equal(checkpoint[f"model.{k}"], v) for k, v in weights.items())
    assert png_size(tiny_run.path / "figures" / "training_curves.png")[0] > 100
    png_size(tiny_run.path / "figures" / "reconstructions.png")


def test_test_metrics_are_what_they_say(tiny_run: Any, device: str) -> None:
    """test_mse is the per-pixel MSE and test_bce the per-image Σ_pixels BCE of the reloaded model's
    reconstructions of the test subset, recomputed here by hand."""
    run = aezoo.load(tiny_run.path, device=device)
    _, test = load_data(run.spec.data)
    assert len(test) == 300
    x = test.images.float().to(device) / 255
    with torch.no_grad():
        logits = run.model.decode_logits(run.model.encode(x))
    mse = float((torch.sigmoid(logits).double() - x.double()).square().mean())
    bce = float(bernoulli_nll(logits.double(), x.double()).mean())
    assert run.summary["test_mse"] == pytest.approx(mse, rel=rel_tol(device))
    assert run.summary["test_bce"] == pytest.approx(bce, rel=rel_tol(device))


def test_load_gives_bit_identical_outputs(tiny_run: Any, device: str) -> None:
    trained = tiny_run.run.model
    loaded = aezoo.load(tiny_run.path, device=device).model
    assert not loaded.training and not trained.training
    x = aezoo.load_dataset("mnist", "test", data_dir=tiny_run.options["data_dir"]).images[:64]
    x = x.float().to(device) / 255
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))
        assert torch.equal(loaded.encode(x), trained.encode(x))
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_same_seed_same_run(tiny_run: Any, tmp_path: Path, strip_timing: Callable) -> None:
    again = aezoo.train("dense-ae", out=tmp_path / "again", quiet=True, **tiny_run.options)
    assert_same_run(tiny_run.path, again.path, strip_timing)
    assert (tmp_path / "again" / ckpt.CONFIG).read_bytes() == (
        tiny_run.path / ckpt.CONFIG
    ).read_bytes()


@pytest.mark.parametrize("before", [False, True], ids=["after-checkpoint-1", "before-checkpoint-2"])
def test_resume_after_a_crash_is_bit_identical(
    before: bool,
    tiny_run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    strip_timing: Callable,
    run_files: set[str],
) -> None:
    run_dir = tmp_path / "crashed"
    crash_at_checkpoint(monkeypatch, 2 if before else 1, before=before)
    with pytest.raises(Crash):
        aezoo.train("dense-ae", out=run_dir, quiet=True, **tiny_run.options)
    monkeypatch.undo()
    assert not (run_dir / ckpt.WEIGHTS).exists() and not (run_dir / ckpt.SUMMARY).exists()
    # Dying before checkpoint 2 leaves epoch 2's metrics line behind; resuming must drop it.
    assert len(read_metrics(run_dir)) == (2 if before else 1)
    # An unfinished run still loads, from its checkpoint (epoch 1's weights).
    assert aezoo.load(run_dir).model.state_dict().keys() == tiny_run.run.model.state_dict().keys()

    resumed = aezoo.train(resume=run_dir, quiet=True)
    assert resumed.path == run_dir
    assert_same_run(tiny_run.path, run_dir, strip_timing)
    assert (
        set(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
        == run_files
    )


def test_resume_of_a_finished_run_changes_nothing(
    tiny_run: Any, tmp_path: Path, strip_timing: Callable, device: str
) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run.path, run_dir)
    run = aezoo.train(resume=run_dir, quiet=True, device=device)
    assert_same_run(tiny_run.path, run_dir, strip_timing)
    assert run.summary == tiny_run.run.summary


@pytest.fixture(scope="module")
def denoising_run(tiny_run: Any, tmp_path_factory: pytest.TempPathFactory) -> aezoo.Run:
    options = {**tiny_run.options, "epochs": 2, "noise": "gaussian:0.3", "dropout": 0.2}
    return aezoo.train(
        "dense-ae", out=tmp_path_factory.mktemp("denoise") / "run", quiet=True, **options
    )


def test_denoising_figure_has_three_rows(
    denoising_run: aezoo.Run, tiny_run: Any, device: str
) -> None:
    noisy_w, noisy_h = png_size(denoising_run.path / "figures" / "reconstructions.png")
    clean_w, clean_h = png_size(tiny_run.path / "figures" / "reconstructions.png")
    assert noisy_w == clean_w and noisy_h > clean_h
    _, test = load_data(tiny_run.run.spec.data)
    _, batches = make_batches(tiny_run.run.spec, test, test, torch.device(device))
    fig = reconstruction_figure(tiny_run.run.model, batches, n=10)
    assert [ax.get_ylabel() for ax in fig.axes[::10]] == ["original", "reconstruction"]
    _, test = load_data(denoising_run.spec.data)
    _, batches = make_batches(denoising_run.spec, test, test, torch.device(device))
    fig = reconstruction_figure(denoising_run.model, batches, n=10)
    assert len(fig.axes) == 30
    assert [ax.get_ylabel() for ax in fig.axes[::10]] == ["original", "corrupted", "reconstruction"]


def test_denoising_metrics_compare_with_clean_images(denoising_run: aezoo.Run, device: str) -> None:
    model = aezoo.load(denoising_run.path, device=device).model
    _, test = load_data(denoising_run.spec.data)
    _, batches = make_batches(denoising_run.spec, test, test, torch.device(device))
    (batch,) = list(batches.epoch(0))  # 300 test images, one evaluation batch
    assert not torch.equal(batch.x, batch.x_in)
    assert torch.equal(batch.x.cpu(), test.images.float() / 255)  # the target: the clean image
    with torch.no_grad():
        pred = model(batch.x_in).double()
    against_clean = float((pred - batch.x.double()).square().mean())
    against_noisy = float((pred - batch.x_in.double()).square().mean())
    assert denoising_run.summary["test_mse"] == pytest.approx(against_clean, rel=rel_tol(device))
    # The noisy input is not what is scored.
    assert denoising_run.summary["test_mse"] != pytest.approx(against_noisy, rel=1e-2)
    # The test set's noise is fixed: evaluating again gives the very same numbers.
    assert aezoo.evaluate(model, batches, seed=0) == aezoo.evaluate(model, batches, seed=0)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(
    tiny_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strip_timing: Callable
) -> None:
    run_dir = tmp_path / "nan"
    saved: list[bytes] = []
    save, loss = ckpt.save_checkpoint, AE.loss

    def recording_save(run_dir: Path, *args: Any) -> None:
        save(run_dir, *args)
        saved.append((run_dir / ckpt.CHECKPOINT).read_bytes())

    def poisoned_loss(self: AE, *args: Any) -> Any:
        terms = loss(self, *args)
        if saved and self.training:  # from the first step after checkpoint 1
            terms["recon"] = terms["recon"] * float("nan")
        return terms

    monkeypatch.setattr(ckpt, "save_checkpoint", recording_save)
    monkeypatch.setattr(AE, "loss", poisoned_loss)
    with pytest.raises(TrainingError, match=r"non-finite at step 17 \(epoch 2; terms: recon"):
        aezoo.train("dense-ae", out=run_dir, quiet=True, **tiny_run.options)
    monkeypatch.undo()
    assert len(saved) == 1
    assert (run_dir / ckpt.CHECKPOINT).read_bytes() == saved[0]
    assert not (run_dir / ckpt.WEIGHTS).exists() and not (run_dir / ckpt.SUMMARY).exists()
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1]
    checkpoint = load_file(run_dir / ckpt.CHECKPOINT)
    assert all(torch.isfinite(t).all() for t in checkpoint.values())
    # The kept checkpoint is a good one: resuming from it gives the uninterrupted run.
    aezoo.train(resume=run_dir, quiet=True)
    assert_same_run(tiny_run.path, run_dir, strip_timing)


def test_existing_run_is_never_overwritten(
    tiny_run: Any, tmp_path: Path, snapshot: Callable
) -> None:
    before = snapshot(tiny_run.path)
    with pytest.raises(UsageError, match=r"already exists and is not empty.*--resume"):
        aezoo.train("dense-ae", out=tiny_run.path, quiet=True, **tiny_run.options)
    assert snapshot(tiny_run.path) == before

    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists and is not empty"):
        aezoo.train("dense-ae", out=other, quiet=True, **tiny_run.options)
    assert snapshot(other) == {"notes.txt": b"mine"}

    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    for out in (a_file, a_file / "run"):
        with pytest.raises(UsageError, match="a-file"):
            aezoo.train("dense-ae", out=out, quiet=True, **tiny_run.options)
    assert a_file.read_text() == "mine"


def test_train_refuses_bad_options_before_writing(tiny_run: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    bad = [
        ({"epochs": 0}, "epochs: must be > 0"),
        ({"codebook_sise": 8}, "'codebook_sise'"),
        ({"noise": "blur:1"}, "noise 'blur:1'"),
        ({"dataset": "cifar"}, "unknown data set"),
        ({"latent_dim": -1}, "latent_dim: must be > 0"),
    ]
    for change, message in bad:
        with pytest.raises(UsageError, match=message):
            aezoo.train("dense-ae", out=out, quiet=True, **{**tiny_run.options, **change})
        assert not out.exists()
    with pytest.raises(UsageError, match="name a model"):
        aezoo.train(out=out)
    assert not out.exists()


def test_detect_anomaly_stops_at_the_first_nan_gradient(tmp_path, monkeypatch):
    """--detect-anomaly turns autograd's NaN check on and ends in one TrainingError line."""
    from aezoo.models.ae import AE
    from aezoo.models.terms import Terms

    original = AE.loss

    def nan_loss(self, x, y=None, x_in=None):
        terms = original(self, x, y, x_in)
        return Terms({"recon": terms["recon"] * torch.tensor(float("nan"))}, terms.weights)

    monkeypatch.setattr(AE, "loss", nan_loss)
    with pytest.warns(UserWarning), pytest.raises(TrainingError, match="anomaly detection"):
        aezoo.train(
            "dense-ae",
            out=tmp_path / "run",
            epochs=1,
            train_subset=200,
            test_subset=100,
            detect_anomaly=True,
            quiet=True,
            device="cpu",
        )
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("name", ["dense-ae", "conv-vqvae"])
def test_evaluation_reuses_the_loss_pass_and_gives_the_same_numbers(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic models hand their reconstruction (and a VQ-VAE its codes) to `evaluate`
    through Terms.outputs; the metrics equal those of separate encode/decode passes."""
    torch.manual_seed(0)
    model = aezoo.build(name, codebook_size=16) if "vq" in name else aezoo.build(name)
    test = aezoo.load_dataset("mnist", "test").subset(200)
    spec = make_spec(name, {}, test)
    _, batches = make_batches(spec, test, test, torch.device("cpu"))
    model.eval()
    batch = next(iter(batches.epoch(0)))
    outputs = model.loss(batch.x, batch.y, batch.x_in).outputs
    assert torch.equal(outputs["logits"], model.decode_logits(model.encode(batch.x_in)))
    if "vq" in name:
        assert torch.equal(outputs["codes"], model.encode_indices(batch.x_in))
    assert model.train().loss(batch.x).outputs == {}  # training keeps nothing extra
    reused = aezoo.evaluate(model, batches, seed=0)
    loss = type(model).loss

    def without_outputs(self: Any, *args: Any) -> Any:
        terms = loss(self, *args)
        terms.outputs.clear()
        return terms

    monkeypatch.setattr(type(model), "loss", without_outputs)
    recomputed = aezoo.evaluate(model, batches, seed=0)
    assert reused.keys() == recomputed.keys()
    for key, value in recomputed.items():
        assert reused[key] == pytest.approx(value, rel=1e-6), key


def test_memory_format_auto_is_channels_last_for_conv_models_on_cpu() -> None:
    cpu = torch.device("cpu")
    conv = place_model(aezoo.build("conv-ae"), cpu, TrainConfig())
    convs = [m for m in conv.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    weight = convs[0].weight  # (with one input channel both layouts are the same)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    plain = place_model(aezoo.build("conv-ae"), cpu, TrainConfig(memory_format="contiguous"))
    assert all(p.is_contiguous() for p in plain.parameters())
    dense = place_model(aezoo.build("dense-ae"), cpu, TrainConfig())  # no convolutions
    assert all(p.is_contiguous() for p in dense.parameters())


def test_a_channels_last_run_resumes_exactly_and_loads_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strip_timing: Callable
) -> None:
    """Weights and optimizer state are saved contiguous; a resumed channels-last run ends where
    the uninterrupted one does; `load` gives the trained layout back, the file suits a plain
    model too."""
    options = {
        "epochs": 2,
        "batch_size": 64,
        "train_subset": 256,
        "test_subset": 64,
        "device": "cpu",
        "channels": (8, 16),
    }
    whole = aezoo.train("conv-ae", out=tmp_path / "whole", quiet=True, **options)
    crash_at_checkpoint(monkeypatch, 2, before=True)
    with pytest.raises(Crash):
        aezoo.train("conv-ae", out=tmp_path / "cut", quiet=True, **options)
    monkeypatch.undo()
    aezoo.train(resume=tmp_path / "cut", quiet=True)
    assert_same_run(whole.path, tmp_path / "cut", strip_timing)
    # Loaded in the layout it trained in: it computes exactly what the trained model does.
    loaded = aezoo.load(whole.path).model
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), whole.model.eval()(x))
    # The file holds plain tensors: a contiguous model takes them as they are.
    plain = aezoo.build("conv-ae", channels=(8, 16))
    ckpt.load_weights(plain, whole.path / ckpt.WEIGHTS)
    assert all(p.is_contiguous() for p in plain.parameters())
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, whole.model.state_dict()[name]), name

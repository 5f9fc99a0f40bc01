"""Saving and loading: atomic writes, bit-identical weights, exact optimizer state, and refusal of
anything that is not safetensors (a pickle in disguise never runs)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import aezoo
from aezoo import runs as ckpt
from aezoo.config import DataConfig, TrainConfig
from aezoo.errors import UsageError
from aezoo.loop import make_optimizer
from aezoo.models import MODELS, build, preset
from aezoo.runs import RunSpec

NAMES = sorted(MODELS)


def trained(name: str, seed: int = 0, steps: int = 2) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model and its AdamW after a few steps on random images (so every state slot is set)."""
    torch.manual_seed(seed)
    model = build(name).train()
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.01))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.rand((8, *model.config.image_shape), generator=generator)
        y = torch.arange(8) % model.num_classes if model.num_classes else None
        optimizer.zero_grad()
        model.loss(x, y).total.backward()
        optimizer.step()
    return model, optimizer


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def write_run_config(run_dir: Path, model: str = "dense-ae") -> None:
    spec = RunSpec(model, preset(model).make_config(), TrainConfig(), DataConfig())
    ckpt.write_json(run_dir / ckpt.CONFIG, spec.to_json())


# --- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "file.bin"
    ckpt.atomic_write(path, b"first")
    assert path.read_bytes() == b"first"
    ckpt.atomic_write(path, b"second, longer")
    assert path.read_bytes() == b"second, longer"
    assert os.listdir(path.parent) == ["file.bin"]


def test_atomic_write_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        ckpt.atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.bin"]

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.bin"]


def test_write_json_round_trip(tmp_path: Path) -> None:
    obj = {"a": 1, "b": [1.5, None, "x"], "c": {"d": True}}
    ckpt.write_json(tmp_path / "x.json", obj)
    assert aezoo.config.load_json(tmp_path / "x.json") == obj


# --- weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip_bit_identical(name: str, tmp_path: Path) -> None:
    model, _ = trained(name, seed=0)
    path = tmp_path / "model.safetensors"
    ckpt.save_weights(model, path)
    other = build(name)  # different initial weights, same architecture
    ckpt.load_weights(other, path)
    assert_same_state(model, other)
    model.eval()
    other.eval()
    x = torch.rand((4, *model.config.image_shape))
    y = torch.arange(4) % model.num_classes if model.num_classes else None
    with torch.no_grad():
        assert torch.equal(model(x, y), other(x, y))


@pytest.fixture
def dense_state() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in build("dense-ae").state_dict().items()}


@pytest.mark.parametrize("change", ["missing", "shape", "extra"])
def test_mismatched_weights_name_the_tensor(
    change: str, tmp_path: Path, dense_state: dict[str, torch.Tensor]
) -> None:
    name = "decoder.0.2.weight"
    assert name in dense_state
    if change == "missing":
        del dense_state[name]
        expected = rf"'{name}' is missing"
    elif change == "shape":
        dense_state[name] = torch.zeros(3, 3)
        expected = rf"'{name}' has shape \(3, 3\), the model expects \(256, 128\)"
    else:
        dense_state["encoder.9.weight"] = torch.zeros(2)
        expected = r"unexpected tensor 'encoder\.9\.weight'"
    path = tmp_path / "model.safetensors"
    save_file(dense_state, path)
    model = build("dense-ae")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UsageError, match=expected) as err:
        ckpt.load_weights(model, path)
    assert str(path) in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    ckpt.save_weights(build("conv-ae"), tmp_path / "model.safetensors")
    with pytest.raises(UsageError, match=r"tensor '.*' is missing"):
        ckpt.load_weights(build("dense-ae"), tmp_path / "model.safetensors")


# --- things that are not safetensors -----------------------------------------------------------


class Payload:
    """Unpickling this writes the marker file: the code execution a weights loader must not do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "pwned"))


def hostile_files(marker: Path) -> dict[str, bytes]:
    """Files one might be handed under a .safetensors name; two run code when unpickled."""
    raw = pickle.dumps({"encoder.1.0.weight": Payload(marker)})
    tmp = marker.parent / "torch.pt"
    torch.save({"state_dict": Payload(marker)}, tmp)
    torch_zip = tmp.read_bytes()
    tmp.unlink()
    return {
        "pickle": raw,
        "torch-save": torch_zip,
        "empty": b"",
        "short": b"\x01\x02",
        "json": b'{"encoder.1.0.weight": [1, 2]}',
        "huge-header": (2**40).to_bytes(8, "little") + b"{}",
        "bad-header": (7).to_bytes(8, "little") + b"{nope!}",
    }


def test_hostile_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    """Guards the tests below against passing vacuously: the payload does work when unpickled."""
    marker = tmp_path / "marker"
    pickle.loads(hostile_files(marker)["pickle"])
    assert marker.read_text() == "pwned"
    marker.unlink()
    (tmp_path / "t.pt").write_bytes(hostile_files(marker)["torch-save"])
    torch.load(tmp_path / "t.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "kind", ["pickle", "torch-save", "empty", "short", "json", "huge-header", "bad-header"]
)
@pytest.mark.parametrize("where", ["weights", "checkpoint", "load_weights", "load_checkpoint"])
def test_non_safetensors_files_are_refused(kind: str, where: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = hostile_files(marker)[kind]
    run_dir = tmp_path / "run"
    write_run_config(run_dir)
    target = run_dir / (ckpt.WEIGHTS if where in ("weights", "load_weights") else ckpt.CHECKPOINT)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    model = build("dense-ae")
    with pytest.raises(UsageError, match="not a safetensors file") as err:
        if where in ("weights", "checkpoint"):
            aezoo.load(run_dir)  # falls back to the checkpoint when model.safetensors is absent
        elif where == "load_weights":
            ckpt.load_weights(model, target)
        else:
            ckpt.load_checkpoint(run_dir, model, make_optimizer(model, TrainConfig()))
    assert str(target) in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    assert target.read_bytes() == data


def test_resume_refuses_a_pickled_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    run_dir = tmp_path / "run"
    write_run_config(run_dir)
    (run_dir / ckpt.CHECKPOINT).parent.mkdir()
    (run_dir / ckpt.CHECKPOINT).write_bytes(hostile_files(marker)["torch-save"])
    with pytest.raises(UsageError, match="not a safetensors file"):
        aezoo.train(resume=run_dir, quiet=True)
    assert not marker.exists()


def test_a_weights_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    model = build("dense-ae")
    ckpt.save_weights(model, tmp_path / ckpt.CHECKPOINT)  # safetensors, but no checkpoint metadata
    with pytest.raises(UsageError, match="not an aezoo checkpoint"):
        ckpt.load_checkpoint(tmp_path, model, make_optimizer(model, TrainConfig()))


# --- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_restores_optimizer_exactly(name: str, tmp_path: Path) -> None:
    model, optimizer = trained(name, seed=0, steps=3)
    ckpt.save_checkpoint(tmp_path, model, optimizer, 2, {"seed": 7, "note": "x"})
    assert os.listdir(tmp_path / "checkpoint") == ["last.safetensors"]

    restored, restored_opt = trained(name, seed=1, steps=1)  # different weights and moments
    epoch, state = ckpt.load_checkpoint(tmp_path, restored, restored_opt)
    assert (epoch, state) == (2, {"seed": 7, "note": "x"})
    assert_same_state(model, restored)
    saved, loaded = optimizer.state_dict(), restored_opt.state_dict()
    assert loaded["param_groups"] == saved["param_groups"]
    assert sorted(loaded["state"]) == sorted(saved["state"])
    for idx, slots in saved["state"].items():
        assert sorted(loaded["state"][idx]) == sorted(slots)
        for slot, value in slots.items():
            other = loaded["state"][idx][slot]
            assert other.dtype == value.dtype and other.device == value.device, (idx, slot)
            assert torch.equal(other, value), (idx, slot)

    # And the next step is the same step: continuing from the checkpoint changes nothing.
    x = torch.rand((8, *model.config.image_shape), generator=torch.Generator().manual_seed(9))
    y = torch.arange(8) % model.num_classes if model.num_classes else None
    for net, opt in ((model, optimizer), (restored, restored_opt)):
        torch.manual_seed(5)
        opt.zero_grad()
        net.loss(x, y).total.backward()
        opt.step()
    assert_same_state(model, restored)


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    model, optimizer = trained("dense-ae")
    ckpt.save_checkpoint(tmp_path, model, optimizer, 1, {})
    other = build("dense-ae", latent_dim=8)
    with pytest.raises(UsageError, match=r"tensor 'encoder\.1\.4\.weight' has shape"):
        ckpt.load_checkpoint(tmp_path, other, make_optimizer(other, TrainConfig()))


def test_load_checkpoint_without_one(tmp_path: Path) -> None:
    model = build("dense-ae")
    with pytest.raises(UsageError, match="no checkpoint to resume from"):
        ckpt.load_checkpoint(tmp_path, model, make_optimizer(model, TrainConfig()))


# --- run folders -------------------------------------------------------------------------------


def test_load_prefers_final_weights_then_checkpoint(tmp_path: Path) -> None:
    write_run_config(tmp_path)
    final, _ = trained("dense-ae", seed=0)
    last, optimizer = trained("dense-ae", seed=1)
    ckpt.save_checkpoint(tmp_path, last, optimizer, 1, {})
    assert_same_state(aezoo.load(tmp_path).model, last)  # an unfinished run: its checkpoint
    ckpt.save_weights(final, tmp_path / ckpt.WEIGHTS)
    run = aezoo.load(tmp_path)
    assert_same_state(run.model, final)
    assert not run.model.training and run.summary == {}
    assert run.spec.model == "dense-ae"


def test_load_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a run folder"):
        aezoo.load(tmp_path)
    write_run_config(tmp_path)
    with pytest.raises(UsageError, match="no weights"):
        aezoo.load(tmp_path)
    (tmp_path / ckpt.CONFIG).write_text('{"model": "nope-ae"}')
    with pytest.raises(UsageError, match="unknown model 'nope-ae'"):
        aezoo.load(tmp_path)
    (tmp_path / ckpt.CONFIG).write_text('{"model": "dense-ae", "train": {"epochz": 1}}')
    with pytest.raises(UsageError, match="train: unknown field 'epochz'"):
        aezoo.load(tmp_path)
    (tmp_path / ckpt.CONFIG).write_text('{"model": "dense-ae", "extra": 1}')
    with pytest.raises(UsageError, match="unknown field 'extra'"):
        aezoo.load(tmp_path)
    (tmp_path / ckpt.CONFIG).write_text('{"model": "dense-ae"')
    with pytest.raises(UsageError, match="not a readable JSON file"):
        aezoo.load(tmp_path)


def test_run_spec_json_round_trip() -> None:
    for name in NAMES:
        spec = RunSpec(
            name,
            preset(name).make_config(),
            TrainConfig(epochs=3, seed=4),
            DataConfig(train_subset=100, noise="mask:0.25"),
        )
        assert RunSpec.from_json(spec.to_json()) == spec
        assert spec.to_json()["aezoo"] == aezoo.__version__

"""Configs: validation naming the field, JSON round trips, KL schedules, the flat-options API."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest

from aezoo.config import DataConfig, TrainConfig, from_dict, load_json, to_dict
from aezoo.errors import UsageError
from aezoo.models import MODELS, preset

CONFIG_CLASSES = [TrainConfig, DataConfig]


def make(kind: str, **fields: object) -> object:
    """TrainConfig, DataConfig or a registered model's config (by name) with `fields`."""
    if kind == "train":
        return TrainConfig(**fields)
    if kind == "data":
        return DataConfig(**fields)
    return preset(kind).make_config(**fields)


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_unknown_field_is_named(cls: type) -> None:
    with pytest.raises(UsageError, match="'epochz'"):
        from_dict(cls, {"epochz": 3})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unknown_model_option_is_named(name: str) -> None:
    with pytest.raises(UsageError, match="'latent_dimm'"):
        preset(name).make_config(latent_dimm=3)
    with pytest.raises(UsageError, match="'latent_dimm'"):
        from_dict(MODELS[name].config, {"latent_dimm": 3})


def test_unknown_field_names_where_it_was() -> None:
    with pytest.raises(UsageError, match=r"^train: unknown field 'epochz'"):
        from_dict(TrainConfig, {"epochz": 3}, where="train")


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("train", "epochs", "3"),
        ("train", "epochs", 2.5),
        ("train", "epochs", True),
        ("train", "lr", "fast"),
        ("train", "lr", float("nan")),
        ("train", "lr", float("inf")),
        ("train", "lr_schedule", "linear"),
        ("train", "clip_grad", "1"),
        ("train", "device", 0),
        ("data", "train_subset", 1.5),
        ("data", "binarize", True),
        ("data", "noise", 0.3),
        ("data", "dataset", None),
        ("dense-ae", "latent_dim", "32"),
        ("dense-ae", "hidden", 256),
        ("dense-ae", "hidden", (256, "128")),
        ("dense-ae", "batchnorm", 1),
        ("dense-ae", "loss", "l1"),
        ("conv-ae", "arch", "resnet"),
    ],
)
def test_wrong_type_names_field(kind: str, field: str, value: object) -> None:
    with pytest.raises(UsageError, match=rf"^{field}: expected .*, got ") as err:
        make(kind, **{field: value})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("train", "epochs", 0),
        ("train", "epochs", -1),
        ("train", "batch_size", 0),
        ("train", "lr", 0.0),
        ("train", "lr", -1e-3),
        ("train", "weight_decay", -0.1),
        ("train", "clip_grad", 0.0),
        ("train", "kl_warmup", -1),
        ("train", "seed", -1),
        ("train", "eval_batch_size", 0),
        ("data", "train_subset", 0),
        ("data", "test_subset", -5),
        ("dense-ae", "latent_dim", 0),
        ("dense-ae", "dropout", 0.99),
        ("dense-ae", "dropout", -0.1),
        ("dense-ae", "hidden", (256, 0)),
        ("conv-ae", "channels", (32, -64)),
        ("conv-ae", "image_shape", (1, 0, 28)),
    ],
)
def test_out_of_range_names_field(kind: str, field: str, value: object) -> None:
    with pytest.raises(UsageError, match=rf"^{field}: must be"):
        make(kind, **{field: value})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_config_rejects_bad_latent_dim(name: str) -> None:
    fields = {f.name for f in dataclasses.fields(MODELS[name].config)}
    if "latent_dim" not in fields:
        pytest.skip(f"{name} has no latent_dim")
    with pytest.raises(UsageError, match=r"^latent_dim: "):
        preset(name).make_config(latent_dim=-3)
    with pytest.raises(UsageError, match=r"^latent_dim: "):
        preset(name).make_config(latent_dim="8")


def test_nested_error_names_section_and_field() -> None:
    with pytest.raises(UsageError, match=r"^model_config\.latent_dim: must be > 0, got 0"):
        from_dict(MODELS["dense-ae"].config, {"latent_dim": 0}, where="model_config")


def test_image_shape_must_have_three_entries() -> None:
    with pytest.raises(UsageError, match=r"^image_shape: "):
        preset("dense-ae").make_config(image_shape=(28, 28))


def test_device_and_kl_schedule_consistency() -> None:
    with pytest.raises(UsageError, match=r"^device: .*'tpu'"):
        TrainConfig(device="tpu")
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert TrainConfig(device=device).device == device
    with pytest.raises(UsageError, match="kl_warmup and kl_cycles"):
        TrainConfig(kl_warmup=2, kl_cycles=2)


@pytest.mark.parametrize(
    "spec",
    [
        "blur:1",
        "gaussian",
        "gaussian:abc",
        "gaussian:-0.1",
        "mask:1.5",
        "saltpepper:-1",
        "gaussian:inf",
        "gaussian:nan",
        "",
    ],
)
def test_bad_noise_spec(spec: str) -> None:
    with pytest.raises(UsageError, match="noise") as err:
        DataConfig(noise=spec)
    assert "gaussian:STD" in str(err.value)  # says what the forms are


@pytest.mark.parametrize("spec", ["gaussian:0.3", "mask:0.5", "saltpepper:0.1", "gaussian:0"])
def test_good_noise_spec(spec: str) -> None:
    assert DataConfig(noise=spec).noise == spec


def test_lists_become_tuples_and_ints_become_floats() -> None:
    config = preset("conv-ae").make_config(channels=[8, 16], image_shape=[1, 20, 20])
    assert config.channels == (8, 16) and config.image_shape == (1, 20, 20)
    train = TrainConfig(lr=1, clip_grad=2)
    assert type(train.lr) is float and type(train.clip_grad) is float


def _round_trip_cases() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = [
        ("train-default", TrainConfig()),
        (
            "train",
            TrainConfig(
                epochs=3,
                lr=2e-4,
                lr_schedule="constant",
                clip_grad=1.5,
                kl_cycles=2,
                seed=7,
                device="cpu",
                weight_decay=0.01,
            ),
        ),
        ("data-default", DataConfig()),
        (
            "data",
            DataConfig(
                dataset="fashion-mnist",
                data_dir="/x",
                train_subset=10,
                test_subset=5,
                binarize="dynamic",
                noise="mask:0.5",
            ),
        ),
    ]
    cases += [(name, preset(name).make_config()) for name in sorted(MODELS)]
    return cases


@pytest.mark.parametrize(
    ("label", "config"), _round_trip_cases(), ids=[c[0] for c in _round_trip_cases()]
)
def test_json_round_trip(label: str, config: object) -> None:
    data = json.loads(json.dumps(to_dict(config)))
    again = from_dict(type(config), data)
    assert again == config
    assert to_dict(again) == data


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("warmup", [1, 3, 4])
def test_kl_warmup_is_linear_then_one(warmup: int) -> None:
    config = TrainConfig(epochs=10, kl_warmup=warmup)
    assert config.kl_weight(0, 0.0) == 0.0
    for epoch in range(10):
        for frac in (0.0, 0.25, 0.5, 0.75):
            expected = min(1.0, (epoch + frac) / warmup)
            assert config.kl_weight(epoch, frac) == pytest.approx(expected, abs=1e-12)
    assert config.kl_weight(warmup, 0.0) == 1.0
    assert config.kl_weight(warmup - 1, 0.5) == pytest.approx((warmup - 0.5) / warmup)


def test_kl_cycles_ramp_then_hold_in_each_cycle() -> None:
    config = TrainConfig(epochs=8, kl_cycles=2)  # two cycles of 4 epochs: ramp 2, hold 2
    expected = {
        0.0: 0.0,
        0.5: 0.25,
        1.0: 0.5,
        1.5: 0.75,
        2.0: 1.0,
        3.0: 1.0,
        3.75: 1.0,
        4.0: 0.0,
        5.0: 0.5,
        6.0: 1.0,
        7.9: 1.0,
    }
    for t, weight in expected.items():
        epoch = int(t)
        assert config.kl_weight(epoch, t - epoch) == pytest.approx(weight, abs=1e-12), t
    weights = [config.kl_weight(e, f / 10) for e in range(8) for f in range(10)]
    assert all(0.0 <= w <= 1.0 for w in weights)
    assert weights.count(0.0) == 2  # one fresh start per cycle


def test_kl_weight_without_schedule_is_one() -> None:
    config = TrainConfig(epochs=5)
    assert {config.kl_weight(e, f) for e in range(5) for f in (0.0, 0.5)} == {1.0}


def test_option_names_are_disjoint_across_configs() -> None:
    """The flat-options API (train(model, **options), one CLI flag per field) sorts an option
    into its config by name, so no name may belong to two of TrainConfig, DataConfig and the
    model configs."""
    groups = {"TrainConfig": TrainConfig, "DataConfig": DataConfig}
    model_configs = {p.config.__name__: p.config for p in MODELS.values()}
    names = {label: {f.name for f in dataclasses.fields(cls)} for label, cls in groups.items()}
    model_fields = {
        label: {f.name for f in dataclasses.fields(cls)} for label, cls in model_configs.items()
    }
    for (a, fa), (b, fb) in itertools.combinations(names.items(), 2):
        assert not fa & fb, f"{a} and {b} share {sorted(fa & fb)}"
    for label, fields in model_fields.items():
        for run_label, run_fields in names.items():
            shared = sorted(fields & run_fields)
            assert not shared, f"{label} and {run_label} share {shared}"
    # The CLI never passes these to train(); a config field with one of these names is unreachable.
    reserved = {"model", "out", "resume", "quiet", "command", "debug"}
    for label, fields in {**names, **model_fields}.items():
        assert not fields & reserved, f"{label} uses reserved {sorted(fields & reserved)}"


def test_load_json(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"epochs": 3}')
    assert load_json(good) == {"epochs": 3}
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 3,')
    with pytest.raises(UsageError, match=r"bad\.json: not a readable JSON file"):
        load_json(bad)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match=r"binary\.json"):
        load_json(binary)
    with pytest.raises(UsageError, match=r"missing\.json: no such file"):
        load_json(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="JSON"):
        load_json(tmp_path)  # a folder
    with pytest.raises(UsageError, match="expected a JSON object, got list"):
        from_dict(TrainConfig, [1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [1.0, 1.0, 1.0, 1.0]),
        ("cosine", [1.0, 0.505, 0.01 + 0.495 * (1 + math.cos(0.85 * math.pi)), 0.01]),
        ("warmdown", [1.0, 1.0, 0.505, 0.01]),  # flat, then linear over the last 30%
    ],
)
def test_learning_rate_schedules(schedule, expected):
    from aezoo.loop import lr_at

    config = TrainConfig(lr=1.0, lr_schedule=schedule)
    steps = [0, 50, 85, 100]  # of 100
    got = [lr_at(config, step, 100) for step in steps]
    assert got == pytest.approx(expected, abs=1e-9)


def test_warmdown_fraction_is_an_option():
    from aezoo.loop import lr_at

    config = TrainConfig(lr=1.0, lr_schedule="warmdown", warmdown=0.2)
    assert lr_at(config, 79, 100) == 1.0
    assert lr_at(config, 90, 100) == pytest.approx(0.505)
    assert lr_at(config, 100, 100) == pytest.approx(0.01)
    with pytest.raises(UsageError, match="warmdown"):
        TrainConfig(warmdown=1.5)

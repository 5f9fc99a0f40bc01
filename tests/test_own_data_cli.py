"""Your own data through every entry point (issue 14): `aezoo train/eval/encode/decode/zoo` and
`aezoo.train` on real shipped data — scikit-learn's 8×8 digits (as uint8 pixels in a .npy, or
values 0..16 with --scale max:16), patches of its sample photos (channels-last), and a CSV table
and a PNG folder written here. One epoch on small parts, so each test takes seconds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

import aezoo
from aezoo import runs as ckpt
from aezoo.cli import main

QUICK = ("--epochs", "1", "--device", "cpu", "--quiet")


def run_main(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aezoo: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits: float64 values 0..16 [1797, 8, 8], labels 0..9."""
    bunch = load_digits()
    return bunch.images, bunch.target


@pytest.fixture(scope="module")
def digits_npy(tmp_path_factory: pytest.TempPathFactory, digits: tuple) -> Path:
    """The digits as uint8 pixels (0..16 → 0..255) in a .npy, which has no test part."""
    path = tmp_path_factory.mktemp("npy") / "digits.npy"
    np.save(path, (digits[0] * 255 / 16).round().astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def npy_run(tmp_path_factory: pytest.TempPathFactory, digits_npy: Path) -> Path:
    """A dense-vae trained one epoch on digits.npy, which has no test part."""
    out = tmp_path_factory.mktemp("runs") / "vae"
    train_cli("dense-vae", "--dataset", digits_npy, "--out", out)
    return out


def train_cli(*args: str | Path) -> None:
    assert main([str(a) for a in ("train", *args, *QUICK)]) == 0


def summary_of(run: Path) -> dict:
    return json.loads((run / ckpt.SUMMARY).read_text())


# the way in: arrays, .npy, tables, folders, Keras npz


def test_array_dataset_is_accepted_and_recorded(
    capsys: pytest.CaptureFixture, digits: tuple, tmp_path: Path
) -> None:
    x, y = digits
    run = aezoo.train(
        "dense-ae",
        dataset=x,
        labels=y,
        scale="max:16",
        epochs=1,
        device="cpu",
        out=tmp_path / "run",
        quiet=True,
    )
    config = json.loads((run.path / ckpt.CONFIG).read_text())
    assert config["data"]["dataset"] == "array" and config["data"]["scale"] == "max:16"
    info = config["data_info"]
    assert info["reader"] == "array" and len(info["sha256"]) == 64
    assert info["split"] == summary_of(run.path)["data"]["split"]
    split = info["split"]
    assert split["made"] and split["seed"] == 0 and split["train"] + split["test"] == len(x)
    assert split["test"] == round(0.1 * len(x))
    # the array cannot be read again: eval without --dataset says what to do, in one line
    assert_one_line(*run_main(capsys, "eval", run.path)[::2], "in-memory array", "--dataset PATH")


def test_array_errors_are_one_line_without_the_array(digits: tuple, tmp_path: Path) -> None:
    x, _ = digits
    with pytest.raises(aezoo.UsageError) as err:  # 0..16 is not pixels: the scale is stated
        aezoo.train("dense-ae", dataset=x, epochs=1, out=tmp_path / "run", quiet=True)
    message = str(err.value)
    assert "\n" not in message and "max:16" in message and len(message) < 300
    with pytest.raises(aezoo.UsageError) as err:
        aezoo.train("dense-ae", dataset=x, noise=x, out=tmp_path / "run", quiet=True)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
    assert not (tmp_path / "run").exists()


def test_tensor_dataset_with_a_test_pair(digits: tuple, tmp_path: Path) -> None:
    x, y = (torch.from_numpy(a) for a in digits)
    run = aezoo.train(
        "cvae",
        dataset=x[:1500],
        labels=y[:1500],
        test=(x[1500:], y[1500:]),
        scale="max:16",
        epochs=1,
        device="cpu",
        out=tmp_path / "run",
        quiet=True,
    )
    split = summary_of(run.path)["data"]["split"]
    assert split == {"made": False, "train": 1500, "test": 297}
    assert run.spec.data.test_dataset == "array"


class Crash(Exception):
    """Stands in for the process dying right after a checkpoint."""


def test_in_memory_run_resumes_and_explores_on_the_same_arrays(
    digits: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained on arrays cannot read them again: resume, explore and train-prior take
    them once more, checked against the recorded sha256 (one changed label is refused), and the
    resumed run ends bit-identical to one that was never cut."""
    x, y = digits
    options = {"dataset": x, "labels": y, "scale": "max:16", "epochs": 2, "device": "cpu"}
    whole = aezoo.train("dense-ae", out=tmp_path / "whole", quiet=True, **options)
    save = ckpt.save_checkpoint

    def dying_save(run_dir: Path, *args: object) -> None:
        save(run_dir, *args)
        raise Crash

    monkeypatch.setattr(ckpt, "save_checkpoint", dying_save)
    cut = tmp_path / "cut"
    with pytest.raises(Crash):
        aezoo.train("dense-ae", out=cut, quiet=True, **options)
    monkeypatch.undo()
    metrics = (cut / ckpt.METRICS).read_bytes()
    other = y.copy()
    other[0] = (other[0] + 1) % 10
    with pytest.raises(aezoo.UsageError, match=r"in-memory array.*dataset=X, labels=y"):
        aezoo.train(resume=cut, quiet=True)
    with pytest.raises(aezoo.UsageError, match="not the data the run was trained on"):
        aezoo.train(resume=cut, dataset=x, labels=other, quiet=True)
    with pytest.raises(aezoo.UsageError, match="labels= goes with dataset="):
        aezoo.train(resume=cut, labels=y, quiet=True)
    with pytest.raises(aezoo.UsageError, match="split its test part"):
        aezoo.train(resume=cut, dataset=x, labels=y, test=x, quiet=True)
    assert (cut / ckpt.METRICS).read_bytes() == metrics  # refused before anything is written
    resumed = aezoo.train(resume=cut, dataset=x, labels=y, quiet=True)
    assert resumed.summary["epochs"] == 2
    assert (cut / ckpt.WEIGHTS).read_bytes() == (whole.path / ckpt.WEIGHTS).read_bytes()

    from aezoo.explore import explore_run
    from aezoo.prior import train_prior

    with pytest.raises(aezoo.UsageError, match="in-memory array"):
        explore_run(cut, tsne_points=0)
    paths = explore_run(cut, tsne_points=0, dataset=x, labels=y)
    assert {p.name for p in paths} >= {"samples-prior.png", "interpolation.png"}
    vq = aezoo.train("dense-vqvae", out=tmp_path / "vq", quiet=True, **{**options, "epochs": 1})
    with pytest.raises(aezoo.UsageError, match="not the data the run was trained on"):
        train_prior(vq.path, dataset=x[:-1], labels=y[:-1], epochs=1, quiet=True)
    assert not (vq.path / "prior").exists()
    _, summary = train_prior(vq.path, dataset=x, labels=y, epochs=1, quiet=True)
    assert summary["epoch"] == 1 and np.isfinite(summary["test_nll"])


def test_a_file_with_an_in_memory_test_part_explores_on_that_part_again(
    digits_npy: Path, digits: tuple, tmp_path: Path
) -> None:
    """Training data from a file, test data from memory: only test= is given again, and the
    file is still checked against its own sha256."""
    from aezoo.explore import explore_run

    data = tmp_path / "train.npy"
    shutil.copy(digits_npy, data)
    test = (digits[0][:200] * 255 / 16).round().astype(np.uint8)
    run = aezoo.train(
        "dense-ae", dataset=data, test=test, epochs=1, device="cpu", out=tmp_path / "r", quiet=True
    )
    with pytest.raises(aezoo.UsageError, match="in-memory array"):
        explore_run(run.path, tsne_points=0)
    with pytest.raises(aezoo.UsageError, match=r"read this part from .*train\.npy"):
        explore_run(run.path, tsne_points=0, dataset=test, test=test)
    assert explore_run(run.path, tsne_points=0, test=test)
    np.save(data, np.load(data)[::-1])
    with pytest.raises(aezoo.UsageError, match=r"changed since the run read it.*put back"):
        explore_run(run.path, tsne_points=0, test=test)


@pytest.mark.parametrize("model", ["dense-ae", "conv-vae", "cvae"])
def test_prior_samples_of_an_in_memory_run_need_no_data(
    digits: tuple, tmp_path: Path, model: str
) -> None:
    """z ~ N(0, I) needs only the latents' shape, which config.json's input shape gives
    (the same as a batch of the data gives); the mixture sampler needs the data."""
    from aezoo.explore import latent_shape, recorded_latent_shape, sample_run
    from aezoo.rundata import own_data
    from aezoo.runs import make_batches

    x, y = digits
    if model == "conv-vae":  # a convolutional model wants room for its strides: 16×16 images
        x = np.kron(x, np.ones((2, 2)))
    run = aezoo.train(
        model,
        dataset=x,
        labels=y,
        scale="max:16",
        epochs=1,
        device="cpu",
        out=tmp_path / "r",
        quiet=True,
    )
    train, test = own_data(run.spec.data, run.spec.data_info, dataset=x, labels=y)
    batches = make_batches(run.spec, train, test, torch.device("cpu"))[1]
    shape = recorded_latent_shape(run.model, run.spec.data_info)
    assert shape == latent_shape(run.model, batches)
    paths = sample_run(run.path, n=20, sampler="prior")
    assert paths[0].name == "samples-prior.png" and paths[0].stat().st_size > 0
    if model == "cvae":
        assert paths[1].name == "samples-by-label-prior.png"
    with pytest.raises(aezoo.UsageError, match="in-memory array"):
        sample_run(run.path, n=20, sampler="gmm")
    assert sample_run(run.path, n=20, sampler="gmm", dataset=x, labels=y)


def test_npy_test_split_is_not_the_training_data(npy_run: Path, digits_npy: Path) -> None:
    split = summary_of(npy_run)["data"]["split"]
    assert split["made"] and split["train"] == 1617 and split["test"] == 180
    train, test, _ = aezoo.load_splits(digits_npy)
    train_rows = {bytes(r) for r in train.images.reshape(len(train), -1).numpy()}
    test_rows = [bytes(r) for r in test.images.reshape(len(test), -1).numpy()]
    # load_digits has a few duplicate images; the split itself never puts a row in both parts
    assert sum(r in train_rows for r in test_rows) < 10


def test_csv_table_with_label_column_trains_dense(
    capsys: pytest.CaptureFixture, digits: tuple, tmp_path: Path
) -> None:
    x, y = digits
    table = tmp_path / "table.CSV"
    header = ",".join([*(f"p{i}" for i in range(64)), "digit"])
    rows = [
        ",".join(map(str, [*row.astype(int), label]))
        for row, label in zip(x.reshape(-1, 64), y, strict=True)
    ]
    table.write_text(header + "\n" + "\n".join(rows[:400]) + "\n")
    out = tmp_path / "run"
    code, _, err = run_main(
        capsys,
        "train",
        "dense-ae",
        "--dataset",
        table,
        "--label-column",
        "digit",
        "--scale",
        "max:16",
        "--out",
        out,
        *QUICK,
    )
    assert code == 0, err
    data = summary_of(out)["data"]
    assert data["kind"] == "vectors" and data["shape"] == [1, 1, 64]
    assert data["split"]["stratified"] and data["split"]["test"] == 40
    # a convolutional model refuses vectors before anything is written, naming the dense ones
    conv = tmp_path / "conv"
    code, _, err = run_main(
        capsys,
        "train",
        "conv-ae",
        "--dataset",
        table,
        "--label-column",
        "digit",
        "--scale",
        "max:16",
        "--out",
        conv,
        *QUICK,
    )
    assert_one_line(code, err, "conv-ae", "vectors", "dense-ae")
    assert not conv.exists()
    # so does the image augmentation: table rows have no pixels to move
    shifted = tmp_path / "shifted"
    args = ("--label-column", "digit", "--scale", "max:16", "--out", shifted, *QUICK)
    code, _, err = run_main(capsys, "train", "dense-ae", "--dataset", table, "--shift", "1", *args)
    assert_one_line(code, err, "--shift", "vectors")
    assert not shifted.exists()


def test_png_folder_and_keras_npz(capsys: pytest.CaptureFixture, digits: tuple, tmp_path: Path):
    x, y = digits
    pixels = (x * 255 / 16).round().astype(np.uint8)
    for label in (3, 5, 8):
        folder = tmp_path / "pngs" / f"digit{label}"
        folder.mkdir(parents=True)
        for i in np.flatnonzero(y == label)[:20]:
            Image.fromarray(pixels[i]).save(folder / f"{i}.png")
    out = tmp_path / "folder-run"
    code, _, err = run_main(
        capsys, "train", "dense-vae", "--dataset", tmp_path / "pngs", "--out", out, *QUICK
    )
    assert code == 0, err
    data = summary_of(out)["data"]
    assert data["classes"] == ["digit3", "digit5", "digit8"] and data["shape"] == [1, 8, 8]
    assert data["split"]["train"] + data["split"]["test"] == 60
    keras = tmp_path / "keras.npz"
    np.savez(
        keras, x_train=pixels[:300], y_train=y[:300], x_test=pixels[300:400], y_test=y[300:400]
    )
    out = tmp_path / "keras-run"
    code, _, err = run_main(capsys, "train", "cvae", "--dataset", keras, "--out", out, *QUICK)
    assert code == 0, err
    assert summary_of(out)["data"]["split"] == {"made": False, "train": 300, "test": 100}


def test_channels_last_photo_patches(tmp_path: Path) -> None:
    photo = load_sample_images().images[1]  # (427, 640, 3) uint8
    patches = photo[:64, :640].reshape(2, 32, 20, 32, 3).swapaxes(1, 2).reshape(-1, 32, 32, 3)
    run = aezoo.train(
        "conv-ae",
        dataset=patches,
        epochs=1,
        batch_size=8,
        device="cpu",
        out=tmp_path / "run",
        quiet=True,
    )
    assert run.spec.model_config.image_shape == (3, 32, 32)
    assert summary_of(run.path)["data"]["layout"] == "nhwc"


# portable runs and new data


def test_eval_from_another_folder(
    capsys: pytest.CaptureFixture, npy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_main(capsys, "eval", npy_run)
    assert code == 0, err
    assert json.loads(out)["test_loss"] == pytest.approx(summary_of(npy_run)["test_loss"], 1e-5)


def test_moved_data_names_dataset_and_new_data_evaluates(
    capsys: pytest.CaptureFixture, digits_npy: Path, tmp_path: Path
) -> None:
    data = tmp_path / "digits.npy"
    shutil.copy(digits_npy, data)
    run = tmp_path / "run"
    train_cli("dense-ae", "--dataset", data, "--out", run)
    moved = tmp_path / "moved.npy"
    os.replace(data, moved)
    assert_one_line(*run_main(capsys, "eval", run)[::2], "--dataset")
    code, out, err = run_main(capsys, "eval", run, "--dataset", moved)
    assert code == 0, err
    assert 0 < json.loads(out)["test_mse"] < 1
    np.save(data, np.load(moved)[:, :6, :6])  # back in place, changed: other data
    assert_one_line(*run_main(capsys, "eval", run)[::2], "changed", "--dataset")
    code, _, err = run_main(capsys, "eval", run, "--dataset", data)
    assert_one_line(code, err, "(1, 6, 6)", "expects (1, 8, 8)")


def test_changed_data_is_refused_where_the_run_needs_its_own(
    capsys: pytest.CaptureFixture, digits_npy: Path, tmp_path: Path
) -> None:
    """explore, train-prior and --resume read the run's own data: one pixel changed (the same
    shape, so nothing else would notice) is refused in one line that says what to do, and these
    commands take no --dataset, so the line does not offer one; eval still does."""
    data = tmp_path / "digits.npy"
    shutil.copy(digits_npy, data)
    ae, vq = tmp_path / "ae", tmp_path / "vq"
    train_cli("dense-ae", "--dataset", data, "--out", ae)
    train_cli("dense-vqvae", "--dataset", data, "--out", vq)
    figures = sorted((ae / "figures").iterdir())
    changed = np.load(data)
    changed[0, 0, 0] ^= 1
    np.save(data, changed)
    for args in (("explore", ae), ("train", "--resume", ae), ("train-prior", vq, "--epochs", "1")):
        code, _, err = run_main(capsys, *args)
        assert_one_line(code, err, "changed since the run read it", "put back the file")
        assert "--dataset" not in err, args
    assert sorted((ae / "figures").iterdir()) == figures  # nothing drawn from the wrong data
    assert not (vq / "prior").exists()
    assert_one_line(*run_main(capsys, "eval", ae)[::2], "changed", "--dataset PATH")
    data.unlink()
    code, _, err = run_main(capsys, "explore", ae)
    assert_one_line(code, err, "no longer there", "put back the file")


@pytest.mark.parametrize(
    ("model", "kind"), [("dense-ae", "z"), ("dense-vae", "mu"), ("dense-vqvae", "indices")]
)
def test_encode_decode_round_trip(
    capsys: pytest.CaptureFixture, digits_npy: Path, tmp_path: Path, model: str, kind: str
) -> None:
    run_dir = tmp_path / "run"
    train_cli(model, "--dataset", digits_npy, "--train-subset", "400", "--out", run_dir)
    codes, back = tmp_path / "codes.npz", tmp_path / "back.npz"
    code, _, err = run_main(capsys, "encode", run_dir, "--dataset", digits_npy, "--out", codes)
    assert code == 0, err
    with np.load(codes) as npz:
        assert str(npz["kind"]) == kind and len(npz["codes"]) == 1797
    code, _, err = run_main(capsys, "decode", run_dir, codes, "--out", back)
    assert code == 0, err
    with np.load(back) as npz:
        x_back = npz["x"]
    assert x_back.dtype == np.uint8 and x_back.shape == (1797, 8, 8)
    run = aezoo.load(run_dir)
    x = torch.from_numpy(np.load(digits_npy) / 255).float()[:, None]
    with torch.no_grad():
        recon = run.model(x).mul(255).round().squeeze(1).numpy()
    assert np.abs(x_back.astype(float) - recon).max() <= 1.0
    # the project never overwrites: an existing --out is refused
    assert_one_line(*run_main(capsys, "encode", run_dir, "--out", codes)[::2], "already exists")


# the zoo checks before it trains


def test_zoo_skips_conditional_models_on_unlabelled_data(
    capsys: pytest.CaptureFixture, digits_npy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "zoo"
    code, stdout, err = run_main(
        capsys,
        "zoo",
        "--models",
        "dense-ae,cvae",
        "--dataset",
        digits_npy,
        "--train-subset",
        "300",
        "--out",
        out,
        *QUICK,
    )
    assert code == 0, err
    assert "Skipped `cvae`" in stdout and "has none" in stdout
    zoo = json.loads((out / "zoo.json").read_text())
    assert [row["model"] for row in zoo["rows"]] == ["dense-ae"] and "cvae" in zoo["skipped"]
    assert "Skipped `cvae`" in (out / "zoo.md").read_text()
    assert {p.name for p in out.iterdir()} >= {"dense-ae", "zoo.html", "zoo.md", "zoo.json"}
    assert not (out / "cvae").exists()


def test_zoo_sample_quality_on_8x8_is_refused_before_training(
    capsys: pytest.CaptureFixture, digits_npy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "zoo"
    code, _, err = run_main(
        capsys,
        "zoo",
        "--models",
        "dense-vae",
        "--dataset",
        digits_npy,
        "--sample-quality",
        "10",
        "--out",
        out,
        *QUICK,
    )
    assert_one_line(code, err, "--sample-quality", "1×8×8")
    assert not out.exists()


def test_datasets_train_as_given(digits: tuple, tmp_path: Path) -> None:
    train, test, _ = aezoo.load_splits(digits[0], labels=digits[1], scale="max:16")
    run = aezoo.train(
        "cvae", dataset=train, test=test, epochs=1, device="cpu", out=tmp_path / "run", quiet=True
    )
    assert summary_of(run.path)["data"]["split"] == {"made": False, "train": 1617, "test": 180}
    assert run.spec.data_info["test_source"]["reader"] == "dataset"


def test_shift_wider_than_the_images_is_refused(
    capsys: pytest.CaptureFixture, digits: tuple, tmp_path: Path
) -> None:
    """8×8 digits moved by up to 8 pixels would leave their frame: one line, nothing written."""
    x, y = digits
    data = tmp_path / "digits.npz"
    np.savez(data, x=(x * 255 / 16).round().astype(np.uint8)[:200], y=y[:200])
    out = tmp_path / "run"
    args = ("--dataset", data, "--test-fraction", "0.2", "--out", out, *QUICK)
    code, _, err = run_main(capsys, "train", "dense-ae", "--shift", "8", *args)
    assert_one_line(code, err, "--shift 8", "8-pixel")
    assert not out.exists()

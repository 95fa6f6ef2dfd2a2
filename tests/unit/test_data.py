"""Datasets: torchvision's layout read without torchvision, seeded splits, clear errors."""

import gzip

import numpy as np
import pytest

from qt.training.data import Cifar10, IdxImages, Mnist5k, read_idx
from qt.errors import DataError
from tests.helpers import fake_cifar


MNIST_KW = dict(shape=[1, 28, 28], num_classes=10, mean=[0.1307], std=[0.3081])


def write_idx(path, array, compress=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def fake_mnist(root, name="MNIST", n_train=50, n_test=20, compress=True):
    rng = np.random.default_rng(0)
    raw = root / name / "raw"
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), compress)
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(n_train) % 10, compress)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), compress)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, compress)


@pytest.mark.parametrize("compress", [True, False])
def test_reads_torchvision_layout(tmp_path, compress):
    fake_mnist(tmp_path, compress=compress)
    data = IdxImages("MNIST", str(tmp_path), **MNIST_KW).load()
    assert data.sizes() == {"train": 40, "val": 10, "test": 20}
    assert tuple(data.train.x.shape[1:]) == (1, 28, 28)
    assert data.test.y.tolist() == [i % 10 for i in range(20)]


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    fake_mnist(tmp_path, n_train=100)
    a = IdxImages("MNIST", str(tmp_path), split_seed=1, **MNIST_KW).load()
    b = IdxImages("MNIST", str(tmp_path), split_seed=1, **MNIST_KW).load()
    c = IdxImages("MNIST", str(tmp_path), split_seed=2, **MNIST_KW).load()
    assert (a.val.x == b.val.x).all()
    assert not (a.val.x == c.val.x).all()
    rows = {tuple(r) for r in a.train.x.flatten(1).numpy()} | {tuple(r) for r in a.val.x.flatten(1).numpy()}
    assert len(rows) == 100  # every training image once, in train or val


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"paths.data_dir .*QT_DATA_DIR.*download=true"):
        IdxImages("FashionMNIST", str(tmp_path), **MNIST_KW).load()


def test_truncated_file_is_reported(tmp_path):
    fake_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())[:-100]
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_cifar_pickles(tmp_path):
    fake_cifar(tmp_path)
    data = Cifar10(str(tmp_path), shape=[3, 32, 32], num_classes=10, mean=[0.5] * 3, std=[0.25] * 3).load()
    assert data.sizes() == {"train": 16, "val": 4, "test": 4}
    assert tuple(data.train.x.shape[1:]) == (3, 32, 32)


def test_embedded_mnist_5k():
    data = Mnist5k(**MNIST_KW).load()
    assert data.sizes() == {"train": 3200, "val": 800, "test": 1000}
    assert np.bincount(data.test.y.numpy()).tolist() == [100] * 10
    again = Mnist5k(split_seed=7, **MNIST_KW).load()
    assert (again.test.x == data.test.x).all()  # the test set never moves with the split seed


def test_real_mnist_from_shared_data(shared_data):
    data = IdxImages("MNIST", str(shared_data), **MNIST_KW).load()
    assert data.sizes() == {"train": 48000, "val": 12000, "test": 10000}
    assert abs(float(data.train.x.mean())) < 0.05  # normalised

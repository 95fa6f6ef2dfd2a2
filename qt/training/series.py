"""Time series as next-step prediction windows (``task=sequence``): the dataset group's series options.

A series of T values (F features each) is split **in time order** into train, val and test parts
(``val_fraction``, ``test_fraction`` of the values, the test part last), scaled to [-1, 1] by the train part's
minimum and maximum (``scale=train``; ``scale=all`` fits the whole series, as the QT-LSTM notebook's
``MinMaxScaler`` does), and each part is cut into every window of ``window`` values that fits inside it: the input
is values t..t+W-1, the target values t+1..t+W (the next value at every position, as the notebook trains). No
window crosses a split, so nothing of val or test is seen in training, and the splits are fixed by the series
alone (no seed). ``Split.x`` and ``Split.y`` are (windows, W, F) float32.

* :class:`Wave` is the authors' synthetic wave (``appendix_example/QTLSTM/QTLSTM_torchquantum.ipynb`` in
  Hon-Hai-Quantum-Computing/QuantumTrain, commit 4f1c56a): (0.64 sin^2 x + cos x + 0.3 sin^3 x) e^-3 on 100
  points of x in [0, 10 pi], the pattern repeated 1,000 times.
* :class:`StatsmodelsSeries` is a real, public series bundled with statsmodels (no download): ``sunspots``
  (yearly mean sunspot numbers 1700-2008, 309 values).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from qt.core.checks import choice
from qt.errors import ConfigError
from qt.training.data import DataSplits, Split

SCALES = ("train", "all")


class Series:
    """Base: a series (``values``) cut into scaled, time-ordered windows (module docstring)."""

    name = "series"
    #: the task its splits are for (validation refuses another)
    task = "sequence"

    def __init__(self, window: int, shape: Sequence[int], val_fraction: float = 0.1, test_fraction: float = 0.1, scale: str = "train"):
        self.window = int(window)
        if self.window < 1:
            raise ConfigError(f"dataset.window must be at least 1 (got {window}): the values each window holds")
        if list(shape) != [self.window, self.features]:
            raise ConfigError(f"dataset.shape is {list(shape)} but the windows are [{self.window}, {self.features}]: set dataset.shape=[{self.window},{self.features}]")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= float(value) < 1.0:
                raise ConfigError(f"dataset.{key} must be in [0, 1) (got {value}): the share of the series, in time order")
        if float(val_fraction) + float(test_fraction) >= 1.0:
            raise ConfigError(f"dataset.val_fraction + dataset.test_fraction = {float(val_fraction) + float(test_fraction)} leaves nothing to train on: keep their sum below 1")
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.scale = choice(scale, "dataset.scale", SCALES)

    #: values per time step
    features = 1

    def values(self) -> np.ndarray:
        """The whole series, (T, F) float64, in time order."""
        raise NotImplementedError

    def windows(self, part: np.ndarray) -> Split:
        """Every window of the part: inputs t..t+W-1, targets t+1..t+W."""
        n = len(part) - self.window
        if n <= 0:
            return Split(torch.zeros(0, self.window, self.features), torch.zeros(0, self.window, self.features))
        idx = np.arange(n)[:, None] + np.arange(self.window)[None, :]
        x = torch.from_numpy(part[idx].astype(np.float32))
        y = torch.from_numpy(part[idx + 1].astype(np.float32))
        return Split(x, y)

    def bounds(self, n: int) -> tuple[int, int]:
        """Where val and test begin in a series of ``n`` values."""
        n_test, n_val = int(round(n * self.test_fraction)), int(round(n * self.val_fraction))
        return n - n_val - n_test, n - n_test

    def load(self) -> DataSplits:
        v = self.values()
        val_at, test_at = self.bounds(len(v))
        fit = v[:val_at] if self.scale == "train" else v
        lo, hi = fit.min(axis=0), fit.max(axis=0)
        if np.any(hi <= lo):
            raise ConfigError(f"{self.name}: the values used for scaling are constant: use dataset.scale=all or more training data")
        scaled = 2.0 * (v - lo) / (hi - lo) - 1.0
        train, val, test = (self.windows(p) for p in (scaled[:val_at], scaled[val_at:test_at], scaled[test_at:]))
        if len(train) == 0 or len(test) == 0:
            raise ConfigError(f"{self.name}: {len(v)} values leave no full window of {self.window} in the train or test part: lower dataset.window")
        return DataSplits(train=train, val=val, test=test, num_classes=0, name=self.name)


class Wave(Series):
    """The QT-LSTM notebook's synthetic wave: ``points`` samples of x in [0, 10 pi], the pattern repeated ``repeats``
    times (100 and 1,000 there: 100,000 values)."""

    name = "wave"

    def __init__(self, points: int = 100, repeats: int = 1000, **kwargs):
        self.points, self.repeats = int(points), int(repeats)
        if self.points < 2 or self.repeats < 1:
            raise ConfigError(f"dataset.points must be at least 2 and dataset.repeats at least 1 (got {points}, {repeats})")
        super().__init__(**kwargs)

    def values(self) -> np.ndarray:
        x = np.linspace(0, 10 * np.pi, self.points)
        wave = (0.64 * np.sin(x) ** 2 + np.cos(x) + 0.3 * np.sin(x) ** 3) * np.exp(-3)
        return np.tile(wave[:, None], (self.repeats, 1))


#: statsmodels' bundled series: name -> (module under statsmodels.datasets, column)
STATSMODELS = {"sunspots": ("sunspots", "SUNACTIVITY")}


class StatsmodelsSeries(Series):
    """A real series bundled with statsmodels (offline): ``series`` one of :data:`STATSMODELS`."""

    def __init__(self, series: str, **kwargs):
        self.name = choice(series, "dataset.series", tuple(STATSMODELS))
        super().__init__(**kwargs)

    def values(self) -> np.ndarray:
        import importlib

        module, column = STATSMODELS[self.name]
        data = importlib.import_module(f"statsmodels.datasets.{module}").load_pandas().data
        return data[column].to_numpy(dtype=np.float64)[:, None]

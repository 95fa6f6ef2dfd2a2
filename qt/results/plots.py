"""Figures a run and a report draw: matplotlib set up once, off-screen, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qt.results.schema import atomic_write


def pyplot(offscreen: bool = True):
    """matplotlib.pyplot, imported on first use (runs without figures never pay for it).

    ``offscreen``: on the Agg backend, as every writer of figure files wants (no window, no GUI
    toolkit in a training process); False keeps the caller's backend, e.g. a notebook's inline
    one, for functions that return figures.
    """
    import matplotlib

    if offscreen:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(*args, **kwargs) -> Iterator[tuple]:
    """``plt.subplots(*args, **kwargs)``, closed however the block ends (an error mid-plot leaks no figure)."""
    plt = pyplot()
    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def save_png(fig, path: Path, dpi: int = 100) -> None:
    """The figure as a PNG, written atomically."""
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=dpi))


def plot_curves(run_dir: Path, rows: list[dict]) -> None:
    """curves.png: loss and accuracy per epoch, train and val."""
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    with figure(1, 2, figsize=(9, 3.4)) as (fig, axes):
        for ax, key, label in ((axes[0], "loss", "cross-entropy"), (axes[1], "acc", "accuracy")):
            ax.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", label="train")
            if any(r.get(f"val_{key}") is not None for r in rows):  # no validation split: train only
                ax.plot(epochs, [r[f"val_{key}"] for r in rows], "s-", label="val")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        save_png(fig, Path(run_dir) / "curves.png")

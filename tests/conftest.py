"""The suite's layers and shared fixtures.

``tests/unit``: in-process, no subprocess. ``tests/e2e``: real processes (``python -m qt.train``, multiruns,
kill-and-resume, the wheel), marked ``e2e`` here by folder. ``python -m pytest -q`` runs the unit layer and
the end-to-end tests marked ``smoke``; ``-m e2e`` runs the end-to-end layer, ``-m "unit or e2e"`` everything
(``.ci/run``). Naming a file or test on the command line runs it whatever its layer.
"""

import shutil
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, OLD_RUNS, SHARED_DATA

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        layer = Path(item.fspath).resolve().relative_to(HERE).parts[0]
        if layer in ("unit", "e2e"):
            item.add_marker(getattr(pytest.mark, layer))
    named = [arg for arg in config.option.file_or_dir if Path(arg.split("::")[0]).resolve() != HERE]
    if config.option.markexpr or config.option.keyword or named:
        return  # the caller chose: a -m or -k expression, or files, folders or tests by name
    skipped = [item for item in items if item.get_closest_marker("e2e") and not item.get_closest_marker("smoke")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if item not in set(skipped)]
        config._qt_not_run = len(skipped)


def pytest_terminal_summary(terminalreporter, config):
    left = getattr(config, "_qt_not_run", 0)
    if left:
        terminalreporter.write_line(
            f"{left} end-to-end tests not run: `python -m pytest -q -m e2e` runs them, `.ci/run` runs everything"
        )


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"full MNIST not available at {SHARED_DATA} (the project's ../shared/data); nothing to test against")
    return SHARED_DATA


@pytest.fixture
def old_runs(tmp_path):
    """Copies of the earlier versions' run dirs (nothing may write into the repository's)."""
    for name in OLD_RUNS:
        shutil.copytree(FIXTURES / name, tmp_path / name)
    return tmp_path

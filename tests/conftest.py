"""The suite's layers and shared fixtures.

``tests/unit``: in-process, no subprocess. ``tests/e2e``: real processes (``python -m qt.train``, multiruns,
kill-and-resume, the wheel), marked ``e2e`` here by folder. ``python -m pytest -q`` runs the unit layer and
the end-to-end tests marked ``smoke``; ``-m e2e`` runs the end-to-end layer, ``-m "unit or e2e"`` everything
(``.ci/run``). Naming a file, folder or test on the command line runs it whatever its layer.

Tests run on every core (``-n auto`` in setup.cfg, pytest-xdist, ``--dist loadgroup``); the end-to-end tests
form one group, so they run one after another on one worker, as they always have (each starts its own
processes; several at once would time each other), while the unit tests share the other workers.
``-n 0`` runs everything in this process.
"""

import shutil
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, OLD_RUNS, SHARED_DATA

HERE = Path(__file__).resolve().parent


def default_selection(config) -> bool:
    """True unless the caller chose what to run: a -m or -k expression, or files, folders or tests by name."""
    named = [arg for arg in config.option.file_or_dir if Path(arg.split("::")[0]).resolve() != HERE]
    return not (config.option.markexpr or config.option.keyword or named)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        layer = Path(item.fspath).resolve().relative_to(HERE).parts[0]
        if layer in ("unit", "e2e"):
            item.add_marker(getattr(pytest.mark, layer))
        if layer == "e2e":
            item.add_marker(pytest.mark.xdist_group("e2e"))
    if default_selection(config):
        left = [item for item in items if item.get_closest_marker("e2e") and not item.get_closest_marker("smoke")]
        config.hook.pytest_deselected(items=left)
        kept = set(items) - set(left)
        items[:] = [item for item in items if item in kept]


def pytest_terminal_summary(terminalreporter, config):
    if default_selection(config):
        terminalreporter.write_line(
            "the end-to-end tests not marked smoke were not run: `python -m pytest -q -m e2e` runs them, "
            "`.ci/run` runs everything"
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

"""qt as an installed wheel: it finds its configs from an empty folder."""

import os
import site
import subprocess
import sys
import venv

import qt
from tests.helpers import ROOT


def test_a_wheel_finds_its_configs_from_an_empty_folder(tmp_path):
    """Build a wheel, install it into a fresh venv, train one epoch from an empty folder."""
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "-q", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(dist)]
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = dist.glob("qt-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    nested_site = env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # qt's dependencies from the running interpreter's own site-packages (a venv's, where a user installs them;
    # system_site_packages would give the base interpreter's instead), after the nested venv's own: its wheel wins
    (nested_site / "outer_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONWARNINGS": "ignore"}
    where = subprocess.run([python, "-c", "import qt.experiment.config as c; print(c.CONF_DIR)"], cwd=empty, env=env, capture_output=True, text=True)
    assert where.stdout.strip() == str(nested_site / "qt" / "conf"), where.stderr[-2000:]
    run = subprocess.run([python, "-m", "qt.train", "trainer.epochs=1", "trainer.threads=1"], cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (summary,) = (empty / "outputs").glob("*/*/summary.json")
    assert '"status": "completed"' in summary.read_text()
    assert qt.__version__ in (empty / "outputs").glob("*/*/summary.json").__next__().read_text()

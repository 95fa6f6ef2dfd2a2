"""Everything about the package is in setup.cfg; this only ships the top-level conf/ inside the wheel.

The project keeps its configs at the top (conf/, the layout users and docs know). A wheel has
no top level, so ``build_py`` copies conf/ (with the sweeps it links, conf/sweep -> sweeps/)
into the built package as ``qt/conf``, where ``qt.experiment.config.CONF_DIR`` finds it. An
editable install reads conf/ from the checkout instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "qt" / "conf"
            shutil.copytree("conf", target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithConfigs})

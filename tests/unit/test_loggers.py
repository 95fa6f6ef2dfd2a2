"""Loggers: a tracker whose package is missing is refused before training."""

import pytest


pytest.importorskip("tensorboard")

pytest.importorskip("mlflow")


def test_a_tracker_whose_package_is_missing_is_refused_before_training(monkeypatch):
    import importlib.util

    from qt.experiment.build import build_loggers
    from qt.experiment.config import compose_config
    from qt.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r'logger=mlflow needs the mlflow package: pip install -e "\.\[mlflow\]"'):
        build_loggers(compose_config(["logger=[tensorboard,mlflow]"]))
    assert [lg.name for lg in build_loggers(compose_config(["logger=tensorboard"])).active] == ["tensorboard"]

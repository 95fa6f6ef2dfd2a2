"""qt: the Quantum-Train experiment framework.

As a library: ``from qt import QuantumTrain, fit`` (see :mod:`qt.api`). From the command
line: ``python -m qt.train``. The folders are the layers, bottom up: ``core`` (circuit,
mapping, targets, learners), ``results`` (the schema), ``training`` (the loop and its
callbacks), ``experiment`` (config to objects, one run), ``sweeps``, ``analysis``, ``tools``.
"""

__version__ = "0.1.0"
__all__ = ["QuantumTrain", "fit", "__version__"]


def __getattr__(name: str):
    # imported on first use, so that `python -m qt.report` and friends do not load torch's training stack
    if name in ("QuantumTrain", "fit"):
        from qt import api

        return getattr(api, name)
    raise AttributeError(f"module 'qt' has no attribute {name!r}")

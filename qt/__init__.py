"""qt: the Quantum-Train experiment framework."""

__version__ = "0.1.0"

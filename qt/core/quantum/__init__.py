"""Parameterised quantum circuits: ansatz definitions and simulation backends."""

from qt.core.quantum.ansatz import Ansatz, Layer, build_ansatz
from qt.core.quantum.circuit import QuantumCircuit

__all__ = ["Ansatz", "Layer", "QuantumCircuit", "build_ansatz"]

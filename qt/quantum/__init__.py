"""Parameterised quantum circuits: ansatz definitions and simulation backends."""

from qt.quantum.ansatz import Ansatz, Layer, build_ansatz
from qt.quantum.circuit import QuantumCircuit

__all__ = ["Ansatz", "Layer", "QuantumCircuit", "build_ansatz"]

"""PennyLane reference simulation of :class:`~qt.core.quantum.ansatz.Ansatz` circuits.

Used as the ground truth in tests and available for training (``circuit.backend``):

* ``default.qubit``: differentiated by backprop through PennyLane's torch interface;
* ``lightning.qubit``: probabilities from Lightning; gradients by Lightning's adjoint
  method, as the vector-Jacobian product of the upstream gradient ``dy``:
  d/dθ Σ_i dy_i p_i(θ) = d/dθ <ψ(θ)| diag(dy) |ψ(θ)>, an expectation value adjoint supports.

PennyLane has no ``CU3`` class; CU3 is ``qml.ctrl(qml.U3(...), control=c)``, the
controlled U3 with the same matrix as TorchQuantum's CU3.
"""

from __future__ import annotations

import torch

from qt.core.quantum.ansatz import Ansatz

DEVICES = ("default.qubit", "lightning.qubit")


def _operation(qml, gate: str, a, wires: tuple[int, ...]) -> None:
    """Queue one gate of :data:`qt.core.quantum.ansatz.GATES` as PennyLane's operation (``a``: its angles)."""
    if gate == "RY":
        qml.RY(a[0], wires=wires[0])
    elif gate == "U3":
        qml.U3(a[0], a[1], a[2], wires=wires[0])
    elif gate == "CNOT":
        qml.CNOT(wires=list(wires))
    elif gate == "CU3":
        qml.ctrl(qml.U3(a[0], a[1], a[2], wires=wires[1]), control=wires[0])
    else:  # pragma: no cover - a gate added to GATES without its PennyLane operation
        raise ValueError(f"no PennyLane operation for gate {gate}")


def apply_ansatz(ansatz: Ansatz, angles: list[torch.Tensor]) -> None:
    """Queue the ansatz's gates (:meth:`Ansatz.ops`) on the active PennyLane tape."""
    import pennylane as qml

    for op in ansatz.ops():
        _operation(qml, op.gate, op.angles_in(angles), op.wires)


class _LightningProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backend: "PennyLaneBackend", *angles: torch.Tensor) -> torch.Tensor:
        ctx.backend = backend
        ctx.save_for_backward(*angles)
        with torch.no_grad():
            return backend._probs_qnode([a.detach() for a in angles])

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        import pennylane as qml
        import scipy.sparse as sp

        backend = ctx.backend
        angles = [a.detach().clone().requires_grad_(True) for a in ctx.saved_tensors]
        n = backend.ansatz.n_qubits
        obs = qml.SparseHamiltonian(sp.diags(dy.detach().cpu().double().numpy()).tocsr(), wires=range(n))
        with torch.enable_grad():
            value = backend._adjoint_qnode(angles, obs)
            grads = torch.autograd.grad(value, angles, allow_unused=True)
        return (None, *[g.to(a.dtype) if g is not None else None for g, a in zip(grads, ctx.saved_tensors)])


class PennyLaneBackend:
    """Probabilities of an ansatz on a PennyLane device, differentiable in torch."""

    def __init__(self, ansatz: Ansatz, device_name: str = "default.qubit"):
        import pennylane as qml

        if device_name not in DEVICES:
            raise ValueError(f"unsupported PennyLane device {device_name}; use one of {DEVICES}")
        self.ansatz = ansatz
        self.device_name = device_name
        wires = range(ansatz.n_qubits)
        dev = qml.device(device_name, wires=ansatz.n_qubits)

        def probs_circuit(angles):
            apply_ansatz(ansatz, angles)
            return qml.probs(wires=wires)

        def expval_circuit(angles, obs):
            apply_ansatz(ansatz, angles)
            return qml.expval(obs)

        if device_name == "default.qubit":
            self._probs_qnode = qml.QNode(probs_circuit, dev, interface="torch", diff_method="backprop")
        else:
            self._probs_qnode = qml.QNode(probs_circuit, dev, interface="torch", diff_method=None)
            self._adjoint_qnode = qml.QNode(expval_circuit, dev, interface="torch", diff_method="adjoint")

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        if self.device_name == "default.qubit":
            return self._probs_qnode(list(angles))
        return _LightningProbs.apply(self, *angles)


def memory_bytes(ansatz: Ansatz, device_name: str) -> int:
    """Peak memory of one differentiable simulation (complex128 states): backprop keeps the state after every gate;
    Lightning's adjoint the forward state, bra and ket, observable and probabilities."""
    if device_name == "default.qubit":
        kept = ansatz.n_blocks * sum(max(len(layer.wires), 1) for layer in ansatz.block) + 2
    else:
        kept = 6
    return int(2**ansatz.n_qubits * 16 * kept * 1.5)

"""Ansatz definitions, written once as data.

An ansatz is one *block* repeated ``n_blocks`` times, each block with its own angles.
A block is an ordered tuple of layers:

* a rotation layer applies the same one-qubit gate (``RY`` or ``U3``) to every qubit;
* an entangling layer applies a two-qubit gate (``CNOT`` or ``CU3``) to each
  (control, target) pair of a layout (``chain``: 0-1, 1-2, ..., ``ring``: chain + (n-1)-0),
  one pair after the other.

The one gate encoding every simulator compiles from is :meth:`Ansatz.ops`: each gate application
in program order, as an :class:`Op` (its gate's name in :data:`GATES`, wires, block, and where its
angles are). The backends (:mod:`qt.core.quantum.backends`) only interpret that list, so all of
them simulate exactly the same circuit. Wire 0 is the most significant bit of a basis-state
index, as in PennyLane.

The two presets in ``conf/circuit/``:

* ``ry_cnot``: RY on every qubit, then a CNOT chain;
* ``u3``: U3 on every qubit, then a ring of CU3 (the Quantum-Train authors' toolkit).

``entangle=False`` (``variant=no_entanglement``) removes every entangling gate, so the state
stays a product state: the control Bowles, Ahmed and Schuld's QML benchmark study uses
(XanaduAI/qml-benchmarks ships ``*Separable`` twins of several models, listed in
``src/qml_benchmarks/models/__init__.py``, and separable baselines in ``models/separable.py``). A CNOT has no angles, so RY+CNOT keeps
its parameter count. A CU3 has three: it becomes the same U3 on its target wire with the
control removed (the gate a CU3 applies when its control is |1>), so U3+CU3 keeps its budget
and its angle tensors; the extra U3 is redundant with the next one on that wire (two
one-qubit gates multiply into one), which is the point: the same trainable angles, no
entanglement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from qt.core.checks import whole
from qt.errors import ConfigError


@dataclass(frozen=True)
class GateKind:
    """What a simulator needs to know of a gate besides its matrix (:mod:`qt.core.quantum.gates` has those)."""

    wires: int  # qubits it acts on: (target,) or (control, target)
    params: int  # angles per application
    real: bool  # its matrix is real, so a state it acts on stays real
    permutation: bool = False  # a constant gate that permutes basis states (a run of them is one gather of the state)


#: every gate an ansatz may hold
GATES = {
    "RY": GateKind(wires=1, params=1, real=True),
    "U3": GateKind(wires=1, params=3, real=False),
    "CNOT": GateKind(wires=2, params=0, real=True, permutation=True),
    "CU3": GateKind(wires=2, params=3, real=False),
}
ROTATIONS = ("RY", "U3")
ENTANGLERS = ("CNOT", "CU3")
LAYOUTS = ("chain", "ring")
#: what a parameterised entangling gate becomes without its control (``entangle=False``)
UNCONTROLLED = {"CU3": "U3"}


@dataclass(frozen=True)
class Layer:
    """One layer of a block: ``gate`` applied to each wire tuple in ``wires``, in order."""

    gate: str
    wires: tuple[tuple[int, ...], ...]

    @property
    def params_per_gate(self) -> int:
        return GATES[self.gate].params

    @property
    def n_params(self) -> int:
        return self.params_per_gate * len(self.wires)


@dataclass(frozen=True)
class Op:
    """One gate application, in program order: the encoding every backend compiles from (:meth:`Ansatz.ops`).

    Its angles are ``angles[tensor][block, index]`` in the ansatz's angle tensors (:meth:`Ansatz.angle_shapes`),
    or ``flat[offset : offset + params]`` in those tensors flattened and concatenated; ``tensor`` is -1 for
    a gate without angles. ``layer`` is its layer's index in the block.
    """

    gate: str
    wires: tuple[int, ...]
    block: int
    layer: int
    index: int
    tensor: int
    offset: int

    @property
    def kind(self) -> GateKind:
        return GATES[self.gate]

    def angles_in(self, angles: list):
        """This gate's angles (a vector of ``params``) in the ansatz's angle tensors; ``None`` for a gate without."""
        return angles[self.tensor][self.block, self.index] if self.tensor >= 0 else None


@dataclass(frozen=True)
class Ansatz:
    """A block of layers repeated ``n_blocks`` times on ``n_qubits`` qubits.

    ``groups``: (first wire, qubits) of each sub-circuit of a distributed ansatz
    (``circuit.partitions``): no gate crosses a group, so the circuit is the tensor product
    of the sub-circuits (:meth:`parts`); empty for one circuit.
    """

    n_qubits: int
    n_blocks: int
    block: tuple[Layer, ...]
    groups: tuple[tuple[int, int], ...] = ()

    @property
    def param_layers(self) -> tuple[Layer, ...]:
        """Layers that carry angles, in order; one angle tensor each."""
        return tuple(layer for layer in self.block if layer.n_params)

    def angle_shapes(self) -> list[tuple[int, int, int]]:
        """Shape of each angle tensor: (n_blocks, gates in the layer, angles per gate)."""
        return [(self.n_blocks, len(layer.wires), layer.params_per_gate) for layer in self.param_layers]

    @property
    def n_params(self) -> int:
        return self.n_blocks * sum(layer.n_params for layer in self.block)

    @property
    def is_real(self) -> bool:
        """True when every gate is real, so the state vector stays real."""
        return all(GATES[layer.gate].real for layer in self.block)

    def ops(self, blocks: int | None = None) -> list[Op]:
        """Every gate application in program order (block by block, layer by layer, gate by gate); ``blocks``: the first ones only."""
        tensor, start, offset = {}, {}, 0
        for li, layer in enumerate(self.block):
            if layer.n_params:
                tensor[li], start[li] = len(tensor), offset
                offset += self.n_blocks * layer.n_params
        out = []
        for b in range(self.n_blocks if blocks is None else blocks):
            for li, layer in enumerate(self.block):
                for j, wires in enumerate(layer.wires):
                    off = start[li] + (b * len(layer.wires) + j) * layer.params_per_gate if layer.n_params else 0
                    out.append(Op(layer.gate, tuple(wires), b, li, j, tensor.get(li, -1), off))
        return out

    def parts(self) -> list[tuple[Ansatz, list[slice]]]:
        """Per sub-circuit (``groups``): its ansatz on its own wires (renumbered from 0) and, per
        angle tensor of the whole ansatz, the slice of its gates that sub-circuit owns (empty
        slices dropped, so the list matches the sub-ansatz's own angle tensors). One circuit: itself."""
        if len(self.groups) <= 1:
            return [(self, [slice(None)] * len(self.param_layers))]
        out = []
        for start, size in self.groups:
            inside = [[j for j, w in enumerate(layer.wires) if all(start <= q < start + size for q in w)] for layer in self.block]
            block = tuple(
                Layer(layer.gate, tuple(tuple(q - start for q in layer.wires[j]) for j in idx))
                for layer, idx in zip(self.block, inside)
            )
            # each group's gates are contiguous in every layer (the layers are concatenations of the groups')
            slices = [slice(idx[0], idx[-1] + 1) for layer, idx in zip(self.block, inside) if layer.n_params and idx]
            out.append((Ansatz(n_qubits=size, n_blocks=self.n_blocks, block=block), slices))
        return out


def entangler_pairs(n_qubits: int, layout: str) -> tuple[tuple[int, int], ...]:
    """(control, target) pairs of an entangling layer."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown entangler layout '{layout}': use circuit.layout=chain or ring")
    pairs = [(q, q + 1) for q in range(n_qubits - 1)]
    if layout == "ring" and n_qubits > 2:
        pairs.append((n_qubits - 1, 0))
    return tuple(pairs)


def group_sizes(n_qubits: int, partitions: int) -> list[int]:
    """Qubits per sub-circuit: ``partitions`` contiguous groups as equal as possible, the larger first."""
    q, r = divmod(int(n_qubits), int(partitions))
    return [q + (1 if i < r else 0) for i in range(int(partitions))]


def build_ansatz(
    rotation: str, entangler: str, layout: str, n_qubits: int, n_blocks: int, entangle: bool = True, partitions: int = 1
) -> Ansatz:
    """The single definition of every qt ansatz: [rotation on all qubits, entangler on layout] x n_blocks.

    ``entangle=False``: the entangling layer removed (CNOT) or un-controlled (CU3 -> U3 on its
    target wire), the same parameter count without entanglement (module docstring).

    ``partitions=K`` (the distributed ansatz of Liu, Lin and Chen, arXiv 2409.06992): the same
    ansatz built on each of K contiguous qubit groups (:func:`group_sizes`), side by side, each
    with its own angles; no gate crosses a group. For a chain that is the one-circuit ansatz
    with the entangling gates across group boundaries removed; a ring closes within each
    group. ``partitions=1`` is the one-circuit ansatz itself.
    """
    partitions = whole(partitions, "circuit.partitions", hint="1 (one circuit) up to the number of qubits")
    if partitions > 1:
        if partitions > int(n_qubits):
            raise ConfigError(f"circuit.partitions={partitions} but the circuit has {int(n_qubits)} qubits: use 1 to {int(n_qubits)}")
        subs, start, groups = [], 0, []
        for size in group_sizes(n_qubits, partitions):
            subs.append(build_ansatz(rotation, entangler, layout, size, n_blocks, entangle))
            groups.append((start, size))
            start += size
        block = tuple(
            Layer(layers[0].gate, tuple(tuple(q + s for q in w) for layer, (s, _) in zip(layers, groups) for w in layer.wires))
            for layers in zip(*(sub.block for sub in subs))
        )
        return Ansatz(n_qubits=int(n_qubits), n_blocks=subs[0].n_blocks, block=block, groups=tuple(groups))
    check_gates(rotation, entangler, layout)
    n_blocks = check_blocks(n_blocks)
    if int(n_qubits) < 1:
        raise ConfigError(f"a circuit needs at least one qubit (got {n_qubits})")
    pairs = entangler_pairs(n_qubits, layout)
    if entangle:
        second: tuple[Layer, ...] = (Layer(entangler, pairs),)
    elif GATES[entangler].params:  # a parameterised entangler keeps its angles on its target wire
        second = (Layer(UNCONTROLLED[entangler], tuple((t,) for _, t in pairs)),)
    else:
        second = ()
    block = (Layer(rotation, tuple((q,) for q in range(n_qubits))), *second)
    return Ansatz(n_qubits=int(n_qubits), n_blocks=int(n_blocks), block=block)


def cnot_permutation(n_qubits: int, pairs: Iterable[tuple[int, ...]], positions: Sequence[int] | None = None) -> np.ndarray:
    """Index permutation P (uint64) with ``state[P]`` = the state after the CNOTs (control, target), in order.

    CNOTs permute basis states, so a run of them is one gather of the state; both qt
    backends apply CNOT runs this way. ``positions``: the bit of the index each wire is
    stored in (default: wire 0 the most significant, as everywhere else).
    """
    bit = list(positions) if positions is not None else [n_qubits - 1 - q for q in range(n_qubits)]
    idx = np.arange(2**n_qubits, dtype=np.uint64)
    perm = idx.copy()
    for control, target in pairs:
        cmask, tmask = np.uint64(1 << bit[control]), np.uint64(1 << bit[target])
        perm = perm[np.where(idx & cmask != 0, idx ^ tmask, idx)]
    return perm


def check_gates(rotation: str, entangler: str, layout: str) -> None:
    """The rule for the gates and the layout of an ansatz (circuits and the config alike)."""
    if rotation not in ROTATIONS:
        raise ConfigError(f"unknown rotation gate '{rotation}': use circuit.rotation=RY or U3")
    if entangler not in ENTANGLERS:
        raise ConfigError(f"unknown entangling gate '{entangler}': use circuit.entangler=CNOT or CU3")
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown entangler layout '{layout}': use circuit.layout=chain or ring")


def check_blocks(n_blocks) -> int:
    """The rule for ``n_blocks`` (circuits and the config alike)."""
    return whole(n_blocks, "n_blocks", hint="set n_blocks=1 or more")

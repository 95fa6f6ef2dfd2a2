"""Benchmark: circuit simulation and training-step cost, printed as tables.

    python -m qt.bench [--repeats 20] [--threads N] [--skip-pennylane] [--full --data-dir ../shared/data]

Every figure is a median over ``--repeats`` timed runs after warm-up runs; ratios compare
runs in this same process. Sections:

1. circuit probabilities + gradient of a scalar loss, 13 qubits, 8 and 16 blocks, both
   ansätze: qt's torch backend vs PennyLane ``default.qubit`` (backprop) and
   ``lightning.qubit`` (adjoint);
2. the torch backend at 10, 16, 19 and 20 qubits: time and peak memory (each size in a
   fresh subprocess, peak resident memory above the process's baseline);
3. one full training step (batch 64 and 128) of QT vs the classical step of the same
   target (``cnn_qtt``, MNIST shape), and their ratio;
4. projected full-MNIST epoch (48,000 training images) for ``circuit=u3 n_blocks=16`` at
   batch 64, and with ``--full`` a measured one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

import torch

from qt.learner import ClassicalLearner, QTLearner
from qt.mapping import WeightGenerator
from qt.models import SimpleCNN
from qt.quantum import QuantumCircuit
from qt.quantum.pennylane_backend import PennyLaneBackend

ANSATZE = {"ry_cnot": ("RY", "CNOT", "chain"), "u3": ("U3", "CU3", "ring")}


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def circuit_step(n_qubits: int, n_blocks: int, ansatz: str, backend: str) -> Callable[[], None]:
    """One probabilities + gradient evaluation of sum(w * p)."""
    torch.manual_seed(0)
    circuit = QuantumCircuit(n_qubits, n_blocks, *ANSATZE[ansatz], dtype="float32" if backend == "torch" else "float64")
    w = torch.randn(2**n_qubits, dtype=circuit.dtype)
    if backend == "torch":
        probs = circuit
    else:
        sim = PennyLaneBackend(circuit.ansatz, backend)
        angles = list(circuit.angles)

        def probs():
            return sim.probs(angles)

    def step():
        for p in circuit.parameters():
            p.grad = None
        (probs() * w).sum().backward()

    return step


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"\n### {title}\n", line(header), sep, *[line(r) for r in rows]])


def section_circuits(repeats: int, skip_pennylane: bool) -> str:
    rows = []
    for ansatz in ANSATZE:
        for blocks in (8, 16):
            t_torch = median_ms(circuit_step(13, blocks, ansatz, "torch"), repeats)
            row = [ansatz, str(blocks), f"{t_torch:.2f}"]
            for dev in ("default.qubit", "lightning.qubit"):
                if skip_pennylane:
                    row += ["-", "-"]
                    continue
                t = median_ms(circuit_step(13, blocks, ansatz, dev), max(3, repeats // 5), warmup=1)
                row += [f"{t:.1f}", f"{t / t_torch:.0f}x"]
            rows.append(row)
    header = ["ansatz", "blocks", "qt torch ms", "default.qubit ms", "ratio", "lightning.qubit ms", "ratio"]
    return table("Circuit probabilities + gradient, 13 qubits (median ms)", header, rows)


def _scaling_child(n_qubits: int, ansatz: str, repeats: int) -> None:
    """Runs in a subprocess: prints JSON {ms, peak_mib} for one size."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step = circuit_step(n_qubits, 16, ansatz, "torch")
    ms = median_ms(step, repeats, warmup=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"ms": ms, "peak_mib": (peak - base) / 1024}))


def section_scaling(repeats: int, threads: int) -> str:
    rows = []
    for ansatz in ANSATZE:
        for n in (10, 13, 16, 19, 20):
            reps = repeats if n <= 16 else max(3, repeats // 5)
            cmd = [sys.executable, "-m", "qt.bench", "--_child", f"{n},{ansatz},{reps}", "--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                rows.append([ansatz, str(n), "failed", out.stderr.strip().splitlines()[-1][:60]])
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append([ansatz, str(n), f"{r['ms']:.1f}", f"{r['peak_mib']:.0f}"])
    header = ["ansatz", "qubits", "probs+grad ms (16 blocks)", "peak memory MiB"]
    return table("Torch backend scaling, 16 blocks", header, rows)


def _learners(ansatz: str, blocks: int):
    torch.manual_seed(0)
    qt = QTLearner(
        SimpleCNN(),
        partial(QuantumCircuit, n_blocks=blocks, rotation=ANSATZE[ansatz][0], entangler=ANSATZE[ansatz][1], layout=ANSATZE[ansatz][2]),
        partial(WeightGenerator, hidden=[20, 20]),
    )
    return qt, ClassicalLearner(SimpleCNN())


def train_step_fn(learner, batch: int) -> Callable[[], None]:
    """The training loop's own step (:meth:`qt.loop.Trainer.train_step`) on a fixed random batch."""
    from qt.data import DataSplits, Split
    from qt.loop import Trainer, TrainerConfig

    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    split = Split(x, y)
    trainer = Trainer(
        learner,
        DataSplits(split, split, split, 10, "random"),
        partial(torch.optim.Adam, lr=1e-3),
        None,
        TrainerConfig(batch_size=batch, clip_norm=10.0, progress=False, checkpoint_every=0),
        tempfile.mkdtemp(prefix="qt-bench-"),
        torch.device("cpu"),
        {},
    )

    return lambda: trainer.train_step(x, y)


def section_steps(repeats: int) -> tuple[str, float]:
    rows = []
    u3_64 = None
    for ansatz, blocks in (("ry_cnot", 8), ("ry_cnot", 16), ("u3", 16)):
        for batch in (64, 128):
            qt, classical = _learners(ansatz, blocks)
            t_qt = median_ms(train_step_fn(qt, batch), repeats)
            t_cl = median_ms(train_step_fn(classical, batch), repeats)
            rows.append([ansatz, str(blocks), str(batch), f"{t_qt:.2f}", f"{t_cl:.2f}", f"{t_qt / t_cl:.2f}"])
            if (ansatz, blocks, batch) == ("u3", 16, 64):
                u3_64 = t_qt
    header = ["circuit", "blocks", "batch", "QT step ms", "classical step ms", "QT / classical"]
    return table("Training step, cnn_qtt target, MNIST shape (median ms)", header, rows), u3_64


def section_epoch(u3_64_ms: float, full: bool, data_dir: str | None) -> str:
    steps = 48000 // 64 + (48000 % 64 > 0)
    rows = [["projected (750 steps x median step)", f"{steps * u3_64_ms / 1000:.1f}"]]
    if full:
        from qt.data import IdxImages
        from qt.loop import TrainerConfig, Trainer, evaluate

        data = IdxImages("MNIST", data_dir or "data", shape=[1, 28, 28], num_classes=10, mean=[0.1307], std=[0.3081]).load()
        qt, _ = _learners("u3", 16)
        cfg = TrainerConfig(epochs=1, batch_size=64, progress=False, checkpoint_every=0)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(qt, data, partial(torch.optim.Adam, lr=3e-3), None, cfg, tmp, torch.device("cpu"), {})
            t0 = time.perf_counter()
            trainer.train_epoch()
            train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate(qt, data.val, 2000)
        rows.append(["measured: training steps of one epoch", f"{train_s:.1f}"])
        rows.append(["measured: + validation pass", f"{train_s + time.perf_counter() - t0:.1f}"])
    return table("Full-MNIST epoch, circuit=u3 n_blocks=16, batch 64 (seconds)", ["", "s"], rows)


def header(threads: int) -> str:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"qt benchmark — {cpu}, {os.cpu_count()} cores, torch threads {threads}; "
        f"torch {torch.__version__}, pennylane {version('pennylane')}, lightning {version('pennylane-lightning')}, "
        f"python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qt.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-pennylane", action="store_true", help="skip the PennyLane columns (slow)")
    parser.add_argument("--skip-scaling", action="store_true", help="skip the 10-20 qubit section")
    parser.add_argument("--full", action="store_true", help="also time one real full-MNIST epoch")
    parser.add_argument("--data-dir", default=os.environ.get("QT_DATA_DIR"), help="dataset root for --full")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._child:
        n, ansatz, reps = args._child.split(",")
        _scaling_child(int(n), ansatz, int(reps))
        return 0
    print(header(args.threads))
    print(section_circuits(args.repeats, args.skip_pennylane), flush=True)
    if not args.skip_scaling:
        print(section_scaling(args.repeats, args.threads), flush=True)
    steps, u3_64 = section_steps(args.repeats)
    print(steps, flush=True)
    print(section_epoch(u3_64, args.full, args.data_dir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

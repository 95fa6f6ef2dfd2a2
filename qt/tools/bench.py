"""Benchmark: circuit simulation and training-step cost, printed as tables.

    python -m qt.bench [--repeats 20] [--threads N] [--skip-pennylane] [--skip-scaling] [--sections a,b]
                       [--full --data-dir ../shared/data]

Every figure is a median over ``--repeats`` timed runs after warm-up runs; ratios compare
runs in this same process. Rows are measured with 1 torch thread and with ``--threads``
(default: all cores). Sections:

1. circuit probabilities + gradient of a scalar loss, 13 qubits, 16 and 64 blocks, both
   ansätze: the fused backend (compiled forward + adjoint backward) vs qt's torch backend,
   PennyLane ``default.qubit`` (backprop) and ``lightning.qubit`` (adjoint);
2. fused and torch backends at 10 to 20 qubits: time and peak memory (each size in a fresh
   subprocess, peak resident memory above the process's baseline);
3. one full training step (batch 64 and 128) of QT, built from the real configs
   (``experiment=mnist_1500``; ``circuit=u3 n_blocks=16``), with each backend, vs the
   classical step of the same target (``mode=classical``), and their ratio;
4. projected full-MNIST epoch (48,000 training images) of the ``experiment=mnist_1500``
   recipe at batch 128, and with ``--full`` a measured one;
5. ``large`` (not in the default run): one training step of the large target
   (``experiment=fmnist_large``, 222,986 weights) at ``mapping.chunk`` 1 to 256, and of
   wider versions of it that need 19 and 20 qubits at chunk 1, vs the classical step of
   the same target (each in fresh subprocesses, alternating), with the peak resident memory;
   each row in a fresh subprocess;
6. ``mapping``: the MLP mapping over every basis state (6,690 rows; 850,058 and 2^20 at 20 qubits), forward and
   forward + backward, the fused kernels (:mod:`qt.core.mapping_kernels`) against torch's layers, 1 thread and
   ``--threads``;
7. ``partitions`` (not in the default run): the same step at chunk 1 with 18, 19 and 20
   qubits, the circuit one circuit or split into K = 2 and 3 sub-circuits
   (``circuit.partitions``), vs the classical step of the same target, each row in a fresh
   subprocess with its peak memory, on 1 thread and on 2; the floor column adds to the classical step the
   elementwise passes any generator of the target's weights pays here (rescaling, per-tensor scale, assembly:
   :func:`elementwise_fn`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version

import torch

from qt.experiment.build import build_learner
from qt.experiment.config import compose_config
from qt.training.data import DataSplits, IdxImages, Split
from qt.core.learners import Learner
from qt.training.evaluation import evaluate
from qt.training.loop import Trainer
from qt.training.state import TrainerConfig
from qt.training.losses import CrossEntropy
from qt.core.quantum import QuantumCircuit

ANSATZE = {"ry_cnot": ("RY", "CNOT", "chain"), "u3": ("U3", "CU3", "ring")}
#: the training-step recipes: name -> Hydra overrides of conf/train.yaml
RECIPES = {"mnist_1500": ["experiment=mnist_1500"], "u3 16 blocks": ["circuit=u3", "n_blocks=16"]}
#: what each training-step column runs, as overrides added to a recipe's
STEP_VARIANTS = {"fused": ["circuit.backend=fused"], "torch": ["circuit.backend=torch"], "classical": ["mode=classical"]}
#: the large-target rows: label -> overrides (the budget is lifted: a row measures cost, not a recipe)
_LARGE = ["experiment=fmnist_large", "max_trainable_params=null"]
LARGE = {
    **{f"chunk {c}": [*_LARGE, f"mapping.chunk={c}"] for c in (1, 4, 16, 64, 256)},
    **{f"hidden [{h}, 64], chunk 1": [*_LARGE, "mapping.chunk=1", f"model.hidden=[{h},64]"] for h in (256, 512)},
}
#: the partitions rows: the large target at chunk 1 (18 qubits) and its 19- and 20-qubit widenings, K = 1, 2, 3
#: sub-circuits, with the experiment's MLP mapping and with the MPS mapping (contracted over all basis states at once)
_WIDTHS = {18: [], 19: ["model.hidden=[256,64]"], 20: ["model.hidden=[512,64]"]}
PARTITIONS = {
    f"{n} qubits, K={k}, {name}": [*_LARGE, "mapping.chunk=1", *extra, f"circuit.partitions={k}", *mapping]
    for name, mapping in (("mlp", []), ("mps", ["mapping=mps"]))
    for n, extra in _WIDTHS.items()
    for k in (1, 2, 3)
}


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median ms of each function, timed round-robin (one call of each per round).

    On a shared or throttled machine the speed drifts over seconds; alternating the runs
    exposes every variant to the same drift, so their ratio holds where absolute times vary.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def circuit_step(n_qubits: int, n_blocks: int, ansatz: str, backend: str) -> Callable[[], None]:
    """One probabilities + gradient evaluation of sum(w * p); float32 for qt's backends, float64 for PennyLane."""
    torch.manual_seed(0)
    dtype = "float32" if backend in ("fused", "torch") else "float64"  # PennyLane simulates in complex128 either way
    circuit = QuantumCircuit(n_qubits, n_blocks, *ANSATZE[ansatz], backend=backend, dtype=dtype)
    w = torch.randn(2**n_qubits, dtype=circuit.dtype)

    def step():
        for p in circuit.parameters():
            p.grad = None
        (circuit() * w).sum().backward()

    return step


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"\n### {title}\n", line(header), sep, *[line(r) for r in rows]])


def section_circuits(repeats: int, threads: int, skip_pennylane: bool) -> str:
    rows = []
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        for ansatz, blocks in (("ry_cnot", 16), ("ry_cnot", 64), ("u3", 16), ("u3", 64)):
            t = interleaved_ms({b: circuit_step(13, blocks, ansatz, b) for b in ("fused", "torch")}, repeats)
            t_fused, t_torch = t["fused"], t["torch"]
            row = [ansatz, str(blocks), str(n_threads), f"{t_fused:.2f}", f"{t_torch:.2f}", f"{t_torch / t_fused:.1f}x"]
            for dev in ("default.qubit", "lightning.qubit"):
                if skip_pennylane or blocks > 16 or n_threads != 1:
                    row += ["-", "-"]
                    continue
                t = median_ms(circuit_step(13, blocks, ansatz, dev), max(3, repeats // 5), warmup=1)
                row += [f"{t:.1f}", f"{t / t_fused:.0f}x"]
            rows.append(row)
    torch.set_num_threads(threads)
    header = ["ansatz", "blocks", "threads", "fused ms", "torch ms", "torch / fused", "default.qubit ms", "/ fused", "lightning.qubit ms", "/ fused"]
    return table("Circuit probabilities + gradient, 13 qubits, float32 (PennyLane float64), median ms", header, rows)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def _reset_peak() -> int:
    """Resets the resident high-water mark where Linux allows it; returns the KiB the peak is measured from."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        return _status_kib("VmRSS") or 0
    except OSError:  # elsewhere: the lifetime peak, which an import may already have set
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _scaling_child(n_qubits: int, ansatz: str, backend: str, repeats: int) -> None:
    """Runs in a subprocess: prints JSON {ms, peak_mib}: the median step and the peak resident memory it adds."""
    circuit_step(3, 1, ansatz, backend)()  # loads the compiled kernels and autograd's machinery, on a tiny circuit
    step = circuit_step(n_qubits, 16, ansatz, backend)
    base = _reset_peak()  # the peak of simulating, not of importing torch or loading kernels
    ms = median_ms(step, repeats, warmup=1)
    peak = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"ms": ms, "peak_mib": (peak - base) / 1024}))


def _scaling_run(n: int, ansatz: str, backend: str, repeats: int) -> list[str]:
    cmd = [sys.executable, "-m", "qt.bench", "--_child", f"{n},{ansatz},{backend},{repeats}", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return ["failed", out.stderr.strip().splitlines()[-1][:40]]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return [f"{r['ms']:.1f}", f"{r['peak_mib']:.0f}"]


def section_scaling(repeats: int) -> str:
    rows = []
    for ansatz in ANSATZE:
        for n in (10, 13, 16, 19, 20):
            reps = repeats if n <= 16 else max(3, repeats // 5)
            fused = _scaling_run(n, ansatz, "fused", reps)
            torch_ = _scaling_run(n, ansatz, "torch", max(3, reps // 2) if n >= 19 else reps)
            ratio = f"{float(torch_[0]) / float(fused[0]):.1f}x" if "failed" not in (fused[0], torch_[0]) else "-"
            rows.append([ansatz, str(n), *fused, *torch_, ratio])
    header = ["ansatz", "qubits", "fused ms", "fused peak MiB", "torch ms", "torch peak MiB", "torch / fused"]
    return table("Scaling, 16 blocks, 1 thread, float32: probabilities + gradient and peak memory", header, rows)


def elementwise_fn(learner) -> Callable[[], None] | None:
    """The generated weights' elementwise passes alone, forward and backward: ``learner``'s mapping (a copy) with its
    network the identity, on fixed probabilities, split into the target's tensors, each given a gradient (as the
    target's backward gives them). What any generator emitting the target's M weights through QT's rescaling,
    per-tensor scale and assembly pays: the floor column. None where a basis state emits several weights."""
    mapping = getattr(learner, "mapping", None)
    if mapping is None or mapping.chunk != 1:
        return None
    identity = copy.deepcopy(mapping)
    identity.network = lambda x: x[:, None]
    with torch.no_grad():
        probs = learner.circuit().detach()
    probs.requires_grad_(True)
    sizes = [shape.numel() for _, shape in learner.shapes]
    grads = [torch.randn(size) for size in sizes]

    def step():
        probs.grad = None
        torch.autograd.backward(torch.split(identity(probs), sizes), grads)

    step.probs = probs  # the leaf it differentiates, for a test
    return step


def _large_child(overrides: list[str], repeats: int, which: str) -> None:
    """Runs in a subprocess: prints JSON of one large-target measurement, batch 128: ``which`` = ``qt`` (its step,
    then the elementwise floor, each timed in a block of its own; peak memory) or ``classical`` (its step). One
    learner per process, as a run has (docs/performance.md, 2026-12-07: at 20 qubits, K = 2, the QT step took
    239-296 ms interleaved with the classical one in a process, 190 ms alone, 177-206 ms in the CLI)."""
    learner = recipe_learner([*overrides, "mode=classical"] if which == "classical" else overrides)
    out = {"step_ms": median_ms(train_step_fn(learner, 128), repeats, warmup=2)}
    if which == "qt":
        floor = elementwise_fn(learner)
        out["elementwise_ms"] = median_ms(floor, repeats, warmup=2) if floor is not None else None
        table_ = learner.param_table()
        out |= {k: table_[k] for k in ("target_weights", "n_qubits", "trainable_params")}
        out["peak_mib"] = (_status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    print(json.dumps(out))


def _child_json(overrides: list[str], repeats: int, threads: int, which: str) -> dict | str:
    cmd = [sys.executable, "-m", "qt.bench", "--_child-large", json.dumps([which, *overrides]), "--repeats", str(repeats), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:60]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _large_row(overrides: list[str], repeats: int, threads: int, rounds: int = 2) -> dict | str:
    """One large-target row on ``threads`` threads: QT and classical each in fresh subprocesses, alternating, for
    ``rounds`` rounds; each figure the median of its processes' medians. Its JSON, or why it failed."""
    runs: dict[str, list] = {"qt": [], "classical": []}
    for _ in range(rounds):
        for which in runs:
            r = _child_json(overrides, repeats, threads, which)
            if isinstance(r, str):
                return r
            runs[which].append(r)
    qt = runs["qt"][-1]
    med = statistics.median
    floor = [r["elementwise_ms"] for r in runs["qt"] if r["elementwise_ms"] is not None]
    return {
        **{k: qt[k] for k in ("target_weights", "n_qubits", "trainable_params")},
        "qt_ms": med(r["step_ms"] for r in runs["qt"]), "classical_ms": med(r["step_ms"] for r in runs["classical"]),
        "elementwise_ms": med(floor) if floor else None, "peak_mib": max(r["peak_mib"] for r in runs["qt"]),
    }  # fmt: skip


def section_large(repeats: int, rows_: dict[str, list[str]] | None = None, title: str | None = None, threads: tuple[int, ...] = (1,)) -> str:
    """Each row in a fresh subprocess per thread count in ``threads`` (the first: the full columns; the others: QT /
    classical on that many threads)."""
    rows = []
    extra = [f"QT / classical, {n} threads" for n in threads[1:]]
    for label, overrides in (rows_ or LARGE).items():
        r = _large_row(overrides, repeats, threads[0])
        if isinstance(r, str):
            rows.append([label, r, *["-"] * (7 + len(extra))])
            continue
        more = [_large_row(overrides, repeats, n) for n in threads[1:]]
        floor = f"{(r['classical_ms'] + r['elementwise_ms']) / r['classical_ms']:.2f}" if r.get("elementwise_ms") is not None else "-"
        rows.append([
            label, f"{r['target_weights']:,}", str(r["n_qubits"]), f"{r['trainable_params']:,}", f"{r['qt_ms']:.1f}",
            f"{r['classical_ms']:.1f}", f"{r['qt_ms'] / r['classical_ms']:.2f}", floor,
            *[m if isinstance(m, str) else f"{m['qt_ms'] / m['classical_ms']:.2f}" for m in more], f"{r['peak_mib']:,.0f}",
        ])  # fmt: skip
    header = [
        "experiment=fmnist_large", "target weights", "qubits", "trainable", "QT step ms", "classical ms", "QT / classical",
        "floor: (classical + elementwise) / classical", *extra, "peak RSS MiB",
    ]  # fmt: skip
    title = title or "Large target: training step, batch 128, 1 thread (median ms; QT and classical each in its own processes); process peak memory"
    return table(title, header, rows)


def recipe_learner(overrides: list[str]) -> Learner:
    """The learner that ``python -m qt.train OVERRIDES`` trains (same composition, same builder)."""
    cfg = compose_config(overrides)
    torch.manual_seed(0)
    return build_learner(cfg)


def train_step_fn(learner, batch: int) -> Callable[[], None]:
    """The training loop's own step (:meth:`qt.training.loop.Trainer.train_step`) on a fixed random batch."""
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    split = Split(x, y)
    cfg = TrainerConfig(batch_size=batch, clip_norm=10.0)
    trainer = Trainer(learner, DataSplits(split, split, split, 10, "random"), partial(torch.optim.Adam, lr=1e-3), cfg=cfg, loss_fn=CrossEntropy())

    return lambda: trainer.train_step((x, y))


def section_steps(repeats: int, threads: int) -> tuple[str, float]:
    rows = []
    mnist_128 = None
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        for name, overrides in RECIPES.items():
            for batch in (64, 128):
                steps = {k: train_step_fn(recipe_learner([*overrides, *extra]), batch) for k, extra in STEP_VARIANTS.items()}
                times = interleaved_ms(steps, repeats)
                cl = times["classical"]
                rows.append([
                    name, str(batch), str(n_threads), f"{times['fused']:.2f}", f"{times['torch']:.2f}", f"{cl:.2f}",
                    f"{times['fused'] / cl:.2f}", f"{times['torch'] / cl:.2f}",
                ])  # fmt: skip
                if (name, batch, n_threads) == ("mnist_1500", 128, 1):
                    mnist_128 = times["fused"]
    torch.set_num_threads(threads)
    header = ["recipe", "batch", "threads", "QT fused ms", "QT torch ms", "classical ms", "fused / classical", "torch / classical"]
    return table("Training step, cnn_qtt target, MNIST shape (median ms)", header, rows), mnist_128


#: task=sequence and task=rl recipes timed by the tasks section: (name, overrides)
TASK_RECIPES = {"sequence": ("sunspots_lstm, batch 16", ["experiment=sunspots_lstm"]), "rl": ("qtrl_cartpole", ["experiment=qtrl_cartpole"])}


def task_fns(overrides: list[str], steps: int = 200) -> dict[str, Callable[[], object]]:
    """The parts of a task=sequence or task=rl update for a recipe, each timed apart: ``update`` is the loop's own
    step minus the environment (sequence: the whole step; rl: weight generation, one batched forward over ``steps``
    observations, the REINFORCE loss, backward, optimizer step); ``env step`` is one environment step with the policy's
    forward on fixed weights (rl only)."""
    from qt.experiment.build import build_data, build_task
    from qt.training.rl import discounted, normalised

    cfg = compose_config(overrides)
    torch.manual_seed(0)
    learner, data, task = build_learner(cfg), build_data(cfg), build_task(cfg)
    trainer = Trainer(learner, data, partial(torch.optim.Adam, lr=1e-3), cfg=TrainerConfig(batch_size=int(cfg.trainer.batch_size)),
                      loss_fn=torch.nn.MSELoss(), task=task)  # fmt: skip
    if task.name == "sequence":
        batch = (data.train.x[: trainer.cfg.batch_size], data.train.y[: trainer.cfg.batch_size])
        return {"update": lambda: trainer.train_step(batch)}
    obs = torch.randn(steps, *data.shape)
    actions = torch.randint(0, data.num_actions, (steps,))
    advantage = normalised(discounted(torch.ones(steps, dtype=torch.float64), 0.99), 1e-8).float()

    def update() -> None:
        logp = torch.log_softmax(learner(obs, learner.weights()), -1).gather(1, actions[:, None])[:, 0]
        trainer.optimizer.zero_grad(set_to_none=True)
        (-(logp * advantage).sum()).backward()
        trainer.optimizer.step()

    fixed = {k: v.detach() for k, v in learner.weights().items()}
    env, last = data.env, [data.env.reset(seed=0)[0]]

    def env_step() -> None:
        with torch.no_grad():
            action = int(torch.multinomial(torch.softmax(learner(data.observe(last[0])[None], fixed)[0], 0), 1))
        obs, _, terminated, truncated, _ = env.step(action)
        last[0] = env.reset(seed=0)[0] if terminated or truncated else obs

    update.learner = learner  # type: ignore[attr-defined]  # what it trains (a test checks that it steps)
    return {"update": update, "env step": env_step}


def section_tasks(repeats: int) -> str:
    """task=sequence and task=rl: an update and (rl) an environment step, QT against the same target trained directly,
    each pair interleaved in this process (1 thread as set)."""
    rows = []
    for task, (name, overrides) in TASK_RECIPES.items():
        qt, classical = task_fns(overrides), task_fns([*overrides, "variant=classical"])
        for part in qt:
            times = interleaved_ms({"qt": qt[part], "classical": classical[part]}, repeats)
            rows.append([task, name, part, f"{times['qt']:.3f}", f"{times['classical']:.3f}", f"{times['qt'] / times['classical']:.2f}"])
    header = ["task", "recipe", "part", "QT ms", "classical ms", "QT / classical"]
    return table("Tasks: an update and an environment step (median ms; rl's update over a 200-step episode)", header, rows)


def section_breakdown(repeats: int) -> str:
    """Where a QT step goes (1 thread, batch 128): circuit, weight generation, the rest."""
    torch.set_num_threads(1)
    rows = []
    for name, overrides in RECIPES.items():
        qt = recipe_learner(overrides)

        def circuit():
            qt.circuit().sum().backward()

        def generation():
            sum(w.sum() for w in qt.weights().values()).backward()

        fns = {
            "circuit": circuit,
            "generation": generation,
            "qt": train_step_fn(qt, 128),
            "classical": train_step_fn(recipe_learner([*overrides, "mode=classical"]), 128),
        }
        t = interleaved_ms(fns, repeats)
        rest = t["qt"] - t["generation"]
        rows.append([
            name, f"{t['circuit']:.2f}", f"{t['generation'] - t['circuit']:.2f}", f"{rest:.2f}", f"{t['qt']:.2f}",
            f"{t['classical']:.2f}", f"{t['qt'] / t['classical']:.2f}", f"{(t['classical'] + t['circuit']) / t['classical']:.2f}",
        ])  # fmt: skip
    header = [
        "recipe", "circuit fwd+bwd", "mapping, scale, assembly", "target, loss, optimizer", "QT step",
        "classical step", "QT / classical", "floor: (classical + circuit) / classical",
    ]  # fmt: skip
    return table("Where a QT step goes, batch 128, 1 thread (median ms, interleaved)", header, rows)


#: the mapping rows: label -> (basis states, hidden widths): mnist_1500's mapping, the 20-qubit target's, and 2^20
MAPPINGS = {
    "mnist_1500 (13 qubits)": (6_690, (16, 16)),
    "20 qubits, hidden [512, 64]": (850_058, (20, 20)),
    "2^20 rows": (2**20, (20, 20)),
}


def section_mapping(repeats: int, threads: int) -> str:
    """The MLP mapping (ReLU, chunk 1) over every basis state: forward, and forward + backward, fused (the CPU
    default from FUSED_ROWS states) against torch's layers (the reference path, used below that and off CPU)."""
    from qt.core.mapping import MappingModel, basis_bits, qubits_for

    rows = []
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        for label, (states, hidden) in MAPPINGS.items():
            n = qubits_for(states)
            torch.manual_seed(0)
            model = MappingModel(n, hidden, "relu", 1)
            x = torch.rand(states, requires_grad=True)
            g = torch.randn(states, 1)
            bits = basis_bits(n, states, False)

            def fused_fwd():
                with torch.no_grad():
                    model.fused(n, (0.0, 1.0), x)

            def torch_fwd():
                with torch.no_grad():
                    model(torch.cat([bits, x[:, None]], dim=1))

            fns = {
                "fused fwd": fused_fwd,
                "torch fwd": torch_fwd,
                "fused": lambda: model.fused(n, (0.0, 1.0), x).backward(g),
                "torch": lambda: model(torch.cat([bits, x[:, None]], dim=1)).backward(g),
            }
            t = interleaved_ms(fns, max(5, repeats // 2) if states > 10**5 else repeats, warmup=2)
            rows.append([
                label, f"{states:,}", str(n_threads), f"{t['fused fwd']:.2f}", f"{t['torch fwd']:.2f}", f"{t['fused']:.2f}",
                f"{t['torch']:.2f}", f"{t['torch'] / t['fused']:.1f}x",
            ])  # fmt: skip
    torch.set_num_threads(threads)
    header = ["mapping", "rows", "threads", "fused fwd ms", "torch fwd ms", "fused fwd+bwd ms", "torch fwd+bwd ms", "torch / fused"]
    return table("MLP mapping over every basis state, ReLU, float32 (median ms, interleaved)", header, rows)


def section_epoch(step_ms: float, full: bool, data_dir: str | None) -> str:
    steps = -(-48000 // 128)
    rows = [["projected (375 steps x median 1-thread step)", f"{steps * step_ms / 1000:.1f}"]]
    if full:
        torch.set_num_threads(1)
        data = IdxImages("MNIST", data_dir or "data", shape=[1, 28, 28], num_classes=10, mean=[0.1307], std=[0.3081]).load()
        learner = recipe_learner(RECIPES["mnist_1500"])
        cfg = TrainerConfig(epochs=1, batch_size=128)
        trainer = Trainer(learner, data, partial(torch.optim.Adam, lr=1e-2), cfg=cfg, loss_fn=CrossEntropy())
        t0 = time.perf_counter()
        trainer.train_epoch()
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate(learner, data.val, 2000)
        rows.append(["measured: training steps of one epoch", f"{train_s:.1f}"])
        rows.append(["measured: + validation pass", f"{train_s + time.perf_counter() - t0:.1f}"])
    return table("Full-MNIST epoch, experiment=mnist_1500, batch 128, 1 thread (seconds)", ["", "s"], rows)


def header(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"qt benchmark — {cpu}, {os.cpu_count()} cores, torch threads {threads}; "
        f"torch {torch.__version__}, numba {version('numba')}, pennylane {version('pennylane')}, "
        f"lightning {version('pennylane-lightning')}, "
        f"python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qt.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="the all-threads rows (default: torch's)")
    parser.add_argument("--skip-pennylane", action="store_true", help="skip the PennyLane columns (slow)")
    parser.add_argument("--skip-scaling", action="store_true", help="skip the 10-20 qubit section")
    parser.add_argument("--sections", default="circuits,scaling,steps,breakdown,mapping,epoch", help="comma-separated subset to run (also: large, partitions, tasks)")
    parser.add_argument("--full", action="store_true", help="also time one real full-MNIST epoch")
    parser.add_argument("--data-dir", default=os.environ.get("QT_DATA_DIR"), help="dataset root for --full")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_child-large", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._child:
        n, ansatz, backend, reps = args._child.split(",")
        _scaling_child(int(n), ansatz, backend, int(reps))
        return 0
    if args._child_large:
        which, *overrides = json.loads(args._child_large)
        _large_child(overrides, args.repeats, which)
        return 0
    sections = set(args.sections.split(","))
    print(header(args.threads))
    if "circuits" in sections:
        print(section_circuits(args.repeats, args.threads, args.skip_pennylane), flush=True)
    if "scaling" in sections and not args.skip_scaling:
        print(section_scaling(args.repeats), flush=True)
    if "steps" in sections:
        steps, mnist_128 = section_steps(args.repeats, args.threads)
        print(steps, flush=True)
        if "epoch" in sections:
            print(section_epoch(mnist_128, args.full, args.data_dir), flush=True)
    if "breakdown" in sections:
        print(section_breakdown(args.repeats), flush=True)
    if "mapping" in sections:
        print(section_mapping(args.repeats, args.threads), flush=True)
    if "large" in sections:
        print(section_large(args.repeats), flush=True)
    if "tasks" in sections:
        print(section_tasks(args.repeats), flush=True)
    if "partitions" in sections:
        title = "Distributed circuit (circuit.partitions=K): large target at chunk 1, training step, batch 128, 1 thread (and 2); process peak memory"
        print(section_large(args.repeats, PARTITIONS, title, threads=(1, 2)), flush=True)
    return 0

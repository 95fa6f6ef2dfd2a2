"""Aggregation: any mix of run dirs, multirun/sweep dirs and Optuna storages -> one tidy DataFrame.

    from qt.analysis.runs import load_runs
    df = load_runs("outputs/sweeps/ablation_grid", "outputs/2026-11-21")

One row per run, read from the one results schema (``summary.json``, ``metrics.csv``):
the flattened config (dataset, mode, variant, generator, model, circuit, n_blocks, layout, mapping, optimizer,
lr, clip norm, batch size, seed, loss, shots, ...), parameter counts, metrics
(best val acc, test acc, train/test loss, generalization gap = test CE - train CE, epochs,
training time, wall time, step time) and status: ``completed``, ``pruned`` (a sweep's pruner
stopped it; its metrics are those of its best epoch so far), ``diverged``, ``failed`` or
``incomplete`` (a run that never finished, or a dir without a readable summary). Run dirs
written by a newer schema are reported with status ``unsupported``, not crashed on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from qt.core.checks import REQUIRED, constructor_defaults
from qt.core.mapping import MappingBase, network_kind
from qt.core.quantum.circuit import QuantumCircuit
from qt.experiment.controls import control_of
from qt.experiment.validation import settings_class
from qt.results.compat import upgrade, upgrade_choices
from qt.results.schema import SCHEMA_VERSION, read_summary
from qt.analysis.stats import run_keys
from qt.sweeps.study import make_storage

#: columns every frame has, in this order (then any extra config columns, sorted)
COLUMNS = [
    "run_dir",
    "status",
    "reason",
    "experiment",
    "dataset",
    "mode",
    "variant",
    "generator",
    "model",
    "circuit",
    "rotation",
    "entangler",
    "layout",
    "n_blocks",
    "frozen",
    "shots",
    "gradient",
    "depolarizing",
    "depolarizing_2q",
    "amplitude_damping",
    "readout",
    "partitions",
    "target_activation",
    "mapping",
    "mapping_net",
    "mapping_hidden",
    "bond_dim",
    "activation",
    "scale",
    "rescale",
    "center",
    "signed_bits",
    "chunk",
    "optimizer",
    "lr",
    "weight_decay",
    "scheduler",
    "loss",
    "clip_norm",
    "batch_size",
    "epochs",
    "seed",
    "target_weights",
    "n_qubits",
    "qnn_params",
    "mapping_params",
    "trainable_params",
    "compression_ratio",
    "first_step_loss",
    "best_val_acc",
    "best_epoch",
    "test_acc",
    "test_subset_acc",
    "train_acc",
    "train_loss",
    "test_loss",
    "gen_gap",
    "epochs_completed",
    "train_time_s",
    "wall_time_s",
    "step_time_s",
    "qpu_executions",
    "qpu_shots",
    "teacher_test_acc",
    "budget",
    "group_key",
    "training_key",
    "schema_version",
]


def _short(target: str | None) -> str | None:
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else None


def _choices(run_dir: Path) -> dict[str, str]:
    """The option chosen for each config group, from Hydra's record of the run (read once per run)."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.exists():
        return {}
    try:
        return upgrade_choices(dict(_yaml(path)["hydra"]["runtime"]["choices"]))  # an older qt's run: groups added since
    except (KeyError, TypeError):
        return {}


def _yaml(path: Path) -> Any:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _summary_fields(summary: dict) -> dict:
    """Status, parameter counts and metrics of a summary this qt reads."""
    status = summary.get("status")
    row: dict[str, Any] = {
        "schema_version": summary.get("schema_version"),
        "status": "incomplete" if status == "running" else status,
        "reason": summary.get("reason") if status != "running" else "did not finish (killed, or still running)",
    }
    params = summary.get("params") or {}
    for key in ("target_weights", "n_qubits", "qnn_params", "mapping_params", "trainable_params", "compression_ratio"):
        row[key] = params.get(key)
    for key in ("best_val_acc", "best_epoch", "test_acc", "test_subset_acc", "train_acc", "train_loss", "test_loss", "epochs_completed", "train_time_s", "wall_time_s", "step_time_s"):
        row[key] = summary.get(key)
    if row["schema_version"] == 1:  # v1's wall_time_s was training steps plus per-epoch validation: neither time of v2
        row["wall_time_s"] = None
    if row.get("test_loss") is not None and row.get("train_loss") is not None:
        row["gen_gap"] = row["test_loss"] - row["train_loss"]
    row["teacher_test_acc"] = (summary.get("teacher") or {}).get("test_acc")
    row["first_step_loss"] = (summary.get("init") or {}).get("first_step_loss")
    qpu = summary.get("qpu") or {}
    row["qpu_executions"], row["qpu_shots"] = qpu.get("circuit_executions"), qpu.get("shots")
    return row


def _config_fields(cfg: dict, choices: dict[str, str]) -> dict:
    """The experiment's factors, from the resolved config and the options Hydra recorded."""
    mode = cfg.get("mode")
    optimizer, trainer, dataset = cfg.get("optimizer") or {}, cfg.get("trainer") or {}, cfg.get("dataset") or {}
    row = dict(
        dataset=choices.get("dataset") or dataset.get("name") or _short(dataset.get("_target_")),
        experiment=choices.get("experiment"),
        mode=mode,
        variant=control_of(cfg) if cfg else choices.get("variant"),
        model=choices.get("model") or _short((cfg.get("model") or {}).get("_target_")),
        target_activation=(cfg.get("model") or {}).get("activation"),
        optimizer=choices.get("optimizer") or _short(optimizer.get("_target_")),
        lr=optimizer.get("lr"),
        weight_decay=optimizer.get("weight_decay"),
        scheduler=choices.get("scheduler") or _short((cfg.get("scheduler") or {}).get("_target_")) or "none",
        loss=choices.get("loss") or _short((cfg.get("loss") or {}).get("_target_")),
        clip_norm=trainer.get("clip_norm"),
        batch_size=trainer.get("batch_size"),
        epochs=trainer.get("epochs"),
        seed=trainer.get("seed", cfg.get("seed")),
        budget=(cfg.get("model") or {}).get("max_params"),
        **run_keys(cfg),
    )
    if mode != "classical":
        circuit, mapping = cfg.get("circuit") or {}, cfg.get("mapping") or {}
        row.update(generator=cfg.get("generator", "quantum"), circuit=choices.get("circuit"), mapping=choices.get("mapping"))
        row.update(settings_columns({"n_blocks": cfg.get("n_blocks"), **circuit}, QuantumCircuit))
        row.update(settings_columns(mapping, MappingBase), mapping_net=network_kind(mapping))
    return row


#: report columns kept under the names earlier reports gave them (every other setting: its own name)
COLUMN_NAMES = {"freeze": "frozen", "hidden": "mapping_hidden"}


def settings_columns(node: dict, default: type) -> dict:
    """A circuit or mapping node as report columns, derived from the class it builds (its ``_target_``): every
    setting its constructor takes, at the run's value or the constructor's default (an older run's missing keys
    were given their meaning then by :func:`~qt.results.compat.upgrade`), a settings block (``circuit.noise``)
    as its fields; lists as text, so that they group."""
    cls = settings_class(node, default)
    row: dict[str, Any] = {}
    for key, value in constructor_defaults(cls).items():
        value = node.get(key, value)
        if key in cls.OWN_ARGUMENTS or value is REQUIRED:
            continue
        block = cls.SETTINGS_BLOCKS.get(key)
        if block is not None:
            row.update({leaf: (value or {}).get(leaf, d) for leaf, d in constructor_defaults(block).items()})
        else:
            row[COLUMN_NAMES.get(key, key)] = str(list(value)) if isinstance(value, (list, tuple)) else value
    return row


def flatten_run(run_dir: Path) -> dict:
    """One row for one run dir."""
    run_dir = Path(run_dir)
    row: dict[str, Any] = {"run_dir": str(run_dir)}
    summary = read_summary(run_dir)
    if summary is None:
        row["status"] = "incomplete"
        row["reason"] = "no readable summary.json (never started, or not a qt run)"
        cfg = _yaml(run_dir / ".hydra" / "config.yaml") if (run_dir / ".hydra" / "config.yaml").exists() else {}
    else:
        version = summary.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            reason = f"results schema {version} is newer than this qt reads ({SCHEMA_VERSION}): update qt"
            return {**row, "schema_version": version, "status": "unsupported", "reason": reason}
        row.update(_summary_fields(summary))
        cfg = summary.get("config") or {}
    row.update(_config_fields(upgrade(cfg), _choices(run_dir)))  # an older qt's run: today's names and meanings
    return row


def find_run_dirs(path: Path) -> list[Path]:
    """Run dirs under ``path`` (itself included): folders with a summary.json or a .hydra record."""
    path = Path(path)
    found = {p.parent for p in path.rglob("summary.json") if p.parent.name != ".hydra"}
    found |= {p.parent for p in path.rglob(".hydra") if p.is_dir()}
    found = {p for p in found if "export" not in p.parts[len(path.parts) :]}
    return sorted(found, key=lambda p: [int(s) if s.isdigit() else s for s in p.parts])


def load_study_frame(storage: str, study_name: str | None = None) -> pd.DataFrame:
    """An Optuna storage (sqlite file path, RDB URL or ``journal:PATH``) as rows of its trials' run dirs."""
    import optuna

    url = storage if ("://" in storage or storage.startswith("journal:")) else f"sqlite:///{storage}"
    names = [study_name] if study_name else [s.study_name for s in optuna.get_all_study_summaries(make_storage(url))]
    rows = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=make_storage(url))
        for t in study.get_trials(deepcopy=False):
            run_dir = t.user_attrs.get("run_dir")
            row = flatten_run(Path(run_dir)) if run_dir and Path(run_dir).exists() else {"run_dir": run_dir, "status": "incomplete"}
            row.update(study=name, trial=t.number, trial_state=t.state.name)
            if t.state.name == "FAIL" and row.get("status") in (None, "incomplete"):
                row.update(status="failed", reason=t.user_attrs.get("fail_reason"))
            rows.append(row)
    return _frame(rows)


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    extra = sorted(c for c in df.columns if c not in COLUMNS)
    return df[COLUMNS + extra]


def load_runs(*paths: str | Path) -> pd.DataFrame:
    """One row per run for every run dir under the given paths; ``*.db`` files are read as Optuna storages.

    A run counts once however many inputs name it (its dir and its study, relative and absolute
    paths): rows are matched on the resolved run dir, a study's row (with its trial) kept first.
    """
    rows: list[dict] = []
    frames = []
    for p in paths:
        p = Path(p)
        if p.is_file() and p.suffix == ".db":
            frames.append(load_study_frame(str(p)))
            continue
        rows += [flatten_run(run_dir) for run_dir in find_run_dirs(p)]
    frames.append(_frame(rows))
    frames = [f for f in frames if len(f)]
    if not frames:
        return _frame([])
    df = pd.concat(frames, ignore_index=True)
    same = df.run_dir.map(lambda d: str(Path(d).resolve()) if isinstance(d, str) else d)
    df = df[~(same.duplicated() & same.notna())]
    return df.sort_values("run_dir", kind="stable").reset_index(drop=True)


def learning_curves(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.csv (empty frame if it has none)."""
    path = Path(run_dir) / "metrics.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()

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

import json
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import get_class
from omegaconf import OmegaConf

from qt.core.checks import REQUIRED, constructor_defaults
from qt.core.mapping import MappingBase, MLPMapping, MPSMapping, network_kind
from qt.core.quantum.circuit import QuantumCircuit
from qt.experiment.controls import control_of
from qt.experiment.validation import settings_class
from qt.training.state import TrainerConfig
from qt.results.compat import upgrade, upgrade_choices
from qt.results.schema import RANK, SCHEMA_VERSION, TASK_SUMMARY_KEYS, read_summary
from qt.training.tasks import TASKS
from qt.analysis.stats import run_keys
from qt.sweeps.study import make_storage

#: columns every frame has, in this order (then any extra config columns, sorted)
#: a task's ``_target_`` -> its option name (the ``task`` column)
TASK_NAMES = {f"{cls.__module__}.{cls.__qualname__}": name for name, cls in TASKS.items()}


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


def _yaml(path: Path, resolve: bool = False) -> Any:
    """A YAML record of a run; ``resolve``: its interpolations (``${n_blocks}``) resolved where they resolve."""
    loaded = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(loaded, resolve=resolve)
    except Exception:  # noqa: BLE001 - a record that does not resolve: as written
        return OmegaConf.to_container(loaded, resolve=False)


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
    for keys in TASK_SUMMARY_KEYS.values():  # another task's metrics (task=sequence's best_val_mse, test_mse, ...)
        row.update({key: summary[key] for key in keys if key in summary})
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
    """The experiment's factors, from the resolved config and the options Hydra recorded: the choices, then every
    setting of the trainer, the optimizer, the model, the circuit and the mapping (:func:`settings_columns`)."""
    mode = cfg.get("mode")
    nodes = {group: cfg.get(group) or {} for group in ("dataset", "model", "optimizer", "scheduler", "loss", "trainer")}
    row = dict(
        task=TASK_NAMES.get(str((cfg.get("task") or {}).get("_target_")), _short((cfg.get("task") or {}).get("_target_"))),
        dataset=choices.get("dataset") or nodes["dataset"].get("name") or _short(nodes["dataset"].get("_target_")),
        experiment=choices.get("experiment"),
        mode=mode,
        variant=control_of(cfg) if cfg else choices.get("variant"),
        **{group: choices.get(group) or _short(nodes[group].get("_target_")) for group in ("model", "optimizer", "loss")},
        scheduler=choices.get("scheduler") or _short(nodes["scheduler"].get("_target_")) or "none",
        max_trainable_params=cfg.get("max_trainable_params"),
        **run_keys(cfg),
    )
    row.update(settings_columns("trainer", nodes["trainer"], TrainerConfig))
    row.update(settings_columns("optimizer", nodes["optimizer"]))  # torch's classes: the settings the run gave
    row.update(settings_columns("model", nodes["model"]))
    row.update(settings_columns("loss", nodes["loss"]))
    row.update(settings_columns("task", cfg.get("task") or {}))  # task=rl's algorithm and its settings
    row["dataset_truncation"] = nodes["dataset"].get("truncation")  # task=rl: when an episode ends
    row["cut_gradient"] = str(list(cfg["cut_gradient"])) if cfg.get("cut_gradient") else None
    if row.get("seed") is None:  # trainer.seed reads the top-level seed; a run without a trainer node has only that
        row["seed"] = cfg.get("seed")
    if mode != "classical":
        circuit, mapping = cfg.get("circuit") or {}, cfg.get("mapping") or {}
        row.update(generator=cfg.get("generator", "quantum"), circuit=choices.get("circuit"), mapping=choices.get("mapping"))
        row.update(settings_columns("circuit", {"n_blocks": cfg.get("n_blocks"), **circuit}, QuantumCircuit))
        row.update(settings_columns("mapping", mapping, MappingBase), mapping_net=network_kind(mapping))
    return row


#: report columns kept under the names earlier reports gave them; every other setting is a column of its own name,
#: a model's prefixed with ``model_`` (its ``activation`` is not the mapping's), a loss's with ``loss_`` (kd's ``alpha``)
COLUMN_NAMES = {
    ("circuit", "freeze"): "frozen",
    ("mapping", "hidden"): "mapping_hidden",
    ("model", "activation"): "target_activation",
    ("model", "max_params"): "budget",
}


#: the groups whose settings are columns under their group's prefix
PREFIXED = ("model", "loss", "task")


def settings_columns(group: str, node: dict, default: type | None = None) -> dict:
    """A config group's node as report columns, derived from the class it builds (its ``_target_``, else
    ``default``): every setting its constructor takes, at the run's value or the constructor's default (an older
    run's missing keys were given their meaning then by :func:`~qt.results.compat.upgrade`), a settings block
    (``circuit.noise``) as its fields; lists as text, so that they group. A class from outside qt that does
    not state its settings (torch's optimizers): the settings the node gives. What qt sets itself (``OWN_ARGUMENTS``) is not a column."""
    cls = settings_class(node, default) if default is not None else _class_of(node)
    given = {k: v for k, v in node.items() if not str(k).startswith("_")}
    own_class = cls is not None and (cls.__module__.split(".")[0] == "qt" or hasattr(cls, "check_settings"))
    settings = {**constructor_defaults(cls), **given} if own_class else given
    row: dict[str, Any] = {}
    for key, value in settings.items():
        if key in getattr(cls, "OWN_ARGUMENTS", ()) or value is REQUIRED:
            continue
        block = getattr(cls, "SETTINGS_BLOCKS", {}).get(key)
        if block is not None:
            row.update({leaf: (value or {}).get(leaf, d) for leaf, d in constructor_defaults(block).items()})
            continue
        name = COLUMN_NAMES.get((group, key), f"{group}_{key}" if group in PREFIXED else key)
        row[name] = str(list(value)) if isinstance(value, (list, tuple)) else value
    return row


def _class_of(node: dict) -> type | None:
    """The class a node's ``_target_`` names (None: no target, or one that no longer imports)."""
    try:
        return get_class(node["_target_"]) if isinstance(node.get("_target_"), str) else None
    except Exception:  # noqa: BLE001 - a run of a class gone since: its given settings only
        return None


def _derived(group: str, *classes: type, node: dict | None = None) -> list[str]:
    """The columns :func:`settings_columns` gives a node of ``group`` built by any of ``classes``, in order."""
    names: dict[str, None] = {}
    for cls in classes:
        names.update(dict.fromkeys(settings_columns(group, dict(node or {}), cls)))
    return list(names)


#: the columns every frame has, in this order (then any other, sorted): identity and choices, the circuit's,
#: mapping's and trainer's settings as their classes state them, the optimizer's and model's that reports name,
#: then the results (summary.json) and the keys that pair runs
COLUMNS = [
    "run_dir", "status", "reason", "experiment", "task", "dataset", "mode", "variant", "generator", "model", "circuit",
    *_derived("circuit", QuantumCircuit, node={"n_blocks": None}),
    "target_activation", "mapping", "mapping_net",
    *_derived("mapping", MLPMapping, MPSMapping),
    "optimizer", "lr", "weight_decay", "scheduler", "loss",
    *_derived("trainer", TrainerConfig),
    "target_weights", "n_qubits", "qnn_params", "mapping_params", "trainable_params", "compression_ratio",
    "first_step_loss", "best_val_acc", "best_epoch", "test_acc", "test_subset_acc", "train_acc", "train_loss",
    "test_loss", *(k for keys in TASK_SUMMARY_KEYS.values() for k in keys), "gen_gap", "epochs_completed", "train_time_s", "wall_time_s", "step_time_s", "qpu_executions",
    "qpu_shots", "teacher_test_acc", "rank_init", "rank_final", "rank_params", "budget", "max_trainable_params", "group_key", "training_key", "schema_version",
]  # fmt: skip


def flatten_run(run_dir: Path) -> dict:
    """One row for one run dir."""
    run_dir = Path(run_dir)
    row: dict[str, Any] = {"run_dir": str(run_dir)}
    summary = read_summary(run_dir)
    if summary is None:
        row["status"] = "incomplete"
        row["reason"] = "no readable summary.json (never started, or not a qt run)"
        cfg = _yaml(run_dir / ".hydra" / "config.yaml", resolve=True) if (run_dir / ".hydra" / "config.yaml").exists() else {}
    else:
        version = summary.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            reason = f"results schema {version} is newer than this qt reads ({SCHEMA_VERSION}): update qt"
            return {**row, "schema_version": version, "status": "unsupported", "reason": reason}
        row.update(_summary_fields(summary))
        cfg = summary.get("config") or {}
    rank = _rank(run_dir)
    if rank:
        row.update(rank_init=rank.get("init"), rank_final=rank.get("final"), rank_params=rank.get("params"))
    row.update(_config_fields(upgrade(cfg), _choices(run_dir)))  # an older qt's run: today's names and meanings
    return row


def _rank(run_dir: Path) -> dict | None:
    """The run's ``generator_rank.json`` (``python -m qt.tools.rank``), if it has a readable one."""
    try:
        return json.loads((run_dir / RANK).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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
    missing = [col for col in COLUMNS if col not in df.columns]
    if missing:  # all at once (one column at a time fragments the frame)
        df = pd.concat([df, pd.DataFrame({col: [None] * len(df) for col in missing}, index=df.index, dtype=object)], axis=1)
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

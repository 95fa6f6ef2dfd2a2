"""Pruning settings: every pruner option builds its Optuna pruner, and the per-epoch objective is the kept model's."""


def test_every_pruner_option_builds_its_optuna_pruner():
    import importlib

    from hydra.core.config_store import ConfigStore

    from qt.sweeps.study import make_pruner

    importlib.import_module("hydra_plugins.qt_optuna_sweeper.qt_optuna_sweeper")  # registers the options

    store = ConfigStore.instance().repo["hydra"]["sweeper"]["pruner"]
    built = {name[: -len(".yaml")]: make_pruner(entry.node) for name, entry in store.items()}
    assert built["none"] is None
    assert {k: type(v).__name__ for k, v in built.items() if v is not None} == {
        "median": "MedianPruner", "percentile": "PercentilePruner",
        "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner",
    }


def test_the_per_epoch_objective_is_that_of_the_model_the_run_would_keep():
    from qt.results.objectives import epoch_objective

    rows = [
        {"epoch": 1, "val_acc": 0.5, "val_loss": 1.0, "train_loss": 2.0},
        {"epoch": 2, "val_acc": 0.7, "val_loss": 0.8, "train_loss": 1.5},
        {"epoch": 3, "val_acc": 0.7, "val_loss": 0.6, "train_loss": 1.2},  # ties keep the first, as the loop does
        {"epoch": 4, "val_acc": 0.6, "val_loss": 0.9, "train_loss": 1.0},
    ]
    assert [epoch_objective(rows[:i], "best_val_acc") for i in (1, 2, 3, 4)] == [0.5, 0.7, 0.7, 0.7]
    assert epoch_objective(rows, "val_loss") == 0.8 and epoch_objective(rows, "train_loss") == 1.5
    no_val = [{**r, "val_acc": None, "val_loss": None} for r in rows]
    assert epoch_objective(no_val, "train_loss") == 1.0  # without a validation split the last epoch is kept

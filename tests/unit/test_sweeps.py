"""The sweeper's pieces in-process: storage URLs are never logged with their password; the private Optuna APIs qt uses still work."""


def test_a_storage_password_is_never_logged():
    from hydra_plugins.qt_optuna_sweeper.qt_optuna_sweeper import shown_storage

    assert shown_storage("postgresql://alice:s3cret@db.lab:5432/studies") == "postgresql://alice:***@db.lab:5432/studies"
    assert shown_storage("sqlite:///outputs/sweeps/x/study.db") == "sqlite:///outputs/sweeps/x/study.db"


def test_the_private_apis_qt_uses_still_work():
    """qt.sweeps.optuna_private against the pinned Optuna and upstream sweeper: attach to a running trial, set an attribute by number."""
    import optuna

    from qt.sweeps.optuna_private import OptunaSweeperImpl, create_params_from_overrides, running_trial, set_user_attr

    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0))
    for value in (1.0, 2.0):  # two finished trials with intermediate values, for the pruner
        t = study.ask()
        t.report(value, 1)
        study.tell(t, value)
    asked = study.ask()  # as the driver does; a job finds it among the RUNNING trials
    (frozen,) = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    handle = running_trial(study, frozen)
    handle.report(5.0, 1)
    assert handle.number == asked.number and study.trials[asked.number].intermediate_values == {1: 5.0}
    assert handle.should_prune()  # worse than the median of the others at step 1 (minimize)
    set_user_attr(study, asked.number, "fail_reason", "why")  # as the driver does before telling FAIL
    assert study.trials[asked.number].user_attrs == {"fail_reason": "why"}
    space, fixed, _ = create_params_from_overrides(["x=range(0,3)", "y=a"])
    assert set(space) == {"x"} and fixed == {"y": "a"} and hasattr(OptunaSweeperImpl, "sweep")

"""What a user types, the files qt writes and what README says agree: config precedence, labels, checkpoints, objectives."""

import pytest
import torch

from qt.experiment.config import compose_config, experiment_conflict, fingerprint
from qt.experiment.controls import CONTROLS, control_of
from qt.errors import QTError
from qt.training.callbacks import restore_rng_states, rng_states
from qt.results.objectives import OBJECTIVES, objective_directions
from qt.results.schema import load_checkpoint, save_checkpoint
from qt.training.schedules import Cosine


def test_the_cosine_is_a_function_of_epoch_and_total_only():
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(p, lr=1.0)
    sched = Cosine(opt, T_max=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0, 0.0])  # flat at eta_min after T_max
    state, opt_state = sched.state_dict(), opt.state_dict()
    opt2 = torch.optim.SGD(p, lr=1.0)
    sched2 = Cosine(opt2, T_max=8)  # resumed with a larger total: T_max is the config's, not the checkpoint's
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    assert sched2.T_max == 8 and opt2.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(6 * torch.pi / 8)).item()))


def test_the_cosine_total_is_free_on_resume_but_other_schedulers_keys_are_not():
    cosine = fingerprint(compose_config(["trainer.epochs=3"]))
    assert "T_max" not in cosine["scheduler"] and cosine == fingerprint(compose_config(["trainer.epochs=7"]))
    torch_cosine = ["scheduler._target_=torch.optim.lr_scheduler.CosineAnnealingLR"]
    assert fingerprint(compose_config([*torch_cosine, "trainer.epochs=3"])) != fingerprint(compose_config([*torch_cosine, "trainer.epochs=7"]))


def test_a_chosen_mapping_beats_the_experiment_and_the_budget_guards_the_result():
    from qt.errors import ConfigError
    from qt.experiment.build import build_learner, check_budget

    assert compose_config(["experiment=mnist_1500"]).mapping.hidden == [16, 16]
    assert compose_config(["experiment=mnist_700"]).mapping.hidden == [7, 7]
    deep = compose_config(["experiment=mnist_1500", "mapping=deep"])
    assert deep.mapping.hidden == [20, 40, 20] and deep.max_trainable_params == 1500
    check_budget(compose_config(["experiment=mnist_1500"]), build_learner(compose_config(["experiment=mnist_1500"])).param_table())
    with pytest.raises(ConfigError, match="over max_trainable_params=1,500"):  # deep's 1,989 mapping weights + 832 angles
        check_budget(deep, build_learner(deep).param_table())


def test_an_experiment_value_for_another_option_is_refused_unless_typed():
    assert "sets optimizer.lr" in experiment_conflict("mnist_1500", ["experiment=mnist_1500", "optimizer=sgd"])
    assert experiment_conflict("mnist_1500", ["experiment=mnist_1500", "optimizer=sgd", "optimizer.lr=0.1"]) is None
    assert experiment_conflict("mnist_1500", ["experiment=mnist_1500", "optimizer=adam"]) is None  # its own choice
    # only values the experiment actually changes: paper_mnist's center equals deep's, its signed_bits does not
    message = experiment_conflict("paper_mnist", ["experiment=paper_mnist", "mapping=deep"])
    assert "mapping.signed_bits" in message and "mapping.center" not in message
    assert experiment_conflict("mnist_1500", ["experiment=mnist_1500", "variant=qt,frozen,classical", "seed=0,1"]) is None
    # an experiment's own choices, made in a file it includes (mnist_large -> fmnist_large), are no conflict
    for choice in ("optimizer=adam", "mapping=medium", "circuit=ry_cnot", "dataset=mnist"):
        assert experiment_conflict("mnist_large", ["experiment=mnist_large", choice]) is None, choice
    assert "sets optimizer.lr" in experiment_conflict("mnist_large", ["experiment=mnist_large", "optimizer=sgd"])


@pytest.mark.parametrize(
    "cfg,label",
    [
        ({"mode": "classical"}, "classical"),
        ({"mode": "qt", "generator": "classical", "circuit": {"freeze": False}}, "classical_generator"),
        ({"mode": "qt", "generator": "classical", "circuit": {"freeze": True}}, "fixed_vector"),
        ({"mode": "qt", "circuit": {"freeze": True}}, "frozen"),
        ({"mode": "qt", "circuit": {"freeze": False}}, "qt"),
    ],
)
def test_the_variant_label_is_read_from_the_keys_that_make_the_control(cfg, label):
    assert control_of(cfg) == label


def test_every_variant_file_is_the_control_it_is_named_after():
    """conf/variant and qt.experiment.controls agree: each file composes to a config control_of names after it."""
    from qt.experiment.config import CONF_DIR

    names = sorted(p.stem for p in (CONF_DIR / "variant").glob("*.yaml"))
    assert names == sorted({"qt", *CONTROLS})
    for name in names:
        assert control_of(compose_config([f"variant={name}"])) == name


def test_one_objective_definition_gives_the_directions():
    assert objective_directions(["best_val_acc", "trainable_params"]) == ["maximize", "minimize"]
    assert set(OBJECTIVES.values()) == {"maximize", "minimize"}


def test_an_export_naming_an_untrusted_target_or_no_model_is_refused(tmp_path):
    from qt.experiment.export import load_exported

    torch.save({"model": {"_target_": "os.system", "command": f"touch {tmp_path / 'ran'}"}, "state_dict": {}}, tmp_path / "a.pt")
    torch.save({"weights": {}}, tmp_path / "b.pt")
    with pytest.raises(QTError, match="cannot rebuild its network"):
        load_exported(tmp_path / "a.pt")
    with pytest.raises(QTError, match="not a qt export"):
        load_exported(tmp_path / "b.pt")
    assert not (tmp_path / "ran").exists()


def test_cuda_random_states_are_checkpointed_and_restored(tmp_path, monkeypatch):
    """Finite-shot sampling on a GPU draws from the CUDA generators: they go into last.pt with the CPU one."""
    saved = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    save_checkpoint({"rng": rng_states()}, tmp_path / "last.pt")
    restore_rng_states(load_checkpoint(tmp_path / "last.pt")["rng"])
    assert len(restored) == 1 and torch.equal(restored[0][0], saved[0])

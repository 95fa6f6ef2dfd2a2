"""What a user types, the files qt writes and what README says agree (issue: reliability and security)."""

import csv
import os
import pickle

import pytest
import torch

from conftest import TINY, run_train, summary
from qt.analysis.runs import load_runs
from qt.experiment.config import compose_config, experiment_conflict, fingerprint
from qt.experiment.variants import CONTROLS, variant_of
from qt.errors import QTError
from qt.training.callbacks import restore_rng_states, rng_states
from qt.results.objectives import OBJECTIVES, objective_directions
from qt.results.schema import load_checkpoint, save_checkpoint
from qt.training.schedules import Cosine


def metrics(run_dir):
    return list(csv.DictReader(open(run_dir / "metrics.csv")))


# -- runs extend ---------------------------------------------------------------------------------


def test_raising_epochs_continues_a_completed_run_on_the_cosine_of_the_new_total(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train(run_dir, *TINY).returncode == 0  # the default config: cosine over 1 epoch
    first = metrics(run_dir)
    proc = run_train(run_dir, *TINY, "trainer.epochs=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continuing the completed 1-epoch run to 3 epochs" in proc.stdout
    rows = metrics(run_dir)
    assert rows[0] == first[0] and [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert summary(run_dir)["epochs_completed"] == 3 and summary(run_dir)["status"] == "completed"
    # epochs 2 and 3 run at the lr a 3-epoch run has there: 1e-2 * (1 + cos(pi e / 3)) / 2
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-2, 7.5e-3, 2.5e-3])
    # and epoch 1's lr is the same for any total, so the extended run is the 3-epoch run, bit for bit
    fresh = tmp_path / "fresh"
    assert run_train(fresh, *TINY, "trainer.epochs=3").returncode == 0
    for a, b in zip(metrics(fresh), rows, strict=True):
        assert [a[k] for k in ("train_loss", "val_loss", "lr")] == [b[k] for k in ("train_loss", "val_loss", "lr")]


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


def test_resume_false_never_overwrites_a_run(two_epochs):
    files = {p: p.read_bytes() for p in two_epochs.rglob("*") if p.is_file() and p.name != "train.log"}
    proc = run_train(two_epochs, *TINY, "trainer.epochs=2", "trainer.resume=false")
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1 and "trainer.resume=false" in err[0]
    assert {p: p.read_bytes() for p in files} == files


def test_a_grid_into_another_grids_sweep_dir_stops_in_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    def grid(n_blocks):
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={tmp_path}", *TINY[1:], f"n_blocks={n_blocks}"]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert grid(1).returncode == 0
    before = (tmp_path / "0" / "summary.json").read_text()
    proc = grid(2)  # job 0 of this grid would land on the first grid's job 0
    err = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(err) == 1 and "hydra.sweep.dir" in err[0]
    assert (tmp_path / "0" / "summary.json").read_text() == before


# -- configs mean what the user typed -----------------------------------------------------------------


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
    "choice,message",
    [("mapping=deep", "mapping 1,989"), ("circuit=u3", "5,529 trainable parameters (generator 4,992")],  # u3 at the experiment's 64 blocks
)
def test_experiment_with_a_choice_over_its_budget_stops_in_one_line(tmp_path, choice, message):
    quick = [a for a in TINY if not a.startswith("n_blocks")]
    proc = run_train(tmp_path / "run", *quick, "experiment=mnist_1500", "dataset=mnist_5k", choice)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert message in err[0] and "max_trainable_params=1,500" in err[0]


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
    assert variant_of(cfg) == label


def test_every_variant_file_is_the_control_it_is_named_after():
    """conf/variant and qt.experiment.variants agree: each file composes to a config variant_of names after it."""
    from qt.experiment.config import CONF_DIR

    names = sorted(p.stem for p in (CONF_DIR / "variant").glob("*.yaml"))
    assert names == sorted({"qt", *CONTROLS})
    for name in names:
        assert variant_of(compose_config([f"variant={name}"])) == name


def test_a_plain_mode_classical_run_is_reported_as_the_classical_control(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train(run_dir, *TINY, "mode=classical").returncode == 0
    assert load_runs(run_dir)["variant"].iloc[0] == "classical"


# -- numbers named for what they measure ------------------------------------------------------------


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two_epochs") / "run"
    proc = run_train(run_dir, *TINY, "trainer.epochs=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_train_time_and_wall_time_say_what_they_measure(two_epochs):
    run_dir = two_epochs
    s = summary(run_dir)
    rows = metrics(run_dir)
    assert s["train_time_s"] == pytest.approx(sum(float(r["epoch_train_time_s"]) for r in rows), rel=1e-6)
    # the whole run: data, building the learner, validation, checkpoints, plots and the final evaluation too
    assert s["wall_time_s"] > s["train_time_s"] + 0.05
    frame = load_runs(run_dir)
    assert frame["wall_time_s"].iloc[0] == s["wall_time_s"] and frame["train_time_s"].iloc[0] == s["train_time_s"]


def test_one_objective_definition_gives_the_directions():
    assert objective_directions(["best_val_acc", "trainable_params"]) == ["maximize", "minimize"]
    assert set(OBJECTIVES.values()) == {"maximize", "minimize"}


# -- files load safely --------------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_teacher_file_with_code_is_refused_in_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "code_ran"
    evil = _RunsCode()
    evil.marker = marker
    crafted = tmp_path / "teacher.pt"
    with open(crafted, "wb") as f:
        pickle.dump({"model": evil, "state_dict": {}}, f)  # plain pickle: what torch.load would unpickle too
    torch.save({"model": evil, "state_dict": {}}, tmp_path / "teacher_torch.pt")
    for path in (crafted, tmp_path / "teacher_torch.pt"):
        proc = run_train(tmp_path / f"run_{path.stem}", *TINY, "loss=kd", f"loss.teacher={path}")
        err = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
        assert not marker.exists()
    assert "Python objects" in err[0] or "readable torch file" in err[0]


def test_an_export_naming_an_untrusted_target_or_no_model_is_refused(tmp_path):
    from qt.experiment.export import load_exported

    torch.save({"model": {"_target_": "os.system", "command": f"touch {tmp_path / 'ran'}"}, "state_dict": {}}, tmp_path / "a.pt")
    torch.save({"weights": {}}, tmp_path / "b.pt")
    with pytest.raises(QTError, match="cannot rebuild its network"):
        load_exported(tmp_path / "a.pt")
    with pytest.raises(QTError, match="not a qt export"):
        load_exported(tmp_path / "b.pt")
    assert not (tmp_path / "ran").exists()


def test_checkpoints_are_plain_tensors_and_values(two_epochs):
    for name in ("last.pt", "best.pt"):
        torch.load(two_epochs / "checkpoints" / name, weights_only=True)  # no object unpickling needed


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_finite_shot_training_resumes_bit_identically_on_cuda(tmp_path):
    args = [*TINY, "trainer.device=cuda", "circuit.shots=1000", "trainer.epochs=2", "trainer.limit_train_batches=6"]
    ref = tmp_path / "ref"
    assert run_train(ref, *args).returncode == 0
    part = tmp_path / "part"
    assert run_train(part, *[a for a in args if a != "trainer.epochs=2"], "trainer.epochs=1").returncode == 0
    assert run_train(part, *args).returncode == 0  # continue to 2 epochs from the checkpoint
    assert metrics(part)[-1]["train_loss"] == metrics(ref)[-1]["train_loss"]

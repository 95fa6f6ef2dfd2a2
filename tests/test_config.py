"""Every config group option composes and builds; bad values fail with one clear line."""

from pathlib import Path

import pytest
import torch
from hydra.utils import execution_whitelist, instantiate

from qt.config import compose_config, trusted_targets, validate
from qt.errors import ConfigError
from qt.build import build_learner
from qt.train import check_group_options

CONF = Path(__file__).resolve().parent.parent / "conf"


def cfg_with(*overrides):
    return compose_config(overrides)


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_groups_have_the_promised_options():
    assert {"mnist_5k", "mnist", "fashion_mnist", "cifar10"} <= set(options("dataset"))
    assert {"cnn_small", "cnn_qtt", "cnn_cifar"} <= set(options("model"))
    assert {"ry_cnot", "u3"} <= set(options("circuit"))
    assert {"shallow", "paper", "deep"} <= set(options("mapping"))
    assert {"adam", "adamw", "sgd"} <= set(options("optimizer"))
    assert {"none", "plateau"} <= set(options("scheduler"))
    assert {"ce", "kd"} <= set(options("loss"))
    assert {"lr_blocks_clip", "acc_vs_params", "ablation_grid", "shots"} <= set(options("sweep"))


@pytest.mark.parametrize("circuit", options("circuit"))
@pytest.mark.parametrize("mapping", options("mapping"))
def test_every_circuit_and_mapping_builds(circuit, mapping):
    cfg = cfg_with(f"circuit={circuit}", f"mapping={mapping}", "n_blocks=1")
    validate(cfg)
    with execution_whitelist(trusted_targets()):
        learner = build_learner(cfg)
    assert sum(v.numel() for v in learner.weights().values()) == 6690


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_every_optimizer_and_scheduler_builds(optimizer, scheduler):
    cfg = cfg_with(f"optimizer={optimizer}", f"scheduler={scheduler}")
    params = [torch.nn.Parameter(torch.zeros(3))]
    with execution_whitelist(trusted_targets()):
        opt = instantiate(cfg.optimizer)(params)
        if cfg.scheduler:
            instantiate(cfg.scheduler)(opt)
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("model,dataset,weights", [("cnn_small", "mnist", 6676), ("cnn_qtt", "fashion_mnist", 6690), ("cnn_cifar", "cifar10", 285226)])
def test_models_follow_the_dataset_shape(model, dataset, weights):
    cfg = cfg_with(f"model={model}", f"dataset={dataset}", "mode=classical")
    with execution_whitelist(trusted_targets()):
        learner = build_learner(cfg)
    assert learner.n_weights == weights


def test_experiment_paper_mnist_composes():
    cfg = cfg_with("experiment=paper_mnist")
    assert (cfg.circuit.rotation, cfg.circuit.layout, cfg.mapping.activation) == ("U3", "ring", "none")
    assert cfg.optimizer.lr == 1e-4 and cfg.scheduler.patience == 5


@pytest.mark.parametrize("experiment,dataset,budget", [("mnist_1500", "MNIST", 1500), ("mnist_700", "MNIST", 700), ("fmnist_1500", "FashionMNIST", 1500), ("paper_mnist", "MNIST", 1500)])
def test_accuracy_experiments_keep_their_parameter_budget(experiment, dataset, budget):
    """The headline rows' budgets hold for QT and for every control that trains a generator."""
    counts = {}
    for variant in ("qt", "frozen", "classical_generator"):
        cfg = cfg_with(f"experiment={experiment}", f"variant={variant}")
        assert cfg.dataset.name == dataset and cfg.model.channels == [8, 12]
        with execution_whitelist(trusted_targets()):
            counts[variant] = build_learner(cfg).param_table()["trainable_params"]
    assert counts["qt"] <= budget
    assert counts["classical_generator"] == counts["qt"] > counts["frozen"]


@pytest.mark.parametrize("variant", ["classical_generator", "fixed_vector"])
def test_classical_controls_are_drawn_from_the_runs_seed(variant):
    """Each seed of a control is its own random generator; the same seed rebuilds the same one."""
    def generator(seed):
        cfg = cfg_with("experiment=mnist_700", f"variant={variant}", f"seed={seed}")
        torch.manual_seed(123)  # the global state must not matter: the control draws from the run's seed
        with execution_whitelist(trusted_targets()):
            learner = build_learner(cfg)
        return learner.circuit, learner.param_table()["trainable_params"]

    (a, params), (again, _), (b, _) = generator(0), generator(0), generator(1)
    assert torch.equal(a.features, again.features) and torch.equal(a.theta, again.theta)
    assert not torch.allclose(a.features, b.features) and not torch.allclose(a.theta, b.theta)
    assert torch.equal(a(), again()) and not torch.allclose(a(), b())
    assert a.theta.requires_grad == (variant == "classical_generator")
    mapping_only = variant == "fixed_vector"
    assert (params == 177) if mapping_only else (params == 697)  # mnist_700: mapping 177, circuit 520


def test_data_dir_env_override(monkeypatch):
    monkeypatch.setenv("QT_DATA_DIR", "/some/where")
    assert cfg_with("dataset=mnist").dataset.root == "/some/where"


@pytest.mark.parametrize(
    "override,message",
    [
        ("n_blocks=0", "n_blocks must be"),
        ("optimizer.lr=0", "optimizer.lr must be positive"),
        ("trainer.batch_size=-5", "trainer.batch_size must be a positive integer"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.clip_norm=-1", "clip_norm=null"),
        ("mode=quantum", "mode=qt or mode=classical"),
        ("trainer.device=tpu", "cpu, cuda or auto"),
    ],
)
def test_bad_values_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(cfg_with(override))


def test_unknown_group_option_is_one_line():
    msg = check_group_options(["circuit=ry_cnot,u4"], CONF)
    assert msg == "unknown circuit 'u4': choose one of ry_cnot, u3 (files in conf/circuit/)"
    assert check_group_options(["circuit=u3", "n_blocks=3", "optimizer.lr=1e-3", "+experiment=paper_mnist"], CONF) is None


def test_code_defaults_are_the_default_configs():
    """Classes built from config groups have the default option's values as their own defaults (one meaning)."""
    import dataclasses
    import inspect

    from omegaconf import OmegaConf

    from qt.loop import TrainerConfig
    from qt.mapping import WeightGenerator

    medium = OmegaConf.to_container(OmegaConf.load(CONF / "mapping" / "medium.yaml"))
    params = inspect.signature(WeightGenerator).parameters
    for key, value in medium.items():
        if key != "_target_":
            default = params[key].default
            assert (list(default) if isinstance(default, tuple) else default) == value, key
    # the trainer group has no second set of defaults in code
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(TrainerConfig))

"""Runs written by earlier versions of qt stay loadable: real run dirs of the first commit and of the last one before
the package restructure (tests/fixtures/runs, README there) export the weights their own qt exported, report
with today's labels, and resume where their config still means the same."""

import importlib

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from qt.analysis.runs import load_runs
from qt.errors import RunDirError
from qt.experiment.build import build_export, build_network
from qt.experiment.config import compose_config
from qt.results.compat import ADDED, MOVED_TARGETS, RENAMED_TARGETS, upgrade
from qt.results.schema import load_checkpoint
from qt.training.callbacks import optimizer_state_for
from tests.helpers import FIXTURES, OLD_RUNS


def test_upgrade_gives_old_configs_todays_names_and_what_they_did():
    old = OmegaConf.to_container(OmegaConf.load(FIXTURES / "b8d8b52_qt" / ".hydra" / "config.yaml"))
    new = upgrade(old)
    assert old["model"]["_target_"] == "qt.models.SimpleCNN" and new["model"]["_target_"] == "qt.core.targets.SimpleCNN"
    assert new["mapping"]["scale"] == "none"  # before the setting: raw outputs (today's default is init)
    assert old["mapping"]["_target_"] == "qt.mapping.WeightGenerator" and new["mapping"]["_target_"] == "qt.core.mapping.MLPMapping"
    assert new["model"]["activation"] == "relu" and new["loss"]["_target_"] == "qt.training.losses.CrossEntropy"
    assert new["circuit"]["gradient"] == "adjoint" and new["circuit"]["partitions"] == 1 and new["generator"] == "quantum"
    assert upgrade(new) == new and "scale" not in old["mapping"]  # idempotent; the input is left as it was
    today = OmegaConf.to_container(compose_config(["n_blocks=1"]))
    assert upgrade(today) == today  # a config of today comes back equal
    for added in ADDED:  # every added key is one today's config has
        node = today
        for part in added.key.split("."):
            node = node[part]
    assert all(new_prefix.startswith("qt.") for new_prefix in MOVED_TARGETS.values())
    for old_name, new_name in RENAMED_TARGETS.items():  # moved first, then renamed; today's name exists
        assert upgrade({"mapping": {"_target_": old_name}})["mapping"]["_target_"] == new_name
        module, _, cls = new_name.rpartition(".")
        assert hasattr(importlib.import_module(module), cls)


@pytest.mark.parametrize("name", OLD_RUNS)
def test_an_old_run_exports_the_weights_its_own_qt_exported(old_runs, name):
    theirs = load_checkpoint(old_runs / name / "export" / "target.pt")  # written by qt at that commit
    ours = build_export(old_runs / name)
    assert ours["model"]["_target_"] == "qt.core.targets.SimpleCNN" and ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():  # the same weights, to float32 rounding (the kernels changed since, and CPUs round differently)
        torch.testing.assert_close(ours["state_dict"][key], value, rtol=1e-5, atol=1e-6)  # AVX-512 and AVX2 round apart
    network = build_network(theirs, old_runs / name)  # an old export file rebuilds too
    assert isinstance(network, nn.Module) and sum(p.numel() for p in network.parameters()) == 994


def test_old_runs_report_with_todays_labels(old_runs, tmp_path):
    runs = load_runs(*(old_runs / name for name in OLD_RUNS))
    runs.index = [path.rsplit("/", 1)[-1] for path in runs["run_dir"]]
    assert list(runs.loc[list(OLD_RUNS), "variant"]) == ["qt", "classical", "qt"]
    assert set(runs["loss"]) == {"ce"} and set(runs["target_activation"]) == {"relu"} and set(runs["status"]) == {"completed"}
    assert runs.loc["b8d8b52_qt", "scale"] == "none" and runs.loc["2cc19cc_qt", "scale"] == "init"
    from qt.analysis.report import main as report

    report([str(old_runs), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "b8d8b52_qt" in (tmp_path / "report" / "runs.csv").read_text() and "failed" not in text.lower().split("## ")[0]


def test_the_optimizer_state_follows_parameters_by_name_whatever_their_order():
    """last.pt names the parameters; one of an older qt is read in its state dict's order (its registration order)."""
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, 2))
    learner = nn.Module()
    learner.b, learner.a = b, a  # registered b first
    learner.trainable_parameters = lambda: [a, b]  # but trained in the order a, b
    learner.trainable_names = lambda: ["a", "b"]
    opt = torch.optim.Adam([b, a])  # the order an older qt gave its optimizer: b, a
    (b.sum() * 2 + a.sum()).backward()
    opt.step()
    ckpt = {"optimizer": opt.state_dict(), "learner": {"b": b.detach(), "a": a.detach()}}
    state = optimizer_state_for(learner, ckpt, "last.pt")
    fresh = torch.optim.Adam([a, b])
    fresh.load_state_dict(state)
    assert fresh.state[a]["exp_avg"].shape == (3,) and fresh.state[b]["exp_avg"].shape == (2, 2)
    with pytest.raises(RunDirError, match="trained other parameters"):
        optimizer_state_for(learner, {**ckpt, "param_names": ["a", "c"]}, "last.pt")

"""The Python API is as safe as the command line: fit() resumes only a run dir holding a run of the same settings,
and bad arguments are one-line ConfigErrors, named as the API's own arguments, before anything trains."""

import logging
from functools import partial

import pytest
import torch
from torch import nn

from qt import QuantumTrain, fit
from qt.errors import ConfigError
from qt.results.schema import load_checkpoint, save_checkpoint
from qt.training.callbacks import Callback


def net(outputs: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, outputs))


@pytest.fixture(scope="module")
def data():
    """Four classes from the signs of two inputs: learnable in a few steps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return (x[:192], y[:192]), (x[192:256], y[192:256]), (x[256:], y[256:])


def qt_model(seed: int = 0, **kw) -> QuantumTrain:
    torch.manual_seed(seed)
    return QuantumTrain(net(), n_blocks=2, mapping={"hidden": [6]}, **kw)


def files(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_a_second_fit_with_other_settings_is_refused_not_answered_with_the_first_runs_results(data, tmp_path):
    """The issue's case: fit(model_a, lr=1e-2), then a fresh model_b of the same shape at lr=5e-2, same run dir."""
    run = tmp_path / "run"
    first = fit(qt_model(0), data, epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    assert first["steps"] == 6
    before, model_b = files(run), qt_model(1)
    weights_b = {k: v.clone() for k, v in model_b.state_dict().items()}
    with pytest.raises(ConfigError, match=r"holds a run with other settings \(differs in optimizer\.lr\): pass another run_dir"):
        fit(model_b, data, epochs=2, lr=5e-2, batch_size=64, run_dir=run)
    assert files(run) == before  # nothing written, nothing trained
    assert all(torch.equal(v, weights_b[k]) for k, v in model_b.state_dict().items())
    with pytest.raises(ConfigError, match=r"differs in model\."):  # another shape: no size-mismatch from load_state_dict
        torch.manual_seed(0)
        fit(QuantumTrain(nn.Sequential(nn.Linear(8, 4)), n_blocks=2, mapping={"hidden": [6]}), data, epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    with pytest.raises(ConfigError, match=r"differs in batch_size"):
        fit(qt_model(1), data, epochs=2, lr=1e-2, batch_size=32, run_dir=run)
    x, y = data[0]
    with pytest.raises(ConfigError, match=r"differs in data\.train\.sha256"):
        fit(qt_model(1), ((x, y.roll(1)), data[1], data[2]), epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    with pytest.raises(ConfigError, match=r"differs in optimizer\.factory"):
        fit(qt_model(1), data, epochs=2, optimizer=partial(torch.optim.AdamW, lr=1e-2), batch_size=64, run_dir=run)
    with pytest.raises(ConfigError, match=r"differs in [^)]*model\.settings\.mapping\.hidden"):
        torch.manual_seed(0)
        fit(QuantumTrain(net(), n_blocks=2, mapping={"hidden": [7]}), data, epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    with pytest.raises(ConfigError, match=r"resume=False, but run_dir=.* holds a run that starting over would overwrite"):
        fit(qt_model(1), data, epochs=2, lr=1e-2, batch_size=64, run_dir=run, resume=False)
    assert files(run) == before


def test_a_matching_fit_returns_the_completed_run_and_says_so(data, tmp_path, caplog):
    run = tmp_path / "run"
    model_a = qt_model(0)
    first = fit(model_a, data, epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    model_b = qt_model(1)  # another initialisation: the run dir's weights replace it
    with caplog.at_level(logging.INFO, logger="qt"):
        again = fit(model_b, data, epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    assert "already holds a completed 2-epoch run of these settings: returning its results (nothing trained)" in caplog.text
    assert again["steps"] == first["steps"] == 6 and again["test_acc"] == first["test_acc"]
    assert again["train_time_s"] == first["train_time_s"]  # the same run, not a new one
    assert all(torch.equal(v, model_a.state_dict()[k]) for k, v in model_b.state_dict().items())  # model_b holds the kept model
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qt"):
        longer = fit(qt_model(2), data, epochs=3, lr=1e-2, batch_size=64, run_dir=run)  # a larger epochs extends it
    assert "continuing the run in" in caplog.text and longer["steps"] == 9 and [r["epoch"] for r in longer["rows"]] == [1, 2, 3]



def test_a_fit_run_written_before_a_class_was_renamed_still_matches(data, tmp_path, caplog):
    """A fit() run dir whose fingerprint names the mapping by its old class name (before qt.results.compat's
    RENAMED_TARGETS) is the same run: returned, not refused."""
    run = tmp_path / "run"
    first = fit(qt_model(0), data, epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    mapping = state["fingerprint"]["model"]["settings"]["mapping"]
    assert mapping["_target_"] == "qt.core.mapping.MLPMapping"
    mapping["_target_"] = "qt.core.mapping.WeightGenerator"  # as qt wrote it before the rename
    save_checkpoint(state, last)
    with caplog.at_level(logging.INFO, logger="qt"):
        again = fit(qt_model(1), data, epochs=2, lr=1e-2, batch_size=64, run_dir=run)
    assert "returning its results (nothing trained)" in caplog.text and again["test_acc"] == first["test_acc"]

class Interrupt(Callback):
    """Stops training at a global step, as a kill would (the last checkpoint is some steps before)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer) -> None:
        if trainer.state.global_step == self.at:
            raise KeyboardInterrupt


def test_a_matching_fit_resumes_an_interrupted_run_bit_for_bit(data, tmp_path):
    settings = dict(epochs=3, lr=2e-2, batch_size=32, checkpoint_every=4)
    whole = qt_model(0)
    ref = fit(whole, data, run_dir=tmp_path / "whole", **settings)
    with pytest.raises(KeyboardInterrupt):
        fit(qt_model(0), data, run_dir=tmp_path / "cut", callbacks=[Interrupt(at=10)], **settings)  # last.pt at step 8
    resumed_model = qt_model(5)  # a fresh model, as a re-run script builds it
    resumed = fit(resumed_model, data, run_dir=tmp_path / "cut", **settings)
    assert resumed["steps"] == ref["steps"] == 18
    timing = ("epoch_train_time_s", "steps_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed["rows"]] == [
        {k: v for k, v in r.items() if k not in timing} for r in ref["rows"]
    ]
    assert all(torch.equal(v, whole.state_dict()[k]) for k, v in resumed_model.state_dict().items())
    assert resumed["test_acc"] == ref["test_acc"] and resumed["test_loss"] == ref["test_loss"]


def test_a_factory_that_cannot_be_named_needs_an_explicit_opt_in_to_resume(data, tmp_path, caplog):
    run = tmp_path / "run"
    adam = lambda params: torch.optim.Adam(params, lr=1e-2)  # noqa: E731 - the case under test
    with caplog.at_level(logging.WARNING, logger="qt"):
        fit(qt_model(0), data, epochs=1, optimizer=adam, batch_size=64, run_dir=run)
    assert "optimizer cannot be named (a lambda or a local function): resuming" in caplog.text
    with pytest.raises(ConfigError, match=r"optimizer cannot be named .* pass allow_unverified=True to resume it anyway"):
        fit(qt_model(0), data, epochs=2, optimizer=adam, batch_size=64, run_dir=run)
    out = fit(qt_model(0), data, epochs=2, optimizer=adam, batch_size=64, run_dir=run, allow_unverified=True)
    assert out["steps"] == 6
    with pytest.raises(ConfigError, match=r"differs in batch_size"):  # what can be checked still is
        fit(qt_model(0), data, epochs=2, optimizer=adam, batch_size=32, run_dir=run, allow_unverified=True)


def test_run_dirs_fit_did_not_write_are_refused(data, tmp_path):
    cli = tmp_path / "cli" / "checkpoints"
    cli.mkdir(parents=True)
    save_checkpoint({"fingerprint": {"mode": "qt", "trainer": {"batch_size": 64}}}, cli / "last.pt")
    with pytest.raises(ConfigError, match=r"holds a command-line run \(python -m qt.train\), not a fit\(\) run"):
        fit(qt_model(0), data, epochs=1, run_dir=tmp_path / "cli")
    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    save_checkpoint({"fingerprint": {}}, old / "last.pt")
    with pytest.raises(ConfigError, match=r"written without a fingerprint \(by an earlier qt\).*allow_unverified=True"):
        fit(qt_model(0), data, epochs=1, run_dir=tmp_path / "old")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: fit(net(), d, epochs=0), r"^epochs must be an integer >= 1 \(got 0\): set epochs=1 or more$"),
        (lambda d: fit(net(), d, lr=-1), r"^lr must be a number > 0 \(got -1\): set e\.g\. lr=1e-2$"),
        (lambda d: fit(net(), d, batch_size=0), r"^batch_size must be an integer >= 1 \(got 0\)"),
        (lambda d: fit(net(), d, batch_size="64"), r"^batch_size must be an integer \(got '64'\): fix batch_size=\.\.\.$"),
        (lambda d: fit(net(), d, clip_norm=0), r"^clip_norm must be a number > 0 \(got 0\): set a positive norm, or clip_norm=None"),
        (lambda d: fit(net(), d, eval_batch_size=-1), r"^eval_batch_size must be an integer >= 1"),
        (lambda d: fit(net(), d, device="tpu"), r"^unknown device 'tpu': use cpu, cuda or auto$"),
        (lambda d: fit(net(), d, lr=1e-3, optimizer=partial(torch.optim.SGD, lr=0.1)), r"^fit\(\) got both lr= and optimizer="),
        (lambda d: fit(None, d), r"^model must be a torch nn\.Module \(got NoneType\)"),
        (lambda d: fit(net(3), d), r"^data's train labels run from 0 to 3, but the model outputs 3 class scores: labels must be 0\.\.2"),
        (lambda d: fit(nn.Sequential(nn.Linear(9, 4)), d), r"^the model does not take data's \[8\] inputs"),
        (lambda d: fit(net(), (d[0], d[1], (d[2][0], d[2][1].float()))), r"^data's test labels must be a 1-d integer tensor"),
        (lambda d: fit(net(), (d[0], d[1])), r"^data must be DataSplits or three \(x, y\) pairs"),
        (lambda d: QuantumTrain(None), r"^target must be a torch nn\.Module \(got NoneType\)"),
        (lambda d: QuantumTrain(nn.ReLU()), r"^target ReLU has no parameters"),
        (lambda d: QuantumTrain(net(), n_blocks=0), r"^n_blocks must be an integer >= 1 \(got 0\)"),
        (lambda d: QuantumTrain(net(), chunk=4), r"^chunk is a mapping setting .*: give mapping=\{'chunk': 4\}$"),
        (lambda d: QuantumTrain(net(), mapping={"chunk": 0}), r"^mapping=\{'chunk': \.\.\.\} must be an integer >= 1 \(got 0\)"),
        (lambda d: QuantumTrain(net(), mapping={"hidden": "abc"}), r"^mapping=\{'hidden': \.\.\.\} must be a list of integers \(got 'abc'\)"),
        (lambda d: QuantumTrain(net(), mapping={"hiden": [3]}), r"^mapping=\{'hiden': \.\.\.\} is not a setting of MLPMapping: use .*hidden"),
        (lambda d: QuantumTrain(net(), circuit={"n_blocks": 3}), r"^circuit=\{'n_blocks': \.\.\.\} is set by QuantumTrain itself"),
        (lambda d: QuantumTrain(net(), circuit={"entangle": "no"}), r"^circuit=\{'entangle': \.\.\.\} must be true or false"),
    ],
    ids=["epochs", "lr", "batch_size", "batch_size_type", "clip_norm", "eval_batch_size", "device", "lr_and_optimizer", "model_none",
         "labels", "input_shape", "float_labels", "two_splits", "target_none", "target_without_parameters", "n_blocks", "chunk_argument",
         "chunk", "hidden_type", "unknown_setting", "n_blocks_in_circuit", "entangle"],  # fmt: skip
)
def test_bad_arguments_are_one_line_config_errors_before_training(data, call, message):
    with pytest.raises(ConfigError, match=message) as caught:
        call(data)
    assert "\n" not in str(caught.value)


def test_the_memory_guard_refuses_a_mapping_too_large_for_the_host_before_building_it(data, tmp_path, monkeypatch):
    """mapping={'chunk': 10**9}: one basis state emitting 10^9 weights, a last layer of 2*10^10 (80 GB): refused in one line."""
    with pytest.raises(ConfigError, match=r"^QuantumTrain\(Sequential\) needs ~\d+.* GiB \(mapping parameters .*: use a smaller model, fewer n_blocks, a smaller mapping=\{'chunk': \.\.\.\}"):
        QuantumTrain(net(), mapping={"chunk": 10**9})
    monkeypatch.setattr("qt.experiment.memory.available_memory_bytes", lambda device: 10_000)  # a host with 10 kB free
    with pytest.raises(ConfigError, match=r"^this fit needs ~.* GiB \(.*\) but cpu has 0\.0 GiB free: .* or a smaller batch_size$"):
        fit(net(), data, batch_size=64, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written

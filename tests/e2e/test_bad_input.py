"""Bad input, generated from the config itself: every one exits 2 with one line, no traceback, nothing written."""

import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from omegaconf import OmegaConf

from qt.experiment.config import compose_config
from qt.results.schema import flatten


SKIP = ("paths.", "logger.", "objective", "trainer.device", "hydra")


def generated_overrides(n_types: int = 24, seed: int = 0) -> list[list[str]]:
    """Wrong types for values of the default config (drawn with a fixed seed), plus out-of-range values,
    wrong shapes, unknown keys and unknown options."""
    flat = flatten(OmegaConf.to_container(compose_config(), resolve=False))
    typed = sorted(
        k for k, v in flat.items()
        if not k.startswith(SKIP) and not k.endswith("_target_") and not k.endswith("_partial_")
        and isinstance(v, (bool, int, float, list)) and not (isinstance(v, str))
    )  # fmt: skip
    rng = random.Random(seed)
    cases = [[f"{k}=abc"] for k in rng.sample(typed, min(n_types, len(typed)))]
    ints = [k for k in typed if isinstance(flat[k], int) and not isinstance(flat[k], bool)]
    cases += [[f"{k}=2.5"] for k in rng.sample(ints, 3)]
    cases += [
        ["n_blocks=0"], ["n_blocks=-3"], ["trainer.epochs=0"], ["trainer.batch_size=-1"], ["optimizer.lr=0"],
        ["dataset.val_fraction=1.5"], ["mapping.chunk=0"], ["mapping.hidden=[0]"], ["circuit.shots=0"],
        ["circuit.init_scale=-1"], ["trainer.clip_norm=0"], ["dataset.std=[0]"],
        ["dataset.mean=[0.1,0.2]"], ["model.channels=[8,12,16,32,64]"], ["model.num_classes=7"], ["dataset.shape=[3,28,28]"],
        ["circuit=u4"], ["mapping=huge"], ["optimizer=lbfgs"], ["variant=none"], ["circuit.backend=gpu"], ["circuit.layout=star"],
        ["mode=quantum"], ["trainer.device=tpu"], ["+model.foo=1"], ["+circuit.foo=1"], ["circuit.n_blocks=8"], ["optimizer.betas=[2]"], ["mapping.scale=big"],
        ["n_blocks=1000000000"], ["mapping.chunk=100000000"], ["experiment=mnist_1500", "optimizer=sgd"],
    ]  # fmt: skip
    return cases


def run_bad(overrides: list[str], cwd) -> tuple[list[str], subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "QT_DATA_DIR": str(cwd / "no-data")}
    quick = [q for q in ("trainer.epochs=1", "trainer.limit_train_batches=1", "trainer.threads=1")
             if not any(o.startswith(q.split("=")[0] + "=") for o in overrides)]  # fmt: skip
    cmd = [sys.executable, "-m", "qt.train", *quick, *overrides]
    return overrides, subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_generated_bad_overrides_each_give_one_line_exit_2_and_write_nothing(tmp_path):
    cases = generated_overrides()
    assert len(cases) >= 50
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda o: run_bad(o, tmp_path), cases))
    wrong = []
    for overrides, proc in results:
        err = [line for line in proc.stderr.splitlines() if line.strip()]
        if proc.returncode != 2 or len(err) != 1 or not err[0].startswith("error: ") or "Traceback" in proc.stderr + proc.stdout:
            wrong.append(f"{' '.join(overrides)}: exit {proc.returncode}, stderr {proc.stderr[-300:]!r}")
    assert not wrong, "\n".join(wrong)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused command wrote into the folder it ran in"

"""What a run learns: the ``task`` config group (``task=classification``, the default, or ``task=sequence``).

A task says what the loop measures and keeps, nothing about where the weights come from: the learner (QT, every
control, the classical baseline, HashedNets) generates the target's weights and runs the target functionally,
whatever the target is. Per task:

* the **metrics** measured on every split besides the loss (metrics.csv ``train_X`` / ``val_X``, summary ``test_X``),
  from per-batch sums (:meth:`Task.sums`) turned into means (:meth:`Task.means`), so a training epoch, an
  evaluation and a resumed partial epoch add up the same way;
* the **monitored** metric that picks the kept epoch (``val_acc``, higher is better; ``val_mse``, lower), whose
  best value is summary.json's ``best_val_X`` and the objective sweeps optimise by default;
* the **evaluation loss**, whatever trains (cross-entropy for classification, so a distilled or smoothed run is
  measured like any other; mean squared error for sequences), and the loss of a guess that knows nothing (the
  init report's yardstick);
* what the dataset and the loss must be (validation refuses ``task=sequence dataset=mnist`` in one line).

Classification is what qt did before tasks existed, operation for operation: its runs are unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from collections.abc import Sequence as Seq

import numpy as np
from torch import nn

from qt.core.checks import choice, number, whole
from qt.core.learners import Learner
from qt.training.rl import TEST_SEED, VAL_SEED, discounted, episode_seed, gae, normalised
from qt.training.state import TrainState, epoch_order


class Task:
    """Base: the hooks the loop, evaluation and validation call. Subclasses set the class attributes."""

    #: the option's name (``task=NAME``)
    name = "task"
    #: metrics besides the loss, each measured on train, val and test
    metrics: tuple[str, ...] = ()
    #: the metric that picks the kept epoch, and whether higher is better
    monitor = ""
    maximize = True
    #: the objectives (summary fields) a run of this task can be judged by, besides the task-free ones
    objectives: tuple[str, ...] = ()
    #: losses that train this task (the ``loss`` group's class names)
    losses: tuple[str, ...] = ()
    #: the dataset option for ``task=NAME`` alone, named in refusals
    example_dataset = ""

    @property
    def best_key(self) -> str:
        """The summary field holding the kept epoch's validation value (``best_val_acc``)."""
        return f"best_val_{self.monitor}"

    def output_shape(self, dataset) -> list[int]:
        """What the target must output per example for ``dataset`` (the dataset group's config)."""
        raise NotImplementedError

    # -- the loop's hooks (qt.training.loop.Trainer): what a batch is, its loss, what is measured on a part --
    def has_val(self, data) -> bool:
        """Whether the run has a validation part to pick the kept epoch by."""
        return len(data.val) > 0

    def n_batches(self, trainer) -> int:
        """Updates per epoch (before ``trainer.limit_train_batches``)."""
        return math.ceil(len(trainer.data.train) / trainer.cfg.batch_size)

    def batches(self, trainer, start: int, stop: int):
        """(index, batch) for updates ``start`` .. ``stop - 1`` of the epoch: the training examples in the epoch's
        order, a function of (seed, epoch), so a resumed epoch sees the batches it would have."""
        bs, train = trainer.cfg.batch_size, trainer.data.train
        order = epoch_order(len(train), trainer.cfg.seed, trainer.state.epoch, trainer.device)
        for b in range(start, stop):
            idx = order[b * bs : (b + 1) * bs]
            yield b, (train.x[idx], train.y[idx])

    def step(self, trainer, batch, weights) -> tuple[torch.Tensor, dict]:
        """The training loss of one batch with ``weights`` (generated once for it), and its metrics' sums."""
        x, y = batch
        out = trainer.learner(x, weights)
        loss_fn = trainer.loss_fn
        loss = loss_fn(out, y, x) if getattr(loss_fn, "needs_inputs", False) else loss_fn(out, y)
        if trainer.state.initial_loss is None and torch.isfinite(loss):
            trainer.state.initial_loss = self.first_loss(out, y)
        return loss, self.sums(out, y)

    def evaluate(self, trainer, part: str) -> tuple[float | None, dict, torch.Tensor | None]:
        """(mean evaluation loss, the metrics, what the task keeps per example) of the learner on ``part``
        (train, val or test)."""
        return self.measure(trainer.learner, getattr(trainer.data, part), trainer.cfg.eval_batch_size)

    @torch.no_grad()
    def measure(self, model: nn.Module, split, batch_size: int) -> tuple[float, dict, torch.Tensor | None]:
        """(mean evaluation loss, every metric, what the task keeps per example or None) of a learner's current weights,
        or of any target network, on a split. A learner generates its weights once for the whole split; the model's
        train/eval mode is restored afterwards."""
        was_training = model.training
        model.eval()
        try:
            if isinstance(model, Learner):
                weights = model.weights()
                forward = lambda x: model(x, weights)  # noqa: E731
            else:
                forward = model
            loss, sums, predicted = 0.0, {}, []
            for i in range(0, len(split), batch_size):
                x, y = split.x[i : i + batch_size], split.y[i : i + batch_size]
                out = forward(x)
                loss += float(self.loss_sum(out, y))
                for key, value in self.sums(out, y).items():
                    sums[key] = sums.get(key, 0) + value
                kept = self.predicted(out)
                if kept is not None:
                    predicted.append(kept)
        finally:
            model.train(was_training)
        n = max(len(split), 1)
        return loss / n, self.means(sums), torch.cat(predicted) if predicted else None

    def state_dict(self) -> dict:
        """What the task itself must carry through a resume (an algorithm's critic; nothing for supervised tasks)."""
        return {}

    def load_state_dict(self, state: dict, trainer=None) -> None:
        pass

    def summary(self, trainer) -> dict:
        """Summary fields the task adds (written with every summary)."""
        return {}

    def loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The evaluation loss summed over the batch's examples (evaluation divides by the examples)."""
        raise NotImplementedError

    def sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """This batch's contributions to the metrics' sums (``count``: examples)."""
        raise NotImplementedError

    def means(self, sums: dict) -> dict[str, float | None]:
        """The metrics from summed batches (None where nothing was summed)."""
        raise NotImplementedError

    def first_loss(self, out: torch.Tensor, y: torch.Tensor) -> float:
        """The evaluation loss of the first training batch (the init report compares it with :meth:`chance`)."""
        return float(self.loss_sum(out.detach(), y)) / max(len(y), 1)

    def chance(self, data) -> tuple[float, str]:
        """The evaluation loss of a guess that knows nothing, and how to say it."""
        raise NotImplementedError

    def improved(self, value: float, state: TrainState) -> bool:
        """Whether an epoch's monitored validation value beats the kept epoch's."""
        raise NotImplementedError

    def keep(self, value: float, state: TrainState) -> None:
        raise NotImplementedError

    def best(self, state: TrainState) -> float | None:
        """The kept epoch's monitored validation value (None before any)."""
        raise NotImplementedError

    def predicted(self, out: torch.Tensor) -> torch.Tensor | None:
        """What ``test_predictions.npz`` keeps per test example (None: the task keeps none)."""
        return None


class Classification(Task):
    """Images to classes: cross-entropy, accuracy, the best validation accuracy kept (qt's runs before tasks)."""

    name = "classification"
    metrics = ("acc",)
    monitor = "acc"
    maximize = True
    objectives = ("best_val_acc",)
    losses = ("CrossEntropy", "Distillation")
    example_dataset = "mnist_5k"

    def output_shape(self, dataset) -> list[int]:
        return [int(dataset.num_classes)]

    def loss_sum(self, out, y):
        return F.cross_entropy(out, y, reduction="sum")

    def sums(self, out, y):
        return {"correct": int((out.argmax(1) == y).sum()), "count": len(y)}

    def means(self, sums):
        return {"acc": sums.get("correct", 0) / max(sums.get("count", 0), 1)}

    def first_loss(self, out, y):
        return float(F.cross_entropy(out.detach(), y))

    def chance(self, data):
        return math.log(data.num_classes), f"ln {data.num_classes}"

    def improved(self, value, state):
        return value > state.best_val_acc

    def keep(self, value, state):
        state.best_val_acc = value

    def best(self, state):
        return state.best_val_acc

    def predicted(self, out):
        return out.argmax(1)


class Sequence(Task):
    """Next-step regression on windows of a series: mean squared error trains and picks the kept epoch; the mean
    absolute error is reported beside it. Both are over every predicted value (window positions x features), in
    the dataset's scaled units."""

    name = "sequence"
    metrics = ("mse", "mae")
    monitor = "mse"
    maximize = False
    objectives = ("best_val_mse",)
    losses = ("MSE",)
    example_dataset = "wave"

    def output_shape(self, dataset) -> list[int]:
        return [int(s) for s in dataset.shape]

    def loss_sum(self, out, y):
        return F.mse_loss(out, y, reduction="sum") / max(y[0].numel(), 1)

    def sums(self, out, y):
        diff = (out.detach() - y).double()
        return {"se": float((diff * diff).sum()), "ae": float(diff.abs().sum()), "values": y.numel(), "count": len(y)}

    def means(self, sums):
        values = sums.get("values", 0)
        return {"mse": sums["se"] / values if values else None, "mae": sums["ae"] / values if values else None}

    def chance(self, data):
        y = data.train.y
        return float(((y - y.mean()) ** 2).mean()), "the training targets' variance"

    def improved(self, value, state):
        return value < state.best_val_mse

    def keep(self, value, state):
        state.best_val_mse = value

    def best(self, state):
        return state.best_val_mse


ALGORITHMS = ("reinforce", "a2c")


class ReinforcementLearning(Task):
    """A policy trained on episodes of an environment (:mod:`qt.training.rl`): one update per episode.

    The target is the policy network (observation -> action logits). Per update the learner generates the policy's
    weights once; the episode is played with them (no gradient, one small forward per step), then the policy's
    log-probabilities of the actions taken come from one batched forward with the generated weights, so the
    gradient is the one of a per-step forward (the weights do not change within an episode), at a fraction of the
    cost.

    * ``algorithm=reinforce`` (QTRL): returns G_t discounted by ``gamma``, normalised over the episode
      ((G - mean) / (std + ``eps``)), loss = -sum_t log pi(a_t | s_t) G_t - ``entropy`` sum_t H(pi(. | s_t)).
    * ``algorithm=a2c``: an advantage actor-critic on whole episodes: a classical critic V (an MLP, ``critic_hidden``,
      its own Adam at ``critic_lr``, trained on the returns by MSE) and generalised advantage estimates
      (``gae_lambda``), normalised; the actor's loss is their mean -log pi(a_t | s_t) A_t minus the entropy bonus.
      The critic is not part of the learner: its parameters are reported apart (summary ``critic_params``).

    Measured: ``return`` (the mean episode return; training: the last ``window`` training episodes, sampled
    actions) and ``return_sampled`` on the evaluation episodes (``eval_episodes`` after every epoch, ``test_episodes``
    at the end; ``return`` there is the greedy policy's). The best validation ``return`` picks the kept epoch.
    ``solved_episode``: the first training episode at which the mean return of the last ``window`` reaches the
    environment's threshold (CartPole-v1: 475); null if never (censored).
    """

    name = "rl"
    metrics = ("return", "return_sampled")
    monitor = "return"
    maximize = True
    objectives = ("best_val_return",)
    losses = ()
    example_dataset = "cartpole"

    def __init__(self, algorithm: str = "reinforce", gamma: float = 0.99, eps: float = 1e-8, entropy: float = 0.0,
                 episodes_per_epoch: int = 50, eval_episodes: int = 10, test_episodes: int = 100, window: int = 100,
                 critic_hidden: Seq[int] = (128,), critic_lr: float = 1e-3, gae_lambda: float = 0.95):  # fmt: skip
        self.algorithm = choice(algorithm, "task.algorithm", ALGORITHMS)
        self.gamma, self.eps = number(gamma, "task.gamma"), number(eps, "task.eps")
        self.entropy = number(entropy, "task.entropy")
        self.episodes_per_epoch = whole(episodes_per_epoch, "task.episodes_per_epoch")
        self.eval_episodes = whole(eval_episodes, "task.eval_episodes", least=0)
        self.test_episodes = whole(test_episodes, "task.test_episodes")
        self.window = whole(window, "task.window")
        self.critic_hidden, self.critic_lr = [whole(h, "task.critic_hidden") for h in critic_hidden], number(critic_lr, "task.critic_lr", strict=True)
        self.gae_lambda = number(gae_lambda, "task.gae_lambda")
        self.returns: list[float] = []  # every training episode's return, in order (survives a resume: state_dict)
        self.critic = self.critic_opt = None

    def output_shape(self, dataset) -> list[int]:
        return [int(dataset.num_actions)]

    def has_val(self, data) -> bool:
        return self.eval_episodes > 0

    def n_batches(self, trainer) -> int:
        return self.episodes_per_epoch

    def batches(self, trainer, start: int, stop: int):
        for b in range(start, stop):
            yield b, trainer.state.epoch * self.episodes_per_epoch + b  # the episode's index in the run

    def _critic(self, trainer):
        if self.critic is None:
            from qt.core.targets import MLP

            with torch.random.fork_rng(devices=[]):  # the critic's init: a function of the seed, the run's stream untouched
                torch.manual_seed(episode_seed(trainer.cfg.seed, -1))
                self.critic = MLP(int(np.prod(trainer.data.shape)), self.critic_hidden, 1).to(trainer.device)
            self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.critic_lr)
        return self.critic

    def step(self, trainer, episode_index, weights):
        env, learner = trainer.data, trainer.learner
        fixed = {k: v.detach() for k, v in weights.items()}
        episode = env.play(lambda x: learner(x, fixed), episode_seed(trainer.cfg.seed, episode_index))
        obs = episode.observations.to(trainer.device)
        logp_all = torch.log_softmax(learner(obs, weights), dim=-1)
        logp = logp_all.gather(1, episode.actions.to(trainer.device)[:, None])[:, 0]
        entropy = -(logp_all.exp() * logp_all).sum(1)
        if self.algorithm == "reinforce":
            advantage = normalised(discounted(episode.rewards, self.gamma), self.eps).to(logp)
            loss = -(logp * advantage).sum() - self.entropy * entropy.sum()
        else:
            critic = self._critic(trainer)
            values = critic(obs)[:, 0]
            with torch.no_grad():
                last = 0.0 if episode.terminated else float(critic(episode.last_observation.to(trainer.device)[None])[0, 0])
            adv = gae(episode.rewards, values.detach().double().cpu(), last, self.gamma, self.gae_lambda)
            targets = (adv + values.detach().double().cpu()).to(values)
            self.critic_opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(values, targets).backward()
            self.critic_opt.step()
            loss = -(logp * normalised(adv, self.eps).to(logp)).mean() - self.entropy * entropy.mean()
        self.returns.append(episode.total)
        return loss, {"return": episode.total, "length": len(episode), "count": 1}

    def means(self, sums):
        n = sums.get("count", 0)
        return {"return": sums["return"] / n if n else None, "return_sampled": sums.get("return_sampled", 0) / n if n and "return_sampled" in sums else None}

    def evaluate(self, trainer, part):
        if part == "train":  # the training episodes themselves: the last `window`, as played (sampled actions)
            last = self.returns[-self.window :]
            return None, {"return": sum(last) / len(last) if last else None, "return_sampled": None}, None
        n, base = (self.eval_episodes, VAL_SEED) if part == "val" else (self.test_episodes, TEST_SEED)
        learner = trainer.learner
        was_training = learner.training
        learner.eval()
        try:
            with torch.no_grad():
                weights = learner.weights()
                policy = lambda x: learner(x, weights)  # noqa: E731
                greedy = [trainer.data.play(policy, base + j, greedy=True).total for j in range(n)]
                sampled = [trainer.data.play(policy, base + j).total for j in range(n)]
        finally:
            learner.train(was_training)
        return None, {"return": sum(greedy) / n, "return_sampled": sum(sampled) / n}, None

    def chance(self, data):
        return None, "no chance loss for a policy"

    def improved(self, value, state):
        return value > state.best_val_return

    def keep(self, value, state):
        state.best_val_return = value

    def best(self, state):
        return state.best_val_return

    def solved_episode(self, threshold: float | None) -> int | None:
        """The first training episode (1-based) at which the mean of the last ``window`` returns reaches ``threshold``."""
        if threshold is None:
            return None
        r = np.asarray(self.returns, dtype=np.float64)
        if len(r) < self.window:
            return None
        means = np.convolve(r, np.ones(self.window) / self.window, mode="valid")
        hit = np.flatnonzero(means >= threshold - 1e-9)
        return int(hit[0]) + self.window if len(hit) else None

    def state_dict(self) -> dict:
        state = {"returns": list(self.returns)}
        if self.critic is not None:
            state |= {"critic": self.critic.state_dict(), "critic_opt": self.critic_opt.state_dict()}
        return state

    def load_state_dict(self, state: dict, trainer=None) -> None:
        self.returns = list(state.get("returns", []))
        if "critic" in state and trainer is not None:
            self._critic(trainer).load_state_dict(state["critic"])
            self.critic_opt.load_state_dict(state["critic_opt"])

    def summary(self, trainer) -> dict:
        critic = self._critic(trainer) if self.algorithm == "a2c" else None
        return {"solved_episode": self.solved_episode(trainer.data.solved_at), "episodes": len(self.returns),
                "critic_params": sum(p.numel() for p in critic.parameters()) if critic is not None else None}  # fmt: skip


#: the tasks by option name (``task=NAME``)
TASKS = {task.name: task for task in (Classification, Sequence, ReinforcementLearning)}

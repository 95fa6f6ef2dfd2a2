"""Reinforcement learning for ``task=rl``: the environment (the dataset group's option) and episodes of a policy.

:class:`Environment` is what a dataset is to the supervised tasks: the ``dataset`` group builds it
(``dataset=cartpole``, ``dataset=minigrid_empty_5x5``). It makes the gymnasium environment, turns observations into
flat float vectors (``observation=image``: MiniGrid's image, flattened, raw values, as the QTRL notebook feeds it)
and plays one episode of a policy (:meth:`Environment.play`).

**When an episode ends** (``truncation``): ``standard`` is gymnasium's rule, terminated or truncated (CartPole-v1:
at 500 steps); ``faithful`` is QTRL's notebook, which ignores gymnasium's truncation flag and stops on termination
or at ``max_steps`` (1,000 there, so CartPole returns reach 1,000).

**Seeds.** Episode k of a run's training resets the environment with a seed drawn from (run seed, k) and samples
its actions from a generator seeded the same way, so an episode is a function of the run's seed, its index and
the policy: a resumed run replays exactly the episodes an uninterrupted one plays, with nothing of the
environment's random state to save. Evaluation episodes use fixed seeds, the same for every run (common random
numbers: runs are compared on the same starts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qt.core.checks import choice, whole
from qt.errors import ConfigError

TRUNCATIONS = ("standard", "faithful")
OBSERVATIONS = ("vector", "image")
#: seeds of evaluation episodes: validation j uses VAL_SEED + j, test j TEST_SEED + j (every run the same)
VAL_SEED, TEST_SEED = 1_000_000, 2_000_000


def episode_seed(seed: int, episode: int) -> int:
    """The seed of training episode ``episode`` of a run seeded ``seed`` (environment reset and action sampling)."""
    return (int(seed) * 1_000_003 + int(episode) * 7_919 + 17) % (2**31 - 1)


@dataclass
class Episode:
    """One episode: observations (T, F) float32, actions (T,), rewards (T,), whether it ended by termination, and
    the observation after the last step (an actor-critic bootstraps from it when the episode was cut short)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: bool
    last_observation: torch.Tensor

    @property
    def total(self) -> float:
        return float(self.rewards.sum())

    def __len__(self) -> int:
        return len(self.actions)


class Environment:
    """A gymnasium environment as qt's ``dataset`` for ``task=rl`` (module docstring)."""

    #: the task its data is for (validation refuses another)
    task = "rl"

    def __init__(self, id: str, shape: Sequence[int], num_actions: int, truncation: str = "standard", max_steps: int | None = None,
                 observation: str = "vector", solved_at: float | None = None):  # fmt: skip
        import gymnasium as gym

        if observation == "image":
            import minigrid  # noqa: F401 - registers the MiniGrid environments

        self.name = str(id)
        self.truncation = choice(truncation, "dataset.truncation", TRUNCATIONS)
        self.observation = choice(observation, "dataset.observation", OBSERVATIONS)
        self.max_steps = None if max_steps is None else whole(max_steps, "dataset.max_steps")
        if self.truncation == "faithful" and self.max_steps is None:
            raise ConfigError("dataset.truncation=faithful stops at dataset.max_steps: set it (QTRL's CartPole: 1000)")
        try:
            self.env = gym.make(self.name, **({"max_episode_steps": self.max_steps} if self.truncation == "faithful" else {}))
        except gym.error.Error as e:
            raise ConfigError(f"gymnasium cannot make dataset.id={self.name} ({e}): use a registered id such as CartPole-v1") from None
        self.shape = [int(s) for s in shape]
        size = int(np.prod(self.shape))
        seen = self.observe(self.env.reset(seed=0)[0])
        if seen.numel() != size:
            raise ConfigError(f"{self.name} observations have {seen.numel()} values, dataset.shape={self.shape} says {size}: set dataset.shape=[{seen.numel()}]")
        self.num_actions = whole(num_actions, "dataset.num_actions")
        if self.num_actions > self.env.action_space.n:
            raise ConfigError(f"dataset.num_actions={num_actions} but {self.name} has {self.env.action_space.n} actions")
        spec = self.env.spec.reward_threshold if self.env.spec is not None else None
        self.solved_at = float(solved_at) if solved_at is not None else spec

    def load(self) -> "Environment":
        return self

    def to(self, device) -> "Environment":
        self.device = torch.device(device)
        return self

    def sizes(self) -> dict:
        return {"observation": int(np.prod(self.shape)), "actions": self.num_actions, "max_steps": self.max_steps, "truncation": self.truncation}

    def observe(self, obs) -> torch.Tensor:
        """An observation as a flat float32 vector."""
        if self.observation == "image":
            obs = obs["image"]
        return torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(-1))

    @torch.no_grad()
    def play(self, policy: Callable[[torch.Tensor], torch.Tensor], seed: int, greedy: bool = False) -> Episode:
        """One episode of ``policy`` (observation batch -> action logits), reset with ``seed``; actions sampled from a
        generator seeded ``seed`` (or the most likely action with ``greedy``)."""
        device = getattr(self, "device", torch.device("cpu"))
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        obs, _ = self.env.reset(seed=int(seed))
        observations, actions, rewards = [], [], []
        terminated = False
        while True:
            x = self.observe(obs)
            logits = policy(x.to(device)[None])[0].float().cpu()
            if greedy:
                action = int(logits.argmax())
            else:
                action = int(torch.multinomial(torch.softmax(logits, 0), 1, generator=g))
            obs, reward, terminated, truncated, _ = self.env.step(action)
            observations.append(x)
            actions.append(action)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        return Episode(torch.stack(observations), torch.tensor(actions), torch.tensor(rewards, dtype=torch.float64),
                       bool(terminated), self.observe(obs))  # fmt: skip


def discounted(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma r_{t+1} + ... for every step of an episode (float64)."""
    out, running = torch.zeros_like(rewards, dtype=torch.float64), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def normalised(values: torch.Tensor, eps: float) -> torch.Tensor:
    """(v - mean) / (std + eps), torch's unbiased std as the QTRL notebook; zeros for a one-step episode."""
    if len(values) < 2:
        return torch.zeros_like(values)
    return (values - values.mean()) / (values.std() + eps)


def gae(rewards: torch.Tensor, values: torch.Tensor, last_value: float, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates (Schulman et al. 2016) of one episode; ``last_value``: V of the state after the
    last step (0 when the episode terminated)."""
    adv, running = torch.zeros_like(rewards, dtype=torch.float64), 0.0
    nxt = float(last_value)
    for t in range(len(rewards) - 1, -1, -1):
        delta = float(rewards[t]) + gamma * nxt - float(values[t])
        running = delta + gamma * lam * running
        adv[t] = running
        nxt = float(values[t])
    return adv

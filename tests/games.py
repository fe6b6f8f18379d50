"""Small batched TorchRL environments written for the tests (not part of the library)."""

from __future__ import annotations

import itertools

import torch
from tensordict import TensorDict
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase


class MatrixGameEnv(EnvBase):
    """A batched one-step cooperative matrix game with one group per agent.

    Every agent observes the constant ``[1.0]`` and picks one of ``k`` actions; the
    team reward is ``payoff[a_1, ..., a_n]``; the episode then terminates.
    """

    def __init__(self, payoff: torch.Tensor, num_envs: int = 256) -> None:
        super().__init__(batch_size=torch.Size([num_envs]))
        self.payoff = payoff.float()
        self.agent_names = [f"agent_{i}" for i in range(payoff.dim())]
        self.group_map = {name: [name] for name in self.agent_names}
        batch = (num_envs,)
        self.observation_spec = Composite(
            {n: Composite(observation=Unbounded(shape=(*batch, 1)), shape=batch) for n in self.agent_names},
            shape=batch,
        )
        self.action_spec = Composite(
            {
                n: Composite(action=Categorical(n=payoff.shape[i], shape=batch), shape=batch)
                for i, n in enumerate(self.agent_names)
            },
            shape=batch,
        )
        self.reward_spec = Composite(reward=Unbounded(shape=(*batch, 1)), shape=batch)
        flag = Categorical(n=2, shape=(*batch, 1), dtype=torch.bool)
        self.done_spec = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=batch)

    def _obs(self) -> TensorDict:
        out = TensorDict({}, batch_size=self.batch_size)
        for name in self.agent_names:
            out.set((name, "observation"), torch.ones(*self.batch_size, 1))
        return out

    def _reset(self, tensordict=None, **kwargs):
        out = self._obs()
        false = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        out.update({"done": false, "terminated": false.clone(), "truncated": false.clone()})
        return out

    def _step(self, tensordict):
        actions = [tensordict.get((n, "action")).long() for n in self.agent_names]
        out = self._obs()
        out.set("reward", self.payoff[tuple(actions)].unsqueeze(-1))
        true = torch.ones(*self.batch_size, 1, dtype=torch.bool)
        out.update({"done": true, "terminated": true.clone(), "truncated": torch.zeros_like(true)})
        return out

    def _set_seed(self, seed):
        pass


def trap_payoff(n: int) -> torch.Tensor:
    """Reward 1 only for (0^{n/2}, 1^{n/2}) and (1^{n/2}, 0^{n/2}): the trap of homogeneity."""
    payoff = torch.zeros([2] * n)
    half = n // 2
    payoff[(0,) * half + (1,) * half] = 1.0
    payoff[(1,) * half + (0,) * half] = 1.0
    return payoff


def action_probabilities(actors, env) -> list[torch.Tensor]:
    """Each agent's action probabilities on the game's constant observation."""
    td = env.reset()[:1]
    probs = []
    for actor in actors.values():
        with torch.no_grad():
            probs.append(actor.get_dist(td.copy()).probs[0])
    return probs


def expected_return(probs: list[torch.Tensor], payoff: torch.Tensor) -> float:
    """J = sum over joint actions of prod_i p_i(a_i) * payoff(a)."""
    total = 0.0
    for joint in itertools.product(*(range(p.numel()) for p in probs)):
        weight = 1.0
        for p, a in zip(probs, joint, strict=True):
            weight *= float(p[a])
        total += weight * float(payoff[joint])
    return total


class CueMemoryEnv(EnvBase):
    """Remember a cue: it is shown only at the first step; the last action must match it.

    One agent, episodes of ``delay + 1`` steps. The observation is the cue (one-hot of
    two, zeros after the first step) and a one-hot of the step index. The reward is 1
    at the last step if the action equals the cue, else 0. A memoryless policy cannot
    beat an expected reward of 0.5.
    """

    def __init__(self, num_envs: int = 128, delay: int = 3) -> None:
        super().__init__(batch_size=torch.Size([num_envs]))
        self.delay = delay
        self.group_map = {"agent_0": ["agent_0"]}
        batch = (num_envs,)
        obs_dim = 2 + delay + 1
        self.observation_spec = Composite(
            agent_0=Composite(observation=Unbounded(shape=(*batch, obs_dim)), shape=batch),
            episode_reward=Unbounded(shape=(*batch, 1)),
            shape=batch,
        )
        self.action_spec = Composite(agent_0=Composite(action=Categorical(n=2, shape=batch), shape=batch), shape=batch)
        self.reward_spec = Composite(reward=Unbounded(shape=(*batch, 1)), shape=batch)
        flag = Categorical(n=2, shape=(*batch, 1), dtype=torch.bool)
        self.done_spec = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=batch)
        self.cue = torch.zeros(num_envs, dtype=torch.long)
        self.t = torch.zeros(num_envs, dtype=torch.long)

    def _observation(self) -> torch.Tensor:
        cue = torch.nn.functional.one_hot(self.cue, 2).float() * (self.t == 0).unsqueeze(-1)
        step = torch.nn.functional.one_hot(self.t.clamp(max=self.delay), self.delay + 1).float()
        return torch.cat([cue, step], -1)

    def _reset(self, tensordict=None, **kwargs):
        mask = None if tensordict is None else tensordict.get("_reset", None)
        mask = torch.ones(self.batch_size, dtype=torch.bool) if mask is None else mask.reshape(-1)
        self.cue = torch.where(mask, torch.randint(0, 2, self.batch_size), self.cue)
        self.t = torch.where(mask, torch.zeros_like(self.t), self.t)
        out = TensorDict({("agent_0", "observation"): self._observation()}, batch_size=self.batch_size)
        false = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        out.update({"done": false, "terminated": false.clone(), "truncated": false.clone()})
        out.set("episode_reward", torch.zeros(*self.batch_size, 1))
        return out

    def _step(self, tensordict):
        action = tensordict.get(("agent_0", "action")).long()
        last = self.t == self.delay
        reward = (last & (action == self.cue)).float().unsqueeze(-1)
        self.t = self.t + 1
        out = TensorDict({("agent_0", "observation"): self._observation()}, batch_size=self.batch_size)
        out.set("reward", reward)
        out.set("episode_reward", reward)  # only the last step is rewarded
        done = last.unsqueeze(-1)
        out.update({"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)})
        return out

    def _set_seed(self, seed):
        pass

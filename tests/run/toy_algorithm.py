"""A toy algorithm registered from this one module: the whole cost of adding an algorithm.

Each agent's action is a learnable vector, moved by one Adam step per batch towards the
actions that earned more than the batch's mean reward (a crude policy improvement); its
``train`` is everything the run loop needs. Nothing else of the library is edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from harl_torchrl.config import AlgoConfig, register_algo


class _Noisy(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        noise = 0.3 * torch.randn(*observation.shape[:-1], self.mean.numel(), device=observation.device)
        return (self.mean + noise).clamp(-1.0, 1.0)


@dataclass
class ToyComponents:
    actors: dict[str, TensorDictModule]
    critic: nn.Module
    policy: nn.Module
    optimizer: torch.optim.Optimizer
    updates: int = 0

    def prepare_env(self, env):
        return env

    def start(self, *, frames: int, total_iterations: int) -> None:
        pass

    def train(self, batch: TensorDictBase, *, frames: int, iteration: int) -> dict[str, float]:
        self.optimizer.zero_grad()
        loss = 0.0
        for agent, actor in self.actors.items():
            reward = batch.get(("next", agent, "reward")).mean(-1)
            advantage = (reward - reward.mean())[..., None]
            action = batch.get((agent, "action"))
            mean = actor.module.mean
            loss = loss + (advantage * (action - mean).pow(2).sum(-1, keepdim=True)).mean()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        return {"toy/loss": float(loss.detach()), "toy/updates": float(self.updates)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "actors": {a: m.state_dict() for a, m in self.actors.items()},
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state) -> None:
        for agent, module in self.actors.items():
            module.load_state_dict(state["actors"][agent])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])

    def describe_state(self) -> list[str]:
        return [f"{self.updates} toy updates"]

    def sidecars(self) -> dict[str, Any]:
        return {}


@register_algo
@dataclass
class ToyConfig(AlgoConfig):
    """A toy algorithm for the run loop's tests."""

    name: str = "toy"
    lr: float = 0.05

    def build(self, env, model, *, device="cpu", seed=None):
        actors = {}
        for agent in env.group_map:
            dim = env.full_action_spec_unbatched[agent, "action"].shape[-1]
            actors[agent] = TensorDictModule(
                _Noisy(dim), in_keys=[(agent, "observation")], out_keys=[(agent, "action")]
            )
        params = [p for actor in actors.values() for p in actor.parameters()]
        return ToyComponents(
            actors, nn.Linear(1, 1), TensorDictSequential(*actors.values()), torch.optim.Adam(params, lr=self.lr)
        )

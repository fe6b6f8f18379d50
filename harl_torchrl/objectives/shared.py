"""One loss over every agent, for policies that share parameters (simultaneous updates)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from harl_torchrl.objectives.common import NoValueEstimator


class SharedPolicyLoss(NoValueEstimator, LossModule):
    r"""Averages the per-agent losses of agents whose actors share parameters.

    This is how parameter-shared MAPPO trains: every agent's samples enter one
    objective, :math:`\frac{1}{n}\sum_i L^i`, and one optimiser steps the shared
    weights. It must be used with ``use_factor=False`` (no sequential scheme: a
    shared policy cannot be updated agent by agent).

    Every entry of the agents' outputs is averaged over agents.

    Args:
        losses: ``{agent: loss}``, each a policy loss on one agent's keys (a
            :class:`HAPolicyLoss` or TorchRL's :class:`~torchrl.objectives.ClipPPOLoss`).

    Example:
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules import make_agent_actor
        >>> from harl_torchrl.objectives import HAPPOLoss
        >>> actors = {a: make_agent_actor(a, 3, Bounded(-1.0, 1.0, shape=(1,))) for a in ("a", "b")}
        >>> loss = SharedPolicyLoss({a: HAPPOLoss(actor) for a, actor in actors.items()})
        >>> sorted(loss.losses.keys())
        ['a', 'b']
    """

    def __init__(self, losses: Mapping[str, LossModule]) -> None:
        super().__init__()
        self.losses = torch.nn.ModuleDict(dict(losses))

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Mean over agents of each agent's loss outputs."""
        outputs = [loss(tensordict) for loss in self.losses.values()]
        return TensorDict({key: torch.stack([out[key] for out in outputs]).mean(0) for key in outputs[0].keys()})

r"""The per-agent deterministic actor loss of HADDPG, HATD3, MADDPG and MATD3.

For agent :math:`i` and a joint action :math:`\hat a` in which the other agents' entries
are given (by :class:`~harl_torchrl.sequential.SequentialActorStep`: already-updated
agents' new actions and the others' current ones, or the buffer's actions for the MA
baselines),

.. math:: \mathcal{L}^i(\theta^i) = -\operatorname{mean}\; Q_1\big(s, \hat a^{-i}, \mu^i_{\theta^i}(o^i)\big),

with the critic's parameters detached: the gradient reaches only :math:`\theta^i`.

How this differs from the actor half of TorchRL's ``TD3Loss``/``DDPGLoss``, and why: there
one actor writes one action key and the loss moves it against :math:`Q(s, a)`; here each
agent has its own loss over the *joint* action with only its own entry replaced by a
differentiable fresh action, so that agents can be stepped one after another against each
other's new actions (the HA scheme) or against buffer actions (MADDPG as the reference
defines it). TD3 uses :math:`Q_1` only, as both TorchRL and the reference do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from harl_torchrl.modules.q_critics import JointQCritic
from harl_torchrl.objectives.common import check_reduction, reduce
from harl_torchrl.objectives.joint_q import frozen_parameters
from harl_torchrl.utils.tensordicts import writable_copy


def detached_q(
    critic: JointQCritic,
    tensordict: TensorDictBase,
    heads: int | None = 1,
    params: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The critic's values ``[*B, heads]`` on ``tensordict`` with its parameters detached.

    Gradients flow to the actions in ``tensordict`` but never into the critic
    (nothing accumulates in its ``.grad``). ``params``: the critic's parameters, if the
    caller keeps them listed (see :func:`~harl_torchrl.objectives.joint_q.frozen_parameters`).
    """
    with frozen_parameters(critic, params):
        if isinstance(critic, JointQCritic):
            return critic.values(tensordict, heads=heads)  # the same values, not written into tensordict
        return critic(tensordict, heads=heads).get(critic.out_keys[0])


class DeterministicActorLoss(LossModule):
    """``-Q_1(s, joint action with this agent's entry recomputed)`` for one agent.

    Keys: ``action`` (the actor's ``out_keys[0]``, ``(agent, "action")``) is recomputed
    by ``actor_network`` from its inputs (``(agent, "observation")``); every other
    agent's action and the state are read as given. The input TensorDict is not modified.

    The critic is held by reference, not registered: ``loss.parameters()`` are the
    actor's only (build the agent's optimiser on them or on the actor).

    Args:
        actor_network: the agent's deterministic actor.
        critic: the shared :class:`~harl_torchrl.modules.JointQCritic`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Outputs: ``loss_actor``; detached ``q_value`` (mean :math:`Q_1`).

    Example:
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules import JointQCritic, make_deterministic_actor
        >>> actors = {a: make_deterministic_actor(a, 3, Bounded(-1.0, 1.0, shape=(1,))) for a in "ab"}
        >>> critic = JointQCritic([("a", "observation")], 3, [("a", "action"), ("b", "action")], [1, 1])
        >>> loss = DeterministicActorLoss(actors["a"], critic)
        >>> td = TensorDict({(a, k): torch.randn(4, 3 if k == "observation" else 1)
        ...                  for a in "ab" for k in ("observation", "action")}, [4])
        >>> out = loss(td)
        >>> out["loss_actor"].backward()
        >>> all(p.grad is None for p in critic.parameters())
        True
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable keys (see the class docstring)."""

        action: NestedKey = "action"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(self, actor_network: TensorDictModuleBase, critic: JointQCritic, *, reduction: str = "mean") -> None:
        check_reduction(reduction)
        super().__init__()
        self.actor_network = actor_network
        self.__dict__["critic"] = critic  # shared with the other agents' losses and JointQLoss
        self._critic_params = list(critic.parameters())  # listed once (the optimisers keep these objects too)
        self.reduction = reduction
        self.set_keys(action=actor_network.out_keys[0])

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """No value estimator: the critic is trained by :class:`~harl_torchrl.objectives.JointQLoss`."""

    @property
    def in_keys(self) -> list[NestedKey]:
        """Entries read: the actor's inputs and the critic's (minus this agent's action)."""
        keys = list(self.actor_network.in_keys)
        return keys + [k for k in self.critic.in_keys if k not in keys and k != self.tensor_keys.action]

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """``loss_actor`` with the agent's fresh differentiable action in the joint action."""
        td = self.actor_network(writable_copy(tensordict, self.actor_network.out_keys))
        q = detached_q(self.critic, td, heads=1, params=self._critic_params)
        return TensorDict({"loss_actor": reduce(-q, self.reduction), "q_value": q.detach().mean()})

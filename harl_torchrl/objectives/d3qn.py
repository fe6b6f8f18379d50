r"""HAD3QN: a dueling joint-action critic, per-agent dueling Q-nets distilled towards it.

The critic :math:`Q(s, a^1..a^n)` has one output per joint discrete action (see
:func:`~harl_torchrl.modules.dueling.make_joint_dueling_critic`) and learns by TD with a
target network. Each agent's :math:`Q^i(o^i, \cdot)` is distilled towards the critic's
values over agent :math:`i`'s actions given the others', in a sequential best response:
in a drawn order, agent :math:`i_m` sees the critic's slice
:math:`Q(s, \bar a^{i_{1:m-1}}, \cdot, a^{i_{m+1:n}})` where the agents before it have
switched to their best responses :math:`\bar a` and those after it keep their own greedy
actions; after its update, its action becomes its best response
:math:`\bar a^{i_m} = \arg\max_a Q(s, \bar a^{i_{1:m-1}}, a, a^{i_{m+1:n}})`: a round of
coordinate ascent on the critic's table. That ordering loop is the scheme's, and lives in
:class:`~harl_torchrl.sequential.HAD3QNActorStep`; this module holds the losses and the
joint-action indexing it uses.

Joint actions are indexed row-major over the agents in their fixed order (first agent
slowest), see :func:`joint_index`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from harl_torchrl.errors import ConfigError
from harl_torchrl.objectives.common import check_reduction, reduce
from harl_torchrl.objectives.joint_q import n_step_target

Distill = Literal["all_actions", "greedy"]
NextAction = Literal["target_agents", "critic"]


def _strides(nvec: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for n in reversed(list(nvec)):
        strides.append(acc)
        acc *= int(n)
    return strides[::-1]


def joint_index(actions: Sequence[torch.Tensor], nvec: Sequence[int]) -> torch.Tensor:
    r"""Row-major joint index :math:`\sum_i a^i \prod_{j>i} |A_j|` of per-agent indices.

    Example:
        >>> joint_index([torch.tensor([1, 0]), torch.tensor([2, 1])], [2, 3])
        tensor([5, 1])
    """
    return sum(a.long() * s for a, s in zip(actions, _strides(nvec), strict=True))


def action_slice(
    table: torch.Tensor, actions: Sequence[torch.Tensor], nvec: Sequence[int], position: int
) -> torch.Tensor:
    """The critic's values over agent ``position``'s actions, the others' fixed: ``[*B, |A_position|]``.

    Args:
        table: joint action values ``[*B, prod nvec]``.
        actions: every agent's action index ``[*B]`` (``actions[position]`` is ignored).
        nvec: every agent's number of actions, in the fixed order.
        position: the agent whose actions vary.

    Example:
        >>> table = torch.arange(6.0).unsqueeze(0)  # Q(a1, a2) = 3 * a1 + a2
        >>> action_slice(table, [torch.tensor([1]), torch.tensor([0])], [2, 3], position=1)
        tensor([[3., 4., 5.]])
    """
    strides = _strides(nvec)
    others = [a if i != position else torch.zeros_like(a) for i, a in enumerate(actions)]
    base = joint_index(others, nvec)
    offsets = torch.arange(int(nvec[position]), device=table.device) * strides[position]
    return table.gather(-1, base.unsqueeze(-1) + offsets)


def masked_argmax(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The argmax over the last dimension among the available actions (``mask`` true; ``None``: all).

    Example:
        >>> masked_argmax(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([[False, True, True]]))
        tensor([2])
    """
    if mask is not None:
        values = values.masked_fill(~mask.bool(), torch.finfo(values.dtype).min)
    return values.argmax(-1)


def _flat(x: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """``[*B, 1]`` or ``[*B]`` -> ``[*B]``."""
    return x.reshape(batch)


class HAD3QNAgentLoss(LossModule):
    r"""One agent's distillation of its dueling Q-net towards the critic's best-response slice.

    With :math:`y^i = Q(s, \bar a^{<i}, \cdot, a^{>i}) \in \mathbb R^{|A_i|}` (written
    by :class:`~harl_torchrl.sequential.HAD3QNActorStep`, detached):

    * ``distill="all_actions"`` (default): :math:`L = \mathrm{mean}_a (Q^i(o^i, a) - y^i_a)^2`;
      the agent's greedy action then tracks the critic's best response for every action.
    * ``distill="greedy"`` (the reference HARL): only at the agent's own current greedy
      action :math:`a^i`, :math:`L = (Q^i(o^i, a^i) - y^i_{a^i})^2`; the other actions'
      values move only through shared features.

    Unavailable actions (a mask) are left out of the ``all_actions`` regression.

    This loss also holds the agent's *target* Q-net (``create_target_params=True``;
    update it with ``SoftUpdate(loss, tau=...)``), whose greedy actions choose the next
    joint action in :class:`HAD3QNCriticLoss` (the reference's choice).

    Keys (``set_keys`` remaps): ``action`` ``(agent, "action")``, the agent's current
    greedy action ``[*B]``; ``action_value`` ``(agent, "action_value")`` the net's output;
    ``critic_value`` ``(agent, "critic_action_value")`` the slice :math:`y^i`;
    ``action_mask`` ``(agent, "action_mask")`` (used if present).

    Outputs: ``loss_actor``; detached ``q_value`` (mean over the batch of the agent's
    value at its greedy action) and ``critic_value`` (the same for :math:`y^i`).

    Args:
        agent: the agent's group name.
        qnet: from :func:`~harl_torchrl.modules.dueling.make_dueling_agent_qnet`.
        distill: ``"all_actions"`` or ``"greedy"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sample) over the batch.

    Example:
        >>> from torchrl.data import Categorical
        >>> from harl_torchrl.modules.dueling import make_dueling_agent_qnet
        >>> qnet = make_dueling_agent_qnet("a", 2, Categorical(n=3), hidden_sizes=(8,), head_hidden_sizes=(8,))
        >>> loss = HAD3QNAgentLoss("a", qnet)
        >>> td = TensorDict({("a", "observation"): torch.randn(4, 2),
        ...                  ("a", "critic_action_value"): torch.ones(4, 3)}, [4])
        >>> loss(td)["loss_actor"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable input keys (see the class docstring)."""

        action: NestedKey = "action"
        action_value: NestedKey = "action_value"
        critic_value: NestedKey = "critic_action_value"
        action_mask: NestedKey = "action_mask"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    actor_network: TensorDictSequential
    actor_network_params: TensorDict
    target_actor_network_params: TensorDict

    def __init__(
        self, agent: str, qnet: TensorDictSequential, *, distill: Distill = "all_actions", reduction: str = "mean"
    ) -> None:
        super().__init__()
        if distill not in ("all_actions", "greedy"):
            raise ConfigError(f"distill must be 'all_actions' or 'greedy', got {distill!r}")
        check_reduction(reduction)
        self.agent, self.distill, self.reduction = agent, distill, reduction
        self.convert_to_functional(qnet, "actor_network", create_target_params=True)
        self.set_keys(
            action=(agent, "action"),
            action_value=(agent, "action_value"),
            critic_value=(agent, "critic_action_value"),
            action_mask=(agent, "action_mask"),
        )

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self) -> list[NestedKey]:
        return [*self.actor_network.in_keys, self.tensor_keys.critic_value]

    def greedy(self, tensordict: TensorDictBase, target: bool = False) -> torch.Tensor:
        """The greedy (available) action ``[*B]`` of the online or target net, without gradient."""
        td = tensordict.copy()
        with torch.no_grad():
            if target:
                with self.target_actor_network_params.to_module(self.actor_network):
                    self.actor_network(td)
            else:
                self.actor_network(td)
        return td.get(self.tensor_keys.action)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes ``loss_actor`` (the input is not modified)."""
        td = tensordict.copy()
        self.actor_network(td)
        values = td.get(self.tensor_keys.action_value)
        target = tensordict.get(self.tensor_keys.critic_value).detach()
        greedy = td.get(self.tensor_keys.action).long()
        if self.distill == "all_actions":
            diff = values - target
            mask = tensordict.get(self.tensor_keys.action_mask, None)
            if mask is not None:
                # masked before squaring: a masking Q-net writes finfo.min there, and inf * 0 is NaN
                error = diff.masked_fill(~mask.bool(), 0.0).pow(2)
                per_sample = error.sum(-1) / mask.float().sum(-1).clamp_min(1.0)
            else:
                per_sample = diff.pow(2).mean(-1)
        else:
            index = greedy.unsqueeze(-1)
            per_sample = (values.gather(-1, index) - target.gather(-1, index)).pow(2).squeeze(-1)
        loss = reduce(per_sample, self.reduction)
        index = greedy.unsqueeze(-1)
        return TensorDict(
            {
                "loss_actor": loss,
                "q_value": values.detach().gather(-1, index).mean(),
                "critic_value": target.gather(-1, index).mean(),
            },
            batch_size=[],
        )


class HAD3QNCriticLoss(LossModule):
    r"""TD loss of the joint-action dueling critic, with a target critic.

    .. math::
        y = r_n + \gamma^{k} (1 - \mathrm{terminated})\, Q'(s', a'),\qquad
        L = \mathrm{mean}\,(Q(s, a) - y)^2,

    :math:`r_n` the n-step team return and :math:`k` ``steps_to_next_obs`` (the batch
    contract of :class:`~harl_torchrl.objectives.JointQLoss`), :math:`a` the stored joint
    action. The next joint action :math:`a'` is, double-Q style, chosen by another net
    than the target critic that evaluates it:

    * ``next_action="target_agents"`` (default, the reference): every agent's target
      Q-net's greedy action (needs ``agent_losses``, which hold those targets);
    * ``next_action="critic"``: the online critic's best joint action (masked by the
      agents' ``("next", agent, "action_mask")`` if present), i.e. Double DQN on the
      joint action.

    Target parameters: ``convert_to_functional(critic, "qvalue_network",
    create_target_params=True)``; ``SoftUpdate(loss, tau=0.005)`` updates them. The
    agents' nets are not registered here (``loss.parameters()`` is the critic's only).

    Keys (``set_keys`` remaps): ``value`` ``"joint_action_value"`` (the critic's output);
    ``reward`` and ``terminated`` (read under ``"next"``); ``steps_to_next_obs``
    (absent: 1). Actions: every ``(agent, "action")``.

    Outputs: ``loss_qvalue``; detached ``q_value`` (mean Q(s,a)), ``target_value``
    (mean y), ``td_error`` (mean :math:`|Q - y|`).

    Args:
        critic: from :func:`~harl_torchrl.modules.dueling.make_joint_dueling_critic`.
        nvec: ``{agent: |A_i|}`` in the critic's (fixed) agent order.
        agent_losses: ``{agent: HAD3QNAgentLoss}`` (for ``next_action="target_agents"``).
        next_action: ``"target_agents"`` or ``"critic"``.
        gamma: discount.
        loss_function: ``"l2"`` (the reference) or ``"smooth_l1"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sample).

    Example:
        >>> from torchrl.data import Categorical
        >>> from harl_torchrl.modules.dueling import make_joint_dueling_critic
        >>> critic = make_joint_dueling_critic(["state"], 2, {"a": Categorical(n=2), "b": Categorical(n=2)},
        ...                                    hidden_sizes=(8,), head_hidden_sizes=(8,))
        >>> loss = HAD3QNCriticLoss(critic, {"a": 2, "b": 2}, next_action="critic", gamma=0.9)
        >>> td = TensorDict({"state": torch.randn(3, 2), ("a", "action"): torch.tensor([0, 1, 1]),
        ...                  ("b", "action"): torch.tensor([1, 1, 0]),
        ...                  "next": {"state": torch.randn(3, 2), "reward": torch.ones(3, 1),
        ...                           "terminated": torch.ones(3, 1, dtype=torch.bool)}}, [3])
        >>> round(float(loss(td)["target_value"]), 4)  # terminal: y = r
        1.0
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable input keys (see the class docstring)."""

        value: NestedKey = "joint_action_value"
        reward: NestedKey = "reward"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    qvalue_network: TensorDictModule
    qvalue_network_params: TensorDict
    target_qvalue_network_params: TensorDict

    def __init__(
        self,
        critic: TensorDictModule,
        nvec: Mapping[str, int],
        *,
        agent_losses: Mapping[str, HAD3QNAgentLoss] | None = None,
        next_action: NextAction = "target_agents",
        gamma: float = 0.99,
        loss_function: str = "l2",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if next_action not in ("target_agents", "critic"):
            raise ConfigError(f"next_action must be 'target_agents' or 'critic', got {next_action!r}")
        if next_action == "target_agents" and (agent_losses is None or set(agent_losses) != set(nvec)):
            raise ConfigError(
                "next_action='target_agents' needs agent_losses with one HAD3QNAgentLoss per agent "
                f"({sorted(nvec)}); pass them, or use next_action='critic'"
            )
        if loss_function not in ("l2", "smooth_l1"):
            raise ConfigError(f"loss_function must be 'l2' or 'smooth_l1', got {loss_function!r}")
        check_reduction(reduction)
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
        self.agents = list(nvec)
        self.nvec = [int(n) for n in nvec.values()]
        # a plain dict: the agents' parameters stay out of this loss's parameters()
        self._agent_losses = dict(agent_losses) if agent_losses is not None else {}
        self.next_action, self.gamma = next_action, gamma
        self.loss_function, self.reduction = loss_function, reduction
        self.convert_to_functional(critic, "qvalue_network", create_target_params=True)
        self.set_keys(value=critic.out_keys[0])

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self) -> list[NestedKey]:
        return [*self.qvalue_network.in_keys, *((a, "action") for a in self.agents)]

    def joint_values(self, tensordict: TensorDictBase, target: bool = False) -> torch.Tensor:
        """The online (or target) critic's values of every joint action, ``[*B, prod |A_i|]``."""
        td = tensordict.copy()
        if target:
            with self.target_qvalue_network_params.to_module(self.qvalue_network):
                self.qvalue_network(td)
        else:
            self.qvalue_network(td)
        return td.get(self.tensor_keys.value)

    def _next_joint_action(self, next_td: TensorDictBase) -> torch.Tensor:
        if self.next_action == "target_agents":
            actions = [self._agent_losses[a].greedy(next_td, target=True) for a in self.agents]
            return joint_index(actions, self.nvec)
        table = self.joint_values(next_td, target=False)
        masks = [next_td.get((a, "action_mask"), None) for a in self.agents]
        if all(m is None for m in masks):
            return table.argmax(-1)
        joint = torch.ones_like(table, dtype=torch.bool).reshape(*table.shape[:-1], *self.nvec)
        for i, m in enumerate(masks):
            if m is not None:
                shape = [1] * len(self.nvec)
                shape[i] = self.nvec[i]
                joint = joint & m.bool().reshape(*table.shape[:-1], *shape)
        return masked_argmax(table, joint.reshape(table.shape))

    def target_value(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The TD target ``y`` ``[*B]`` (no gradient)."""
        batch = tensordict.batch_size
        next_td = tensordict.get("next")
        with torch.no_grad():
            next_action = self._next_joint_action(next_td)
            next_value = self.joint_values(next_td, target=True).gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
            return n_step_target(
                _flat(next_td.get(self.tensor_keys.reward), batch),
                _flat(next_td.get(self.tensor_keys.terminated), batch),
                next_value,
                self.gamma,
                tensordict.get(self.tensor_keys.steps_to_next_obs, None),
            )

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes ``loss_qvalue`` (the input is not modified)."""
        target = self.target_value(tensordict)
        action = joint_index([tensordict.get((a, "action")) for a in self.agents], self.nvec)
        value = self.joint_values(tensordict, target=False).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        if self.loss_function == "l2":
            per_sample = (value - target).pow(2)
        else:
            per_sample = torch.nn.functional.smooth_l1_loss(value, target, reduction="none")
        loss = reduce(per_sample, self.reduction)
        return TensorDict(
            {
                "loss_qvalue": loss,
                "q_value": value.detach().mean(),
                "target_value": target.mean(),
                "td_error": (value.detach() - target).abs().mean(),
            },
            batch_size=[],
        )

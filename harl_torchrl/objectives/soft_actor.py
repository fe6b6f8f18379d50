r"""HASAC / MASAC: the per-agent soft actor loss and the soft TD target's next actions.

The soft actor loss of agent :math:`i` in the sequential scheme is

.. math::
    L^i = \mathrm{mean}\Big[\alpha_i \log\pi^i(\tilde a^i|o^i)
          - \min_k Q_k(s, \tilde a^i, a^{-i})\Big],

with :math:`\tilde a^i` a fresh reparameterised sample (tanh-Gaussian ``rsample``, or a
Gumbel-softmax straight-through one-hot for discrete actions) and :math:`a^{-i}` the other
agents' entries of the joint action handed in by
:class:`~harl_torchrl.sequential.SequentialActorStep` (agents already updated: their new
actions; the others: their current ones). The critic's parameters get no gradient.

The soft TD target (reference HASAC) samples the next actions from the *current* actors
and weighs their summed log-probabilities with the critic's own temperature:

.. math::
    y = r_n + \gamma^k (1 - \mathrm{terminated})
        \Big(\min_k Q'_k(s', a') - \alpha_Q \sum_i \log\pi^i(a'^i|o'^i)\Big).

Where ours differs from TorchRL:

* :class:`~torchrl.objectives.SACLoss` holds one actor, one action key and one alpha and
  moves all its parameters at once; here each agent has its own loss and temperature,
  the joint action is assembled outside (by the sequential step), and the critic's TD
  loss is :class:`~harl_torchrl.objectives.JointQLoss` with :class:`SoftNextActions`.
* :class:`~torchrl.objectives.DiscreteSACLoss` needs :math:`Q` over the agent's own
  actions (one output per action); a joint-action critic has no such output, so discrete
  agents use the Gumbel straight-through sample through :math:`Q(s, a^1..a^n)` instead
  (the reference's choice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import LossModule

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.soft_actors import soft_action
from harl_torchrl.objectives.common import check_reduction, reduce
from harl_torchrl.objectives.joint_q import frozen_parameters
from harl_torchrl.objectives.temperature import TemperatureLoss

Temperature = TemperatureLoss | float


def _alpha(temperature: Temperature) -> torch.Tensor:
    if isinstance(temperature, TemperatureLoss):
        return temperature.alpha
    return torch.tensor(float(temperature))


def _agent_of(actor: ProbabilisticActor) -> str:
    keys = [k for k in actor.out_keys if isinstance(k, tuple) and k[-1] == "action"]
    if len(keys) != 1:
        raise ConfigError(f"cannot tell the agent of an actor writing {actor.out_keys}; pass agent= explicitly")
    return keys[0][0]


def _detached_call(critic: TensorDictModuleBase, tensordict: TensorDictBase) -> TensorDictBase:
    """Runs ``critic`` with detached parameters: gradient reaches the inputs only."""
    with frozen_parameters(critic):
        return critic(tensordict)


class SoftActorLoss(LossModule):
    r"""One agent's soft (maximum-entropy) actor loss against the joint-action critic.

    See the module docstring for the formula. ``forward(td)``: ``td`` holds the joint
    action (every ``(agent, "action")``); on a shallow copy, the agent's entry is replaced
    by a fresh reparameterised action (continuous, in the box) or straight-through one-hot
    (discrete; the critic reads float actions as they are), the critic (twin: minimum over
    its heads) is evaluated with detached parameters, and ``td`` is left unchanged.

    Keys (``set_keys`` remaps): ``action`` ``(agent, "action")``; ``value``
    ``"state_action_value"`` (the critic's output, ``[*B, heads]``).

    Outputs: ``loss_actor``; detached ``log_prob`` (batch mean of
    :math:`\log\pi^i(\tilde a^i|o^i)`, what :class:`~harl_torchrl.objectives.TemperatureLoss`
    reads through ``ActorTrainer(after_step=...)``), ``entropy`` (its negative),
    ``q_value`` (mean of the min-Q) and ``alpha``.

    Neither the critic nor the temperature is a registered submodule:
    ``loss.parameters()`` are the actor's only.

    Args:
        actor_network: the agent's soft actor
            (:func:`~harl_torchrl.modules.make_soft_agent_actor`).
        critic: the joint-action critic (e.g. :class:`~harl_torchrl.modules.JointQCritic`).
        temperature: the agent's :class:`TemperatureLoss` (its current :math:`\alpha_i` is
            read at each call) or a fixed float.
        agent: the agent's group name (default: read from the actor's ``out_keys``).
        min_over_heads: minimum over the critic's heads (twin Q, the reference); ``False``
            uses the first head only.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sample) over the batch.

    Example:
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules.soft_actors import make_soft_agent_actor
        >>> actors = {a: make_soft_agent_actor(a, 2, Bounded(-1.0, 1.0, shape=(1,)), hidden_sizes=(8,)) for a in "xy"}
        >>> critic = TensorDictModule(lambda ax, ay: -(ax - ay) ** 2, [("x", "action"), ("y", "action")],
        ...                           ["state_action_value"])  # any module writing [*B, heads]
        >>> loss = SoftActorLoss(actors["x"], critic, temperature=0.1)
        >>> td = TensorDict({("x", "observation"): torch.randn(4, 2), ("x", "action"): torch.zeros(4, 1),
        ...                  ("y", "action"): torch.zeros(4, 1)}, [4])
        >>> out = loss(td)
        >>> out["loss_actor"].requires_grad, out["log_prob"].requires_grad
        (True, False)
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable input keys (see the class docstring)."""

        action: NestedKey = "action"
        value: NestedKey = "state_action_value"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        actor_network: ProbabilisticActor,
        critic: TensorDictModuleBase,
        temperature: Temperature,
        *,
        agent: str | None = None,
        min_over_heads: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        if getattr(actor_network, "agent_index", None) is not None:
            raise ConfigError(
                "SoftActorLoss does not take an agent of a stacked group yet (its fresh sample and log-probability "
                "would cover the whole stack): give HASAC one group per agent; deterministic actors (HADDPG/HATD3) "
                "and the on-policy losses take stacked groups"
            )
        self.actor_network = actor_network
        self.agent = agent if agent is not None else _agent_of(actor_network)
        # plain attributes (not submodules): the critic and alpha stay out of parameters()
        object.__setattr__(self, "critic", critic)
        object.__setattr__(self, "temperature", temperature)
        self.min_over_heads = min_over_heads
        self.reduction = reduction
        self.set_keys(action=(self.agent, "action"), value=critic.out_keys[0])

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self) -> list[NestedKey]:
        return [*self.actor_network.in_keys, *self.critic.in_keys]

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes ``loss_actor`` (the input is not modified)."""
        td = tensordict.copy()
        action, log_prob = soft_action(self.actor_network, td)
        td.set(self.tensor_keys.action, action)
        values = _detached_call(self.critic, td).get(self.tensor_keys.value)
        value = values.min(-1).values if self.min_over_heads else values[..., 0]
        alpha = _alpha(self.temperature).to(log_prob)
        per_sample = alpha * log_prob - value.reshape(log_prob.shape)
        loss = reduce(per_sample, self.reduction)
        mean_log_prob = log_prob.detach().mean()
        return TensorDict(
            {
                "loss_actor": loss,
                "log_prob": mean_log_prob,
                "entropy": -mean_log_prob,
                "q_value": value.detach().mean(),
                "alpha": alpha.detach(),
            },
            batch_size=[],
        )


class SoftNextActions:
    r"""HASAC's next-action producer for :class:`~harl_torchrl.objectives.JointQLoss`.

    ``next_actions(next_td)``, without gradient: every agent's *current* actor samples
    :math:`a'^i \sim \pi^i(\cdot|o'^i)` (regardless of the ambient exploration type) into
    ``(agent, "action")`` with ``(agent, "action_log_prob")``, and the soft bonus
    ``"value_bonus"`` :math:`= -\alpha_Q \sum_i \log\pi^i(a'^i|o'^i)` ``[*B, 1]`` is
    written for the Q loss to add to :math:`\min_k Q'_k(s', a')`. :math:`\alpha_Q` is the
    critic's own temperature (the reference HASAC; a :class:`TemperatureLoss` over every
    agent's log-probability with the summed target entropy), read at each call.

    Not an ``nn.Module``: the actors' parameters stay out of the Q loss's ``parameters()``.

    Args:
        actors: ``{agent: soft actor}``.
        temperature: the critic's :class:`TemperatureLoss` or a fixed float.
        bonus_key: where the bonus goes (``JointQLoss``'s ``value_bonus`` key).

    Example:
        >>> from torchrl.data import Categorical
        >>> from harl_torchrl.modules.soft_actors import make_soft_agent_actor
        >>> actors = {a: make_soft_agent_actor(a, 1, Categorical(n=2), hidden_sizes=(4,)) for a in "xy"}
        >>> nxt = SoftNextActions(actors, temperature=0.5)(TensorDict({("x", "observation"): torch.ones(3, 1),
        ...                                                            ("y", "observation"): torch.ones(3, 1)}, [3]))
        >>> nxt["x", "action"].shape, nxt["value_bonus"].shape
        (torch.Size([3]), torch.Size([3, 1]))
    """

    def __init__(
        self,
        actors: Mapping[str, ProbabilisticActor],
        temperature: Temperature,
        *,
        bonus_key: NestedKey = "value_bonus",
    ) -> None:
        self.actors = dict(actors)
        self.temperature = temperature
        self.bonus_key = bonus_key

    def __call__(self, next_td: TensorDictBase) -> TensorDictBase:
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            log_prob = 0.0
            for agent, actor in self.actors.items():
                actor(next_td)
                log_prob = log_prob + next_td.get((agent, "action_log_prob")).reshape(*next_td.batch_size, -1).sum(-1)
            alpha = _alpha(self.temperature).to(log_prob)
            next_td.set(self.bonus_key, (-alpha * log_prob).unsqueeze(-1))
        return next_td

r"""HAD3QN's sequential best response: the ordering loop of its agents' distillation step.

In a drawn order :math:`i_1, \dots, i_n` (the shared seeded
:class:`~harl_torchrl.sequential.AgentOrder`), agent :math:`i_m` is distilled towards the
critic's slice :math:`Q(s, \bar a^{i_{1:m-1}}, \cdot, a^{i_{m+1:n}})` (the agents before it
at their best responses :math:`\bar a`, those after it at their own greedy actions), then
switched to its best response
:math:`\bar a^{i_m} = \arg\max_a Q(s, \bar a^{i_{1:m-1}}, a, a^{i_{m+1:n}})`: one round of
coordinate ascent on the critic's table. The losses it drives
(:class:`~harl_torchrl.objectives.HAD3QNAgentLoss`,
:class:`~harl_torchrl.objectives.HAD3QNCriticLoss`) know nothing of the order.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict import TensorDict, TensorDictBase

from harl_torchrl.errors import ConfigError
from harl_torchrl.objectives.d3qn import HAD3QNAgentLoss, HAD3QNCriticLoss, action_slice, masked_argmax
from harl_torchrl.sequential.agents import agent_parameters_by_name
from harl_torchrl.sequential.off_policy import ActorTrainer
from harl_torchrl.sequential.order import AgentOrder


class HAD3QNActorStep:
    r"""The sequential best response: each agent distilled in turn, then switched to its best response.

    Per call: the critic's table :math:`Q(s, \cdot)` once (no gradient); every agent's
    current greedy action once; then, in the order drawn by the shared
    :class:`~harl_torchrl.sequential.AgentOrder`, for agent :math:`i`: write the slice
    :math:`Q(s, \bar a^{<i}, \cdot, a^{>i})` as ``(agent, "critic_action_value")``, take
    one optimiser step through its :class:`~harl_torchrl.sequential.ActorTrainer` (whose
    loss is a :class:`~harl_torchrl.objectives.HAD3QNAgentLoss`), then set its action to
    the slice's (available) argmax. This is the reference HARL's HAD3QN actor step. It differs from
    :class:`~harl_torchrl.sequential.SequentialActorStep` only in how an updated agent's
    action is recomputed (the critic's best response rather than the agent's own net), so
    it shares that class's order generator and trainers but not its loop.

    Args:
        critic_loss: holds the online critic (and the agents' fixed order and sizes).
        trainers: ``{agent: ActorTrainer(HAD3QNAgentLoss, optimiser)}``.
        order: ``"random"`` (HA, default) or ``"fixed"``.
        seed: seed of the order generator.

    Keys: reads what the critic and the agents' Q-nets read (the state, every
    ``(agent, "observation")``) and ``(agent, "action_mask")`` where present; writes
    ``(agent, "critic_action_value")`` only into its own shallow copy of the batch.

    Raises:
        ConfigError: trainers that do not match the critic's agents.

    Example:
        >>> from torchrl.data import Categorical
        >>> from harl_torchrl.modules.dueling import make_dueling_agent_qnet, make_joint_dueling_critic
        >>> from harl_torchrl.objectives import HAD3QNAgentLoss, HAD3QNCriticLoss
        >>> specs = {"a": Categorical(n=2), "b": Categorical(n=2)}
        >>> kw = dict(hidden_sizes=(8,), head_hidden_sizes=(8,))
        >>> losses = {k: HAD3QNAgentLoss(k, make_dueling_agent_qnet(k, 1, s, **kw)) for k, s in specs.items()}
        >>> critic = HAD3QNCriticLoss(make_joint_dueling_critic(["state"], 1, specs, **kw), {"a": 2, "b": 2},
        ...                           agent_losses=losses)
        >>> trainers = {k: ActorTrainer(l, torch.optim.Adam(l.actor_network.parameters())) for k, l in losses.items()}
        >>> step = HAD3QNActorStep(critic, trainers, seed=0)
        >>> td = TensorDict({"state": torch.ones(4, 1), ("a", "observation"): torch.ones(4, 1),
        ...                  ("b", "observation"): torch.ones(4, 1)}, [4])
        >>> sorted(step.step(td).keys())
        ['a', 'b', 'order']
    """

    def __init__(
        self,
        critic_loss: HAD3QNCriticLoss,
        trainers: Mapping[str, ActorTrainer],
        *,
        order: str = "random",
        seed: int | None = None,
    ) -> None:
        if set(trainers) != set(critic_loss.agents):
            raise ConfigError(
                f"trainers need one entry per agent of the critic ({critic_loss.agents}), got {list(trainers)}"
            )
        for agent, trainer in trainers.items():
            if not isinstance(trainer.loss, HAD3QNAgentLoss):
                raise ConfigError(
                    f"agent {agent!r}'s trainer holds a {type(trainer.loss).__name__}, not a HAD3QNAgentLoss"
                )
        agent_parameters_by_name({name: trainer.actor for name, trainer in trainers.items()})
        self.critic_loss = critic_loss
        self.trainers = dict(trainers)
        self.orders = AgentOrder(critic_loss.agents, order=order, seed=seed)
        self.last_order: list[str] = []

    def step(self, batch: TensorDictBase, *, diagnostics: bool = True) -> TensorDict:
        """One sequential best-response round on ``batch`` (not modified); per-agent diagnostics and ``"order"``.

        ``diagnostics=False`` skips the gradient norms (see :meth:`ActorTrainer.train`).
        """
        agents, nvec = self.critic_loss.agents, self.critic_loss.nvec
        td = batch.copy()
        with torch.no_grad():
            table = self.critic_loss.joint_values(td, target=False)
        actions = {a: self.trainers[a].loss.greedy(td) for a in agents}
        order = self.orders.draw()
        out = TensorDict({}, batch_size=[])
        for agent in order:
            values = action_slice(table, [actions[a] for a in agents], nvec, agents.index(agent))
            td.set((agent, "critic_action_value"), values)
            out.set(agent, self.trainers[agent].train(td, diagnostics=diagnostics))
            actions[agent] = masked_argmax(values, td.get((agent, "action_mask"), None))
        self.last_order = order
        out.set("order", self.orders.indices(order))
        return out

    def state_dict(self) -> dict:
        """The order generator's state."""
        return self.orders.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.orders.load_state_dict(state)

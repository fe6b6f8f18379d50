r"""The off-policy sequential actor step (HADDPG, HATD3, HASAC) and the MA baselines' variants.

One call of :meth:`SequentialActorStep.step` on a replay batch, with the ``"sequential"``
scheme (Zhong, Kuba et al., JMLR 2024, Algorithms 5-7; the reference's
``OffPolicyHARunner.train``):

1. every agent's current action :math:`\bar a^j = \mu^j(o^j)` once, without gradient;
2. an order :math:`i_1, \dots, i_n` from the shared seeded
   :class:`~harl_torchrl.sequential.AgentOrder` (a fresh permutation by default);
3. for :math:`m = 1, \dots, n`: agent :math:`i_m` recomputes its own action with
   gradient and minimises its actor loss against the joint action

   .. math:: \hat a = \big(\underbrace{a^{i_1}_{new}, \dots, a^{i_{m-1}}_{new}}_{\text{already updated}},\;
       \mu^{i_m}_\theta(o^{i_m}),\; \underbrace{\bar a^{i_{m+1}}, \dots, \bar a^{i_n}}_{\text{current}}\big),

   e.g. :math:`-Q_1(s, \hat a)` (deterministic) or :math:`-(\min_j Q_j(s, \hat a) - \alpha^i
   \log\pi^i)` (soft); its own optimiser steps; then its action is recomputed, without
   gradient, by the updated actor: :math:`a^{i_m}_{new}`, which the agents that follow see.

The critic is never modified here (the losses evaluate it with detached parameters).
The MA baselines run through the same loop with other bookkeeping of the joint action:

* ``"buffer"`` (MADDPG/MATD3/MASAC as the reference defines them,
  ``OffPolicyMARunner.train``): the other agents' entries are the *buffer's* actions, in a
  fixed order, with no recomputation;
* ``"simultaneous"`` (TorchRL's multi-agent DDPG/TD3 examples): every agent's current
  action once, and each agent steps against that same joint action, with no recomputation
  (all agents move at once, as one joint gradient step would).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from harl_torchrl.errors import ConfigError, require_positive
from harl_torchrl.sequential.agents import agent_parameters_by_name
from harl_torchrl.sequential.optim import optimizer_parameters, optimizer_step
from harl_torchrl.sequential.order import AgentOrder, Order
from harl_torchrl.sequential.stacked import check_agent_optimizer
from harl_torchrl.utils.tensordicts import writable_copy

ActorScheme = Literal["sequential", "buffer", "simultaneous"]
AfterStep = Callable[[TensorDict], TensorDictBase | None]


class ActorTrainer:
    """One agent's off-policy actor update: its loss, its optimiser, optional clipping and a hook.

    The loss protocol (what :class:`SequentialActorStep` relies on, met by
    :class:`~harl_torchrl.objectives.DeterministicActorLoss` and the soft actor losses):

    * ``loss.actor_network``: a TensorDict module that writes this agent's entries (its
      ``(agent, "action")``; soft actors also their log-probability) from its inputs;
    * ``loss(td)``: ``td`` holds the joint action (every agent's ``(agent, "action")``);
      the loss recomputes its own agent's entry with gradient on a shallow copy (``td``
      is not modified) and returns a TensorDict of scalar ``loss_*`` terms and diagnostics.

    Args:
        loss: the agent's actor loss.
        optimizer: an optimiser over this agent's actor parameters only.
        max_grad_norm: gradient-norm clip, or ``None`` (the reference does not clip).
        after_step: called with the loss's outputs (detached, plus ``"grad_norm"``) right
            after the optimiser step, e.g. HASAC's per-agent temperature update reading the
            soft loss's ``"log_prob"``; a TensorDict it returns is merged into the
            diagnostics.

    Raises:
        ConfigError: ``max_grad_norm`` not positive.
    """

    def __init__(
        self,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        max_grad_norm: float | None = None,
        after_step: AfterStep | None = None,
    ) -> None:
        if max_grad_norm is not None:
            require_positive("max_grad_norm", max_grad_norm)
        check_agent_optimizer(loss, optimizer)  # an agent of a stack: its own views only
        self.loss = loss
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self.after_step = after_step
        self._params = optimizer_parameters(optimizer)

    @property
    def actor(self) -> TensorDictModuleBase:
        """The agent's actor (``loss.actor_network``)."""
        return self.loss.actor_network

    @torch.no_grad()
    def act(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Writes this agent's current action (no gradient) into ``tensordict``, in place."""
        return self.actor(tensordict)

    def train(self, tensordict: TensorDictBase, *, diagnostics: bool = True) -> TensorDict:
        """One gradient step on the loss over ``tensordict`` (the joint action); returns detached diagnostics.

        Args:
            tensordict: the joint action and what the loss reads.
            diagnostics: ``False`` skips measuring the gradient norm where nothing clips
                (``"grad_norm"`` is then absent); the loss's detached outputs are returned
                either way (the hook and HASAC's critic temperature read them).
        """
        out = self.loss(tensordict)
        loss = sum(value for key, value in out.items() if key.startswith("loss_"))
        grad_norm = optimizer_step(loss, self.optimizer, self._params, self.max_grad_norm, measure=diagnostics)
        result = out.detach()
        if grad_norm is not None:
            result.set("grad_norm", grad_norm)
        if self.after_step is not None:
            extra = self.after_step(result)
            if extra is not None:
                result.update(extra)
        return result


class SequentialActorStep:
    """The one place the off-policy actor update order lives (see :mod:`harl_torchrl.sequential.off_policy`).

    Args:
        trainers: ``{agent: ActorTrainer}``; the keys' order is the fixed order and the
            index space of the ``"order"`` diagnostic. Each agent must own its
            parameters (checked).
        scheme: ``"sequential"`` (HA algorithms, default), ``"buffer"`` (the reference's
            MADDPG/MATD3/MASAC) or ``"simultaneous"`` (TorchRL's multi-agent examples).
        order: ``"random"`` or ``"fixed"``; default ``"random"`` for ``"sequential"`` and
            ``"fixed"`` otherwise (the other schemes do not depend on the order).
        seed: seed of the order generator; ``None`` draws one from torch's global generator.

    Raises:
        ConfigError: no agents, an unknown scheme or order, a reserved agent name, or
            agents sharing parameters.

    Example:
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules import JointQCritic, make_deterministic_actor
        >>> from harl_torchrl.objectives import DeterministicActorLoss
        >>> actors = {a: make_deterministic_actor(a, 3, Bounded(-1.0, 1.0, shape=(1,))) for a in "ab"}
        >>> critic = JointQCritic([("a", "observation"), ("b", "observation")], 6,
        ...                       [("a", "action"), ("b", "action")], [1, 1])
        >>> trainers = {a: ActorTrainer(DeterministicActorLoss(actor, critic),
        ...                             torch.optim.Adam(actor.parameters(), lr=5e-4))
        ...             for a, actor in actors.items()}
        >>> step = SequentialActorStep(trainers, seed=0)
        >>> batch = TensorDict({(a, k): torch.randn(8, 3 if k == "observation" else 1)
        ...                     for a in "ab" for k in ("observation", "action")}, [8])
        >>> diagnostics = step.step(batch)
        >>> sorted(step.last_order), diagnostics["order"].shape
        (['a', 'b'], torch.Size([2]))
    """

    def __init__(
        self,
        trainers: Mapping[str, ActorTrainer],
        *,
        scheme: ActorScheme = "sequential",
        order: Order | None = None,
        seed: int | None = None,
    ) -> None:
        if not trainers:
            raise ConfigError("SequentialActorStep needs at least one agent")
        if scheme not in ("sequential", "buffer", "simultaneous"):
            raise ConfigError(f"scheme must be 'sequential', 'buffer' or 'simultaneous', got {scheme!r}")
        if "order" in trainers:
            raise ConfigError("the agent name 'order' is reserved for diagnostics; rename the group")
        agent_parameters_by_name({name: trainer.actor for name, trainer in trainers.items()})
        self.trainers = dict(trainers)
        self.agent_names: list[str] = list(trainers)
        self._written = [key for trainer in self.trainers.values() for key in trainer.actor.out_keys]
        self.scheme = scheme
        self.orders = AgentOrder(self.agent_names, order or ("random" if scheme == "sequential" else "fixed"), seed)
        self.last_order: list[str] = []

    def step(self, batch: TensorDictBase, *, diagnostics: bool = True) -> TensorDict:
        """One actor step of every agent on ``batch`` (not modified).

        Args:
            batch: replay samples with what the actors and the critic read (every
                ``(agent, "observation")``, the state, and for ``"buffer"`` the stored
                ``(agent, "action")``).
            diagnostics: ``False``: no gradient norms (see :meth:`ActorTrainer.train`).

        Returns:
            ``{agent: that agent's diagnostics}`` plus ``"order"``: the agents' indices
            (in ``trainers``' order) in the order they were updated.
        """
        joint = writable_copy(batch, self._written)  # the batch is not modified
        if self.scheme != "buffer":
            for trainer in self.trainers.values():
                trainer.act(joint)
        order = self.orders.draw()
        measure, diagnostics = diagnostics, TensorDict({})
        for position, name in enumerate(order):
            trainer = self.trainers[name]
            diagnostics.set(name, trainer.train(joint, diagnostics=measure))
            if self.scheme == "sequential" and position < len(order) - 1:
                trainer.act(joint)  # the agents that follow see this agent's new action (the last has none)
        diagnostics.set("order", self.orders.indices(order))
        self.last_order = order
        return diagnostics

    def state_dict(self) -> dict:
        """``{"generator": state}`` of the order generator, so a resumed run draws the same orders."""
        return self.orders.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.orders.load_state_dict(state)


class DelayedUpdates:
    """TD3's policy delay as a counter: actor step and target updates every ``policy_freq`` critic steps.

    Call :meth:`tick` once per critic step; it returns ``True`` on critic steps
    ``policy_freq, 2 * policy_freq, ...`` (counting from 1), the iterations on which the
    reference runs the actor step and then soft-updates every target (actors' and critic's).
    ``policy_freq=1`` (DDPG, SAC) makes every step one.

    Args:
        policy_freq: critic steps per actor step (reference TD3: 2).

    Example:
        >>> delay = DelayedUpdates(2)
        >>> [delay.tick() for _ in range(5)]
        [False, True, False, True, False]
    """

    def __init__(self, policy_freq: int = 1) -> None:
        require_positive("policy_freq", policy_freq)
        self.policy_freq = int(policy_freq)
        self.critic_steps = 0

    def tick(self) -> bool:
        """Counts one critic step; ``True`` when the actor step (and the target updates) are due."""
        self.critic_steps += 1
        return self.critic_steps % self.policy_freq == 0

    def state_dict(self) -> dict:
        """``{"critic_steps": int}``."""
        return {"critic_steps": self.critic_steps}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.critic_steps = int(state["critic_steps"])

r"""The sequential update scheme: the one place where heterogeneous agents take turns.

Each iteration draws an order :math:`i_1, \dots, i_n` of the agents (a fresh random
permutation by default). Agent :math:`i_m` is trained on the batch with the factor

.. math::

    M^{i_{1:m}} = \prod_{j<m} \frac{\pi^{i_j}_{new}(a^{i_j} | o)}{\pi^{i_j}_{old}(a^{i_j} | o)},

which starts at 1 and is multiplied, after each agent's update and without
gradient, by that agent's new-over-old joint probability ratio on the whole batch.
The centralised critic is trained last, on the targets computed before the update.
(Zhong, Kuba et al., "Heterogeneous-Agent Reinforcement Learning", JMLR 2024,
Sec. 3.2; the factor is the estimator of their Proposition 11.)

The package holds the schemes and their pieces, each in one module:
:mod:`~harl_torchrl.sequential.order` (the seeded order generator shared by every
scheme), :mod:`~harl_torchrl.sequential.on_policy` (:class:`SequentialUpdater`),
:mod:`~harl_torchrl.sequential.off_policy` (:class:`SequentialActorStep`, the off-policy
actor step of HADDPG/HATD3/HASAC and the MA baselines' variants),
:mod:`~harl_torchrl.sequential.best_response` (:class:`HAD3QNActorStep`, HAD3QN's sequential
best response),
:mod:`~harl_torchrl.sequential.trainers` (the per-agent on-policy trainers),
:mod:`~harl_torchrl.sequential.optim` (the one optimiser step every trainer takes),
:mod:`~harl_torchrl.sequential.agents` (per-agent parameter ownership) and
:mod:`~harl_torchrl.sequential.stacked` (TorchRL's stacked groups, each agent of a stack its
own agent: :class:`AgentStack`). Every public
name is importable from :mod:`harl_torchrl.sequential` itself.
"""

from harl_torchrl.sequential.agents import agent_parameters_by_name
from harl_torchrl.sequential.best_response import HAD3QNActorStep
from harl_torchrl.sequential.off_policy import ActorScheme, ActorTrainer, DelayedUpdates, SequentialActorStep
from harl_torchrl.sequential.on_policy import SequentialUpdater
from harl_torchrl.sequential.optim import optimizer_parameters, optimizer_step
from harl_torchrl.sequential.order import AgentOrder, Order
from harl_torchrl.sequential.stacked import (
    AgentSliceActor,
    AgentStack,
    check_agent_optimizer,
    stack_agent_parameters,
    stacked_networks,
)
from harl_torchrl.sequential.trainers import (
    AgentTrainer,
    CriticTrainer,
    PolicyTrainer,
    TrustRegionTrainer,
    minibatch_epochs,
    normalize_advantage,
    sequence_chunks,
)

__all__ = [
    "ActorScheme",
    "ActorTrainer",
    "AgentOrder",
    "AgentSliceActor",
    "AgentStack",
    "AgentTrainer",
    "CriticTrainer",
    "DelayedUpdates",
    "HAD3QNActorStep",
    "Order",
    "PolicyTrainer",
    "SequentialActorStep",
    "SequentialUpdater",
    "TrustRegionTrainer",
    "agent_parameters_by_name",
    "check_agent_optimizer",
    "minibatch_epochs",
    "normalize_advantage",
    "optimizer_parameters",
    "optimizer_step",
    "sequence_chunks",
    "stack_agent_parameters",
    "stacked_networks",
]

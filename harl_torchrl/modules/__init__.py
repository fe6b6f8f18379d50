"""Per-agent actors, the centralised critic and their building blocks."""

from harl_torchrl.modules.actors import GaussianHead, joint_policy, make_actors, make_agent_actor
from harl_torchrl.modules.batched import BatchedJointPolicy
from harl_torchrl.modules.critics import (
    CentralValueNet,
    Denormalize,
    critic_value_norm,
    make_central_critic,
    observation_critic_inputs,
)
from harl_torchrl.modules.deterministic import (
    DeterministicActor,
    DeterministicActorNet,
    make_deterministic_actor,
    make_deterministic_actors,
)
from harl_torchrl.modules.distributions import MaskedCategorical
from harl_torchrl.modules.dueling import (
    DuelingQNet,
    make_dueling_agent_qnet,
    make_dueling_agent_qnets,
    make_joint_dueling_critic,
)
from harl_torchrl.modules.groups import agent_groups, check_env_clips_actions
from harl_torchrl.modules.mlp import MLPTrunk
from harl_torchrl.modules.q_critics import JointQCritic, make_joint_q_critic
from harl_torchrl.modules.recurrent import is_recurrent, recurrent_env_transforms, recurrent_network
from harl_torchrl.modules.soft_actors import (
    GumbelCategorical,
    GumbelMultiCategorical,
    SquashedNormal,
    make_soft_actors,
    make_soft_agent_actor,
    soft_action,
)
from harl_torchrl.modules.value_norm import ValueNorm

__all__ = [
    "BatchedJointPolicy",
    "CentralValueNet",
    "Denormalize",
    "DeterministicActor",
    "DeterministicActorNet",
    "DuelingQNet",
    "GaussianHead",
    "GumbelCategorical",
    "GumbelMultiCategorical",
    "JointQCritic",
    "MLPTrunk",
    "MaskedCategorical",
    "SquashedNormal",
    "ValueNorm",
    "agent_groups",
    "check_env_clips_actions",
    "critic_value_norm",
    "is_recurrent",
    "joint_policy",
    "make_actors",
    "make_agent_actor",
    "make_central_critic",
    "make_deterministic_actor",
    "make_deterministic_actors",
    "make_dueling_agent_qnet",
    "make_dueling_agent_qnets",
    "make_joint_dueling_critic",
    "make_joint_q_critic",
    "make_soft_actors",
    "make_soft_agent_actor",
    "observation_critic_inputs",
    "recurrent_env_transforms",
    "recurrent_network",
    "soft_action",
]

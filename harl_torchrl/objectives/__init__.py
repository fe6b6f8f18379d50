"""TorchRL loss modules of the heterogeneous-agent algorithms."""

from harl_torchrl.objectives.common import HAPolicyLoss
from harl_torchrl.objectives.d3qn import HAD3QNAgentLoss, HAD3QNCriticLoss
from harl_torchrl.objectives.deterministic_actor import DeterministicActorLoss
from harl_torchrl.objectives.haa2c import HAA2CLoss
from harl_torchrl.objectives.happo import HAPPOLoss
from harl_torchrl.objectives.hatrpo import HATRPOLoss, reference_logit_kl
from harl_torchrl.objectives.joint_q import JointQLoss
from harl_torchrl.objectives.polyak import FusedSoftUpdate
from harl_torchrl.objectives.shared import SharedPolicyLoss
from harl_torchrl.objectives.soft_actor import SoftActorLoss, SoftNextActions
from harl_torchrl.objectives.target_actions import TargetActions
from harl_torchrl.objectives.temperature import TemperatureLoss, TemperatureStep, target_entropy
from harl_torchrl.objectives.value import CentralValueLoss

__all__ = [
    "CentralValueLoss",
    "DeterministicActorLoss",
    "FusedSoftUpdate",
    "HAA2CLoss",
    "HAD3QNAgentLoss",
    "HAD3QNCriticLoss",
    "HAPPOLoss",
    "HAPolicyLoss",
    "HATRPOLoss",
    "JointQLoss",
    "SharedPolicyLoss",
    "SoftActorLoss",
    "SoftNextActions",
    "TargetActions",
    "TemperatureLoss",
    "TemperatureStep",
    "reference_logit_kl",
    "target_entropy",
]

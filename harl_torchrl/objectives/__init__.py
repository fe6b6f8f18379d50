"""TorchRL loss modules of the heterogeneous-agent algorithms."""

from harl_torchrl.objectives.common import HAPolicyLoss
from harl_torchrl.objectives.happo import HAPPOLoss
from harl_torchrl.objectives.shared import SharedPolicyLoss
from harl_torchrl.objectives.value import CentralValueLoss

__all__ = ["CentralValueLoss", "HAPPOLoss", "HAPolicyLoss", "SharedPolicyLoss"]

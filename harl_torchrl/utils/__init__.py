"""Small utilities shared by the library and the recipes."""

from harl_torchrl.utils.device import resolve_device

__all__ = ["resolve_device"]

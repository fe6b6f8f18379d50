"""harl_torchrl: Heterogeneous-Agent Reinforcement Learning on TorchRL."""

__version__ = "0.1.0"

# Registers the config schemas with Hydra's ConfigStore, which the recipe YAMLs inherit
# from: any import of the library makes `hydra.compose` of recipes/conf work.
from harl_torchrl import config as _config  # noqa: F401

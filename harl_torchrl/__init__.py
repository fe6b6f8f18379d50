"""harl_torchrl: Heterogeneous-Agent Reinforcement Learning on TorchRL."""

__version__ = "0.1.0"

# Importing the library imports neither Hydra nor the config schemas: a Hydra entry point
# calls harl_torchrl.config.store_schemas() before it composes harl_torchrl/conf.

"""harl_torchrl: Heterogeneous-Agent Reinforcement Learning on TorchRL."""

__version__ = "0.1.0"

"""The components protocol: what the run loop needs of an algorithm, and nothing more.

Every algorithm family builds one object that follows :class:`Components`
(:class:`~harl_torchrl.algorithms.OnPolicyComponents`,
:class:`~harl_torchrl.off_policy.OffPolicyComponents`), through its typed schema's
:meth:`~harl_torchrl.config.AlgoConfig.build`. The loop
(:func:`harl_torchrl.run.run`) collects with :attr:`Components.policy`, hands each
batch to :meth:`Components.train`, and checkpoints :meth:`Components.state_dict`; it
never asks which family it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from tensordict import TensorDictBase
from torch import nn
from torchrl.envs import EnvBase


@runtime_checkable
class Components(Protocol):
    """What one algorithm trains, as the run loop sees it.

    Attributes:
        actors: ``{agent: actor}``: the agents' names, and modules checked for
            non-finite parameters after each update.
        critic: the critic module (also checked).
        policy: the joint policy to collect and evaluate with (deterministic under
            ``ExplorationType.DETERMINISTIC``).

    Example:
        A toy algorithm that trains nothing still runs through the loop; see
        ``tests/run/test_loop.py`` for one registered from a single module.

        >>> from harl_torchrl.config import algo_config, model_config
        >>> from harl_torchrl.envs import make_vmas_env
        >>> env = make_vmas_env("balance", num_envs=2, n_agents=2, max_steps=5)
        >>> parts = algo_config({"name": "happo"}).build(env, model_config({"hidden_sizes": [8]}), seed=0)
        >>> isinstance(parts, Components)
        True
    """

    actors: Mapping[str, nn.Module]
    critic: nn.Module
    policy: nn.Module

    def prepare_env(self, env: EnvBase) -> EnvBase:
        """The env with what the networks need (recurrent state, markers), or ``env`` itself."""
        ...

    def start(self, *, frames: int, total_iterations: int) -> None:
        """Called once before collection starts (after a resume is loaded).

        Args:
            frames: frames collected so far (0, or the checkpoint's).
            total_iterations: the run's whole length in iterations.
        """
        ...

    def train(self, batch: TensorDictBase, *, frames: int, iteration: int) -> dict[str, float]:
        """Learns from one collected batch; returns flat diagnostics (``{"name": float}``).

        Args:
            batch: ``[num_envs, steps]`` of transitions.
            frames: frames collected including this batch.
            iteration: this iteration's number (1-based).
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (networks, optimisers, generators, counters)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` in place (sidecars appear under their names)."""
        ...

    def describe_state(self) -> list[str]:
        """Short notes on the state just loaded, for the resume line (e.g. the buffer's size)."""
        ...

    def sidecars(self) -> dict[str, Any]:
        """Large state written beside the checkpoint in files of its own (a replay buffer), or ``{}``."""
        ...

"""Builds an environment from a recipe's ``env`` config group, through its schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchrl.envs import EnvBase

from harl_torchrl.config import EnvConfig, env_config


def make_env(
    env_cfg: EnvConfig | Mapping[str, Any], *, num_envs: int | None = None, seed: int | None = None, device: str = "cpu"
) -> EnvBase:
    """Builds the env described by ``env_cfg``: ``env_config(env_cfg).make(...)``.

    The family's schema (:mod:`harl_torchrl.config.env`) converts a plain mapping, fills
    in its defaults and builds the env (:meth:`~harl_torchrl.config.EnvConfig.make`); a
    family's optional packages are imported only when its env is built, so a missing one
    fails only for its own family.

    Args:
        env_cfg: the ``env`` config group: a typed :class:`~harl_torchrl.config.EnvConfig`,
            or a mapping of ``family`` and that family's settings.
        num_envs: overrides ``env_cfg.num_envs`` (evaluation envs use their own).
        seed: the env's seed (``None``: not seeded).
        device: where the env runs.

    Raises:
        ConfigError: unknown family, scenario or setting.
        MissingDependencyError: the family's optional packages are not installed.

    Example:
        >>> env = make_env({"family": "vmas", "scenario": "balance", "num_envs": 2, "scenario_kwargs": {"n_agents": 2}})
        >>> sorted(env.group_map)
        ['agent_0', 'agent_1']
    """
    return env_config(env_cfg).make(num_envs=num_envs, seed=seed, device=device)

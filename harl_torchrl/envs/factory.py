"""Builds an environment from a recipe's ``env`` config group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchrl.envs import EnvBase

from harl_torchrl.errors import unknown_choice

FAMILIES = ("vmas",)


def make_env(
    env_cfg: Mapping[str, Any], *, num_envs: int | None = None, seed: int | None = None, device: str = "cpu"
) -> EnvBase:
    """Builds the env described by ``env_cfg``.

    Args:
        env_cfg: the ``env`` config group: ``family`` plus the family's settings
            (for ``vmas``: ``scenario``, ``num_envs``, ``max_steps``,
            ``continuous_actions``, ``team_reward``, ``reset_mode``,
            ``scenario_kwargs``).
        num_envs: overrides ``env_cfg["num_envs"]`` (evaluation envs use their own).
        seed: the env's seed.
        device: where the env runs.

    Raises:
        ConfigError: unknown family, scenario or setting.

    Example:
        >>> env = make_env({"family": "vmas", "scenario": "balance", "num_envs": 2, "scenario_kwargs": {"n_agents": 2}})
        >>> sorted(env.group_map)
        ['agent_0', 'agent_1']
    """
    family = env_cfg.get("family")
    if family not in FAMILIES:
        raise unknown_choice("env family", family, FAMILIES)
    if family == "vmas":
        from harl_torchrl.envs.vmas import make_vmas_env

        return make_vmas_env(
            env_cfg["scenario"],
            num_envs=num_envs if num_envs is not None else env_cfg.get("num_envs", 32),
            device=device,
            max_steps=env_cfg.get("max_steps", 100),
            continuous_actions=env_cfg.get("continuous_actions", True),
            team_reward=env_cfg.get("team_reward", "mean"),
            reset_mode=env_cfg.get("reset_mode", "auto"),
            seed=seed,
            **dict(env_cfg.get("scenario_kwargs") or {}),
        )
    raise AssertionError("unreachable")  # pragma: no cover

"""Builds an environment from a recipe's ``env`` config group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchrl.envs import EnvBase

from harl_torchrl.errors import ConfigError, unknown_choice

FAMILIES = ("vmas", "pettingzoo", "mamujoco", "smax", "football")


def make_env(
    env_cfg: Mapping[str, Any], *, num_envs: int | None = None, seed: int | None = None, device: str = "cpu"
) -> EnvBase:
    """Builds the env described by ``env_cfg``.

    Args:
        env_cfg: the ``env`` config group: ``family`` plus the family's settings
            (for ``vmas``: ``scenario``, ``num_envs``, ``max_steps``,
            ``continuous_actions``, ``team_reward``, ``reset_mode``,
            ``scenario_kwargs``; for ``pettingzoo`` (MPE): ``scenario``,
            ``num_envs``, ``max_steps``, ``continuous_actions``, ``scenario_kwargs``;
            for ``mamujoco``: ``scenario``, ``agent_conf``, ``num_envs``,
            ``max_steps``, ``obs_mode``, ``agent_obsk``, ``clip_actions``,
            ``normalize_actions``, ``zero_contact_forces``, ``env_kwargs``; for ``smax``:
            ``scenario``, ``num_envs``, ``max_steps``, ``env_kwargs``; for ``football``:
            ``scenario``, ``num_envs``, ``max_steps``, ``checkpoint_reward``, ``team_reward``). The
            ``pettingzoo``, ``mamujoco``, ``smax`` and ``football`` modules are imported only when used, so
            a missing optional package fails only for its own family.
        num_envs: overrides ``env_cfg["num_envs"]`` (evaluation envs use their own).
        seed: the env's seed.
        device: where the env runs.

    Raises:
        ConfigError: unknown family, scenario or setting.
        MissingDependencyError: the family's optional packages are not installed.

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
    if family == "pettingzoo":
        from harl_torchrl.envs.pettingzoo import make_pettingzoo_env

        return make_pettingzoo_env(
            env_cfg["scenario"],
            num_envs=num_envs if num_envs is not None else env_cfg.get("num_envs", 32),
            max_steps=env_cfg.get("max_steps", 25),
            continuous_actions=env_cfg.get("continuous_actions", True),
            seed=seed,
            device=device,
            **dict(env_cfg.get("scenario_kwargs") or {}),
        )
    if family == "mamujoco":
        from harl_torchrl.envs.mamujoco import make_mamujoco_env

        if "agent_conf" not in env_cfg:
            raise ConfigError("a mamujoco env config needs agent_conf, e.g. env.agent_conf=2x3")
        return make_mamujoco_env(
            env_cfg["scenario"],
            str(env_cfg["agent_conf"]),
            num_envs=num_envs if num_envs is not None else env_cfg.get("num_envs", 8),
            max_steps=env_cfg.get("max_steps", 1000),
            obs_mode=env_cfg.get("obs_mode", "local"),
            agent_obsk=env_cfg.get("agent_obsk", 1),
            clip_actions=env_cfg.get("clip_actions", True),
            normalize_actions=env_cfg.get("normalize_actions", False),
            zero_contact_forces=env_cfg.get("zero_contact_forces", False),
            seed=seed,
            device=device,
            **dict(env_cfg.get("env_kwargs") or {}),
        )
    if family == "smax":
        from harl_torchrl.envs.smax import make_smax_env

        return make_smax_env(
            env_cfg["scenario"],
            num_envs=num_envs if num_envs is not None else env_cfg.get("num_envs", 64),
            max_steps=env_cfg.get("max_steps", 101),
            seed=seed,
            device=device,
            **dict(env_cfg.get("env_kwargs") or {}),
        )
    if family == "football":
        from harl_torchrl.envs.football import make_football_env

        return make_football_env(
            env_cfg["scenario"],
            num_envs=num_envs if num_envs is not None else env_cfg.get("num_envs", 4),
            max_steps=env_cfg.get("max_steps"),
            checkpoint_reward=env_cfg.get("checkpoint_reward", True),
            team_reward=env_cfg.get("team_reward", "mean"),
            seed=seed,
            device=device,
        )
    raise AssertionError("unreachable")  # pragma: no cover

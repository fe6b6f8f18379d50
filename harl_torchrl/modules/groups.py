"""Which agent groups of an env the per-agent modules build for, and what they refuse."""

from __future__ import annotations

from torchrl.envs import Compose, EnvBase, TransformedEnv
from torchrl.envs.libs.vmas import VmasWrapper

from harl_torchrl.errors import ConfigError

_ONE_GROUP_PER_AGENT_FIX = (
    "build the env with one group per agent: harl_torchrl.envs.make_vmas_env(...) (or make_env), or TorchRL's "
    "VmasEnv(..., group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT)"
)


def agent_groups(env: EnvBase) -> list[str]:
    """The env's agent groups, in order, each of which must hold exactly one agent.

    The heterogeneous-agent modules give every agent its own parameters and its own
    keys ``(agent, "observation")``, ``(agent, "action")``. A group of several
    agents (TorchRL's default for VMAS, ``{"agents": ["agent_0", ...]}``) would get
    one network for all of them, silently shared, and a critic input of one
    agent's size: it is refused.

    Args:
        env: a multi-agent TorchRL env (``env.group_map``).

    Returns:
        The group names, e.g. ``["agent_0", "agent_1"]``.

    Raises:
        ConfigError: the env has no ``group_map``, or a group holds several agents.

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> agent_groups(make_vmas_env("balance", num_envs=2, n_agents=2))
        ['agent_0', 'agent_1']
    """
    group_map = getattr(env, "group_map", None)
    if group_map is None:
        raise ConfigError(
            f"{type(env).__name__} has no group_map, so it is not a multi-agent env; {_ONE_GROUP_PER_AGENT_FIX}"
        )
    for group, agents in group_map.items():
        if len(agents) != 1:
            raise ConfigError(
                f"group {group!r} of the env holds {len(agents)} agents ({', '.join(map(str, agents))}), but each "
                f"agent needs its own group (its own parameters and keys; a shared group would give one shared "
                f"network and a critic input of one agent's size); {_ONE_GROUP_PER_AGENT_FIX}"
            )
    return list(group_map)


def check_env_clips_actions(env: EnvBase) -> None:
    """Refuses a TorchRL ``VmasEnv`` that would reject the Gaussian actors' unbounded samples.

    The actors sample from an unsquashed Gaussian, as the reference does, and leave
    the clipping to the env, so that the stored action and its log-probability
    stay those of the sample. Our envs clip; TorchRL's ``VmasEnv`` clips only with
    ``clamp_actions=True`` and otherwise asserts "Physical actions of agent ... are
    out of its range" at the first out-of-box sample. An env with an inverse
    transform (e.g. a ``ClipTransform`` on the actions) is trusted to clip.

    Raises:
        ConfigError: a continuous-action ``VmasEnv`` built without ``clamp_actions=True``.
    """
    base = env.base_env if isinstance(env, TransformedEnv) else env
    if base is not env and any(t.in_keys_inv for t in _transforms(env)):
        return
    vmas_env = getattr(base, "_env", None)  # the simulator TorchRL's VmasWrapper wraps
    if isinstance(base, VmasWrapper) and getattr(vmas_env, "continuous_actions", False):
        if getattr(vmas_env, "clamp_action", True) is False:
            raise ConfigError(
                "TorchRL's VmasEnv was built without clamp_actions=True: the Gaussian actors' samples are not "
                "bounded (the env clips them, as in the reference) and VMAS would assert 'Physical actions ... are "
                "out of its range'. Build it with VmasEnv(..., clamp_actions=True), or use "
                "harl_torchrl.envs.make_vmas_env, which clips"
            )


def _transforms(env: TransformedEnv) -> list:
    transform = env.transform
    return list(transform) if isinstance(transform, Compose) else [transform]

"""Deterministic evaluation of a joint policy on a batched env."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

#: The flag an env writes on the step its team won (SMAX's ``"battle_won"``), read for win rates.
WIN_KEY = "battle_won"

#: Root success flags an env may write on the step the team succeeded, each with the key of
#: :func:`episode_returns`'s 0/1 per episode and the name of the rate in the logs: SMAX's won
#: battles (``win_rate``) and football's goals (``goal_rate``).
SUCCESS_FLAGS: dict[str, tuple[str, str]] = {
    WIN_KEY: ("won", "win_rate"),
    "goal_scored": ("scored", "goal_rate"),
}


@torch.no_grad()
def episode_returns(
    env: EnvBase, policy: TensorDictModuleBase, max_steps: int, *, deterministic: bool = True
) -> dict[str, torch.Tensor]:
    """Each sub-environment's first episode: team return, every agent's return and the length.

    Every sub-environment of the batched ``env`` plays one episode from a fresh reset
    (drawn from the env's random state: the one a checkpoint restored, if any) with the policy's deterministic
    actions (the mode of each agent's distribution) or, with ``deterministic=False``,
    sampled ones. Returns count ``("next", "reward")`` (team) and ``("next", agent,
    "reward")`` (each agent that has one) up to and including the first ``done``;
    episodes still running after ``max_steps`` count with their partial return.

    Envs that flag a won episode (``("next", "battle_won")``, SMAX) also give ``"won"``:
    1.0 where the first episode was won, else 0.0 (an unfinished episode is not won); envs
    that flag goals (``("next", "goal_scored")``, football) give ``"scored"`` the same way
    (see :data:`SUCCESS_FLAGS`).

    Returns:
        ``{"team": [B], "length": [B], <agent>: [B], ...}``, plus ``"won": [B]`` /
        ``"scored": [B]`` where the env flags wins / goals.

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> env = make_vmas_env("balance", num_envs=3, n_agents=2, max_steps=4)
        >>> out = episode_returns(env, None, 4)
        >>> sorted(out), out["team"].shape, out["length"].tolist()
        (['agent_0', 'agent_1', 'length', 'team'], torch.Size([3]), [4, 4, 4])
    """
    exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with set_exploration_type(exploration):
        rollout = env.rollout(max_steps, policy, break_when_any_done=False)
    done = rollout.get(("next", "done")).squeeze(-1)  # [B, T]
    time = torch.arange(done.shape[-1], device=done.device)
    first_done = torch.where(done, time, done.shape[-1] - 1).min(-1).values
    in_first_episode = time <= first_done.unsqueeze(-1)

    def total(key: tuple[str, ...]) -> torch.Tensor:
        reward = rollout.get(key)
        reward = reward.reshape(*done.shape, -1).sum(-1)  # agents with per-dimension rewards: summed
        return (reward * in_first_episode).sum(-1)

    out = {"team": total(("next", "reward")), "length": first_done + 1}
    keys = set(rollout.keys(True))
    for flag, (name, _) in SUCCESS_FLAGS.items():
        if ("next", flag) in keys:
            # the flag of the step that ended the first episode (a goal ends a football episode)
            success = rollout.get(("next", flag)).reshape(done.shape)
            out[name] = (success & done & in_first_episode).any(-1).float()
    for agent in getattr(env, "group_map", {}):
        if ("next", agent, "reward") in rollout.keys(True):
            out[agent] = total(("next", agent, "reward"))
    return out


@torch.no_grad()
def evaluate(env: EnvBase, policy: TensorDictModuleBase, max_steps: int) -> dict[str, float]:
    """Runs each sub-environment's first episode with the policy's deterministic actions.

    Every sub-environment of the batched ``env`` plays one episode from a fresh
    reset, with actions at the mode of each agent's distribution; its team return
    is the sum of ``("next", "reward")`` up to and including its first ``done``.
    Episodes still running after ``max_steps`` count with their partial return.

    Args:
        env: a batched env with a root ``"reward"`` and ``"done"``.
        policy: the joint policy.
        max_steps: step budget (the env's time limit, usually).

    Returns:
        ``{"return_mean", "return_std", "episode_length_mean"}``, plus ``"win_rate"`` (the
        share of the episodes won) for envs that flag wins (SMAX), ``"goal_rate"`` (the share
        that ended in a goal) for envs that flag goals (football).
    """
    out = episode_returns(env, policy, max_steps)
    returns = out["team"]
    figures = {
        "return_mean": returns.mean().item(),
        "return_std": returns.std(correction=0).item(),
        "episode_length_mean": out["length"].float().mean().item(),
    }
    for name, rate in SUCCESS_FLAGS.values():
        if name in out:
            figures[rate] = out[name].mean().item()
    return figures

"""Deterministic evaluation of a joint policy on a batched env."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type


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
        ``{"return_mean", "return_std", "episode_length_mean"}``.
    """
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(max_steps, policy, break_when_any_done=False)
    reward = rollout.get(("next", "reward")).squeeze(-1)  # [B, T]
    done = rollout.get(("next", "done")).squeeze(-1)
    time = torch.arange(done.shape[-1], device=done.device)
    first_done = torch.where(done, time, done.shape[-1] - 1).min(-1).values
    in_first_episode = time <= first_done.unsqueeze(-1)
    returns = (reward * in_first_episode).sum(-1)
    return {
        "return_mean": returns.mean().item(),
        "return_std": returns.std(correction=0).item(),
        "episode_length_mean": (first_done + 1).float().mean().item(),
    }

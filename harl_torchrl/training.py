"""Helpers the run loop and the components share: episode statistics, flat metrics, optimiser state.

They hold no algorithm logic; a recipe reads top to bottom and calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from harl_torchrl.evaluation import SUCCESS_FLAGS


def episode_stats(batch: TensorDictBase) -> dict[str, float]:
    """Team return and length of the episodes that ended inside ``batch``, and their win rate.

    Reads ``("next", "done")`` and ``("next", "episode_reward")`` (the running
    team return written by :func:`~harl_torchrl.envs.make_vmas_env`), and, where the
    env writes it (SMAX), ``("next", "battle_won")``: the share of the ended episodes
    that were won; likewise ``("next", "goal_scored")`` (football) for the goal rate.

    Returns:
        ``{"episode_return_mean", "episodes"}``, plus ``"win_rate"`` / ``"goal_rate"`` for
        envs with that flag; the means are NaN when no episode ended.

    Example:
        >>> from tensordict import TensorDict
        >>> done = torch.tensor([[True], [False], [True]])
        >>> batch = TensorDict({"next": {"done": done, "episode_reward": torch.tensor([[2.0], [0.5], [1.0]]),
        ...                              "battle_won": torch.tensor([[True], [False], [False]])}}, [3])
        >>> episode_stats(batch)
        {'episode_return_mean': 1.5, 'episodes': 2.0, 'win_rate': 0.5}
    """
    done = batch.get(("next", "done")).squeeze(-1)
    returns = batch.get(("next", "episode_reward")).squeeze(-1)[done]
    count = int(done.sum())
    stats = {
        "episode_return_mean": returns.mean().item() if count else float("nan"),
        "episodes": float(count),
    }
    for flag, (_, rate) in SUCCESS_FLAGS.items():
        success = batch.get(("next", flag), None)
        if success is not None:
            stats[rate] = success.squeeze(-1)[done].float().mean().item() if count else float("nan")
    return stats


def flatten_metrics(diagnostics: TensorDictBase, prefix: str = "") -> dict[str, float]:
    """``{"agent_0/loss_objective": ..., "critic/loss_critic": ...}`` from the updater's output.

    Multi-element entries (such as ``"order"``) are skipped.
    """
    flat = {}
    for key, value in diagnostics.items(include_nested=True, leaves_only=True):
        if value.numel() != 1:
            continue
        name = "/".join(key) if isinstance(key, tuple) else key
        flat[prefix + name] = value.item()
    return dict(sorted(flat.items()))


def load_optimizer_keeping_settings(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> None:
    """Loads ``saved`` (moments, step counts) into ``optimizer`` but keeps its own hyperparameters.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> old = torch.optim.Adam([w], lr=1e-3); w.grad = torch.ones(1); old.step()
        >>> new = torch.optim.Adam([w], lr=5e-4)
        >>> load_optimizer_keeping_settings(new, old.state_dict())
        >>> new.param_groups[0]["lr"], int(new.state[w]["step"])
        (0.0005, 1)
    """
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, own in zip(optimizer.param_groups, settings, strict=True):
        group.update(own)


def linear_lr_factor(iteration: int, total_iterations: int) -> float:
    r"""The reference's linear learning-rate decay: the factor for update ``iteration`` (1-based).

    :math:`1 - i / I` for update :math:`i` of :math:`I`, set before the update, as the
    reference HARL runner's ``lr_decay(episode, episodes)`` does: the first update
    already runs at :math:`1 - 1/I` and the last one at 0. Never negative (a run
    extended past ``I`` keeps 0).

    Example:
        >>> [linear_lr_factor(i, 4) for i in (1, 2, 4, 5)]
        [0.75, 0.5, 0.0, 0.0]
    """
    if total_iterations <= 0:
        raise ValueError(f"total_iterations must be > 0, got {total_iterations}")
    return max(0.0, 1.0 - iteration / total_iterations)


def parameters_digest(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` copy of every parameter and buffer (for comparisons)."""
    return {
        f"{prefix}.{name}": tensor.detach().clone()
        for prefix, module in modules.items()
        for name, tensor in module.state_dict().items()
    }

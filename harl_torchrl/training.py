"""Helpers the recipes share: episode statistics, flat metrics, and on-policy training state.

They hold no algorithm logic; a recipe reads top to bottom and calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from harl_torchrl.evaluation import SUCCESS_FLAGS
from harl_torchrl.sequential import SequentialUpdater
from harl_torchrl.utils.checkpoint import rng_state, set_rng_state


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


def on_policy_state(
    actors: Mapping[str, nn.Module],
    critic: nn.Module,
    updater: SequentialUpdater,
    *,
    frames: int,
    iteration: int,
    rollout: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to resume an on-policy run exactly from an iteration boundary.

    Holds the actors, the critic (with its value normaliser), every optimiser, the
    updater's generator, the global random states and the counters, and ``rollout``:
    the envs' and the collector's state from
    :func:`~harl_torchrl.rollout_state.capture_rollout_state` (``None``: a resumed run
    starts fresh episodes).
    """
    return {
        "rollout": dict(rollout) if rollout is not None else None,
        "actors": {name: actor.state_dict() for name, actor in actors.items()},
        "critic": critic.state_dict(),
        "actor_optimizers": _optimizer_states(updater.agents),
        "critic_optimizers": _optimizer_states(_critic_trainers(updater)),
        "updater": updater.state_dict(),
        "rng": rng_state(),
        "frames": frames,
        "iteration": iteration,
        "extra": dict(extra or {}),
    }


def load_on_policy_state(
    state: Mapping[str, Any], actors: Mapping[str, nn.Module], critic: nn.Module, updater: SequentialUpdater
) -> tuple[int, int]:
    """Restores :func:`on_policy_state` in place; returns ``(frames, iteration)``.

    Optimiser *settings* (learning rate, eps, ...) stay those of the optimisers built
    for this run, from its config; the checkpoint provides their moments and step
    counts. So a learning rate accepted at resume (``resume_override=[algo.actor_lr]``)
    takes effect, and without an override the two are the same anyway. The global
    random states are restored last: call this after building the collector.

    Raises:
        ValueError: the checkpoint's agents differ from the run's.
    """
    if set(state["actors"]) != set(actors):
        raise ValueError(
            f"the checkpoint has agents {sorted(state['actors'])} but this run has {sorted(actors)}; "
            "resume with the same env configuration"
        )
    for name, actor in actors.items():
        actor.load_state_dict(state["actors"][name])
    critic.load_state_dict(state["critic"])
    for trainers, saved in ((updater.agents, "actor_optimizers"), (_critic_trainers(updater), "critic_optimizers")):
        for name, trainer in trainers.items():
            if getattr(trainer, "optimizer", None) is not None:
                load_optimizer_keeping_settings(trainer.optimizer, state[saved][name])
    updater.load_state_dict(state["updater"])
    set_rng_state(state["rng"])
    return int(state["frames"]), int(state["iteration"])


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


def scale_learning_rates(updater: SequentialUpdater, actor_lr: float | None, critic_lr: float, factor: float) -> None:
    """Sets every actor optimiser's learning rate to ``actor_lr * factor`` and the critics' to ``critic_lr * factor``.

    Trust-region trainers (HATRPO) have no optimiser and are skipped; ``actor_lr``
    may then be ``None``. Only the ``lr`` of each parameter group changes: Adam's
    moments and step counts are kept.

    Example:
        >>> from types import SimpleNamespace  # anything with the updater's agents and critic trainers
        >>> actor = SimpleNamespace(optimizer=torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-4))
        >>> critic = SimpleNamespace(optimizer=torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3))
        >>> scale_learning_rates(SimpleNamespace(agents={"a": actor}, critic=critic), 5e-4, 1e-3, 0.5)
        >>> actor.optimizer.param_groups[0]["lr"], critic.optimizer.param_groups[0]["lr"]
        (0.00025, 0.0005)
    """
    groups = [(trainer, actor_lr) for trainer in updater.agents.values()]
    groups += [(trainer, critic_lr) for trainer in _critic_trainers(updater).values()]
    for trainer, base in groups:
        optimizer = getattr(trainer, "optimizer", None)
        if optimizer is None:
            continue
        for group in optimizer.param_groups:
            group["lr"] = base * factor


def _critic_trainers(updater: SequentialUpdater) -> dict[str, Any]:
    critic = updater.critic
    if critic is None:
        return {}
    return dict(critic) if isinstance(critic, Mapping) else {"central": critic}


def _optimizer_states(trainers: Mapping[str, Any]) -> dict[str, Any]:
    """Optimiser states by trainer name (trust-region trainers have none)."""
    return {
        name: trainer.optimizer.state_dict()
        for name, trainer in trainers.items()
        if getattr(trainer, "optimizer", None) is not None
    }


def parameters_digest(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` copy of every parameter and buffer (for comparisons)."""
    return {
        f"{prefix}.{name}": tensor.detach().clone()
        for prefix, module in modules.items()
        for name, tensor in module.state_dict().items()
    }

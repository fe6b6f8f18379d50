"""Assembles an on-policy algorithm (losses, optimisers, updater) from its config group.

An algorithm here is nothing but a choice of per-agent loss and update options fed
to the one :class:`~harl_torchrl.sequential.SequentialUpdater`; this module holds no
training logic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torchrl.modules import ProbabilisticActor

from harl_torchrl.errors import ConfigError, require_positive, unknown_choice
from harl_torchrl.objectives import CentralValueLoss, HAPPOLoss
from harl_torchrl.objectives.common import HAPolicyLoss
from harl_torchrl.sequential import CriticTrainer, PolicyTrainer, SequentialUpdater, agent_parameters_by_name


def _happo_loss(actor: ProbabilisticActor, cfg: Mapping[str, Any]) -> HAPolicyLoss:
    return HAPPOLoss(actor, clip_epsilon=cfg["clip_epsilon"], entropy_coeff=cfg["entropy_coeff"])


@dataclass(frozen=True)
class OnPolicyAlgorithm:
    """How one on-policy algorithm uses the shared machinery.

    Attributes:
        name: config name (``algo.name``).
        make_loss: builds an agent's loss from its actor and the algo config.
        sequential: whether agents are updated in turn with the factor (HA
            algorithms) or all against the old policies (baselines).
    """

    name: str
    make_loss: Callable[[ProbabilisticActor, Mapping[str, Any]], HAPolicyLoss]
    sequential: bool = True


ON_POLICY_ALGORITHMS: dict[str, OnPolicyAlgorithm] = {
    "happo": OnPolicyAlgorithm("happo", _happo_loss),
}


def validate_algo_config(cfg: Mapping[str, Any]) -> OnPolicyAlgorithm:
    """Checks an ``algo`` config group and returns its algorithm.

    Raises:
        ConfigError: unknown algorithm, or a setting out of range, with the fix.
    """
    name = cfg.get("name")
    if name not in ON_POLICY_ALGORITHMS:
        raise unknown_choice("algorithm", name, ON_POLICY_ALGORITHMS)
    for key in ("actor_lr", "critic_lr", "adam_eps", "clip_epsilon", "epochs", "num_minibatches"):
        if key in cfg:
            require_positive(f"algo.{key}", cfg[key])
    for key in ("critic_epochs", "critic_num_minibatches"):
        require_positive(f"algo.{key}", cfg.get(key, 1))
    if cfg.get("max_grad_norm") is not None:
        require_positive("algo.max_grad_norm", cfg["max_grad_norm"])
    if cfg.get("value_clip") is not None:
        require_positive("algo.value_clip", cfg["value_clip"])
    if cfg.get("entropy_coeff", 0.0) < 0:
        raise ConfigError(f"algo.entropy_coeff must be >= 0, got {cfg['entropy_coeff']}")
    gamma, lmbda = cfg.get("gamma", 0.99), cfg.get("gae_lambda", 0.95)
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"algo.gamma must be in (0, 1], got {gamma}")
    if not 0.0 <= lmbda <= 1.0:
        raise ConfigError(f"algo.gae_lambda must be in [0, 1], got {lmbda}")
    if cfg.get("order", "random") not in ("random", "fixed"):
        raise unknown_choice("algo.order", cfg.get("order"), ["random", "fixed"])
    return ON_POLICY_ALGORITHMS[name]


def build_on_policy_updater(
    cfg: Mapping[str, Any],
    actors: Mapping[str, ProbabilisticActor],
    critic_loss: CentralValueLoss,
    *,
    seed: int | None = None,
) -> SequentialUpdater:
    """Builds the per-agent losses, optimisers and the :class:`SequentialUpdater`.

    Each agent gets its own Adam over its own parameters (a shared Adam over stacked
    weights would move agents that are not being updated).

    Args:
        cfg: the ``algo`` config group (see ``recipes/conf/algo/*.yaml``).
        actors: ``{agent: actor}``.
        critic_loss: the centralised value loss (with its value estimator).
        seed: seed of the updater's generator.

    Returns:
        The updater; its ``agents[name].optimizer`` and ``critic.optimizer`` are the
        optimisers to checkpoint.

    Example:
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules import make_agent_actor, make_central_critic
        >>> actors = {a: make_agent_actor(a, 3, Bounded(-1.0, 1.0, shape=(1,))) for a in ("a", "b")}
        >>> critic = make_central_critic([("a", "observation"), ("b", "observation")], 6)
        >>> cfg = {"name": "happo", "actor_lr": 5e-4, "critic_lr": 5e-4, "adam_eps": 1e-5, "clip_epsilon": 0.2,
        ...        "entropy_coeff": 0.01, "epochs": 5, "num_minibatches": 1, "max_grad_norm": 10.0}
        >>> updater = build_on_policy_updater(cfg, actors, CentralValueLoss(critic), seed=0)
        >>> updater.order
        'random'
    """
    algorithm = validate_algo_config(cfg)
    agent_parameters_by_name(actors)  # refuses parameters shared between agents
    eps = cfg.get("adam_eps", 1e-5)
    trainers = {}
    for name, actor in actors.items():
        optimizer = torch.optim.Adam(actor.parameters(), lr=cfg["actor_lr"], eps=eps)
        trainers[name] = PolicyTrainer(
            algorithm.make_loss(actor, cfg),
            optimizer,
            epochs=cfg["epochs"],
            num_minibatches=cfg["num_minibatches"],
            max_grad_norm=cfg.get("max_grad_norm"),
        )
    critic_trainer = CriticTrainer(
        critic_loss,
        torch.optim.Adam(critic_loss.critic_network.parameters(), lr=cfg["critic_lr"], eps=eps),
        epochs=cfg.get("critic_epochs", cfg["epochs"]),
        num_minibatches=cfg.get("critic_num_minibatches", cfg["num_minibatches"]),
        max_grad_norm=cfg.get("max_grad_norm"),
    )
    return SequentialUpdater(
        trainers,
        critic_trainer,
        order=cfg.get("order", "random") if algorithm.sequential else "fixed",
        use_factor=algorithm.sequential,
        seed=seed,
    )

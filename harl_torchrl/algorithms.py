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
from torchrl.objectives import ClipPPOLoss, LossModule

from harl_torchrl.errors import ConfigError, require_positive, unknown_choice
from harl_torchrl.modules import ValueNorm, joint_policy, make_actors, make_central_critic, observation_critic_inputs
from harl_torchrl.objectives import CentralValueLoss, HAPPOLoss, SharedPolicyLoss
from harl_torchrl.sequential import CriticTrainer, PolicyTrainer, SequentialUpdater, agent_parameters_by_name


def _happo_loss(actor: ProbabilisticActor, cfg: Mapping[str, Any]) -> LossModule:
    return HAPPOLoss(actor, clip_epsilon=cfg["clip_epsilon"], entropy_coeff=cfg["entropy_coeff"])


def _clip_ppo_loss(actor: ProbabilisticActor, cfg: Mapping[str, Any]) -> LossModule:
    # TorchRL's own PPO loss: the advantage arrives normalised once by the updater,
    # and the centralised critic is trained by its own loss.
    return ClipPPOLoss(
        actor,
        critic_network=None,
        clip_epsilon=cfg["clip_epsilon"],
        entropy_bonus=cfg["entropy_coeff"] > 0,
        entropy_coeff=cfg["entropy_coeff"],
        normalize_advantage=False,
        functional=False,
    )


@dataclass(frozen=True)
class OnPolicyAlgorithm:
    """How one on-policy algorithm uses the shared machinery.

    Attributes:
        name: config name (``algo.name``).
        make_loss: builds an agent's loss from its actor and the algo config.
        sequential: whether agents are updated in turn with the factor (HA
            algorithms) or all against the old policies (baselines: with the factor
            fixed at 1, updating agents one by one equals updating them together,
            since each agent's loss depends on its own parameters only).
    """

    name: str
    make_loss: Callable[[ProbabilisticActor, Mapping[str, Any]], LossModule]
    sequential: bool = True


ON_POLICY_ALGORITHMS: dict[str, OnPolicyAlgorithm] = {
    "happo": OnPolicyAlgorithm("happo", _happo_loss),
    "mappo": OnPolicyAlgorithm("mappo", _clip_ppo_loss, sequential=False),
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
    algorithm = ON_POLICY_ALGORITHMS[name]
    if cfg.get("share_params", False) and algorithm.sequential:
        raise ConfigError(
            f"algo.share_params=true is not possible with {name}: the sequential scheme updates agents one at a "
            "time, which needs separate per-agent parameters. Use share_params=false, or algo=mappo for a "
            "parameter-shared baseline."
        )
    return algorithm


def build_on_policy_updater(
    cfg: Mapping[str, Any],
    actors: Mapping[str, ProbabilisticActor],
    critic_loss: CentralValueLoss,
    *,
    seed: int | None = None,
) -> SequentialUpdater:
    """Builds the per-agent losses, optimisers and the :class:`SequentialUpdater`.

    Each agent gets its own Adam over its own parameters (a shared Adam over stacked
    weights would move agents that are not being updated). With
    ``share_params: true`` (baselines only) one loss averages every agent's objective
    and one Adam steps the shared weights; its diagnostics appear under ``"shared"``.

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
    eps = cfg.get("adam_eps", 1e-5)

    def trainer(loss: LossModule) -> PolicyTrainer:
        optimizer = torch.optim.Adam(loss.parameters(), lr=cfg["actor_lr"], eps=eps)
        return PolicyTrainer(
            loss,
            optimizer,
            epochs=cfg["epochs"],
            num_minibatches=cfg["num_minibatches"],
            max_grad_norm=cfg.get("max_grad_norm"),
        )

    if cfg.get("share_params", False):
        # one objective over every agent's samples and one optimiser for the shared weights
        shared = SharedPolicyLoss({name: algorithm.make_loss(actor, cfg) for name, actor in actors.items()})
        trainers = {"shared": trainer(shared)}
    else:
        agent_parameters_by_name(actors)  # refuses parameters shared between agents
        trainers = {name: trainer(algorithm.make_loss(actor, cfg)) for name, actor in actors.items()}
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


@dataclass
class OnPolicyComponents:
    """Everything an on-policy recipe trains, built by :func:`make_on_policy_components`.

    Attributes:
        actors: ``{agent: actor}``.
        policy: the joint policy (every actor in turn) to collect with.
        critic: the centralised critic (writes ``"state_value_normalized"`` and
            ``"state_value"``).
        critic_loss: its loss, with GAE set up (``compute_advantage``).
        updater: the sequential updater holding every loss and optimiser.
    """

    actors: dict[str, ProbabilisticActor]
    policy: torch.nn.Module
    critic: torch.nn.Module
    critic_loss: CentralValueLoss
    updater: SequentialUpdater


def make_on_policy_components(
    algo_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    env,
    *,
    device: torch.device | str = "cpu",
    seed: int | None = None,
) -> OnPolicyComponents:
    """Builds actors, centralised critic, losses and updater for an env.

    Args:
        algo_cfg: the ``algo`` config group.
        model_cfg: the ``model`` config group (``hidden_sizes``, ``activation``,
            ``feature_norm``, ``output_gain``, ``std_x_coef``, ``std_y_coef``).
        env: the training env (one group per agent).
        device: where the networks live.
        seed: seed of the updater's generator.

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> env = make_vmas_env("balance", num_envs=2, n_agents=2)
        >>> algo = {"name": "happo", "actor_lr": 5e-4, "critic_lr": 5e-4, "clip_epsilon": 0.2,
        ...         "entropy_coeff": 0.01, "epochs": 5, "num_minibatches": 1, "max_grad_norm": 10.0}
        >>> parts = make_on_policy_components(algo, {"hidden_sizes": [32]}, env, seed=0)
        >>> sorted(parts.actors)
        ['agent_0', 'agent_1']
    """
    validate_algo_config(algo_cfg)
    model = {k: v for k, v in dict(model_cfg).items() if k != "name"}
    actors = make_actors(env, share_params=algo_cfg.get("share_params", False), **model)
    policy = joint_policy(actors).to(device)
    value_norm = ValueNorm() if algo_cfg.get("value_norm", True) else None
    critic_keys, critic_features = observation_critic_inputs(env)
    trunk = {k: model[k] for k in ("hidden_sizes", "activation", "feature_norm") if k in model}
    critic = make_central_critic(critic_keys, critic_features, value_norm=value_norm, **trunk).to(device)
    critic_loss = CentralValueLoss(
        critic,
        value_norm=value_norm,
        clip_value=algo_cfg.get("value_clip", 0.2),
        loss_type=algo_cfg.get("value_loss", "huber"),
        huber_delta=algo_cfg.get("huber_delta", 10.0),
    )
    critic_loss.make_value_estimator(gamma=algo_cfg.get("gamma", 0.99), lmbda=algo_cfg.get("gae_lambda", 0.95))
    updater = build_on_policy_updater(algo_cfg, actors, critic_loss, seed=seed)
    return OnPolicyComponents(actors, policy, critic, critic_loss, updater)

"""Assembles an on-policy algorithm (losses, optimisers, updater) from its config group.

An algorithm here is nothing but a choice of per-agent loss, per-agent trainer and
critic layout fed to the one :class:`~harl_torchrl.sequential.SequentialUpdater`;
this module holds no training logic.

=========  =========================  ==============  ===========  ============
``name``   per-agent loss             trainer         factor       critic
=========  =========================  ==============  ===========  ============
happo      :class:`HAPPOLoss`         minibatch Adam  sequential   centralised
hatrpo     :class:`HATRPOLoss`        trust region    sequential   centralised
haa2c      :class:`HAA2CLoss`         minibatch Adam  sequential   centralised
mappo      TorchRL ``ClipPPOLoss``    minibatch Adam  none         centralised
ippo       TorchRL ``ClipPPOLoss``    minibatch Adam  none         one per agent
=========  =========================  ==============  ===========  ============
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, LossModule

from harl_torchrl.errors import ConfigError, require_positive, unknown_choice
from harl_torchrl.modules import (
    ValueNorm,
    is_recurrent,
    joint_policy,
    make_actors,
    make_central_critic,
    observation_critic_inputs,
    recurrent_env_transforms,
)
from harl_torchrl.objectives import CentralValueLoss, HAA2CLoss, HAPPOLoss, HATRPOLoss, SharedPolicyLoss
from harl_torchrl.sequential import (
    CriticTrainer,
    PolicyTrainer,
    SequentialUpdater,
    TrustRegionTrainer,
    agent_parameters_by_name,
)


def _happo_loss(actor: ProbabilisticActor, cfg: Mapping[str, Any]) -> LossModule:
    return HAPPOLoss(actor, clip_epsilon=cfg["clip_epsilon"], entropy_coeff=cfg["entropy_coeff"])


def _haa2c_loss(actor: ProbabilisticActor, cfg: Mapping[str, Any]) -> LossModule:
    return HAA2CLoss(actor, entropy_coeff=cfg["entropy_coeff"])


def _hatrpo_loss(actor: ProbabilisticActor, cfg: Mapping[str, Any]) -> LossModule:
    return HATRPOLoss(actor, kl_type=cfg.get("kl_type", "exact"), entropy_coeff=cfg.get("entropy_coeff", 0.0))


def _clip_ppo_loss(actor: ProbabilisticActor, cfg: Mapping[str, Any]) -> LossModule:
    # TorchRL's own PPO loss: the advantage arrives normalised once by the updater,
    # and the critic is trained by its own loss.
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
        trust_region: one natural-gradient step per agent instead of Adam epochs.
        per_agent_critics: one critic per agent on its own observation (IPPO)
            instead of one centralised critic.
        required: config keys the algorithm cannot do without.
    """

    name: str
    make_loss: Callable[[ProbabilisticActor, Mapping[str, Any]], LossModule]
    sequential: bool = True
    trust_region: bool = False
    per_agent_critics: bool = False
    required: tuple[str, ...] = field(default=("actor_lr", "critic_lr", "epochs", "num_minibatches"))


ON_POLICY_ALGORITHMS: dict[str, OnPolicyAlgorithm] = {
    "happo": OnPolicyAlgorithm("happo", _happo_loss),
    "hatrpo": OnPolicyAlgorithm("hatrpo", _hatrpo_loss, trust_region=True, required=("max_kl", "critic_lr")),
    "haa2c": OnPolicyAlgorithm("haa2c", _haa2c_loss),
    "mappo": OnPolicyAlgorithm("mappo", _clip_ppo_loss, sequential=False),
    "ippo": OnPolicyAlgorithm("ippo", _clip_ppo_loss, sequential=False, per_agent_critics=True),
}


def validate_algo_config(cfg: Mapping[str, Any]) -> OnPolicyAlgorithm:
    """Checks an ``algo`` config group and returns its algorithm.

    Raises:
        ConfigError: unknown algorithm, a missing or out-of-range setting, or a
            combination the algorithm does not support, with the fix.
    """
    name = cfg.get("name")
    if name not in ON_POLICY_ALGORITHMS:
        raise unknown_choice("algorithm", name, ON_POLICY_ALGORITHMS)
    algorithm = ON_POLICY_ALGORITHMS[name]
    for key in algorithm.required:
        if key not in cfg:
            raise ConfigError(f"algo.{key} is required by {name}")
    for key in ("actor_lr", "critic_lr", "adam_eps", "clip_epsilon", "epochs", "num_minibatches", "max_kl"):
        if key in cfg:
            require_positive(f"algo.{key}", cfg[key])
    for key in ("critic_epochs", "critic_num_minibatches"):
        require_positive(f"algo.{key}", cfg.get(key, 1))
    for key in ("max_grad_norm", "value_clip"):
        if cfg.get(key) is not None:
            require_positive(f"algo.{key}", cfg[key])
    if cfg.get("entropy_coeff", 0.0) < 0:
        raise ConfigError(f"algo.entropy_coeff must be >= 0, got {cfg['entropy_coeff']}")
    gamma, lmbda = cfg.get("gamma", 0.99), cfg.get("gae_lambda", 0.95)
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"algo.gamma must be in (0, 1], got {gamma}")
    if not 0.0 <= lmbda <= 1.0:
        raise ConfigError(f"algo.gae_lambda must be in [0, 1], got {lmbda}")
    if cfg.get("order", "random") not in ("random", "fixed"):
        raise unknown_choice("algo.order", cfg.get("order"), ["random", "fixed"])
    if cfg.get("share_params", False) and algorithm.sequential:
        raise ConfigError(
            f"algo.share_params=true is not possible with {name}: the sequential scheme updates agents one at a "
            "time, which needs separate per-agent parameters. Use share_params=false, or algo=mappo for a "
            "parameter-shared baseline."
        )
    return algorithm


def _policy_trainers(
    algorithm: OnPolicyAlgorithm, cfg: Mapping[str, Any], losses: Mapping[str, LossModule], chunk_length: int | None
) -> dict[str, Any]:
    if algorithm.trust_region:
        settings = {
            key: cfg[key]
            for key in (
                "max_kl",
                "cg_iterations",
                "damping",
                "line_search_steps",
                "shrink",
                "accept_ratio",
                "fisher_fraction",
            )
            if key in cfg
        }
        return {name: TrustRegionTrainer(loss, **settings) for name, loss in losses.items()}
    eps = cfg.get("adam_eps", 1e-5)
    return {
        name: PolicyTrainer(
            loss,
            torch.optim.Adam(loss.parameters(), lr=cfg["actor_lr"], eps=eps),
            epochs=cfg["epochs"],
            num_minibatches=cfg["num_minibatches"],
            max_grad_norm=cfg.get("max_grad_norm"),
            chunk_length=chunk_length,
        )
        for name, loss in losses.items()
    }


def build_on_policy_updater(
    cfg: Mapping[str, Any],
    actors: Mapping[str, ProbabilisticActor],
    critic_losses: CentralValueLoss | Mapping[str, CentralValueLoss],
    *,
    seed: int | None = None,
    chunk_length: int | None = None,
) -> SequentialUpdater:
    """Builds the per-agent losses and trainers, the critic trainers and the updater.

    Each agent gets its own optimiser over its own parameters (a shared Adam over
    stacked weights would move agents that are not being updated). With
    ``share_params: true`` (baselines only) one loss averages every agent's objective
    and one Adam steps the shared weights; its diagnostics appear under ``"shared"``.

    Args:
        cfg: the ``algo`` config group (see ``recipes/conf/algo/*.yaml``).
        actors: ``{agent: actor}``.
        critic_losses: the centralised value loss, or ``{agent: loss}`` for per-agent
            critics (IPPO), each with its value estimator.
        seed: seed of the updater's generator.
        chunk_length: sequence chunk length for recurrent networks (``None``: not
            recurrent).

    Returns:
        The updater; its trainers' ``optimizer`` attributes are what to checkpoint.

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
    losses = {name: algorithm.make_loss(actor, cfg) for name, actor in actors.items()}
    if algorithm.per_agent_critics:
        for name, loss in losses.items():
            loss.set_keys(advantage=(name, "advantage"))
    if cfg.get("share_params", False):
        # one objective over every agent's samples and one optimiser for the shared weights
        trainers = _policy_trainers(algorithm, cfg, {"shared": SharedPolicyLoss(losses)}, chunk_length)
    else:
        agent_parameters_by_name(actors)  # refuses parameters shared between agents
        trainers = _policy_trainers(algorithm, cfg, losses, chunk_length)

    def critic_trainer(loss: CentralValueLoss) -> CriticTrainer:
        return CriticTrainer(
            loss,
            torch.optim.Adam(loss.critic_network.parameters(), lr=cfg["critic_lr"], eps=cfg.get("adam_eps", 1e-5)),
            epochs=cfg.get("critic_epochs", cfg.get("epochs", 5)),
            num_minibatches=cfg.get("critic_num_minibatches", cfg.get("num_minibatches", 1)),
            max_grad_norm=cfg.get("max_grad_norm"),
            chunk_length=chunk_length,
        )

    if isinstance(critic_losses, Mapping):
        critics: Any = {name: critic_trainer(loss) for name, loss in critic_losses.items()}
    else:
        critics = critic_trainer(critic_losses)
    return SequentialUpdater(
        trainers,
        critics,
        order=cfg.get("order", "random") if algorithm.sequential else "fixed",
        use_factor=algorithm.sequential,
        seed=seed,
    )


@dataclass
class OnPolicyComponents:
    """Everything an on-policy recipe trains, built by :func:`make_on_policy_components`.

    Attributes:
        actors: ``{agent: actor}``.
        policy: the joint policy (every actor; and the critic too when it is
            recurrent, so that its hidden states are recorded) to collect with.
        critic: the critic module (a :class:`~torch.nn.ModuleDict` of per-agent
            critics for IPPO).
        critic_losses: ``{name: value loss}`` (``{"central": loss}`` for a
            centralised critic), each with GAE set up.
        updater: the sequential updater holding every loss and optimiser.
    """

    actors: dict[str, ProbabilisticActor]
    policy: nn.Module
    critic: nn.Module
    critic_losses: dict[str, CentralValueLoss]
    updater: SequentialUpdater

    def compute_advantage(self, batch: TensorDictBase) -> TensorDictBase:
        """Runs every critic and GAE on ``batch`` (in place)."""
        for loss in self.critic_losses.values():
            loss.compute_advantage(batch)
        return batch

    @property
    def recurrent(self) -> bool:
        """Whether any network is recurrent."""
        return is_recurrent(self.policy)

    def prepare_env(self, env: EnvBase) -> EnvBase:
        """The env with what the networks need.

        For recurrent networks: episode-start markers and zero initial hidden states
        (:func:`~harl_torchrl.modules.recurrent_env_transforms`); otherwise ``env``.
        """
        if not self.recurrent:
            return env
        return TransformedEnv(env, recurrent_env_transforms([self.policy]))


def _value_loss(critic: nn.Module, value_norm: ValueNorm | None, cfg: Mapping[str, Any]) -> CentralValueLoss:
    loss = CentralValueLoss(
        critic,
        value_norm=value_norm,
        clip_value=cfg.get("value_clip", 0.2),
        loss_type=cfg.get("value_loss", "huber"),
        huber_delta=cfg.get("huber_delta", 10.0),
    )
    loss.make_value_estimator(gamma=cfg.get("gamma", 0.99), lmbda=cfg.get("gae_lambda", 0.95))
    return loss


def make_on_policy_components(
    algo_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    env,
    *,
    device: torch.device | str = "cpu",
    seed: int | None = None,
) -> OnPolicyComponents:
    """Builds actors, critic(s), losses and updater for an env.

    Args:
        algo_cfg: the ``algo`` config group.
        model_cfg: the ``model`` config group: ``name`` (``mlp`` or ``gru``),
            ``hidden_sizes``, ``activation``, ``feature_norm``, ``output_gain``,
            ``std_x_coef``, ``std_y_coef``; for ``gru`` also ``rnn_hidden_size``
            and ``chunk_length`` (training sequence length).
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
    algorithm = validate_algo_config(algo_cfg)
    model = dict(model_cfg)
    recurrent = model.pop("name", "mlp") == "gru"
    chunk_length = model.pop("chunk_length", 10) if recurrent else None
    model.pop("chunk_length", None)
    rnn = {"recurrent": recurrent, "rnn_hidden_size": model.pop("rnn_hidden_size", None)}
    actors = make_actors(env, share_params=algo_cfg.get("share_params", False), **model, **rnn)
    trunk = {k: model[k] for k in ("hidden_sizes", "activation", "feature_norm") if k in model}
    use_norm = algo_cfg.get("value_norm", True)
    if algorithm.per_agent_critics:
        critics, critic_losses = {}, {}
        for name in actors:
            norm = ValueNorm() if use_norm else None
            obs_dim = env.full_observation_spec_unbatched[name, "observation"].shape[-1]
            critics[name] = make_central_critic(
                [(name, "observation")],
                obs_dim,
                value_norm=norm,
                value_keys=((name, "state_value_normalized"), (name, "state_value")),
                state_key=(name, "critic_rnn_state"),
                **trunk,
                **rnn,
            ).to(device)
            loss = _value_loss(critics[name], norm, algo_cfg)
            loss.set_keys(
                value=(name, "state_value"),
                value_normalized=(name, "state_value_normalized"),
                advantage=(name, "advantage"),
                value_target=(name, "value_target"),
            )
            critic_losses[name] = loss
        critic: nn.Module = nn.ModuleDict(critics)
        updater = build_on_policy_updater(algo_cfg, actors, critic_losses, seed=seed, chunk_length=chunk_length)
    else:
        norm = ValueNorm() if use_norm else None
        critic_keys, critic_features = observation_critic_inputs(env)
        critic = make_central_critic(critic_keys, critic_features, value_norm=norm, **trunk, **rnn).to(device)
        critic_losses = {"central": _value_loss(critic, norm, algo_cfg)}
        updater = build_on_policy_updater(
            algo_cfg, actors, critic_losses["central"], seed=seed, chunk_length=chunk_length
        )
    policy = joint_policy(actors)
    if recurrent:  # the critic's hidden states must be recorded during collection
        critics_in_order = list(critic.values()) if isinstance(critic, nn.ModuleDict) else [critic]
        policy = TensorDictSequential(policy, *critics_in_order)
    return OnPolicyComponents(actors, policy.to(device), critic, critic_losses, updater)

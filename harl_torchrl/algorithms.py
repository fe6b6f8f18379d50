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

Each algorithm's settings are its typed schema (:mod:`harl_torchrl.config`, e.g.
:class:`~harl_torchrl.config.HAPPOConfig`); the schema class also says whether the
update is sequential, a trust-region step, or uses per-agent critics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, LossModule

from harl_torchrl.config import (
    ClippedConfig,
    HAA2CConfig,
    HAPPOConfig,
    HATRPOConfig,
    IPPOConfig,
    MAPPOConfig,
    ModelConfig,
    OnPolicyAlgoConfig,
    PolicyGradientConfig,
    algo_config,
    model_config,
)
from harl_torchrl.errors import ConfigError
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


def _happo_loss(actor: ProbabilisticActor, cfg: HAPPOConfig) -> LossModule:
    return HAPPOLoss(actor, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff)


def _haa2c_loss(actor: ProbabilisticActor, cfg: HAA2CConfig) -> LossModule:
    return HAA2CLoss(actor, entropy_coeff=cfg.entropy_coeff)


def _hatrpo_loss(actor: ProbabilisticActor, cfg: HATRPOConfig) -> LossModule:
    return HATRPOLoss(actor, kl_type=str(cfg.kl_type), entropy_coeff=cfg.entropy_coeff)


def _clip_ppo_loss(actor: ProbabilisticActor, cfg: ClippedConfig) -> LossModule:
    # TorchRL's own PPO loss: the advantage arrives normalised once by the updater,
    # and the critic is trained by its own loss.
    return ClipPPOLoss(
        actor,
        critic_network=None,
        clip_epsilon=cfg.clip_epsilon,
        entropy_bonus=cfg.entropy_coeff > 0,
        entropy_coeff=cfg.entropy_coeff,
        normalize_advantage=False,
        functional=False,
    )


#: The per-agent loss of each on-policy schema. The rest of an algorithm's recipe
#: (sequential or simultaneous, trust region, per-agent critics) is carried by the
#: schema class itself (:class:`~harl_torchrl.config.OnPolicyAlgoConfig`).
ON_POLICY_LOSSES: dict[type[OnPolicyAlgoConfig], Callable[[ProbabilisticActor, Any], LossModule]] = {
    HAPPOConfig: _happo_loss,
    HATRPOConfig: _hatrpo_loss,
    HAA2CConfig: _haa2c_loss,
    MAPPOConfig: _clip_ppo_loss,
    IPPOConfig: _clip_ppo_loss,
}


def on_policy_config(cfg: Mapping[str, Any] | OnPolicyAlgoConfig) -> OnPolicyAlgoConfig:
    """The typed ``algo`` group of an on-policy algorithm.

    A mapping (dict or DictConfig) is converted through the schema its ``name``
    selects and range-checked, once; a schema instance is taken as it is (built by
    :func:`~harl_torchrl.config.validate_run_config` or
    :meth:`~harl_torchrl.config.GroupConfig.from_mapping`, which checked it).

    Raises:
        ConfigError: unknown algorithm, unknown key, wrong type, value out of range,
            or an algorithm that is not on-policy.

    Example:
        >>> on_policy_config({"name": "mappo", "share_params": True}).sequential
        False
    """
    algo = cfg if isinstance(cfg, OnPolicyAlgoConfig) else algo_config(cfg)
    if type(algo) not in ON_POLICY_LOSSES:
        raise ConfigError(
            f"algo={algo.name} is not an on-policy algorithm of this module (on-policy: "
            f"{', '.join(sorted(schema.__dataclass_fields__['name'].default for schema in ON_POLICY_LOSSES))}). "
            "Fix: choose one of those, or use the off-policy components for it"
        )
    return algo


def _policy_trainers(
    algo: OnPolicyAlgoConfig, losses: Mapping[str, LossModule], chunk_length: int | None
) -> dict[str, Any]:
    if isinstance(algo, HATRPOConfig):
        return {name: TrustRegionTrainer(loss, **algo.trust_region_settings()) for name, loss in losses.items()}
    assert isinstance(algo, PolicyGradientConfig)  # every other on-policy schema
    return {
        name: PolicyTrainer(
            loss,
            torch.optim.Adam(loss.parameters(), lr=algo.actor_lr, eps=algo.adam_eps),
            epochs=algo.epochs,
            num_minibatches=algo.num_minibatches,
            max_grad_norm=algo.max_grad_norm,
            chunk_length=chunk_length,
        )
        for name, loss in losses.items()
    }


def build_on_policy_updater(
    cfg: Mapping[str, Any] | OnPolicyAlgoConfig,
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
        cfg: the ``algo`` group: an :class:`~harl_torchrl.config.OnPolicyAlgoConfig`
            or a mapping converted through its schema (see :func:`on_policy_config`;
            omitted keys take the defaults of ``harl_torchrl/conf/algo/<name>.yaml``).
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
    return _updater(on_policy_config(cfg), actors, critic_losses, seed=seed, chunk_length=chunk_length)


def _updater(
    algo: OnPolicyAlgoConfig,
    actors: Mapping[str, ProbabilisticActor],
    critic_losses: CentralValueLoss | Mapping[str, CentralValueLoss],
    *,
    seed: int | None,
    chunk_length: int | None,
) -> SequentialUpdater:
    make_loss = ON_POLICY_LOSSES[type(algo)]
    losses = {name: make_loss(actor, algo) for name, actor in actors.items()}
    if algo.per_agent_critics:
        for name, loss in losses.items():
            loss.set_keys(advantage=(name, "advantage"))
    if algo.share_params:
        # one objective over every agent's samples and one optimiser for the shared weights
        trainers = _policy_trainers(algo, {"shared": SharedPolicyLoss(losses)}, chunk_length)
    else:
        agent_parameters_by_name(actors)  # refuses parameters shared between agents
        trainers = _policy_trainers(algo, losses, chunk_length)

    def critic_trainer(loss: CentralValueLoss) -> CriticTrainer:
        return CriticTrainer(
            loss,
            torch.optim.Adam(loss.critic_network.parameters(), lr=algo.critic_lr, eps=algo.adam_eps),
            epochs=algo.critic_epochs,
            num_minibatches=algo.critic_num_minibatches,
            max_grad_norm=algo.max_grad_norm,
            chunk_length=chunk_length,
        )

    if isinstance(critic_losses, Mapping):
        critics: Any = {name: critic_trainer(loss) for name, loss in critic_losses.items()}
    else:
        critics = critic_trainer(critic_losses)
    return SequentialUpdater(
        trainers,
        critics,
        order=str(algo.order) if algo.sequential else "fixed",
        use_factor=algo.sequential,
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


def _value_loss(critic: nn.Module, algo: OnPolicyAlgoConfig) -> CentralValueLoss:
    # the loss takes the value normaliser from the critic: one wiring, no mismatch possible
    loss = CentralValueLoss(
        critic,
        clip_value=algo.value_clip,
        loss_type=str(algo.value_loss),
        huber_delta=algo.huber_delta,
    )
    loss.make_value_estimator(gamma=algo.gamma, lmbda=algo.gae_lambda)
    return loss


def make_on_policy_components(
    algo_cfg: Mapping[str, Any] | OnPolicyAlgoConfig,
    model_cfg: Mapping[str, Any] | ModelConfig,
    env,
    *,
    device: torch.device | str = "cpu",
    seed: int | None = None,
) -> OnPolicyComponents:
    """Builds actors, critic(s), losses and updater for an env.

    Args:
        algo_cfg: the ``algo`` group: an :class:`~harl_torchrl.config.OnPolicyAlgoConfig`,
            or a mapping converted through its schema (see :func:`on_policy_config`).
        model_cfg: the ``model`` group: a :class:`~harl_torchrl.config.ModelConfig`
            or a mapping (``name``: ``mlp`` by default, or ``gru``; then
            ``hidden_sizes``, ``activation``, ``feature_norm``, ``output_gain``,
            ``std_x_coef``, ``std_y_coef``; for ``gru`` also ``rnn_hidden_size`` and
            ``chunk_length``, the training sequence length), converted through
            :class:`~harl_torchrl.config.MLPModelConfig` or
            :class:`~harl_torchrl.config.GRUModelConfig`.
        env: the training env (one group per agent).
        device: where the networks live.
        seed: seed of the updater's generator.

    Raises:
        ConfigError: a bad algo or model setting (unknown key, wrong type, out of range).

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> env = make_vmas_env("balance", num_envs=2, n_agents=2)
        >>> algo = {"name": "happo", "actor_lr": 5e-4, "critic_lr": 5e-4, "clip_epsilon": 0.2,
        ...         "entropy_coeff": 0.01, "epochs": 5, "num_minibatches": 1, "max_grad_norm": 10.0}
        >>> parts = make_on_policy_components(algo, {"hidden_sizes": [32]}, env, seed=0)
        >>> sorted(parts.actors)
        ['agent_0', 'agent_1']
    """
    algo = on_policy_config(algo_cfg)
    model = model_cfg if isinstance(model_cfg, ModelConfig) else model_config(model_cfg)
    chunk_length = model.sequence_length
    network = model.network_kwargs()
    rnn = {"recurrent": model.recurrent, "rnn_hidden_size": getattr(model, "rnn_hidden_size", None)}
    actors = make_actors(env, share_params=algo.share_params, **network, **rnn)
    trunk = {k: network[k] for k in ("hidden_sizes", "activation", "feature_norm")}
    if algo.per_agent_critics:
        critics, critic_losses = {}, {}
        for name in actors:
            norm = ValueNorm() if algo.value_norm else None
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
            loss = _value_loss(critics[name], algo)
            loss.set_keys(
                value=(name, "state_value"),
                value_normalized=(name, "state_value_normalized"),
                advantage=(name, "advantage"),
                value_target=(name, "value_target"),
            )
            critic_losses[name] = loss
        critic: nn.Module = nn.ModuleDict(critics)
        updater = _updater(algo, actors, critic_losses, seed=seed, chunk_length=chunk_length)
    else:
        norm = ValueNorm() if algo.value_norm else None
        critic_keys, critic_features = observation_critic_inputs(env)
        critic = make_central_critic(critic_keys, critic_features, value_norm=norm, **trunk, **rnn).to(device)
        critic_losses = {"central": _value_loss(critic, algo)}
        updater = _updater(algo, actors, critic_losses["central"], seed=seed, chunk_length=chunk_length)
    policy = joint_policy(actors)
    if model.recurrent:  # the critic's hidden states must be recorded during collection
        critics_in_order = list(critic.values()) if isinstance(critic, nn.ModuleDict) else [critic]
        policy = TensorDictSequential(policy, *critics_in_order)
    return OnPolicyComponents(actors, policy.to(device), critic, critic_losses, updater)

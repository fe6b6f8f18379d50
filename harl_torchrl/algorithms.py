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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.modules import ProbabilisticActor

from harl_torchrl.config import ALGO_SCHEMAS, ModelConfig, OnPolicyAlgoConfig, algo_config, model_config
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
from harl_torchrl.objectives import CentralValueLoss, SharedPolicyLoss
from harl_torchrl.sequential import CriticTrainer, SequentialUpdater, agent_parameters_by_name
from harl_torchrl.training import flatten_metrics, linear_lr_factor, load_optimizer_keeping_settings


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
    if not isinstance(algo, OnPolicyAlgoConfig):
        on_policy = sorted(name for name, schema in ALGO_SCHEMAS.items() if issubclass(schema, OnPolicyAlgoConfig))
        raise ConfigError(
            f"algo={algo.name} is not an on-policy algorithm of this module (on-policy: {', '.join(on_policy)}). "
            "Fix: choose one of those, or use the off-policy components for it"
        )
    return algo


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
    losses = {name: algo.make_loss(actor) for name, actor in actors.items()}
    if algo.per_agent_critics:
        for name, loss in losses.items():
            loss.set_keys(advantage=(name, "advantage"))
    if algo.share_params:
        # one objective over every agent's samples and one optimiser for the shared weights
        trainers = {"shared": algo.make_trainer(SharedPolicyLoss(losses), chunk_length)}
    else:
        agent_parameters_by_name(actors)  # refuses parameters shared between agents
        trainers = {name: algo.make_trainer(loss, chunk_length) for name, loss in losses.items()}

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
    """Everything an on-policy run trains, built by :func:`make_on_policy_components`.

    Follows :class:`harl_torchrl.run.Components`: the run loop collects with
    :attr:`policy` and calls :meth:`train` once per batch.

    Attributes:
        algo: the typed ``algo`` config.
        actors: ``{agent: actor}``.
        policy: the joint policy (every actor; and the critic too when it is
            recurrent, so that its hidden states are recorded) to collect with.
        critic: the critic module (a :class:`~torch.nn.ModuleDict` of per-agent
            critics for IPPO).
        critic_losses: ``{name: value loss}`` (``{"central": loss}`` for a
            centralised critic), each with GAE set up.
        updater: the sequential updater holding every loss and optimiser.
        total_iterations: the run's length in iterations (the horizon of
            ``algo.lr_decay=linear``), set by :meth:`start`.
    """

    algo: OnPolicyAlgoConfig
    actors: dict[str, ProbabilisticActor]
    policy: nn.Module
    critic: nn.Module
    critic_losses: dict[str, CentralValueLoss]
    updater: SequentialUpdater
    total_iterations: int = field(default=1)

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

    def start(self, *, frames: int, total_iterations: int) -> None:
        """Called once before collection: the run's horizon (``lr_decay``'s) and frames so far."""
        self.total_iterations = max(1, total_iterations)

    def train(self, batch: TensorDictBase, *, frames: int, iteration: int) -> dict[str, float]:
        """GAE, then one sequential update on ``batch``; returns flat diagnostics.

        Args:
            batch: ``[num_envs, steps]`` of collected transitions (modified in place:
                values, advantages and targets are written into it).
            frames: frames collected including this batch.
            iteration: this update's number (1-based).

        Returns:
            ``{"<agent>/loss_objective": ..., "critic/loss_critic": ..., "lr_factor": ...}``.
        """
        self.compute_advantage(batch)
        lr_factor = 1.0
        if self.algo.lr_decay == "linear":  # the reference's: lr x (1 - i / I) before update i, 0 at the last
            lr_factor = linear_lr_factor(iteration, self.total_iterations)
            scale_learning_rates(self.updater, getattr(self.algo, "actor_lr", None), self.algo.critic_lr, lr_factor)
        return {**flatten_metrics(self.updater.update(batch)), "lr_factor": lr_factor}

    def state_dict(self) -> dict[str, Any]:
        """Actors, critic (with its value normaliser), every optimiser and the updater's generator."""
        return {
            "actors": {name: actor.state_dict() for name, actor in self.actors.items()},
            "critic": self.critic.state_dict(),
            "actor_optimizers": _optimizer_states(self.updater.agents),
            "critic_optimizers": _optimizer_states(_critic_trainers(self.updater)),
            "updater": self.updater.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` in place.

        Optimiser *settings* (learning rate, eps, ...) stay those of the optimisers built
        for this run, from its config; the checkpoint provides their moments and step
        counts. So a learning rate accepted at resume (``resume_override=[algo.actor_lr]``)
        takes effect, and without an override the two are the same anyway.

        Raises:
            ValueError: the checkpoint's agents differ from the run's.
        """
        if set(state["actors"]) != set(self.actors):
            raise ValueError(
                f"the checkpoint has agents {sorted(state['actors'])} but this run has {sorted(self.actors)}; "
                "resume with the same env configuration"
            )
        for name, actor in self.actors.items():
            actor.load_state_dict(state["actors"][name])
        self.critic.load_state_dict(state["critic"])
        trainers = ((self.updater.agents, "actor_optimizers"), (_critic_trainers(self.updater), "critic_optimizers"))
        for group, saved in trainers:
            for name, trainer in group.items():
                if getattr(trainer, "optimizer", None) is not None:
                    load_optimizer_keeping_settings(trainer.optimizer, state[saved][name])
        self.updater.load_state_dict(state["updater"])

    def describe_state(self) -> list[str]:
        """Nothing to add to the resume line on-policy."""
        return []

    def sidecars(self) -> dict[str, Any]:
        """Large state saved beside the checkpoint: none on-policy."""
        return {}


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
    return OnPolicyComponents(algo, actors, policy.to(device), critic, critic_losses, updater)

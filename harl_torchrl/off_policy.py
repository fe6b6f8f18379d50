r"""Assembles an off-policy algorithm (networks, targets, losses, optimisers, actor step) from its config.

An algorithm here is a choice of actors, critic, next-action producer and actor step
fed to one :class:`OffPolicyUpdater`, which holds the reference's order of operations
for one gradient step; this module holds no loss or ordering logic of its own.

=========  ======================  ===============  =========================  ============
``name``   actors                  critic           next actions (target)      actor step
=========  ======================  ===============  =========================  ============
haddpg     deterministic           one Q            target actors              sequential
hatd3      deterministic           twin Q           target actors + smoothing  sequential
hasac      soft (squashed/Gumbel)  twin Q           current actors + entropy   sequential
had3qn     dueling Q-nets          dueling joint Q  target agents' greedy      best response
maddpg     deterministic           one Q            target actors              buffer
matd3      deterministic           twin Q           target actors + smoothing  buffer
masac      soft                    twin Q           current actors + entropy   buffer
=========  ======================  ===============  =========================  ============

One gradient step (:meth:`OffPolicyUpdater.step`), as in the reference runner: the
critic step on a sampled batch; every ``policy_freq`` critic steps the actor step
(each agent's temperature is stepped right after its own actor update, through the
trainer's hook), then the critic's temperature (HASAC), then the Polyak update of
every target network (only on these steps).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.data import Bounded, Unbounded
from torchrl.envs import EnvBase
from torchrl.objectives import LossModule, SoftUpdate

from harl_torchrl.config import algo_config, model_config
from harl_torchrl.config.off_policy import (
    ACTION_SPACE_ALTERNATIVES,
    DeterministicConfig,
    HAD3QNConfig,
    OffPolicyAlgoConfig,
    SoftConfig,
)
from harl_torchrl.errors import ConfigError
from harl_torchrl.exploration import RandomWarmup, action_specs, epsilon_greedy, gaussian_noise
from harl_torchrl.modules import (
    make_deterministic_actors,
    make_joint_q_critic,
    observation_critic_inputs,
)
from harl_torchrl.objectives.polyak import FusedSoftUpdate
from harl_torchrl.replay import make_replay_buffer
from harl_torchrl.sequential import (
    ActorTrainer,
    DelayedUpdates,
    SequentialActorStep,
    optimizer_parameters,
    optimizer_step,
)
from harl_torchrl.training import flatten_metrics, load_optimizer_keeping_settings


class OffPolicyUpdater:
    """One off-policy gradient step in the reference's order (see the module docstring).

    Args:
        critic_loss: the critic's TD loss (``loss_qvalue``), holding the critic's target.
        critic_optimizer: optimiser over ``critic_loss.parameters()``.
        actor_step: has ``step(batch) -> TensorDict`` (per-agent diagnostics; a
            ``diagnostics`` keyword, if it takes one, is passed on) and
            ``state_dict``/``load_state_dict`` (the order generator).
        delay: the policy delay counter.
        target_updaters: Polyak updaters stepped after each actor step.
        critic_temperature: HASAC's critic temperature step, or ``None``.
        optimizers: every optimiser by name, for checkpoints (actors', temperatures').
        modules: every stateful module by name (losses with their targets, actors,
            temperatures), for checkpoints.
        max_grad_norm: gradient-norm clip of the critic (``None``: none).
    """

    def __init__(
        self,
        critic_loss: LossModule,
        critic_optimizer: torch.optim.Optimizer,
        actor_step: Any,
        *,
        delay: DelayedUpdates,
        target_updaters: list[SoftUpdate],
        critic_temperature: Any | None = None,
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        modules: Mapping[str, nn.Module] | None = None,
        max_grad_norm: float | None = None,
    ) -> None:
        self.critic_loss = critic_loss
        self.critic_optimizer = critic_optimizer
        self.actor_step = actor_step
        self.delay = delay
        self.target_updaters = list(target_updaters)
        self.critic_temperature = critic_temperature
        self.optimizers = {"critic": critic_optimizer, **dict(optimizers or {})}
        self.modules = nn.ModuleDict({"critic_loss": critic_loss, **dict(modules or {})})
        self.max_grad_norm = max_grad_norm
        self._critic_params = optimizer_parameters(critic_optimizer)
        self._actor_step_measures = "diagnostics" in inspect.signature(actor_step.step).parameters
        self.gradient_steps = 0

    def step(self, batch: TensorDictBase, *, diagnostics: bool = True) -> TensorDict:
        """One critic step, and the delayed actor step, temperatures and target updates when due.

        Args:
            batch: replay transitions (see :mod:`harl_torchrl.replay`); not modified.
            diagnostics: ``False`` (a step whose diagnostics nobody logs) skips the
                gradient norms and returns an empty TensorDict; the update is the same.

        Returns:
            Detached diagnostics: ``"critic"`` (the TD loss's outputs, plus
            ``grad_norm``), and on actor steps each agent's and ``"order"`` (plus
            ``"critic_alpha"`` for HASAC).
        """
        out = self.critic_loss(batch)
        grad_norm = optimizer_step(
            out["loss_qvalue"], self.critic_optimizer, self._critic_params, self.max_grad_norm, measure=diagnostics
        )
        result = TensorDict({}, batch_size=[])
        if diagnostics:
            result.set("critic", out.detach())
            result.set(("critic", "grad_norm"), grad_norm)
        if self.delay.tick():
            actors = self.actor_step.step(batch, **({"diagnostics": diagnostics} if self._actor_step_measures else {}))
            if diagnostics:
                result.update(actors)
            if self.critic_temperature is not None:
                agents = [k for k in actors.keys() if k != "order"]
                joint_log_prob = sum(actors.get((agent, "log_prob")) for agent in agents)
                alpha = self.critic_temperature.update(joint_log_prob)
                if diagnostics:
                    result.set("critic_alpha", alpha)
            for updater in self.target_updaters:
                updater.step()
        self.gradient_steps += 1
        return result

    def run(self, sample: Callable[[], TensorDictBase], steps: int) -> TensorDict:
        """``steps`` gradient steps, each on a fresh ``sample()``; the diagnostics of the last ones only.

        What the run loop takes per iteration and logs: the result holds what merging every
        step's :meth:`step` output in turn would (the last step's ``"critic"``, the last
        actor step's agents, ``"order"`` and ``"critic_alpha"``), but only the last
        ``policy_freq`` steps compute diagnostics: every ``policy_freq`` consecutive steps
        hold exactly one actor step. The updates are those of ``steps`` calls of :meth:`step`.

        Args:
            sample: draws a batch (e.g. ``lambda: buffer.sample(batch_size)``).
            steps: gradient steps to take.
        """
        latest = TensorDict({}, batch_size=[])
        logged_from = steps - self.delay.policy_freq
        for index in range(steps):
            latest.update(self.step(sample(), diagnostics=index >= logged_from))
        return latest

    def state_dict(self) -> dict[str, Any]:
        """Networks and targets, every optimiser, the order generator, the delay and step counters."""
        return {
            "modules": self.modules.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "actor_step": self.actor_step.state_dict(),
            "delay": self.delay.state_dict(),
            "gradient_steps": self.gradient_steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` in place."""
        self.modules.load_state_dict(state["modules"])
        for name, optimizer in self.optimizers.items():
            # moments and step counts from the checkpoint, settings (lr, ...) from this run's config
            load_optimizer_keeping_settings(optimizer, state["optimizers"][name])
        self.actor_step.load_state_dict(state["actor_step"])
        self.delay.load_state_dict(state["delay"])
        self.gradient_steps = int(state["gradient_steps"])


@dataclass
class OffPolicyParts:
    """What an off-policy family's builder returns.

    See :meth:`~harl_torchrl.config.off_policy.OffPolicyAlgoConfig.build_parts`.

    Attributes:
        actors: ``{agent: actor}`` (HAD3QN: ``{agent: dueling Q-net}``), on the device.
        critic: the critic module.
        critic_loss: the critic's TD loss (``loss_qvalue``), holding the critic's target.
        actor_step: the (sequential) actor step.
        policy: the actors followed by their exploration module.
        modules: every further stateful module by name, for checkpoints.
        optimizers: every actor-side optimiser by name, for checkpoints.
        target_updaters: Polyak updaters stepped after each actor step.
        critic_temperature: HASAC's critic temperature step, or ``None``.
    """

    actors: dict[str, TensorDictModuleBase]
    critic: nn.Module
    critic_loss: LossModule
    actor_step: Any
    policy: TensorDictSequential
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    target_updaters: list[SoftUpdate]
    critic_temperature: Any | None = None


@dataclass
class OffPolicyComponents:
    """Everything an off-policy run trains, built by :func:`make_off_policy_components`.

    Follows :class:`harl_torchrl.run.Components`: the run loop collects with
    :attr:`policy` and calls :meth:`train` once per batch, which stores the batch and
    takes the gradient steps it is owed.

    Attributes:
        algo: the typed ``algo`` config.
        actors: ``{agent: actor}`` (HAD3QN: ``{agent: dueling Q-net}``).
        critic: the critic module.
        policy: the collection policy: actors, exploration, then :attr:`warmup`. Under
            ``ExplorationType.DETERMINISTIC`` it is the deterministic/greedy/mode
            policy, which evaluation uses.
        warmup: the random warm-up switch (set ``warmup.active``).
        updater: the gradient step.
        buffer: the n-step replay buffer.
        owed_updates: the fraction of a gradient step carried to the next batch
            (``algo.updates_per_step`` need not be an integer).
        warmup_from: the frame count the random warm-up started at: 0, or the resume point
            of a run resumed with a fresh buffer (``checkpoint.resume_without_replay=true``),
            which warms up for ``algo.warmup_steps`` frames again before training.
        replay_dropped: this run resumed without the checkpoint's replay buffer.
    """

    algo: OffPolicyAlgoConfig
    actors: dict[str, TensorDictModuleBase]
    critic: nn.Module
    policy: TensorDictSequential
    warmup: RandomWarmup
    updater: OffPolicyUpdater
    buffer: Any
    owed_updates: float = 0.0
    warmup_from: int = 0
    replay_dropped: bool = False

    def prepare_env(self, env: EnvBase) -> EnvBase:
        """The env as it is (the off-policy networks are feed-forward)."""
        return env

    def start(self, *, frames: int, total_iterations: int) -> None:
        """Called once before collection: random warm-up while ``frames < algo.warmup_steps``."""
        self.warmup.active = frames < self.warmup_from + self.algo.warmup_steps

    def train(self, batch: TensorDictBase, *, frames: int, iteration: int) -> dict[str, float]:
        """Stores ``batch``, then takes the gradient steps owed (the reference's UTD).

        ``algo.updates_per_step`` gradient steps per vector step, once ``frames`` exceed
        ``algo.warmup_steps`` (counted from :attr:`warmup_from`) and the buffer holds a minibatch.

        Args:
            batch: ``[num_envs, steps]`` of collected transitions.
            frames: frames collected including this batch.
            iteration: this iteration's number (1-based).

        Returns:
            The last gradient step's flat diagnostics (the last actor step's per agent),
            ``gradient_steps`` and ``buffer_size``.
        """
        algo = self.algo
        warm_until = self.warmup_from + algo.warmup_steps
        self.buffer.extend(batch)
        latest = TensorDict({}, batch_size=[])
        if frames > warm_until and len(self.buffer) >= algo.batch_size:
            self.owed_updates += algo.updates_per_step * algo.train_interval
            steps = int(self.owed_updates)
            self.owed_updates -= steps
            latest = self.updater.run(lambda: self.buffer.sample(algo.batch_size), steps)  # what train() logs
        self.warmup.active = frames < warm_until  # for the next batch
        return {
            **flatten_metrics(latest),
            "gradient_steps": self.updater.gradient_steps,
            "buffer_size": len(self.buffer),
        }

    def state_dict(self) -> dict[str, Any]:
        """The updater's state, the exploration modules' buffers, the owed fraction of a step, the warm-up start."""
        return {
            "components": {"updater": self.updater.state_dict(), "policy": self.policy.state_dict()},
            "owed_updates": self.owed_updates,
            "warmup_from": self.warmup_from,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` in place, and the replay buffer where ``state`` has one (``"replay"``).

        With :data:`~harl_torchrl.run_guard.FRESH_REPLAY` set in ``state`` (a resume with
        ``checkpoint.resume_without_replay=true``) the buffer stays empty and a new random
        warm-up of ``algo.warmup_steps`` frames starts at the checkpoint's ``frames``.
        """
        from harl_torchrl.run_guard import FRESH_REPLAY

        self.updater.load_state_dict(state["components"]["updater"])
        self.policy.load_state_dict(state["components"]["policy"])
        self.owed_updates = float(state["owed_updates"])
        self.warmup_from = int(state.get("warmup_from", 0))  # checkpoints before the key: 0
        if state.get(FRESH_REPLAY):
            self.warmup_from, self.owed_updates, self.replay_dropped = int(state["frames"]), 0.0, True
            self.warmup.active = self.algo.warmup_steps > 0
        elif "replay" in state:
            self.buffer.load_state_dict(state["replay"])

    def describe_state(self) -> list[str]:
        """The replay buffer's fill after a resume, and a warm-up still to come."""
        if len(self.buffer):
            notes = [f"{len(self.buffer)} transitions in the buffer"]
        else:
            notes = [
                "a fresh buffer (resume_without_replay)" if self.replay_dropped else "an empty buffer (none saved)"
            ]
        if self.warmup.active and self.warmup_from:
            notes.append(f"random warm-up until {self.warmup_from + self.algo.warmup_steps} frames")
        return notes

    def sidecars(self) -> dict[str, Any]:
        """The replay buffer, saved beside the checkpoint (atomically, with its own checksum)."""
        return {"replay": self.buffer.state_dict()}


def _mask_keys(env) -> dict[str, str]:
    spec = env.full_observation_spec_unbatched
    return {agent: "action_mask" for agent in env.group_map if "action_mask" in spec[agent].keys()}


def check_action_space(algo: OffPolicyAlgoConfig, env) -> None:
    """Refuses an env whose action spaces the algorithm does not take, naming the alternative.

    Raises:
        ConfigError: e.g. ``algo=hatd3`` on discrete actions.

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> env = make_vmas_env("balance", num_envs=2, n_agents=2, continuous_actions=False)
        >>> check_action_space(algo_config({"name": "hatd3"}), env)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: algo.name=hatd3 supports continuous actions only, ... use algo=hasac ...
    """
    kinds = {
        agent: "continuous" if isinstance(spec, (Bounded, Unbounded)) and spec.domain == "continuous" else "discrete"
        for agent, spec in action_specs(env).items()
    }
    wrong = {agent: kind for agent, kind in kinds.items() if algo.action_space not in ("any", kind)}
    if wrong:
        agent, kind = next(iter(wrong.items()))
        raise ConfigError(
            f"algo.name={algo.name} supports {algo.action_space} actions only, but agent {agent!r} has {kind} ones. "
            f"Fix: {ACTION_SPACE_ALTERNATIVES[algo.action_space]}"
        )


def _optimizer(params, lr: float) -> torch.optim.Optimizer:
    # foreach: one fused pass over the parameters (PyTorch picks it by default on CUDA only);
    # on the CPU it saves about 0.3 ms of each of the 4 Adam steps of an MPE HATD3 gradient step
    return torch.optim.Adam(params, lr=lr, foreach=True)


def build_deterministic(algo: DeterministicConfig, net: dict, model, env, specs, seed, device) -> OffPolicyParts:
    """Deterministic actors, a (twin) joint Q critic, target actions with smoothing, the sequential actor step."""
    from harl_torchrl.objectives import DeterministicActorLoss, JointQLoss, TargetActions

    actors = {agent: actor.to(device) for agent, actor in make_deterministic_actors(env, **net).items()}
    critic = make_joint_q_critic(env, num_qvalue=algo.num_qvalue, **net).to(device)
    targets = TargetActions(actors, specs, noise_std=algo.policy_noise, noise_clip=algo.noise_clip)
    q_loss = JointQLoss(critic, targets, gamma=algo.gamma, loss_function=str(algo.critic_loss))
    trainers = {
        agent: ActorTrainer(
            DeterministicActorLoss(actor, critic),
            _optimizer(actor.parameters(), algo.actor_lr),
            max_grad_norm=algo.max_grad_norm,
        )
        for agent, actor in actors.items()
    }
    actor_step = SequentialActorStep(trainers, scheme=str(algo.scheme), order=str(algo.order), seed=seed)
    exploration = gaussian_noise(specs, algo.exploration_noise)
    policy = TensorDictSequential(*actors.values(), exploration)
    modules = {"target_actions": targets, "actors": nn.ModuleDict(actors)}
    optimizers = {f"actor/{agent}": trainer.optimizer for agent, trainer in trainers.items()}
    updaters = [FusedSoftUpdate(q_loss, tau=algo.tau), FusedSoftUpdate(targets, tau=algo.tau)]
    return OffPolicyParts(actors, critic, q_loss, actor_step, policy, modules, optimizers, updaters)


def build_soft(algo: SoftConfig, net: dict, model, env, specs, seed, device) -> OffPolicyParts:
    """Soft actors, a twin soft joint Q critic, per-agent and critic temperatures, the sequential actor step."""
    from harl_torchrl.modules.soft_actors import make_soft_actors
    from harl_torchrl.objectives import JointQLoss
    from harl_torchrl.objectives.soft_actor import SoftActorLoss, SoftNextActions
    from harl_torchrl.objectives.temperature import TemperatureLoss, TemperatureStep, target_entropy

    actors = make_soft_actors(
        env,
        hidden_sizes=net["hidden_sizes"],
        activation=net["activation"],
        feature_norm=model.feature_norm,
        output_gain=model.output_gain,
    )
    actors = {agent: actor.to(device) for agent, actor in actors.items()}
    critic = make_joint_q_critic(env, num_qvalue=algo.num_qvalue, **net).to(device)
    entropies = {
        agent: algo.target_entropy
        if algo.target_entropy is not None
        else target_entropy(specs[agent], mode=str(algo.target_entropy_mode))
        for agent in actors
    }
    fixed = not algo.auto_alpha
    temperatures = {
        agent: TemperatureLoss(entropies[agent], agent=agent, alpha_init=algo.alpha, fixed=fixed) for agent in actors
    }
    critic_temperature = TemperatureLoss(
        sum(entropies.values()),
        log_prob_keys=[(agent, "action_log_prob") for agent in actors],
        alpha_init=algo.alpha,
        fixed=fixed,
    )
    steps = {agent: TemperatureStep(loss, lr=algo.alpha_lr) for agent, loss in temperatures.items()}
    critic_step = TemperatureStep(critic_temperature, lr=algo.alpha_lr)
    q_loss = JointQLoss(
        critic, SoftNextActions(actors, critic_temperature), gamma=algo.gamma, loss_function=str(algo.critic_loss)
    )
    trainers = {
        agent: ActorTrainer(
            SoftActorLoss(actor, critic, temperatures[agent]),
            _optimizer(actor.parameters(), algo.actor_lr),
            max_grad_norm=algo.max_grad_norm,
            after_step=steps[agent] if algo.auto_alpha else None,
        )
        for agent, actor in actors.items()
    }
    actor_step = SequentialActorStep(trainers, scheme=str(algo.scheme), order=str(algo.order), seed=seed)
    policy = TensorDictSequential(*actors.values())
    modules = {
        "actors": nn.ModuleDict(actors),
        "temperatures": nn.ModuleDict(temperatures),
        "critic_temperature": critic_temperature,
    }
    optimizers = {f"actor/{agent}": trainer.optimizer for agent, trainer in trainers.items()}
    optimizers.update({f"alpha/{agent}": s.optimizer for agent, s in steps.items() if s.optimizer is not None})
    if critic_step.optimizer is not None:
        optimizers["alpha/critic"] = critic_step.optimizer
    updaters = [FusedSoftUpdate(q_loss, tau=algo.tau)]
    return OffPolicyParts(
        actors,
        critic,
        q_loss,
        actor_step,
        policy,
        modules,
        optimizers,
        updaters,
        critic_step if algo.auto_alpha else None,
    )


def build_d3qn(algo: HAD3QNConfig, net: dict, model, env, specs, seed, device) -> OffPolicyParts:
    """Dueling agent Q-nets distilled from a dueling joint-action critic, the sequential best response."""
    from harl_torchrl.modules.dueling import make_dueling_agent_qnets, make_joint_dueling_critic
    from harl_torchrl.objectives.d3qn import HAD3QNAgentLoss, HAD3QNCriticLoss
    from harl_torchrl.sequential import HAD3QNActorStep

    dueling = {
        "hidden_sizes": net["hidden_sizes"],
        "head_hidden_sizes": list(algo.dueling_hidden_sizes),
        "activation": net["activation"],
        "feature_norm": model.feature_norm,
    }
    qnets = {agent: qnet.to(device) for agent, qnet in make_dueling_agent_qnets(env, **dueling).items()}
    agent_losses = {agent: HAD3QNAgentLoss(agent, qnet, distill=str(algo.distill)) for agent, qnet in qnets.items()}
    state_keys, state_features = observation_critic_inputs(env)
    critic = make_joint_dueling_critic(state_keys, state_features, specs, **dueling).to(device)
    nvec = {agent: int(spec.space.n) for agent, spec in specs.items()}
    q_loss = HAD3QNCriticLoss(
        critic, nvec, agent_losses=agent_losses, gamma=algo.gamma, loss_function=str(algo.critic_loss)
    )
    trainers = {
        agent: ActorTrainer(
            loss, _optimizer(qnets[agent].parameters(), algo.actor_lr), max_grad_norm=algo.max_grad_norm
        )
        for agent, loss in agent_losses.items()
    }
    actor_step = HAD3QNActorStep(q_loss, trainers, order=str(algo.order), seed=seed)
    masks = _mask_keys(env)
    policy = TensorDictSequential(*qnets.values(), epsilon_greedy(specs, algo.epsilon, masks))
    modules = {"agent_losses": nn.ModuleDict(agent_losses)}
    updaters = [
        FusedSoftUpdate(q_loss, tau=algo.tau),
        *(FusedSoftUpdate(loss, tau=algo.tau) for loss in agent_losses.values()),
    ]
    named = {f"actor/{agent}": trainer.optimizer for agent, trainer in trainers.items()}
    return OffPolicyParts(qnets, critic, q_loss, actor_step, policy, modules, named, updaters)


def make_off_policy_components(
    algo_cfg: Mapping[str, Any] | OffPolicyAlgoConfig,
    model_cfg: Mapping[str, Any],
    env,
    *,
    device: torch.device | str = "cpu",
    seed: int | None = None,
) -> OffPolicyComponents:
    """Builds actors, critic, targets, losses, optimisers, the actor step and the collection policy.

    Args:
        algo_cfg: the ``algo`` group (typed or a mapping; see
            :mod:`harl_torchrl.config.off_policy`).
        model_cfg: the ``model`` group; ``hidden_sizes`` and ``activation`` are read
            (soft actors and dueling nets also ``feature_norm``); deterministic actors
            and Q critics use the reference's plain MLPs unless ``algo.layer_norm``.
        env: the training env (one group per agent).
        device: where the networks live.
        seed: seed of the agent-order generator.

    Raises:
        ConfigError: a bad setting, or an action space the algorithm does not take
            (the message names the algorithm to use instead).

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> env = make_vmas_env("balance", num_envs=2, n_agents=2, max_steps=5)
        >>> parts = make_off_policy_components({"name": "hatd3", "batch_size": 4}, {"hidden_sizes": [8]}, env, seed=0)
        >>> sorted(parts.actors), parts.updater.delay.policy_freq
        (['agent_0', 'agent_1'], 2)
    """
    algo = algo_config(algo_cfg)
    if not isinstance(algo, OffPolicyAlgoConfig):
        raise ConfigError(f"algo.name={algo.name} is not an off-policy algorithm; use recipes/train.py with it")
    model = model_config(model_cfg)
    if model.recurrent:
        raise ConfigError(
            f"model.name={model.name}: the off-policy algorithms train feed-forward networks; use model=mlp"
        )
    check_action_space(algo, env)
    specs = action_specs(env)
    net = {"hidden_sizes": list(model.hidden_sizes), "activation": str(model.activation), "layer_norm": algo.layer_norm}
    # networks are moved to the device as they are built, before any loss wraps their parameters
    parts = algo.build_parts(net, model, env, specs, seed, torch.device(device))
    warmup = RandomWarmup(specs, _mask_keys(env))
    policy = TensorDictSequential(parts.policy, warmup).to(device)
    for module in (parts.critic_loss, *parts.modules.values()):
        module.to(device)  # the losses' own buffers (bounds, gamma); parameters are there already
    updater = OffPolicyUpdater(
        parts.critic_loss,
        _optimizer(parts.critic_loss.parameters(), algo.critic_lr),
        parts.actor_step,
        delay=DelayedUpdates(getattr(algo, "policy_freq", 1)),
        target_updaters=parts.target_updaters,
        critic_temperature=parts.critic_temperature,
        optimizers=parts.optimizers,
        modules=parts.modules,
        max_grad_norm=algo.max_grad_norm,
    )
    buffer = make_replay_buffer(env, algo.buffer_size, n_steps=algo.n_step, gamma=algo.gamma, device=device)
    return OffPolicyComponents(algo, dict(parts.actors), parts.critic, policy, warmup, updater, buffer)

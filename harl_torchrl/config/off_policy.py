r"""Schemas of the off-policy ``algo`` group: HADDPG, HATD3, HASAC, HAD3QN and MADDPG, MATD3, MASAC.

Each field's default is the reference implementation's (``harl/configs/algos_cfgs/*.yaml``
and its tuned MPE configs), written here only: the recipe YAML
``harl_torchrl/conf/algo/<name>.yaml`` inherits the schema and repeats none of it. The
run loop (:func:`harl_torchrl.run.run`) collects ``algo.train_interval`` vector steps
of ``algo.num_envs`` sub-environments per iteration, then takes
``algo.updates_per_step * algo.train_interval`` gradient steps on minibatches of
``algo.batch_size`` (the reference's UTD: one gradient step per vector step).
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harl_torchrl.config.base import AlgoConfig, Order, choices
from harl_torchrl.config.registry import register_algo
from harl_torchrl.errors import ConfigError

#: How the other agents' actions enter an agent's actor objective (see
#: :class:`~harl_torchrl.sequential.SequentialActorStep`).
Scheme = choices("Scheme", "sequential", "buffer", "simultaneous")
CriticLoss = choices("CriticLoss", "l2", "smooth_l1", "l1")
#: HASAC's default target entropies: ``intended`` (0.98 log|A| for discrete actions) or the
#: reference's (which evaluates to 0 for ``Discrete``); boxes get -dim(A) either way.
EntropyTargetMode = choices("EntropyTargetMode", "intended", "reference")
#: What each HAD3QN agent's Q-net regresses onto (see :class:`~harl_torchrl.objectives.d3qn.HAD3QNAgentLoss`).
DistillTarget = choices("DistillTarget", "all_actions", "greedy")

#: Which action spaces an algorithm takes, and what to use instead.
ACTION_SPACE_ALTERNATIVES = {
    "continuous": "for discrete actions use algo=hasac (or algo=had3qn)",
    "discrete": "for continuous actions use algo=hatd3, algo=hasac or algo=haddpg",
}


def _switch_action_space(env: Any, continuous: bool) -> str:
    """``", or set env.continuous_actions=<x>"`` where the env family takes that setting, else ``""``."""
    if "continuous_actions" not in {f.name for f in dataclasses.fields(env)}:
        return ""  # a class constant (MaMuJoCo: boxes only)
    try:
        dataclasses.replace(env, continuous_actions=continuous).validate()
    except ConfigError:
        return ""  # the family refuses it (SMAX, football: discrete only)
    return f", or set env.continuous_actions={str(continuous).lower()}"


@dataclass
class OffPolicyAlgoConfig(AlgoConfig):
    r"""What every off-policy algorithm shares: data collection, replay, the critic and the actor step.

    Attributes:
        num_envs: training sub-environments; replaces ``env.num_envs`` (``null``:
            use the env group's). The reference runs 20.
        train_interval: vector steps collected per iteration (reference: 50).
        updates_per_step: gradient steps per vector step (reference: 1, i.e.
            ``train_interval`` steps per iteration, one per ``num_envs`` transitions).
        warmup_steps: transitions (summed over sub-environments) collected with
            uniformly random actions before any gradient step (reference: 10k).
        buffer_size: replay capacity in transitions.
        batch_size: transitions per gradient step.
        n_step: look-ahead of the TD targets (1: one-step); an n-step return stops at a
            termination and bootstraps through a truncation.
        gamma: discount :math:`\gamma \in (0, 1]`.
        tau: Polyak coefficient of the target networks, :math:`\theta' \leftarrow
            \tau\theta + (1 - \tau)\theta'`.
        actor_lr: Adam learning rate of each actor.
        critic_lr: Adam learning rate of the critic.
        order: agent order of the actor step: ``random`` (a fresh permutation per
            actor step, the HA algorithms) or ``fixed``.
        scheme: what the other agents contribute to an agent's objective:
            ``sequential`` (HA: earlier agents' new actions), ``buffer`` (the
            reference MADDPG/MATD3/MASAC: the buffer's actions) or ``simultaneous``
            (TorchRL's multi-agent examples: everyone's current actions).
        max_grad_norm: gradient-norm clip of every optimiser (``null``: none).
        critic_loss: ``l2`` (reference), ``smooth_l1`` or ``l1``.
        layer_norm: LayerNorm trunks (``false``: the reference's plain MLPs); the trunks'
            ``model.hidden_sizes`` and ``model.activation`` are read from the model group.
        action_space: class constant: ``continuous``, ``discrete`` or ``any``.
        num_qvalue: class constant: critic heads (twin Q = 2).
        checkpoint_frames: class constant: frames between checkpoints when
            ``checkpoint.interval`` is ``null`` (each also writes the replay buffer).
        builder: class constant: the function that builds this family's networks, losses
            and actor step (:meth:`build_parts`), a name in :mod:`harl_torchrl.off_policy`
            or a dotted path (``"my_package.module.build_mine"``).
    """

    kind: ClassVar[str] = "off_policy"
    action_space: ClassVar[str] = "continuous"
    num_qvalue: ClassVar[int] = 2
    checkpoint_frames: ClassVar[int] = 100_000
    builder: ClassVar[str] = ""

    num_envs: int | None = 20
    train_interval: int = 50
    updates_per_step: float = 1.0
    warmup_steps: int = 10_000
    buffer_size: int = 1_000_000
    batch_size: int = 1000
    n_step: int = 1
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 5.0e-4
    critic_lr: float = 1.0e-3
    order: Order = Order.random  # type: ignore[valid-type]
    scheme: Scheme = Scheme.sequential  # type: ignore[valid-type]
    max_grad_norm: float | None = None
    critic_loss: CriticLoss = CriticLoss.l2  # type: ignore[valid-type]
    layer_norm: bool = False

    def validate(self) -> None:
        """Sizes, rates and intervals > 0, ``gamma`` and ``tau`` in (0, 1], the batch fits the buffer."""
        super().validate()
        self.require_positive(
            "train_interval", "updates_per_step", "buffer_size", "batch_size", "n_step", "actor_lr", "critic_lr"
        )
        self.require_positive_or_none("num_envs", "max_grad_norm")
        self.require_non_negative("warmup_steps")
        self.require_in("gamma", 0.0, 1.0, low_open=True)
        self.require_in("tau", 0.0, 1.0, low_open=True)
        if self.batch_size > self.buffer_size:
            raise self.fail(
                "batch_size",
                f"exceeds algo.buffer_size={self.buffer_size}",
                f"use algo.batch_size <= {self.buffer_size}, or raise algo.buffer_size",
            )

    def effective_num_envs(self, run: Any) -> int:
        """The training sub-environments: ``algo.num_envs``, else ``env.num_envs``."""
        return self.num_envs if self.num_envs is not None else run.env.num_envs

    def rollout_steps(self, run: Any) -> int:
        """Vector steps collected per iteration: ``algo.train_interval``."""
        return self.train_interval

    def checkpoint_iterations(self, frames_per_batch: int) -> int:
        """Every :attr:`checkpoint_frames` frames (100 iterations of the reference's 1,000)."""
        return max(1, -(-self.checkpoint_frames // max(1, frames_per_batch)))

    def build(self, env: Any, model: Any, *, device: Any = "cpu", seed: int | None = None) -> Any:
        """:func:`~harl_torchrl.off_policy.make_off_policy_components` for this schema."""
        from harl_torchrl.off_policy import make_off_policy_components

        return make_off_policy_components(self, model, env, device=device, seed=seed)

    def build_parts(self, net: dict, model: Any, env: Any, specs: Any, seed: int | None, device: Any) -> Any:
        """This family's networks, losses and actor step (an :class:`~harl_torchrl.off_policy.OffPolicyParts`).

        Args:
            net: ``hidden_sizes``, ``activation`` and ``layer_norm`` of the networks.
            model: the typed ``model`` group.
            env: the training env (one group per agent).
            specs: every agent's action spec.
            seed: seed of the agent-order generator.
            device: where the networks live.
        """
        import importlib

        if not self.builder:
            raise NotImplementedError(f"{type(self).__name__} names no builder (set builder or override build_parts())")
        module, _, function = self.builder.rpartition(".")
        build = getattr(importlib.import_module(module or "harl_torchrl.off_policy"), function)
        return build(self, net, model, env, specs, seed, device)

    def validate_run(self, run: Any) -> None:
        """A feed-forward model, a supported action space, workers dividing the sub-environments.

        The action space is read from ``env.continuous_actions`` (a class constant where a
        family has one action space only); the components builder checks the env's specs
        again.
        """
        if run.model.recurrent:
            raise self.fail(
                "name",
                f"({self.name}) trains feed-forward networks only, but model={run.model.name}",
                "use model=mlp with an off-policy algorithm (recurrent models are for the on-policy ones)",
            )
        continuous = bool(run.env.continuous_actions)
        wanted = "continuous" if continuous else "discrete"
        if self.action_space not in ("any", wanted):
            raise self.fail(
                "name",
                f"({self.name}) supports {self.action_space} actions only, but the env has {wanted} ones "
                f"(env.family={run.env.family}, env.scenario={run.env.scenario})",
                ACTION_SPACE_ALTERNATIVES[self.action_space] + _switch_action_space(run.env, not continuous),
            )
        num_envs, workers = self.effective_num_envs(run), run.collector.workers
        if num_envs % workers:
            raise self.fail(
                "num_envs",
                f"must be a multiple of collector.workers={workers}",
                f"set algo.num_envs to a multiple of {workers}, or collector.workers=1",
            )
        self._refuse_runs_that_train_nothing(run, num_envs)

    def _refuse_runs_that_train_nothing(self, run: Any, num_envs: int) -> None:
        """Settings under which no gradient step would ever be taken, or a setting that would be ignored."""
        from harl_torchrl.config.run import CollectorConfig

        if run.collector.rollout_steps != CollectorConfig.rollout_steps:
            raise ConfigError(
                f"collector.rollout_steps={run.collector.rollout_steps} has no effect on algo={self.name}: an "
                f"off-policy iteration collects algo.train_interval={self.train_interval} vector steps. Fix: set "
                f"algo.train_interval={run.collector.rollout_steps} instead, and drop collector.rollout_steps"
            )
        batch = num_envs * self.train_interval
        total = -(-run.total_frames // batch) * batch  # whole batches, as the run loop collects
        if total <= self.warmup_steps:
            raise self.fail(
                "warmup_steps",
                f"is not below the run's {total} frames (total_frames={run.total_frames} in batches of {batch}): "
                "every transition would be random warm-up and no gradient step would be taken",
                f"raise total_frames above {self.warmup_steps} (e.g. total_frames={self.warmup_steps + 10 * batch}), "
                f"or lower algo.warmup_steps below {total}",
            )
        steps = run.env.max_steps
        if steps is not None and self.n_step > steps:
            raise self.fail(
                "n_step",
                f"exceeds the episode length env.max_steps={steps}: no transition would have its {self.n_step} "
                "steps of return, and the buffer would stay empty",
                f"use algo.n_step <= {steps} (the reference's HASAC: 20 on 25-step MPE episodes)",
            )


@dataclass
class DeterministicConfig(OffPolicyAlgoConfig):
    r"""Deterministic actors (DDPG / TD3 family).

    Attributes:
        exploration_noise: std of the Gaussian exploration noise, as a fraction of
            each action box's half-range (reference ``expl_noise``).
        policy_noise: std of the target-policy smoothing noise, same units (TD3:
            0.2; 0 disables it, as DDPG).
        noise_clip: the smoothing noise is clipped to :math:`\pm` this many
            half-ranges (TD3: 0.5).
        policy_freq: critic steps per actor step; target updates happen on actor
            steps only (TD3: 2).
    """

    builder: ClassVar[str] = "build_deterministic"
    exploration_noise: float = 0.1
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2

    def validate(self) -> None:
        """Also the noise settings >= 0 and ``policy_freq`` > 0."""
        super().validate()
        self.require_non_negative("exploration_noise", "policy_noise", "noise_clip")
        self.require_positive("policy_freq")


@register_algo
@dataclass
class HATD3Config(DeterministicConfig):
    """HATD3 (``harl_torchrl/conf/algo/hatd3.yaml``): twin Q, smoothing noise, policy delay, sequential actors."""

    name: str = "hatd3"


@register_algo
@dataclass
class HADDPGConfig(DeterministicConfig):
    """HADDPG (``harl_torchrl/conf/algo/haddpg.yaml``): one Q, no smoothing noise, no delay, sequential actors."""

    num_qvalue: ClassVar[int] = 1
    name: str = "haddpg"
    policy_noise: float = 0.0
    policy_freq: int = 1


@register_algo
@dataclass
class MATD3Config(DeterministicConfig):
    """MATD3 baseline (``harl_torchrl/conf/algo/matd3.yaml``): HATD3 with the reference's buffer-action scheme."""

    name: str = "matd3"
    order: Order = Order.fixed  # type: ignore[valid-type]
    scheme: Scheme = Scheme.buffer  # type: ignore[valid-type]


@register_algo
@dataclass
class MADDPGConfig(DeterministicConfig):
    """MADDPG baseline (``harl_torchrl/conf/algo/maddpg.yaml``): HADDPG with the buffer-action scheme."""

    num_qvalue: ClassVar[int] = 1
    name: str = "maddpg"
    policy_noise: float = 0.0
    policy_freq: int = 1
    order: Order = Order.fixed  # type: ignore[valid-type]
    scheme: Scheme = Scheme.buffer  # type: ignore[valid-type]


@dataclass
class SoftConfig(OffPolicyAlgoConfig):
    r"""Maximum-entropy actors (SAC family), any action space.

    Attributes:
        alpha: initial temperature of every agent (and of the critic's target).
        auto_alpha: tune each temperature towards its target entropy.
        alpha_lr: Adam learning rate of the temperatures.
        target_entropy: the target entropy per agent (``null``: :math:`-\dim A`
            for boxes, :math:`0.98 \log |A|` for discrete actions).
        target_entropy_mode: ``intended`` (the defaults above) or ``reference``
            (the reference HASAC's targets: 0 for discrete actions, and for boxes
            :math:`-\dim A + \sum_k \log h_k`, its target measured before the scaling
            to the box; see :func:`~harl_torchrl.objectives.temperature.target_entropy`).
    """

    action_space: ClassVar[str] = "any"
    builder: ClassVar[str] = "build_soft"
    n_step: int = 20
    critic_lr: float = 5.0e-4
    alpha: float = 0.2
    auto_alpha: bool = True
    alpha_lr: float = 3.0e-4
    target_entropy: float | None = None
    target_entropy_mode: EntropyTargetMode = EntropyTargetMode.intended  # type: ignore[valid-type]

    def validate(self) -> None:
        """Also ``alpha`` and ``alpha_lr`` > 0."""
        super().validate()
        self.require_positive("alpha", "alpha_lr")


@register_algo
@dataclass
class HASACConfig(SoftConfig):
    """HASAC (``harl_torchrl/conf/algo/hasac.yaml``): the reference's tuned MPE settings (20-step returns)."""

    name: str = "hasac"


@register_algo
@dataclass
class MASACConfig(SoftConfig):
    """MASAC baseline (``harl_torchrl/conf/algo/masac.yaml``): HASAC with the buffer-action scheme."""

    name: str = "masac"
    order: Order = Order.fixed  # type: ignore[valid-type]
    scheme: Scheme = Scheme.buffer  # type: ignore[valid-type]


@register_algo
@dataclass
class HAD3QNConfig(OffPolicyAlgoConfig):
    """HAD3QN (``harl_torchrl/conf/algo/had3qn.yaml``): dueling Q-nets, sequential best response; discrete only.

    Attributes:
        epsilon: epsilon-greedy exploration probability (reference: 0.05).
        dueling_hidden_sizes: widths of the value and advantage streams.
        distill: what each agent's Q-net regresses onto: the critic's best-response
            values of ``all_actions`` (default) or, as the reference, only at its
            ``greedy`` action.
    """

    action_space: ClassVar[str] = "discrete"
    num_qvalue: ClassVar[int] = 1
    builder: ClassVar[str] = "build_d3qn"
    name: str = "had3qn"
    gamma: float = 0.95
    epsilon: float = 0.05
    dueling_hidden_sizes: list[int] = field(default_factory=lambda: [128])
    distill: DistillTarget = DistillTarget.all_actions  # type: ignore[valid-type]

    def validate(self) -> None:
        """Also ``epsilon`` in [0, 1]."""
        super().validate()
        self.require_in("epsilon", 0.0, 1.0)

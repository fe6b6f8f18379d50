"""Schemas of the on-policy ``algo`` group: HAPPO, HATRPO, HAA2C, MAPPO, IPPO.

Each field's default is the reference implementation's, written here only: the recipe
YAML ``harl_torchrl/conf/algo/<name>.yaml`` inherits the schema and repeats none of it.
Range checks of one algorithm live in its ``validate``; the
checks that need the batch size (minibatches against the samples per batch) live in
:meth:`OnPolicyAlgoConfig.validate_run`.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

from harl_torchrl.config.base import AlgoConfig, Order, choices
from harl_torchrl.config.registry import register_algo

ValueLoss = choices("ValueLoss", "huber", "mse")
KLType = choices("KLType", "exact", "reference_logits")
LRDecay = choices("LRDecay", "none", "linear")


@dataclass
class OnPolicyAlgoConfig(AlgoConfig):
    r"""What every on-policy algorithm shares: the critic, GAE and the agent order.

    Attributes:
        share_params: one network for every agent; only for the simultaneous
            baselines (MAPPO, IPPO): the sequential scheme needs per-agent parameters.
        critic_lr: Adam learning rate of the critic.
        adam_eps: Adam's :math:`\epsilon`.
        critic_epochs: critic passes over the batch per iteration.
        critic_num_minibatches: critic minibatches per pass.
        entropy_coeff: entropy bonus weight (>= 0).
        max_grad_norm: gradient-norm clip (``null``: none).
        gamma: discount :math:`\gamma \in (0, 1]`.
        gae_lambda: GAE :math:`\lambda \in [0, 1]`.
        order: ``random`` (a fresh permutation each iteration) or ``fixed``.
        value_norm: the critic predicts normalised values (reference semantics).
        value_clip: clipped value loss range (``null``: unclipped).
        value_loss: ``huber`` or ``mse``.
        huber_delta: the Huber loss's :math:`\delta` (> 0).
        lr_decay: ``none`` or ``linear``: every learning rate (actors' and critic's)
            times :math:`1 - i / I` before update :math:`i` of :math:`I` (the run's
            ``total_frames`` in iterations), the reference's ``use_linear_lr_decay``
            (see :func:`~harl_torchrl.training.linear_lr_factor`).
        sequential: class constant: agents updated in turn with the factor
            :math:`M` (HA algorithms) or all against the old policies (baselines).
        trust_region: class constant: one natural-gradient step per agent.
        per_agent_critics: class constant: one critic per agent (IPPO).
    """

    sequential: ClassVar[bool] = True
    trust_region: ClassVar[bool] = False
    per_agent_critics: ClassVar[bool] = False

    share_params: bool = False
    critic_lr: float = 5.0e-4
    adam_eps: float = 1.0e-5
    critic_epochs: int = 5
    critic_num_minibatches: int = 1
    entropy_coeff: float = 0.01
    max_grad_norm: float | None = 10.0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    order: Order = Order.random  # type: ignore[valid-type]
    value_norm: bool = True
    value_clip: float | None = 0.2
    value_loss: ValueLoss = ValueLoss.huber  # type: ignore[valid-type]
    huber_delta: float = 10.0
    lr_decay: LRDecay = LRDecay.none  # type: ignore[valid-type]

    def validate(self) -> None:
        """Learning rates, epochs, minibatches and ``huber_delta`` > 0; ``gamma``, ``gae_lambda`` in range."""
        super().validate()
        self.require_positive("critic_lr", "adam_eps", "critic_epochs", "critic_num_minibatches", "huber_delta")
        self.require_positive_or_none("max_grad_norm", "value_clip")
        self.require_non_negative("entropy_coeff")
        self.require_in("gamma", 0.0, 1.0, low_open=True)
        self.require_in("gae_lambda", 0.0, 1.0)
        if self.share_params and self.sequential:
            raise self.fail(
                "share_params",
                f"is not possible with {self.name}: the sequential scheme updates agents one at a time, which "
                "needs separate per-agent parameters",
                "use algo.share_params=false, or algo=mappo algo.share_params=true for a parameter-shared baseline",
            )

    def minibatch_fields(self) -> tuple[str, ...]:
        """The fields that split the batch into minibatches (checked against the batch size)."""
        return ("critic_num_minibatches",)

    def build(self, env: Any, model: Any, *, device: Any = "cpu", seed: int | None = None) -> Any:
        """:func:`~harl_torchrl.algorithms.make_on_policy_components` for this schema."""
        from harl_torchrl.algorithms import make_on_policy_components

        return make_on_policy_components(self, model, env, device=device, seed=seed)

    def make_loss(self, actor: Any) -> Any:
        """The per-agent policy loss of this algorithm for ``actor`` (a TorchRL ``LossModule``)."""
        raise NotImplementedError(f"{type(self).__name__} names no per-agent loss (override make_loss())")

    def make_trainer(self, loss: Any, chunk_length: int | None) -> Any:
        """The per-agent trainer that optimises ``loss`` (see :mod:`harl_torchrl.sequential`)."""
        raise NotImplementedError(f"{type(self).__name__} names no trainer (override make_trainer())")

    def validate_run(self, run: Any) -> None:
        """Each ``*num_minibatches`` is at most the number of samples the trainers split.

        A batch holds ``env.num_envs * collector.rollout_steps`` steps; the trainers
        shuffle single steps, or, for recurrent models, sequence chunks of
        ``model.chunk_length`` steps (``num_envs * rollout_steps / chunk_length``).
        """
        samples = run.env.num_envs * run.collector.rollout_steps
        what = f"env.num_envs={run.env.num_envs} x collector.rollout_steps={run.collector.rollout_steps}"
        chunk = run.model.sequence_length
        if chunk:
            samples //= chunk
            what = f"{what} / model.chunk_length={chunk} sequence chunks"
        else:
            what = f"{what} steps"
        for name in self.minibatch_fields():
            if getattr(self, name) > samples:
                raise self.fail(
                    name,
                    f"exceeds the {samples} samples per batch ({what})",
                    f"use {self.key(name)} <= {samples}, or collect more per iteration "
                    "(raise env.num_envs or collector.rollout_steps)",
                )


@dataclass
class PolicyGradientConfig(OnPolicyAlgoConfig):
    """On-policy algorithms trained by minibatch Adam epochs (all but HATRPO).

    Attributes:
        actor_lr: Adam learning rate of each actor.
        epochs: actor passes over the batch per iteration.
        num_minibatches: actor minibatches per pass.
    """

    actor_lr: float = 5.0e-4
    epochs: int = 5
    num_minibatches: int = 1

    def validate(self) -> None:
        """Also ``actor_lr``, ``epochs``, ``num_minibatches`` > 0."""
        super().validate()
        self.require_positive("actor_lr", "epochs", "num_minibatches")

    def minibatch_fields(self) -> tuple[str, ...]:
        """Actor and critic minibatches."""
        return ("num_minibatches", "critic_num_minibatches")

    def make_trainer(self, loss: Any, chunk_length: int | None) -> Any:
        """Minibatch Adam epochs over the batch (:class:`~harl_torchrl.sequential.PolicyTrainer`)."""
        import torch

        from harl_torchrl.sequential import PolicyTrainer

        return PolicyTrainer(
            loss,
            torch.optim.Adam(loss.parameters(), lr=self.actor_lr, eps=self.adam_eps),
            epochs=self.epochs,
            num_minibatches=self.num_minibatches,
            max_grad_norm=self.max_grad_norm,
            chunk_length=chunk_length,
        )


@dataclass
class ClippedConfig(PolicyGradientConfig):
    r"""PPO-style clipped surrogates (HAPPO, MAPPO, IPPO).

    Attributes:
        clip_epsilon: the ratio clip :math:`\epsilon` (> 0).
    """

    clip_epsilon: float = 0.2

    def validate(self) -> None:
        """Also ``clip_epsilon`` > 0."""
        super().validate()
        self.require_positive("clip_epsilon")

    def make_loss(self, actor: Any) -> Any:
        """TorchRL's own ``ClipPPOLoss`` (the baselines; HAPPO overrides it).

        The advantage arrives normalised once by the updater, and the critic is
        trained by its own loss.
        """
        from torchrl.objectives import ClipPPOLoss

        return ClipPPOLoss(
            actor,
            critic_network=None,
            clip_epsilon=self.clip_epsilon,
            entropy_bonus=self.entropy_coeff > 0,
            entropy_coeff=self.entropy_coeff,
            normalize_advantage=False,
            functional=False,
        )


@register_algo
@dataclass
class HAPPOConfig(ClippedConfig):
    """HAPPO (``harl_torchrl/conf/algo/happo.yaml``): sequential clipped updates with the factor."""

    name: str = "happo"

    def make_loss(self, actor: Any) -> Any:
        """:class:`~harl_torchrl.objectives.HAPPOLoss`."""
        from harl_torchrl.objectives import HAPPOLoss

        return HAPPOLoss(actor, clip_epsilon=self.clip_epsilon, entropy_coeff=self.entropy_coeff)


@register_algo
@dataclass
class HAA2CConfig(PolicyGradientConfig):
    """HAA2C (``harl_torchrl/conf/algo/haa2c.yaml``): sequential unclipped importance-weighted updates.

    The surrogate is unclipped: keep ``algo.epochs`` and ``algo.actor_lr`` moderate.
    """

    name: str = "haa2c"

    def make_loss(self, actor: Any) -> Any:
        """:class:`~harl_torchrl.objectives.HAA2CLoss`."""
        from harl_torchrl.objectives import HAA2CLoss

        return HAA2CLoss(actor, entropy_coeff=self.entropy_coeff)


@register_algo
@dataclass
class MAPPOConfig(ClippedConfig):
    """MAPPO baseline (``harl_torchrl/conf/algo/mappo.yaml``): simultaneous updates, centralised critic."""

    sequential: ClassVar[bool] = False
    name: str = "mappo"
    order: Order = Order.fixed  # type: ignore[valid-type]


@register_algo
@dataclass
class IPPOConfig(ClippedConfig):
    """IPPO baseline (``harl_torchrl/conf/algo/ippo.yaml``): simultaneous updates, one critic per agent."""

    sequential: ClassVar[bool] = False
    per_agent_critics: ClassVar[bool] = True
    name: str = "ippo"
    order: Order = Order.fixed  # type: ignore[valid-type]


@register_algo
@dataclass
class HATRPOConfig(OnPolicyAlgoConfig):
    r"""HATRPO (``harl_torchrl/conf/algo/hatrpo.yaml``): one trust-region step per agent.

    Attributes:
        max_kl: the trust region :math:`\delta` on the mean
            :math:`\mathrm{KL}(\pi_\text{old} \| \pi_\text{new})` (> 0).
        cg_iterations: conjugate-gradient iterations (> 0).
        damping: added to the Fisher matrix (>= 0).
        line_search_steps: candidate steps tried (> 0).
        shrink: backtracking factor in (0, 1).
        accept_ratio: minimum actual / expected improvement in [0, 1].
        fisher_fraction: batch fraction for the Fisher-vector products in (0, 1] (1: exact,
            as the paper; below 1: cheaper).
        kl_type: ``exact`` or ``reference_logits`` (the reference's per-logit surrogate,
            categorical actions only).
        max_grad_norm: the critic's gradient-norm clip only (``null``: none): the actors
            take trust-region steps.
    """

    trust_region: ClassVar[bool] = True
    name: str = "hatrpo"
    max_kl: float = 0.01
    cg_iterations: int = 10
    damping: float = 0.1
    line_search_steps: int = 10
    shrink: float = 0.8
    accept_ratio: float = 0.5
    fisher_fraction: float = 1.0
    kl_type: KLType = KLType.exact  # type: ignore[valid-type]
    entropy_coeff: float = 0.0

    def validate(self) -> None:
        """Also the trust-region settings."""
        super().validate()
        self.require_positive("max_kl", "cg_iterations", "line_search_steps")
        self.require_non_negative("damping")
        self.require_in("shrink", 0.0, 1.0, low_open=True, high_open=True)
        self.require_in("accept_ratio", 0.0, 1.0)
        self.require_in("fisher_fraction", 0.0, 1.0, low_open=True)

    def trust_region_settings(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~harl_torchrl.sequential.TrustRegionTrainer`."""
        keys = ("max_kl", "cg_iterations", "damping", "line_search_steps", "shrink", "accept_ratio", "fisher_fraction")
        return {key: getattr(self, key) for key in keys}

    def make_loss(self, actor: Any) -> Any:
        """:class:`~harl_torchrl.objectives.HATRPOLoss`."""
        from harl_torchrl.objectives import HATRPOLoss

        return HATRPOLoss(actor, kl_type=str(self.kl_type), entropy_coeff=self.entropy_coeff)

    def make_trainer(self, loss: Any, chunk_length: int | None) -> Any:
        """One natural-gradient step per agent (:class:`~harl_torchrl.sequential.TrustRegionTrainer`)."""
        from harl_torchrl.sequential import TrustRegionTrainer

        return TrustRegionTrainer(loss, **self.trust_region_settings())

"""The centralised critic's loss and its GAE value estimator."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictSequential
from tensordict.utils import NestedKey
from torch.nn import functional as F
from torchrl.objectives import LossModule
from torchrl.objectives.utils import ValueEstimators
from torchrl.objectives.value import GAE, MultiAgentGAE, ValueEstimatorBase

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.critics import Denormalize, critic_value_norm
from harl_torchrl.modules.value_norm import ValueNorm
from harl_torchrl.objectives.common import check_reduction


class CentralValueLoss(LossModule):
    r"""Clipped Huber (or squared) loss of the centralised critic ``V(s)``.

    With value normalisation the critic predicts normalised values
    :math:`\hat v_\phi(s)`, the target is :math:`y = \mathrm{normalize}(R)` for the
    return :math:`R` (``"value_target"``), and with the prediction stored at
    collection time :math:`\hat v_{old}` (``"state_value_normalized"``):

    .. math::

        \hat v^{clip} = \hat v_{old} + \mathrm{clip}(\hat v_\phi - \hat v_{old}, -c, c), \qquad
        L = \max\big(\ell(y - \hat v_\phi),\ \ell(y - \hat v^{clip})\big)

    with :math:`\ell` the Huber loss (``huber_delta``, reference: 10) or the squared
    error; ``clip_value=None`` drops the clipped term. This is the reference
    implementation's value loss.

    The critic is either a two-step module as built by
    :func:`~harl_torchrl.modules.make_central_critic`: a network writing
    ``"state_value_normalized"`` followed by a denormaliser writing
    ``"state_value"`` (return units). The loss uses the critic's own
    :class:`~harl_torchrl.modules.ValueNorm` (the one given to
    ``make_central_critic``), so the two cannot disagree. Or it is any TorchRL
    value module without that step (a ``ValueOperator``, e.g. TorchRL's centralised
    ``MultiAgentMLP(centralized=True, share_params=True)`` writing
    ``("agents", "state_value")`` ``[*B, n, 1]``): it is then regressed in return units
    at ``tensor_keys.value``, one term per agent entry.

    A stacked group's keys (TorchRL's layout) are remapped with :meth:`set_keys`, e.g.
    ``set_keys(value=("agents", "state_value"), reward=("agents", "reward"))``; with
    ``make_value_estimator(ValueEstimators.MAGAE)`` TorchRL's
    :class:`~torchrl.objectives.value.MultiAgentGAE` broadcasts a team-level
    ``("next", "done")``/``("next", "terminated")`` along the agents (no done
    transform needed) and writes ``"advantage"`` and ``"value_target"`` ``[*B, n, 1]``,
    which the HA policy losses of a stack read column by column.

    How this differs from TorchRL's ``MAPPOLoss(value_norm=PopArtValueNorm(...))``, and
    why: there the critic predicts return units and the normaliser rescales target and
    prediction inside the loss only (it is updated on every loss call); here, as in the
    HARL reference, the critic *predicts* normalised values and is denormalised before
    GAE, and the normaliser moves once per iteration before the critic's epochs
    (:meth:`update_value_norm`), so the regression target stays fixed across epochs. The
    clip of the value change and the Huber loss (reference: ``clip_value=0.2``,
    ``huber_delta=10``) are the reference's; ``ClipPPOLoss`` defaults to an unclipped
    smooth-L1 loss.

    Advantages, either way:

    * :meth:`compute_advantage` runs the whole critic on the batch and its
      ``"next"`` states, then GAE: advantages from denormalised values, and the
      normalised predictions stored for the clipped loss;
    * or TorchRL's own ``GAE(gamma=..., lmbda=..., value_network=critic)(batch)``
      (also accepted by :meth:`make_value_estimator`). It keeps only
      ``"state_value"``; :meth:`update_value_norm` (which
      :class:`~harl_torchrl.sequential.CriticTrainer` calls once per iteration)
      recovers ``"state_value_normalized"`` from it exactly, with the statistics
      the values were denormalised with, before moving them. The critic runs once
      per state in both cases.

    Reads ``"value_target"``, ``"state_value_normalized"`` (when clipping; without
    a value normaliser ``"state_value"`` stands in for it) and the critic's inputs.
    Writes ``"loss_critic"`` and the diagnostics ``"value_clip_fraction"`` and
    ``"explained_variance"``.

    Args:
        critic_network: the centralised critic (see above).
        value_norm: leave it out (``None``): the loss takes the critic's
            normaliser. A value normaliser passed here must be that same object;
            any other raises, since targets normalised with other statistics than
            the critic's denormaliser train the critic towards the wrong values.
        clip_value: the clip range :math:`c` (reference: 0.2), or ``None``.
        loss_type: ``"huber"`` (default) or ``"mse"``.
        huber_delta: Huber threshold.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> from tensordict import TensorDict
        >>> from harl_torchrl.modules import make_central_critic
        >>> from harl_torchrl.modules import ValueNorm
        >>> critic = make_central_critic(["state"], 3, value_norm=ValueNorm())
        >>> loss = CentralValueLoss(critic)  # uses the critic's ValueNorm
        >>> td = TensorDict({"state": torch.randn(6, 3), "value_target": torch.randn(6, 1)}, [6])
        >>> td["state_value_normalized"] = torch.zeros(6, 1)
        >>> loss.update_value_norm(td)  # once per iteration, before the epochs
        >>> loss(td)["loss_critic"].backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable keys: targets, stored predictions and the GAE signals."""

        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        value_normalized: NestedKey = "state_value_normalized"
        advantage: NestedKey = "advantage"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.GAE
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        critic_network: TensorDictSequential,
        *,
        value_norm: ValueNorm | None = None,
        clip_value: float | None = 0.2,
        loss_type: str = "huber",
        huber_delta: float = 10.0,
        reduction: str = "mean",
    ) -> None:
        if loss_type not in ("huber", "mse"):
            raise ConfigError(f"loss_type must be 'huber' or 'mse', got {loss_type!r}")
        if clip_value is not None and not clip_value > 0:
            raise ConfigError(f"clip_value must be > 0 or None, got {clip_value}")
        check_reduction(reduction)
        own_norm = critic_value_norm(critic_network)
        if value_norm is not None and value_norm is not own_norm:
            critic_has = "another ValueNorm" if own_norm is not None else "no ValueNorm"
            raise ConfigError(
                f"CentralValueLoss got a value_norm but the critic denormalises with {critic_has}: targets and "
                "predictions would be in different units. Give the ValueNorm to "
                "make_central_critic(..., value_norm=ValueNorm()) only and build CentralValueLoss(critic) without "
                "value_norm: the loss takes the critic's."
            )
        super().__init__()
        self.critic_network = critic_network
        self.value_norm = own_norm
        self.clip_value = clip_value
        self.loss_type = loss_type
        self.huber_delta = huber_delta
        self.reduction = reduction

    @property
    def network(self) -> torch.nn.Module:
        """The part of the critic whose output the loss regresses.

        The network before the :class:`~harl_torchrl.modules.Denormalize` step of a critic
        built by :func:`~harl_torchrl.modules.make_central_critic` (it writes the normalised
        prediction), or the whole critic when it has no such step (a TorchRL
        ``ValueOperator``/``TensorDictModule``, e.g. a centralised ``MultiAgentMLP``: it writes
        the value in return units at ``tensor_keys.value``).
        """
        return self.critic_network[0] if self._two_step else self.critic_network

    @property
    def _two_step(self) -> bool:
        critic = self.critic_network
        return isinstance(critic, TensorDictSequential) and isinstance(getattr(critic[-1], "module", None), Denormalize)

    @property
    def _prediction_key(self) -> NestedKey:
        return self.tensor_keys.value_normalized if self._two_step else self.tensor_keys.value

    def _distance(self, error: torch.Tensor) -> torch.Tensor:
        if self.loss_type == "huber":
            return F.huber_loss(error, torch.zeros_like(error), delta=self.huber_delta, reduction="none")
        return error.pow(2)

    def update_value_norm(self, tensordict: TensorDictBase) -> None:
        """Moves the value normaliser towards this batch's value targets (no-op without one).

        Call it once per iteration, after the advantage and before the critic's
        epochs (:class:`~harl_torchrl.sequential.CriticTrainer` does). When the
        batch has ``"state_value"`` but no ``"state_value_normalized"`` (TorchRL's
        ``GAE(value_network=critic)`` writes only the former), it first writes the
        latter, ``normalize(state_value)`` with the statistics the values were
        denormalised with, so that the clipped loss sees the stored predictions.

        Reads ``"value_target"`` and ``"state_value"``; may write
        ``"state_value_normalized"`` into ``tensordict``.
        """
        if self.value_norm is None:
            return
        if tensordict.get(self.tensor_keys.value_normalized, None) is None:
            value = tensordict.get(self.tensor_keys.value, None)
            if value is not None:
                tensordict.set(self.tensor_keys.value_normalized, self.value_norm.normalize(value.detach()))
        self.value_norm.update(tensordict.get(self.tensor_keys.value_target))

    def _old_prediction(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The normalised prediction stored at collection time, for the clipped term."""
        old = tensordict.get(self.tensor_keys.value_normalized, None)
        if old is None and self.value_norm is None:
            # without a normaliser the return-unit value GAE stored is the same number
            old = tensordict.get(self.tensor_keys.value, None)
        if old is None:
            raise KeyError(
                f"clip_value={self.clip_value} needs the prediction stored at collection time under "
                f"{self.tensor_keys.value_normalized!r} (the critic writes it). With TorchRL's GAE, which keeps only "
                f"{self.tensor_keys.value!r}, call loss.update_value_norm(batch) once before the critic's epochs "
                "(CriticTrainer does): it recovers it. Or pass clip_value=None"
            )
        return old.detach()

    def _check_value_norm_updated(self) -> None:
        if self.value_norm is not None and float(self.value_norm.debiasing_term) == 0.0:
            raise ConfigError(
                "the critic's ValueNorm has never been updated, so its targets are normalised with placeholder "
                "statistics: train the critic with CriticTrainer, or call loss.update_value_norm(batch) once per "
                "iteration before the critic's epochs"
            )

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes ``"loss_critic"`` on ``tensordict`` (left unmodified)."""
        target = tensordict.get(self.tensor_keys.value_target)
        if target is None:
            raise KeyError(f"{self.tensor_keys.value_target!r} is missing: run the value estimator (GAE) first")
        if self.value_norm is not None:
            self._check_value_norm_updated()
            target = self.value_norm.normalize(target)
        prediction = self.network(tensordict.copy()).get(self._prediction_key)
        loss = self._distance(target - prediction)
        td_out = TensorDict({})
        if self.clip_value is not None:
            old = self._old_prediction(tensordict)
            clipped = old + (prediction - old).clamp(-self.clip_value, self.clip_value)
            loss = torch.maximum(loss, self._distance(target - clipped))
            with torch.no_grad():
                td_out.set("value_clip_fraction", ((prediction - old).abs() > self.clip_value).float().mean())
        td_out.set("loss_critic", self._reduce_loss(loss, tensordict))
        with torch.no_grad():
            residual = torch.var(target - prediction, correction=0)
            td_out.set("explained_variance", 1.0 - residual / torch.var(target, correction=0).clamp_min(1e-8))
        return td_out

    def make_value_estimator(
        self, value_type: ValueEstimators | ValueEstimatorBase | type[ValueEstimatorBase] | None = None, **hyperparams
    ) -> CentralValueLoss:
        """Sets the advantage estimator used by :meth:`compute_advantage` (TorchRL's contract).

        Args:
            value_type: ``ValueEstimators.GAE`` or ``None`` (default: GAE built
                here), ``ValueEstimators.MAGAE`` (TorchRL's
                :class:`~torchrl.objectives.value.MultiAgentGAE`: per-agent values
                ``[*B, n, 1]`` with team-level reward/done broadcast along the agents);
                a :class:`~torchrl.objectives.value.ValueEstimatorBase` instance,
                e.g. ``GAE(gamma=0.99, lmbda=0.95, value_network=critic)``
                (its ``value_network`` must be this loss's critic, or ``None``); or
                such a class, built with ``hyperparams``.
            **hyperparams: forwarded to the estimator's class; for GAE ``gamma``
                defaults to 0.99 and ``lmbda`` to 0.95 (the reference's), and
                ``value_network`` to ``None`` (:meth:`compute_advantage` runs the
                critic itself).

        Returns:
            ``self``, with ``value_estimator`` set; its keys follow this loss's
            (``set_keys``).

        Raises:
            ConfigError: another enum member, or an estimator whose
                ``value_network`` is not this loss's critic.

        Example:
            >>> from torchrl.objectives.value import GAE, ValueEstimatorBase
            >>> from harl_torchrl.modules import make_central_critic
            >>> critic = make_central_critic(["state"], 3)
            >>> loss = CentralValueLoss(critic).make_value_estimator(GAE(gamma=0.9, lmbda=0.9, value_network=critic))
            >>> loss.value_estimator.value_network is critic
            True
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, type) and issubclass(value_type, ValueEstimatorBase):
            hyperparams.setdefault("value_network", None)
            if value_type is GAE or issubclass(value_type, GAE):
                hyperparams.setdefault("gamma", 0.99)
                hyperparams.setdefault("lmbda", 0.95)
            estimator = value_type(**hyperparams)
        elif isinstance(value_type, ValueEstimatorBase):
            estimator = value_type
        elif value_type in (ValueEstimators.GAE, ValueEstimators.MAGAE):
            hyperparams.setdefault("gamma", 0.99)
            hyperparams.setdefault("lmbda", 0.95)
            # values are computed by compute_advantage (which also keeps the normalised ones)
            estimator_class = GAE if value_type == ValueEstimators.GAE else MultiAgentGAE
            estimator = estimator_class(value_network=None, **hyperparams)
        else:
            raise ConfigError(
                f"CentralValueLoss builds the GAE and MAGAE value estimators only, got {value_type}; pass an "
                "estimator instance "
                "(e.g. torchrl.objectives.value.GAE(..., value_network=critic)) or class instead"
            )
        if estimator.value_network is not None and estimator.value_network is not self.critic_network:
            raise ConfigError(
                f"the value estimator's value_network is not this loss's critic: advantages would come from another "
                f"network than the one trained here. Build it with value_network=critic (the module passed to "
                f"CentralValueLoss) or value_network=None; got {type(estimator.value_network).__name__}"
            )
        self._value_estimator = estimator
        self._forward_value_estimator_keys()
        self.value_type = type(estimator) if isinstance(value_type, (type, ValueEstimatorBase)) else value_type
        return self

    @torch.no_grad()
    def compute_advantage(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Writes values, ``"advantage"`` and ``"value_target"`` into ``tensordict`` (in place).

        Runs the critic on ``tensordict`` and ``tensordict["next"]`` (writing
        ``"state_value_normalized"`` and ``"state_value"`` in both), then the value
        estimator; an estimator built with ``value_network=critic`` runs the
        critic itself instead (``"state_value_normalized"`` is then recovered by
        :meth:`update_value_norm`). GAE bootstraps from the next state's value
        unless ``("next", "terminated")``: truncated episodes are bootstrapped.

        Args:
            tensordict: on-policy data ``[*B, T]`` with a time dimension last (as
                collectors return it) or named ``"time"``.

        Returns:
            ``tensordict``.
        """
        if self._value_estimator is None:
            self.make_value_estimator()
        if self._value_estimator.value_network is None:
            self.critic_network(tensordict)
            self.critic_network(tensordict.get("next"))
        return self._value_estimator(tensordict)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if self._value_estimator is not None:
            self._value_estimator.set_keys(
                advantage=self.tensor_keys.advantage,
                value_target=self.tensor_keys.value_target,
                value=self.tensor_keys.value,
                reward=self.tensor_keys.reward,
                done=self.tensor_keys.done,
                terminated=self.tensor_keys.terminated,
            )

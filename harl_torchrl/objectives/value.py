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
from torchrl.objectives.value import GAE

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.value_norm import ValueNorm


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

    The critic must be a two-step module as built by
    :func:`~harl_torchrl.modules.make_central_critic`: a network writing
    ``"state_value_normalized"`` followed by a denormaliser writing
    ``"state_value"`` (return units). :meth:`compute_advantage` runs the whole
    critic on the batch and its ``"next"`` states, then GAE, so advantages are
    computed from denormalised values and the normalised predictions are stored
    for the clipped loss.

    Reads ``"value_target"``, ``"state_value_normalized"`` (when clipping) and the
    critic's inputs. Writes ``"loss_critic"`` and the diagnostics
    ``"value_clip_fraction"`` and ``"explained_variance"``.

    Args:
        critic_network: the centralised critic (see above).
        value_norm: the :class:`~harl_torchrl.modules.ValueNorm` shared with the
            critic's denormaliser, or ``None``.
        clip_value: the clip range :math:`c` (reference: 0.2), or ``None``.
        loss_type: ``"huber"`` (default) or ``"mse"``.
        huber_delta: Huber threshold.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> from tensordict import TensorDict
        >>> from harl_torchrl.modules import make_central_critic
        >>> critic = make_central_critic(["state"], 3)
        >>> loss = CentralValueLoss(critic)
        >>> td = TensorDict({"state": torch.randn(6, 3), "value_target": torch.randn(6, 1)}, [6])
        >>> td["state_value_normalized"] = torch.zeros(6, 1)
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
        if reduction not in ("mean", "sum", "none"):
            raise ConfigError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        super().__init__()
        self.critic_network = critic_network
        self.value_norm = value_norm
        self.clip_value = clip_value
        self.loss_type = loss_type
        self.huber_delta = huber_delta
        self.reduction = reduction

    @property
    def network(self) -> torch.nn.Module:
        """The part of the critic that outputs the normalised prediction."""
        return self.critic_network[0]

    def _distance(self, error: torch.Tensor) -> torch.Tensor:
        if self.loss_type == "huber":
            return F.huber_loss(error, torch.zeros_like(error), delta=self.huber_delta, reduction="none")
        return error.pow(2)

    def update_value_norm(self, tensordict: TensorDictBase) -> None:
        """Moves the value normaliser towards this batch's value targets (no-op without one)."""
        if self.value_norm is not None:
            self.value_norm.update(tensordict.get(self.tensor_keys.value_target))

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes ``"loss_critic"`` on ``tensordict`` (left unmodified)."""
        target = tensordict.get(self.tensor_keys.value_target)
        if target is None:
            raise KeyError(f"{self.tensor_keys.value_target!r} is missing: run the value estimator (GAE) first")
        if self.value_norm is not None:
            target = self.value_norm.normalize(target)
        prediction = self.network(tensordict.copy()).get(self.tensor_keys.value_normalized)
        loss = self._distance(target - prediction)
        td_out = TensorDict({})
        if self.clip_value is not None:
            old = tensordict.get(self.tensor_keys.value_normalized, None)
            if old is None:
                raise KeyError(
                    f"clip_value={self.clip_value} needs the prediction stored at collection time under "
                    f"{self.tensor_keys.value_normalized!r} (the critic writes it); or pass clip_value=None"
                )
            clipped = old + (prediction - old).clamp(-self.clip_value, self.clip_value)
            loss = torch.maximum(loss, self._distance(target - clipped))
            with torch.no_grad():
                td_out.set("value_clip_fraction", ((prediction - old).abs() > self.clip_value).float().mean())
        td_out.set("loss_critic", self._reduce_loss(loss, tensordict))
        with torch.no_grad():
            residual = torch.var(target - prediction, correction=0)
            td_out.set("explained_variance", 1.0 - residual / torch.var(target, correction=0).clamp_min(1e-8))
        return td_out

    def make_value_estimator(self, value_type: ValueEstimators | None = None, **hyperparams) -> CentralValueLoss:
        """Builds the advantage estimator used by :meth:`compute_advantage`.

        Args:
            value_type: only ``ValueEstimators.GAE`` (the default) is supported.
            **hyperparams: forwarded to :class:`~torchrl.objectives.value.GAE`;
                ``gamma`` defaults to 0.99 and ``lmbda`` to 0.95 (the reference's).

        Returns:
            ``self``, with ``value_estimator`` set.
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if value_type != ValueEstimators.GAE:
            raise ConfigError(f"CentralValueLoss supports the GAE value estimator only, got {value_type}")
        hyperparams.setdefault("gamma", 0.99)
        hyperparams.setdefault("lmbda", 0.95)
        # values are computed by compute_advantage (which also keeps the normalised ones)
        self._value_estimator = GAE(value_network=None, **hyperparams)
        self._forward_value_estimator_keys()
        self.value_type = value_type
        return self

    @torch.no_grad()
    def compute_advantage(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Writes values, ``"advantage"`` and ``"value_target"`` into ``tensordict`` (in place).

        Runs the critic on ``tensordict`` and ``tensordict["next"]`` (writing
        ``"state_value_normalized"`` and ``"state_value"`` in both), then the value
        estimator. GAE bootstraps from the next state's value unless
        ``("next", "terminated")``: truncated episodes are bootstrapped.

        Args:
            tensordict: on-policy data ``[*B, T]`` with a time dimension last (as
                collectors return it) or named ``"time"``.

        Returns:
            ``tensordict``.
        """
        if self._value_estimator is None:
            self.make_value_estimator()
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

"""Entropy temperatures of HASAC / MASAC: one per agent, plus the critic's own."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Bounded, Categorical, MultiCategorical, TensorSpec, Unbounded
from torchrl.objectives import LossModule

from harl_torchrl.errors import ConfigError
from harl_torchrl.objectives.common import check_reduction, reduce

TargetEntropyMode = Literal["intended", "reference"]


def target_entropy(action_spec: TensorSpec, mode: TargetEntropyMode = "intended") -> float:
    r"""The default entropy target of one agent's soft policy.

    * Boxes: :math:`-\dim(A)` (the SAC heuristic).
    * Discrete: :math:`0.98 \log |A|`, just under the maximum entropy :math:`\log |A|`;
      multi-discrete: the sum over heads of :math:`0.98 \log n_k`.

    ``mode="reference"`` reproduces the reference HASAC instead, whose discrete target
    is :math:`-0.98 \log(1 / \prod \mathrm{shape})` with the gym ``Discrete`` shape
    ``()``: it evaluates to 0 (and for ``MultiDiscrete`` to
    :math:`0.98 \log(\text{number of heads})`), which is almost certainly unintended
    (the comment next to it says "the max possible entropy"). For a box with half-ranges
    :math:`h_k` it gives :math:`-\dim(A) + \sum_k \log h_k`: our soft actors' log-probability
    is that of the action in the box (TorchRL's ``TanhNormal`` on ``[low, high]``, which
    includes the :math:`-\sum_k \log h_k` of the scaling), while the reference measures it
    before the scaling (on the tanh output in :math:`[-1, 1]`), so the same :math:`-\dim(A)`
    asks for different policies unless the box is :math:`[-1, 1]`. On MPE's
    :math:`[0, 1]` boxes (:math:`h = 0.5`, 5 dimensions) the intended target is -5, the
    reference's -8.47 in our units: the intended one keeps more entropy.

    Args:
        action_spec: the agent's (unbatched) action spec.
        mode: ``"intended"`` (default) or ``"reference"``.

    Raises:
        ConfigError: an unknown mode or an unsupported spec.

    Example:
        >>> round(target_entropy(Categorical(n=5)), 4)
        1.5772
        >>> target_entropy(Categorical(n=5), mode="reference")
        0.0
        >>> target_entropy(Bounded(-1.0, 1.0, shape=(3,)))
        -3.0
        >>> round(target_entropy(Bounded(0.0, 1.0, shape=(5,)), mode="reference"), 2)
        -8.47
    """
    if mode not in ("intended", "reference"):
        raise ConfigError(f"target_entropy mode must be 'intended' or 'reference', got {mode!r}")
    if isinstance(action_spec, Bounded) and mode == "reference":
        low, high = (
            bound.reshape(-1, action_spec.shape[-1])[0].double()
            for bound in (action_spec.space.low, action_spec.space.high)
        )
        return -float(action_spec.shape[-1]) + float(torch.log((high - low) / 2).sum())
    if isinstance(action_spec, (Bounded, Unbounded)):
        return -float(action_spec.shape[-1])
    if isinstance(action_spec, MultiCategorical):
        nvec = [int(n) for n in action_spec.nvec.reshape(-1, action_spec.nvec.shape[-1])[0]]
        if mode == "reference":
            return 0.98 * math.log(len(nvec))
        return 0.98 * sum(math.log(n) for n in nvec)
    if isinstance(action_spec, Categorical):
        return 0.0 if mode == "reference" else 0.98 * math.log(action_spec.space.n)
    raise ConfigError(
        f"no target entropy for an action spec of type {type(action_spec).__name__}; pass target_entropy explicitly"
    )


class TemperatureLoss(LossModule):
    r"""Auto-tuned entropy temperature :math:`\alpha = e^{\log\alpha}` of one soft policy.

    .. math::
        L(\log\alpha) = -\,\mathrm{mean}\Big[\log\alpha \cdot
            \big(\textstyle\sum_{k} \log\pi_k(a_k) + \bar H\big)\Big]_{\text{detached log-probs}}

    Gradient descent raises :math:`\alpha` when the policy's entropy
    :math:`-\mathbb E\log\pi` is below the target :math:`\bar H` and lowers it when above.
    The sum runs over ``log_prob_keys``: one agent's key for that agent's temperature
    (HASAC's :math:`\alpha_i`), every agent's key with :math:`\bar H = \sum_i \bar H_i` for
    the critic's own temperature, which weighs the joint entropy in the soft TD target
    (as in the reference HASAC). Each instance owns one ``log_alpha`` leaf: give each its
    own optimiser, or one Adam over all of them (Adam's state is per parameter).

    Where ours differs from TorchRL's :class:`~torchrl.objectives.SACLoss`: there the
    temperature lives inside the single actor/critic loss (one alpha, one action key);
    here it is its own loss, so HASAC can keep one per agent plus the critic's and step
    each at its place in the sequential scheme.

    Keys (``set_keys`` remaps ``log_prob``; ``log_prob_keys`` overrides for several):
        * ``log_prob``: the (fresh) log-probability of the agent's action, ``[*B]`` or
          ``[*B, 1]``; default ``(agent, "action_log_prob")``.

    Outputs: ``loss_alpha``; diagnostics (detached) ``alpha``, ``entropy`` (the estimate
    :math:`-\mathrm{mean}\sum_k\log\pi_k`) and ``target_entropy``.

    Args:
        target_entropy: :math:`\bar H` (see :func:`target_entropy`).
        agent: prefix of the default ``log_prob`` key (``None``: the root key
            ``"action_log_prob"``).
        log_prob_keys: several keys whose log-probabilities are summed (the critic's
            temperature); overrides ``agent``.
        alpha_init: initial :math:`\alpha` (the reference: 1).
        fixed: keep :math:`\alpha` constant (``auto_alpha: false``); ``loss_alpha`` is then 0.
        min_alpha: optional lower clamp of :math:`\alpha` when read (``None``: none).
        reduction: ``"mean"`` (default) or ``"sum"`` over the batch.

    Example:
        >>> loss = TemperatureLoss(target_entropy=-1.0, agent="a")
        >>> td = TensorDict({("a", "action_log_prob"): torch.full((4,), 2.0)}, [4])  # entropy -2 < -1
        >>> out = loss(td)
        >>> out["loss_alpha"].backward()
        >>> bool(loss.log_alpha.grad < 0)  # descent raises alpha
        True
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable input keys (see the class docstring)."""

        log_prob: NestedKey = "action_log_prob"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        target_entropy: float,
        *,
        agent: str | None = None,
        log_prob_keys: Sequence[NestedKey] | None = None,
        alpha_init: float = 1.0,
        fixed: bool = False,
        min_alpha: float | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if alpha_init <= 0:
            raise ConfigError(f"alpha_init must be > 0, got {alpha_init}; the temperature is exp(log_alpha)")
        check_reduction(reduction, ("mean", "sum"), loss="the temperature loss")
        self.reduction = reduction
        self.target_entropy = float(target_entropy)
        self.fixed = fixed
        self.min_alpha = min_alpha
        log_alpha = torch.tensor(math.log(alpha_init))
        if fixed:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.log_alpha = nn.Parameter(log_alpha)
        if agent is not None:
            self.set_keys(log_prob=(agent, "action_log_prob"))
        self._log_prob_keys = list(log_prob_keys) if log_prob_keys is not None else None

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def log_prob_keys(self) -> list[NestedKey]:
        """The keys whose log-probabilities are summed."""
        return self._log_prob_keys if self._log_prob_keys is not None else [self.tensor_keys.log_prob]

    @property
    def in_keys(self) -> list[NestedKey]:
        return self.log_prob_keys

    @property
    def alpha(self) -> torch.Tensor:
        """The current temperature, detached (what the actor and TD losses use)."""
        alpha = self.log_alpha.detach().exp()
        return alpha if self.min_alpha is None else alpha.clamp_min(self.min_alpha)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes ``loss_alpha`` from detached log-probabilities (the input is not modified)."""
        log_prob = sum(_flat(tensordict.get(key)) for key in self.log_prob_keys).detach()
        residual = log_prob + self.target_entropy
        per_sample = -self.log_alpha * residual
        if self.fixed:
            per_sample = per_sample * 0.0
        loss = reduce(per_sample, self.reduction)
        return TensorDict(
            {
                "loss_alpha": loss,
                "alpha": self.alpha,
                "entropy": -log_prob.mean(),
                "target_entropy": torch.tensor(self.target_entropy),
            },
            batch_size=[],
        )


def _flat(log_prob: torch.Tensor) -> torch.Tensor:
    """``[*B, 1]`` -> ``[*B]`` (log-probabilities come either way)."""
    return log_prob.squeeze(-1) if log_prob.dim() > 0 and log_prob.shape[-1] == 1 else log_prob


class TemperatureStep:
    r"""One optimiser step of a :class:`TemperatureLoss`, as a hook for the sequential actor step.

    ``step(out)`` reads ``out[log_prob_key]`` (the actor loss's detached batch-mean
    log-probability; with ``reduction="mean"`` the temperature loss is linear in it, so
    the mean gives the same gradient as the per-sample values) and steps ``log_alpha``.
    Pass it as ``ActorTrainer(after_step=TemperatureStep(...))`` for an agent's
    temperature (the reference updates :math:`\alpha_i` right after agent :math:`i`'s
    actor step). For the critic's temperature call :meth:`update` with the sum over agents
    of their batch-mean log-probabilities after the actor step.

    Args:
        loss: the temperature loss.
        optimizer: its optimiser (default: Adam over ``loss.log_alpha``, lr ``lr``).
        lr: learning rate of the default optimiser (the reference's ``alpha_lr``: 3e-4).
        log_prob_key: entry of ``out`` holding the mean log-probability.

    Example:
        >>> step = TemperatureStep(TemperatureLoss(target_entropy=0.0), lr=0.1)
        >>> out = step(TensorDict({"log_prob": torch.tensor(1.0)}, []))  # entropy -1 below 0: alpha rises
        >>> bool(out["alpha"] > 1.0)
        True
    """

    def __init__(
        self,
        loss: TemperatureLoss,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        lr: float = 3e-4,
        log_prob_key: NestedKey = "log_prob",
    ) -> None:
        self.loss = loss
        self.log_prob_key = log_prob_key
        if optimizer is None and not loss.fixed:
            optimizer = torch.optim.Adam([loss.log_alpha], lr=lr)
        self.optimizer = optimizer

    def update(self, log_prob: torch.Tensor) -> TensorDict:
        """Steps ``log_alpha`` on the given (detached) log-probabilities; returns ``alpha`` and ``loss_alpha``."""
        residual = log_prob.detach() + self.loss.target_entropy
        loss_alpha = -(self.loss.log_alpha * residual).mean()
        if self.optimizer is not None and not self.loss.fixed:
            self.optimizer.zero_grad()
            loss_alpha.backward()
            self.optimizer.step()
        return TensorDict({"alpha": self.loss.alpha, "loss_alpha": loss_alpha.detach()}, batch_size=[])

    def __call__(self, out: TensorDictBase) -> TensorDict:
        return self.update(out.get(self.log_prob_key))

    def state_dict(self) -> dict:
        """``log_alpha`` and the optimiser's state (for checkpoints)."""
        state = {"loss": self.loss.state_dict()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.loss.load_state_dict(state["loss"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])

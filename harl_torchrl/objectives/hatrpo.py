"""HATRPO: the factor-weighted surrogate and the mean KL of one agent's policy."""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential
from torch import distributions as D

from harl_torchrl.errors import ConfigError, unknown_choice
from harl_torchrl.objectives.haa2c import HAA2CLoss

KL_TYPES = ("exact", "reference_logits")


def reference_logit_kl(old: D.Categorical, new: D.Categorical) -> torch.Tensor:
    r"""The reference implementation's "KL" for categorical policies.

    :math:`\sum_k \big(e^{\ell'_k - \ell_k} - 1 - (\ell'_k - \ell_k)\big)` over the
    normalised log-probabilities :math:`\ell` (old) and :math:`\ell'` (new): a
    per-logit, *unweighted* surrogate. It is zero at equality and has a Hessian there,
    but it is not the KL divergence (every action counts equally, whatever its
    probability). Offered for comparison with published HATRPO results only.
    """
    delta = new.logits - old.logits
    # masked logits are equal in both (both are the dtype's minimum): delta is 0 there
    return (delta.exp() - 1 - delta).sum(-1)


class HATRPOLoss(HAA2CLoss):
    r"""The HATRPO surrogate and trust-region constraint for one agent (one group).

    Agent :math:`i_m` solves (Zhong, Kuba et al., 2024, eq. 7)

    .. math::

        \max_\theta\ \mathbb{E}\big[M\, r_\theta\, A\big]
        \quad \text{s.t.}\quad
        \mathbb{E}_s\big[\mathrm{KL}(\pi_{old}(\cdot|s)\,\|\,\pi_\theta(\cdot|s))\big] \le \delta,

    approximately, by one natural-gradient step
    (:func:`~harl_torchrl.trust_region.trust_region_step`, run by
    :class:`~harl_torchrl.sequential.TrustRegionTrainer`). This module provides the
    two functions that step needs, :meth:`surrogate` and :meth:`mean_kl`, and as a
    :class:`~torchrl.objectives.LossModule` its ``forward`` returns
    ``"loss_objective"`` (:math:`-\mathrm{mean}(M r A)`) and the diagnostic ``"kl"``.

    The old policy is rebuilt from the distribution parameters stored at collection
    time (``(agent, "loc")``/``(agent, "scale")`` or ``(agent, "logits")``, and the
    action mask if any), so no copy of the old network is kept. The KL is the exact
    KL of the policy's distribution (Gaussian: analytic; categorical: analytic,
    masked actions contributing nothing; multi-discrete: the sum over heads);
    ``kl_type="reference_logits"`` uses the reference implementation's per-logit
    surrogate for categorical policies instead (see :func:`reference_logit_kl`).

    Args:
        actor_network: the agent's probabilistic actor.
        kl_type: ``"exact"`` (default) or ``"reference_logits"``.
        entropy_coeff: weight of an entropy bonus in the surrogate (reference: 0).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        normalize_advantage: refused if ``True`` (see :class:`HAPolicyLoss`).

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules import make_agent_actor
        >>> actor = make_agent_actor("a", 4, Bounded(-1.0, 1.0, shape=(2,)))
        >>> with torch.no_grad():
        ...     td = actor(TensorDict({("a", "observation"): torch.randn(8, 4)}, [8]))
        >>> td["advantage"], td["factor"] = torch.randn(8, 1), torch.ones(8, 1)
        >>> loss = HATRPOLoss(actor)
        >>> loss.mean_kl(td).detach().item()  # the policy has not moved yet
        0.0
    """

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        *,
        kl_type: str = "exact",
        entropy_coeff: float = 0.0,
        reduction: str = "mean",
        normalize_advantage: bool = False,
    ) -> None:
        if kl_type not in KL_TYPES:
            raise unknown_choice("kl_type", kl_type, KL_TYPES)
        dist_class = getattr(actor_network.module[-1], "distribution_class", None)
        if kl_type == "reference_logits" and not (isinstance(dist_class, type) and issubclass(dist_class, D.Categorical)):
            raise ConfigError(
                f"kl_type='reference_logits' is the reference implementation's surrogate for categorical policies; "
                f"this actor's distribution is {getattr(dist_class, '__name__', dist_class)}. Use kl_type='exact'."
            )
        super().__init__(
            actor_network, entropy_coeff=entropy_coeff, reduction=reduction, normalize_advantage=normalize_advantage
        )
        self.kl_type = kl_type

    def old_distribution(self, tensordict: TensorDictBase) -> D.Distribution:
        """The behaviour policy, rebuilt from the distribution parameters stored in ``tensordict``."""
        return self.actor_network.module[-1].get_dist(tensordict.copy())

    def kl(self, old: D.Distribution, new: D.Distribution) -> torch.Tensor:
        """Per-sample ``KL(old || new)`` of this agent's policy, shape ``[*B]``."""
        if self.kl_type == "reference_logits" and isinstance(new, D.Categorical):
            return reference_logit_kl(old, new)
        return D.kl_divergence(old, new)

    def mean_kl(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Mean over the batch of ``KL(pi_old || pi_theta)`` (differentiable in theta)."""
        with torch.no_grad():
            old = self.old_distribution(tensordict)
        return self.kl(old, self.distribution(tensordict)).mean()

    def surrogate(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``mean(M r A)`` (plus the entropy bonus if any): what the trust-region step maximises."""
        advantage, factor, prev_log_prob = self._inputs(tensordict)
        log_ratio, dist = self._log_ratio(tensordict, prev_log_prob)
        value = (log_ratio.exp() * factor * advantage).mean()
        if float(self.entropy_coeff) != 0.0:
            value = value + self.entropy_coeff * dist.entropy().mean()
        return value

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """HAA2C's outputs plus the detached mean KL ``"kl"``."""
        td_out = super().forward(tensordict)
        with torch.no_grad():
            td_out.set("kl", self.mean_kl(tensordict))
        return td_out

"""HATRPO: the factor-weighted surrogate and the mean KL of one agent's policy."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.autograd.forward_ad as fwAD
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential
from torch import distributions as D
from torch.func import functional_call

from harl_torchrl.errors import ConfigError, unknown_choice
from harl_torchrl.modules.distributions import MaskedMultiCategorical
from harl_torchrl.modules.recurrent import is_recurrent
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
        if kl_type == "reference_logits" and not (
            isinstance(dist_class, type) and issubclass(dist_class, D.Categorical)
        ):
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
        return self.select_agent(self.kl(old, self.distribution(tensordict))).mean()

    def fisher_product(self, tensordict: TensorDictBase) -> Callable[[torch.Tensor], torch.Tensor] | None:
        r"""A cheap exact Fisher-vector product at the current (= old) parameters, if available.

        At :math:`\theta = \theta_{old}` the Hessian of the mean KL equals its
        Gauss-Newton form :math:`\frac1N \sum_i J_i^\top F_i J_i`, where :math:`J_i`
        is the Jacobian of sample :math:`i`'s distribution parameters w.r.t.
        :math:`\theta` and :math:`F_i` the KL's Hessian w.r.t. those parameters
        (Gaussian ``(loc, scale)``: :math:`\mathrm{diag}(1/\sigma^2, 2/\sigma^2)`;
        categorical logits: :math:`\mathrm{diag}(p) - pp^\top`, zero on masked
        actions). :math:`Jv` is one forward-mode pass and :math:`J^\top(\cdot)` one
        backward pass, several times cheaper than differentiating the KL twice.

        Returns:
            ``v -> H v`` (no damping) over ``self.actor_network.parameters()`` in order,
            or ``None`` where it does not apply (recurrent actors, the reference's
            per-logit KL, other distributions, an agent of a stacked group): the caller
            then differentiates :meth:`mean_kl` twice.
        """
        prob = self.actor_network.module[-1]
        dist_class = prob.distribution_class
        gaussian = isinstance(dist_class, type) and issubclass(dist_class, D.Independent)
        categorical = isinstance(dist_class, type) and issubclass(dist_class, (D.Categorical, MaskedMultiCategorical))
        stacked = self.agent_index is not None  # agent k of a stack: its own views, not module[0]'s parameters
        if self.kl_type != "exact" or stacked or is_recurrent(self.actor_network) or not (gaussian or categorical):
            return None
        net = self.actor_network.module[0]
        names, params = zip(*net.named_parameters(), strict=True)
        buffers = dict(net.named_buffers())
        out = net(tensordict.copy())
        outputs = [out.get(key) for key in net.out_keys]
        samples = outputs[0].shape[:-1].numel()
        with torch.no_grad():
            old = self.old_distribution(out)

        def metric(tangents: list[torch.Tensor]) -> list[torch.Tensor]:
            if gaussian:
                variance = old.base_dist.scale**2
                return [tangents[0] / variance, 2 * tangents[1] / variance]
            heads = old.heads if isinstance(old, MaskedMultiCategorical) else [old]
            parts = tangents[0].split([h.probs.shape[-1] for h in heads], dim=-1)
            return [
                torch.cat(
                    [h.probs * (t - (h.probs * t).sum(-1, keepdim=True)) for h, t in zip(heads, parts, strict=True)], -1
                )
            ]

        def product(vector: torch.Tensor) -> torch.Tensor:
            chunks = vector.detach().split([p.numel() for p in params])
            with fwAD.dual_level():
                duals = {
                    n: fwAD.make_dual(p.detach(), c.view_as(p)) for n, p, c in zip(names, params, chunks, strict=True)
                }
                dual_out = functional_call(net, {**duals, **buffers}, (tensordict.copy(),))
                tangents = [fwAD.unpack_dual(dual_out.get(key)).tangent for key in net.out_keys]
            tangents = [torch.zeros_like(o) if t is None else t for t, o in zip(tangents, outputs, strict=True)]
            grads = torch.autograd.grad(
                outputs, params, grad_outputs=metric(tangents), retain_graph=True, allow_unused=True
            )
            return (
                torch.cat(
                    [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
                )
                / samples
            )

        return product

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

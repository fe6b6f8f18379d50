"""HAPPO: the clipped surrogate of one agent, weighted by the sequential factor."""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential

from harl_torchrl.errors import require_positive
from harl_torchrl.objectives.common import HAPolicyLoss


class HAPPOLoss(HAPolicyLoss):
    r"""The HAPPO objective for one agent (one group).

    Agent :math:`i_m` maximises (Zhong, Kuba et al., 2024, Sec. 3.2)

    .. math::

        \mathbb{E}\Big[\min\big(r\, M A,\ \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)\, M A\big)\Big]

    so the loss written to ``"loss_objective"`` is
    :math:`-\mathrm{mean}\big(M \cdot \min(rA, \mathrm{clip}(r)A)\big)` (``M > 0``
    makes the two forms equal), where :math:`r` is the agent's joint ratio,
    :math:`A` the joint advantage and :math:`M` the detached factor of the agents
    updated before it in this iteration (see :class:`HAPolicyLoss`). With
    :math:`M = 1` this is exactly TorchRL's
    :class:`~torchrl.objectives.ClipPPOLoss` objective.

    Reads ``"advantage"``, ``"factor"``, the agent's observation, ``action`` and
    ``action_log_prob`` (all remappable with :meth:`set_keys`). Writes
    ``"loss_objective"``, ``"loss_entropy"`` (if ``entropy_coeff > 0``) and the
    detached diagnostics ``"entropy"``, ``"clip_fraction"``, ``"kl_approx"``,
    ``"ESS"``, ``"ratio_mean"``, ``"ratio_max"``, ``"factor_mean"``,
    ``"factor_min"``, ``"factor_max"``.

    Args:
        actor_network: the agent's probabilistic actor.
        clip_epsilon: :math:`\epsilon` (reference: 0.2).
        entropy_coeff: weight of the entropy bonus (reference: 0.01).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        normalize_advantage: refused if ``True`` (see :class:`HAPolicyLoss`).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded
        >>> from harl_torchrl.modules import make_agent_actor
        >>> actor = make_agent_actor("agent_0", 4, Bounded(-1.0, 1.0, shape=(2,)))
        >>> with torch.no_grad():  # collection: stored log-probabilities carry no graph
        ...     td = actor(TensorDict({("agent_0", "observation"): torch.randn(8, 4)}, [8]))
        >>> td["advantage"] = torch.randn(8, 1)
        >>> td["factor"] = torch.ones(8, 1)
        >>> loss = HAPPOLoss(actor)
        >>> out = loss(td)
        >>> (out["loss_objective"] + out["loss_entropy"]).backward()
    """

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        *,
        clip_epsilon: float = 0.2,
        entropy_coeff: float = 0.01,
        reduction: str = "mean",
        normalize_advantage: bool = False,
    ) -> None:
        require_positive("clip_epsilon", clip_epsilon)
        super().__init__(
            actor_network, entropy_coeff=entropy_coeff, reduction=reduction, normalize_advantage=normalize_advantage
        )
        self.register_buffer("clip_epsilon", torch.tensor(float(clip_epsilon)))

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes the loss terms and diagnostics on ``tensordict`` (left unmodified)."""
        advantage, factor, prev_log_prob = self._inputs(tensordict)
        log_ratio, dist = self._log_ratio(tensordict, prev_log_prob)
        ratio = log_ratio.exp()
        clipped = ratio.clamp(1.0 - self.clip_epsilon, 1.0 + self.clip_epsilon)
        weighted_advantage = factor * advantage
        gain = torch.minimum(ratio * weighted_advantage, clipped * weighted_advantage)
        td_out = TensorDict({"loss_objective": self._reduce_loss(-gain, tensordict)})
        with torch.no_grad():
            td_out.set("clip_fraction", ((ratio - 1.0).abs() > self.clip_epsilon).float().mean())
        self._entropy_terms(dist, td_out, tensordict)
        self._ratio_diagnostics(log_ratio, factor, td_out)
        return td_out

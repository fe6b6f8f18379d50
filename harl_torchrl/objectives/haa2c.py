"""HAA2C: the unclipped, factor-weighted importance-sampling surrogate of one agent."""

from __future__ import annotations

from tensordict import TensorDict, TensorDictBase

from harl_torchrl.objectives.common import HAPolicyLoss


class HAA2CLoss(HAPolicyLoss):
    r"""The HAA2C objective for one agent (one group).

    Agent :math:`i_m` maximises :math:`\mathbb{E}[M\, r\, A]` with several epochs of
    gradient steps (Zhong, Kuba et al., 2024, Sec. 3.5: HAML with a zero drift
    term). The loss written to ``"loss_objective"`` is :math:`-\mathrm{mean}(M r A)`;
    there is no clipping, so keep epochs and learning rate moderate.

    Reads and writes the same keys as :class:`~harl_torchrl.objectives.HAPPOLoss`
    (without ``"clip_fraction"``).

    Args:
        actor_network: the agent's probabilistic actor.
        entropy_coeff: weight of the entropy bonus (reference: 0.01).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        normalize_advantage: refused if ``True`` (see :class:`HAPolicyLoss`).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Categorical
        >>> from harl_torchrl.modules import make_agent_actor
        >>> actor = make_agent_actor("a", 4, Categorical(3))
        >>> with torch.no_grad():
        ...     td = actor(TensorDict({("a", "observation"): torch.randn(8, 4)}, [8]))
        >>> td["advantage"], td["factor"] = torch.randn(8, 1), torch.ones(8, 1)
        >>> HAA2CLoss(actor)(td)["loss_objective"].shape
        torch.Size([])
    """

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Computes the loss terms and diagnostics on ``tensordict`` (left unmodified)."""
        advantage, factor, prev_log_prob = self._inputs(tensordict)
        log_ratio, dist = self._log_ratio(tensordict, prev_log_prob)
        gain = log_ratio.exp() * factor * advantage
        td_out = TensorDict({"loss_objective": self._reduce_loss(-gain, tensordict)})
        self._entropy_terms(dist, td_out, tensordict)
        self._ratio_diagnostics(log_ratio, factor, td_out)
        return td_out

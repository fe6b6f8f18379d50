"""Action distributions used by the per-agent actors."""

from __future__ import annotations

import torch
from torch import distributions as D


class MaskedCategorical(D.Categorical):
    """A categorical distribution over actions with an optional availability mask.

    Unavailable actions get a logit of ``finfo.min``: probability exactly zero, a
    finite log-probability, and zero contribution to the entropy and the KL.

    Args:
        logits: unnormalised log-probabilities ``[..., n]``.
        mask: boolean ``[..., n]``, ``True`` where the action is available; ``None``
            for all available.

    Example:
        >>> dist = MaskedCategorical(torch.zeros(3), mask=torch.tensor([True, False, True]))
        >>> dist.probs
        tensor([0.5000, 0.0000, 0.5000])
    """

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor | None = None, validate_args: bool | None = None):
        if mask is not None:
            logits = logits.masked_fill(~mask.bool(), torch.finfo(logits.dtype).min)
        self.mask = mask
        super().__init__(logits=logits, validate_args=validate_args)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """The most probable available action (used in deterministic evaluation)."""
        return self.probs.argmax(-1)

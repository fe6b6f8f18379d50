"""Action distributions of the per-agent actors, with optional availability masks."""

from __future__ import annotations

from collections.abc import Sequence

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


class MaskedMultiCategorical(D.Distribution):
    """Independent categorical heads (a multi-discrete action), each optionally masked.

    The action is ``[..., n_heads]`` (one index per head); its log-probability,
    entropy and KL are the sums over heads.

    Args:
        logits: ``[..., sum(nvec)]``, the heads' logits concatenated.
        nvec: number of choices of each head.
        mask: boolean ``[..., sum(nvec)]`` availability, concatenated like the
            logits, or ``None``.

    Example:
        >>> dist = MaskedMultiCategorical(torch.zeros(5), nvec=[2, 3])
        >>> dist.sample().shape, round(dist.entropy().item(), 4)
        (torch.Size([2]), 1.7918)
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        nvec: Sequence[int],
        mask: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.nvec = [int(n) for n in nvec]
        logit_heads = logits.split(self.nvec, dim=-1)
        mask_heads = mask.split(self.nvec, dim=-1) if mask is not None else [None] * len(self.nvec)
        self.heads = [MaskedCategorical(lg, m) for lg, m in zip(logit_heads, mask_heads, strict=True)]
        super().__init__(
            batch_shape=logits.shape[:-1], event_shape=torch.Size([len(self.nvec)]), validate_args=validate_args
        )

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """One index per head, ``[*sample_shape, *batch, n_heads]``."""
        return torch.stack([head.sample(torch.Size(sample_shape)) for head in self.heads], dim=-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over heads of each head's log-probability."""
        return sum(head.log_prob(value[..., i]) for i, head in enumerate(self.heads))

    def entropy(self) -> torch.Tensor:
        """Sum over heads of each head's entropy."""
        return sum(head.entropy() for head in self.heads)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """The most probable available choice of each head."""
        return torch.stack([head.deterministic_sample for head in self.heads], dim=-1)

    @property
    def mode(self) -> torch.Tensor:
        """Same as :attr:`deterministic_sample`."""
        return self.deterministic_sample


@D.register_kl(MaskedMultiCategorical, MaskedMultiCategorical)
def _kl_multi_categorical(p: MaskedMultiCategorical, q: MaskedMultiCategorical) -> torch.Tensor:
    return sum(D.kl_divergence(a, b) for a, b in zip(p.heads, q.heads, strict=True))

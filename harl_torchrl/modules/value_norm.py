"""Running value normalisation with the reference implementation's semantics."""

from __future__ import annotations

import torch
from torch import nn


class ValueNorm(nn.Module):
    r"""Debiased exponential running mean and variance of value targets.

    The critic is trained to predict *normalised* values; they are denormalised
    before GAE. With running estimates (decay :math:`\beta`, debiasing term
    :math:`d`):

    .. math::

        \mu = \frac{m_1}{\max(d, \epsilon)}, \qquad
        \sigma^2 = \max\Big(\frac{m_2}{\max(d, \epsilon)} - \mu^2,\ 10^{-2}\Big),

    ``normalize(x) = (x - mu) / sigma`` and ``denormalize(y) = y * sigma + mu``.
    ``update(x)`` moves :math:`m_1, m_2, d` towards the batch mean of
    :math:`x, x^2, 1` with weight :math:`1 - \beta`. Unlike TorchRL's
    ``MAPPOLoss(value_norm=...)``, which only rescales the loss, this changes what
    the critic predicts.

    Args:
        shape: trailing shape of the values (``1`` for a scalar value).
        beta: decay of the running averages (reference: 0.99999).
        epsilon: floor of the debiasing term.
        var_floor: floor of the variance.

    Example:
        >>> norm = ValueNorm()
        >>> norm.update(torch.tensor([[1.0], [3.0]]))
        >>> norm.denormalize(norm.normalize(torch.tensor([[2.0]])))
        tensor([[2.]])
    """

    def __init__(self, shape: int = 1, beta: float = 0.99999, epsilon: float = 1e-5, var_floor: float = 1e-2) -> None:
        super().__init__()
        self.beta = beta
        self.epsilon = epsilon
        self.var_floor = var_floor
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_mean_sq", torch.zeros(shape))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The debiased mean and variance."""
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean**2).clamp(min=self.var_floor)
        return mean, var

    @torch.no_grad()
    def update(self, values: torch.Tensor) -> None:
        """Moves the running statistics towards the batch of ``values`` ``[..., shape]``."""
        flat = values.reshape(-1, self.running_mean.shape[-1]).to(self.running_mean.dtype)
        self.running_mean.mul_(self.beta).add_(flat.mean(0), alpha=1 - self.beta)
        self.running_mean_sq.mul_(self.beta).add_((flat**2).mean(0), alpha=1 - self.beta)
        self.debiasing_term.mul_(self.beta).add_(1 - self.beta)

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        """``(values - mean) / std`` with the current statistics."""
        mean, var = self.mean_var()
        return (values - mean) / var.sqrt()

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        """``values * std + mean`` with the current statistics."""
        mean, var = self.mean_var()
        return values * var.sqrt() + mean

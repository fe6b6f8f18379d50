r"""The natural-gradient step of HATRPO, as small pure functions.

For one agent with parameters :math:`\theta`, a surrogate :math:`L(\theta)` to
maximise and the mean KL divergence :math:`\bar D(\theta) =
\mathbb{E}_s[\mathrm{KL}(\pi_{\theta_{old}}(\cdot|s) \| \pi_\theta(\cdot|s))]`:

1. :math:`g = \nabla_\theta L` at :math:`\theta_{old}`;
2. :math:`s \approx H^{-1} g` by conjugate gradient, where
   :math:`H = \nabla^2_\theta \bar D + \lambda I` (Fisher matrix plus damping
   :math:`\lambda`) is only used through Hessian-vector products;
3. the full step :math:`\Delta = \sqrt{2\delta / s^\top H s}\; s`, for which the
   quadratic model of the KL, :math:`\tfrac12 \Delta^\top H \Delta`, equals
   :math:`\delta`;
4. a backtracking line search over :math:`\theta_{old} + \beta^j \Delta`,
   :math:`j = 0, 1, \dots`, accepting the first step whose measured KL is at most
   :math:`\delta`, whose improvement :math:`L(\theta) - L(\theta_{old})` is positive
   and at least ``accept_ratio`` times the expected (linear) improvement
   :math:`\beta^j g^\top \Delta`. If none is accepted, :math:`\theta_{old}` is
   restored exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from harl_torchrl.errors import ConfigError, require_positive


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenates tensors into one vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def flat_grad(output: torch.Tensor, params: Sequence[nn.Parameter], **kwargs) -> torch.Tensor:
    """The gradient of a scalar ``output`` w.r.t. ``params`` as one vector (zeros where unused)."""
    grads = torch.autograd.grad(output, params, allow_unused=True, **kwargs)
    return flat([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)])


@torch.no_grad()
def set_flat(params: Sequence[nn.Parameter], vector: torch.Tensor) -> None:
    """Writes the vector back into ``params`` (in place)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.copy_(vector[offset : offset + n].view_as(p))
        offset += n


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iterations: int = 10,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Solves ``A x = b`` for symmetric positive-definite ``A`` given only ``x -> A x``.

    Args:
        matvec: the product with ``A``.
        b: right-hand side.
        iterations: at most this many CG iterations (reference HATRPO: 10).
        residual_tol: stop once the squared residual norm is below this.

    Returns:
        The approximate solution.

    Example:
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> x = conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0]))
        >>> torch.allclose(A @ x, torch.tensor([1.0, 2.0]))
        True
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r.dot(r)
    for _ in range(iterations):
        if rr < residual_tol:
            break
        Ap = matvec(p)
        alpha = rr / p.dot(Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r.dot(r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(
    kl: torch.Tensor, params: Sequence[nn.Parameter], damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> (H + damping * I) v`` with ``H`` the Hessian of the scalar ``kl`` w.r.t. ``params``.

    ``kl`` must be the mean KL from the old (fixed) policy to the current one,
    evaluated at the current parameters with a graph; at the old parameters its
    Hessian is the Fisher information matrix. The first derivative is taken once
    and reused for every product.
    """
    grad = flat_grad(kl, params, create_graph=True)

    def product(vector: torch.Tensor) -> torch.Tensor:
        hvp = flat_grad(grad.dot(vector.detach()), params, retain_graph=True)
        return hvp + damping * vector

    return product


@dataclass(frozen=True)
class TrustRegionSettings:
    r"""The knobs of :func:`trust_region_step`, checked on construction.

    Attributes:
        max_kl: the trust region :math:`\delta` (reference: 0.01).
        cg_iterations: conjugate-gradient iterations (reference: 10).
        damping: :math:`\lambda` added to the Fisher matrix (reference: 0.1).
        line_search_steps: candidate steps tried (reference: 10).
        shrink: :math:`\beta`, step shrink factor per try (reference: 0.8).
        accept_ratio: minimum actual/expected improvement (reference: 0.5).

    Raises:
        ConfigError: a setting out of its range.
    """

    max_kl: float = 0.01
    cg_iterations: int = 10
    damping: float = 0.1
    line_search_steps: int = 10
    shrink: float = 0.8
    accept_ratio: float = 0.5

    def __post_init__(self) -> None:
        require_positive("max_kl", self.max_kl)
        require_positive("cg_iterations", self.cg_iterations)
        require_positive("line_search_steps", self.line_search_steps)
        if self.damping < 0:
            raise ConfigError(f"damping must be >= 0, got {self.damping}")
        if not 0.0 < self.shrink < 1.0:
            raise ConfigError(f"shrink must be in (0, 1), got {self.shrink}")
        if not 0.0 <= self.accept_ratio <= 1.0:
            raise ConfigError(f"accept_ratio must be in [0, 1], got {self.accept_ratio}")


@dataclass
class TrustRegionResult:
    """What one trust-region step did (all plain floats and ints).

    Attributes:
        accepted: whether a step was accepted (else the parameters were restored).
        kl: measured mean KL of the accepted step (of the last try if none).
        line_search_steps: how many candidate steps were evaluated.
        expected_improvement: linear prediction ``g^T step`` for the accepted step
            (for the last try if none).
        actual_improvement: measured surrogate improvement of that step.
        step_norm: norm of the parameter change actually applied (0 if rejected).
    """

    accepted: bool
    kl: float
    line_search_steps: int
    expected_improvement: float
    actual_improvement: float
    step_norm: float


def trust_region_step(
    params: Sequence[nn.Parameter],
    surrogate: Callable[[], torch.Tensor],
    mean_kl: Callable[[], torch.Tensor],
    settings: TrustRegionSettings | None = None,
    *,
    fisher_product: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **overrides: float,
) -> TrustRegionResult:
    """One natural-gradient step with backtracking line search (see the module docstring).

    Args:
        params: the parameters to move (one agent's).
        surrogate: evaluates the surrogate to *maximise* at the current parameters,
            with a graph.
        mean_kl: evaluates the mean KL from the old policy (fixed when this is
            called) to the current one, with a graph.
        settings: :class:`TrustRegionSettings` (the reference's defaults if omitted).
        fisher_product: ``v -> H v`` (without damping) at the current parameters,
            when the caller has a cheaper exact one (see
            :meth:`~harl_torchrl.objectives.HATRPOLoss.fisher_product`); by default
            the Hessian of ``mean_kl()`` by double back-propagation.
        **overrides: individual settings, e.g. ``max_kl=0.05``.

    Returns:
        A :class:`TrustRegionResult`. When not accepted, every parameter is
        bit-identical to what it was before the call.

    Example:
        >>> w = nn.Parameter(torch.zeros(2))
        >>> target = torch.tensor([1.0, -1.0])
        >>> result = trust_region_step([w], lambda: -((w - target) ** 2).sum(), lambda: 0.5 * (w**2).sum(), max_kl=0.1)
        >>> result.accepted, round(result.kl, 3) <= 0.1
        (True, True)
    """
    config = TrustRegionSettings(**{**asdict(settings or TrustRegionSettings()), **overrides})
    max_kl, damping, shrink, accept_ratio = config.max_kl, config.damping, config.shrink, config.accept_ratio
    cg_iterations, line_search_steps = config.cg_iterations, config.line_search_steps
    old = [p.detach().clone() for p in params]
    old_flat = flat(old)
    start_value = surrogate()
    g = flat_grad(start_value, params)
    start_value = start_value.detach()
    if fisher_product is None:
        fvp = fisher_vector_product(mean_kl(), params, damping)
    else:

        def fvp(vector: torch.Tensor) -> torch.Tensor:
            return fisher_product(vector) + damping * vector

    direction = conjugate_gradient(fvp, g, cg_iterations)
    shs = direction.dot(fvp(direction))
    if not torch.isfinite(shs) or shs <= 0 or not g.abs().sum() > 0:
        return TrustRegionResult(False, 0.0, 0, 0.0, 0.0, 0.0)
    # scaled so that the quadratic model of the KL, 0.5 * step^T H step, equals max_kl
    full_step = torch.sqrt(2 * max_kl / shs) * direction
    expected = g.dot(full_step).item()
    fraction, kl_value, improvement = 1.0, 0.0, 0.0
    with torch.no_grad():
        for tries in range(1, line_search_steps + 1):
            set_flat(params, old_flat + fraction * full_step)
            kl_value = mean_kl().item()
            improvement = (surrogate() - start_value).item()
            if kl_value <= max_kl and improvement > 0 and improvement >= accept_ratio * fraction * expected:
                return TrustRegionResult(
                    True,
                    kl_value,
                    tries,
                    fraction * expected,
                    improvement,
                    (fraction * full_step).norm().item(),
                )
            fraction *= shrink
        for p, value in zip(params, old, strict=True):
            p.copy_(value)
    return TrustRegionResult(False, kl_value, line_search_steps, fraction / shrink * expected, improvement, 0.0)

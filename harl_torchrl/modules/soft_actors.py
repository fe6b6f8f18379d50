"""Per-agent soft (maximum-entropy) actors of HASAC / MASAC.

Continuous boxes get a tanh-squashed Gaussian with a state-dependent mean and
log-standard-deviation; discrete (and multi-discrete) actions get a categorical whose
reparameterised sample is a Gumbel-softmax straight-through one-hot. Each agent owns
its parameters, as the sequential scheme needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tensordict.nn import TensorDictModule
from torch import distributions as D
from torch import nn
from torchrl.data import Bounded, TensorSpec, Unbounded
from torchrl.modules import ProbabilisticActor

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.actors import ActorNet, make_actor_head
from harl_torchrl.modules.distributions import MaskedCategorical, MaskedMultiCategorical
from harl_torchrl.modules.groups import agent_groups
from harl_torchrl.modules.mlp import MLPTrunk, orthogonal_

#: The reference HASAC actor's clamp of the Gaussian's log-standard-deviation.
LOG_STD_BOUNDS: tuple[float, float] = (-20.0, 2.0)


class _SafeTanhTransform(D.TanhTransform):
    """``tanh`` whose inverse clamps to the open interval, so ``atanh`` stays finite at the bounds."""

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(y.dtype).eps
        return y.clamp(-1.0 + eps, 1.0 - eps).atanh()


class SquashedNormal(D.TransformedDistribution):
    r"""A diagonal Gaussian squashed by ``tanh`` and rescaled to the box ``[low, high]``.

    With :math:`u \sim \mathcal N(\mu, \sigma^2)` (independent dimensions),
    :math:`a = c + h \tanh(u)`, :math:`c = (high + low) / 2`, :math:`h = (high - low) / 2`,
    the log-density of the emitted action is (change of variables)

    .. math::
        \log \pi(a) = \sum_d \Big[\log \mathcal N(u_d; \mu_d, \sigma_d)
            - \log(1 - \tanh^2 u_d) - \log h_d\Big],

    with :math:`\log(1 - \tanh^2 u) = 2(\log 2 - u - \mathrm{softplus}(-2u))` for
    numerical stability. The reference HASAC omits the constant :math:`-\sum_d \log h_d`
    (it measures the density of :math:`\tanh u`); the two agree on ``[-1, 1]`` boxes and
    differ by a constant elsewhere, which moves no actor gradient but shifts what a
    target entropy means (ours is the entropy of the action the env receives, as in
    TorchRL's ``TanhNormal``).

    :meth:`rsample` caches the pre-squash sample, so ``log_prob`` of the sample just
    drawn is exact even where ``tanh`` saturates.

    Args:
        loc: :math:`\mu`, ``[..., d]``.
        scale: :math:`\sigma`, ``[..., d]``.
        low: lower bounds of the box (broadcast to ``[d]``).
        high: upper bounds of the box.

    Example:
        >>> dist = SquashedNormal(torch.zeros(2), torch.ones(2), low=torch.tensor([0.0, -2.0]), high=2.0)
        >>> a = dist.rsample()
        >>> bool(((a >= torch.tensor([0.0, -2.0])) & (a <= 2.0)).all()), dist.log_prob(a).shape
        (True, torch.Size([]))
        >>> dist.deterministic_sample
        tensor([1., 0.])
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        low: torch.Tensor | float = -1.0,
        high: torch.Tensor | float = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        # bounds as [d] tensors: with a scalar scale, AffineTransform(event_dim=1) counts the
        # log-Jacobian log h once instead of d times (log-probabilities off by (d - 1) log h)
        low = torch.as_tensor(low, dtype=loc.dtype, device=loc.device).broadcast_to(loc.shape[-1:])
        high = torch.as_tensor(high, dtype=loc.dtype, device=loc.device).broadcast_to(loc.shape[-1:])
        self.centre = (high + low) / 2
        self.half_range = (high - low) / 2
        self.loc, self.scale = loc, scale
        base = D.Independent(D.Normal(loc, scale, validate_args=validate_args), 1)
        transforms = [
            _SafeTanhTransform(cache_size=1),
            D.AffineTransform(self.centre, self.half_range, event_dim=1, cache_size=1),
        ]
        super().__init__(base, transforms, validate_args=validate_args)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        r"""The squashed mean :math:`c + h \tanh(\mu)` (deterministic evaluation)."""
        return self.centre + self.half_range * torch.tanh(self.loc)

    @property
    def mode(self) -> torch.Tensor:
        """Same as :attr:`deterministic_sample` (the squashed Gaussian mode, not the density's)."""
        return self.deterministic_sample

    def rsample_with_log_prob(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action ``[..., d]`` and its log-probability ``[...]``."""
        action = self.rsample()
        return action, self.log_prob(action)


def gumbel_one_hot(
    logits: torch.Tensor, log_probs: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A Gumbel-softmax straight-through one-hot sample and its log-probability.

    Forward: the one-hot of :math:`\arg\max_k (\ell_k + g_k)`, :math:`g_k \sim
    \mathrm{Gumbel}(0, 1)` (an exact categorical sample). Backward: the gradient of the
    relaxed sample :math:`\mathrm{softmax}((\ell + g)/\tau)`. The log-probability is
    :math:`\sum_k y_k \log \pi_k` with the straight-through :math:`y`, as in the
    reference HASAC, so it carries gradient through both factors.

    Args:
        logits: ``[..., n]`` (masked entries at ``finfo.min``).
        log_probs: the normalised log-probabilities ``[..., n]``.
        temperature: :math:`\tau` of the relaxation.

    Returns:
        ``(one_hot [..., n], log_prob [...])``.
    """
    one_hot = F.gumbel_softmax(logits, tau=temperature, hard=True, dim=-1)
    return one_hot, (one_hot * log_probs).sum(-1)


class GumbelCategorical(MaskedCategorical):
    """A masked categorical whose reparameterised sample is a straight-through one-hot.

    ``sample()`` (used when collecting) returns an index, as the env's ``Categorical``
    spec expects; :meth:`rsample_with_log_prob` (used by the soft actor loss) returns a
    one-hot ``[..., n]`` with gradient to the logits, which the joint-action critic reads
    as the agent's action. ``has_rsample`` stays ``False`` so that
    :class:`~torchrl.modules.ProbabilisticActor` writes indices.

    Args:
        logits: ``[..., n]``.
        mask: boolean availability ``[..., n]`` or ``None``.
        temperature: Gumbel-softmax temperature.

    Example:
        >>> dist = GumbelCategorical(torch.zeros(3), mask=torch.tensor([True, False, True]))
        >>> one_hot, log_prob = dist.rsample_with_log_prob()
        >>> float(one_hot.sum()), float(one_hot[1]), round(float(log_prob), 4)
        (1.0, 0.0, -0.6931)
    """

    def __init__(
        self,
        logits: torch.Tensor,
        mask: torch.Tensor | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(logits, mask=mask, validate_args=validate_args)
        self.temperature = temperature

    def rsample_with_log_prob(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A straight-through one-hot ``[..., n]`` and its log-probability ``[...]``."""
        return gumbel_one_hot(self.logits, self.logits, self.temperature)


class GumbelMultiCategorical(MaskedMultiCategorical):
    """Independent Gumbel heads: the one-hots concatenated, log-probabilities summed.

    Args:
        logits: ``[..., sum(nvec)]``.
        nvec: choices per head.
        mask: availability ``[..., sum(nvec)]`` or ``None``.
        temperature: Gumbel-softmax temperature.

    Example:
        >>> dist = GumbelMultiCategorical(torch.zeros(5), nvec=[2, 3])
        >>> one_hot, log_prob = dist.rsample_with_log_prob()
        >>> one_hot.shape, float(one_hot.sum()), round(float(log_prob), 4)
        (torch.Size([5]), 2.0, -1.7918)
    """

    def __init__(
        self,
        logits: torch.Tensor,
        nvec: Sequence[int],
        mask: torch.Tensor | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(logits, nvec, mask=mask, validate_args=validate_args)
        self.temperature = temperature

    def rsample_with_log_prob(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' straight-through one-hots concatenated ``[..., sum(nvec)]``, log-prob summed ``[...]``."""
        samples = [gumbel_one_hot(h.logits, h.logits, self.temperature) for h in self.heads]
        return torch.cat([s[0] for s in samples], -1), sum(s[1] for s in samples)


class SquashedGaussianHead(nn.Module):
    r"""State-dependent mean and standard deviation: :math:`\sigma = \exp(\mathrm{clamp}(\ell, lo, hi))`.

    Args:
        in_features: trunk width.
        action_dim: number of action dimensions.
        log_std_bounds: clamp of the log-standard-deviation (the reference's ``(-20, 2)``).
        gain: orthogonal gain of both output layers.
    """

    def __init__(
        self,
        in_features: int,
        action_dim: int,
        log_std_bounds: tuple[float, float] = LOG_STD_BOUNDS,
        gain: float = 0.01,
    ) -> None:
        super().__init__()
        self.mean = orthogonal_(nn.Linear(in_features, action_dim), gain)
        self.log_std = orthogonal_(nn.Linear(in_features, action_dim), gain)
        self.log_std_bounds = log_std_bounds

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_std = self.log_std(features).clamp(*self.log_std_bounds)
        return self.mean(features), log_std.exp()


def make_soft_agent_actor(
    agent: str,
    observation_dim: int,
    action_spec: TensorSpec,
    *,
    hidden_sizes: Sequence[int] = (256, 256),
    activation: str = "relu",
    feature_norm: bool = True,
    output_gain: float = 0.01,
    log_std_bounds: tuple[float, float] = LOG_STD_BOUNDS,
    gumbel_temperature: float = 1.0,
    observation_key: str = "observation",
    mask_key: str | None = None,
) -> ProbabilisticActor:
    """Builds one agent's soft actor.

    Reads ``(agent, observation_key)`` (and ``(agent, mask_key)`` for masked discrete
    actions); writes ``(agent, "action")`` and ``(agent, "action_log_prob")``, plus the
    distribution's parameters (``(agent, "loc")``/``(agent, "scale")`` or
    ``(agent, "logits")``). Actions are sampled by default
    (``InteractionType.RANDOM``); under
    ``set_exploration_type(ExplorationType.DETERMINISTIC)`` it emits the squashed mean
    or the most probable available action. Continuous actions lie in the spec's box;
    discrete actions are indices (the soft actor loss draws the straight-through one-hot
    itself, through ``actor.get_dist(td).rsample_with_log_prob()``).

    The trunk is our :class:`~harl_torchrl.modules.MLPTrunk` (optional input LayerNorm,
    Linear-activation-LayerNorm blocks, orthogonal initialisation), as for the on-policy
    actors; the reference's squashed-Gaussian actor uses a plain MLP whose last hidden
    activation is ``tanh`` (its ``final_activation_func``), while its discrete HASAC actor
    uses the LayerNorm trunk.

    Args:
        agent: the agent's group name.
        observation_dim: size of its observation.
        action_spec: ``Bounded`` (tanh-squashed Gaussian), ``Categorical`` or
            ``MultiCategorical`` (Gumbel straight-through).
        hidden_sizes: trunk widths (the reference's HASAC uses 256x256).
        activation: trunk activation.
        feature_norm: LayerNorm the observation first.
        output_gain: orthogonal gain of the output layers.
        log_std_bounds: clamp of the Gaussian log-standard-deviation.
        gumbel_temperature: temperature of the Gumbel-softmax relaxation.
        observation_key: name of the observation entry inside the agent's group.
        mask_key: name of the boolean action-availability entry, or ``None``.

    Returns:
        A :class:`~torchrl.modules.ProbabilisticActor` with ``return_log_prob=True``.

    Raises:
        ConfigError: an unbounded box (tanh needs bounds) or an unsupported spec.

    Example:
        >>> from tensordict import TensorDict
        >>> actor = make_soft_agent_actor("a", 4, Bounded(-2.0, 2.0, shape=(3,)), hidden_sizes=(16,))
        >>> td = actor(TensorDict({("a", "observation"): torch.randn(5, 4)}, [5]))
        >>> td["a", "action"].shape, td["a", "action_log_prob"].shape, bool(td["a", "action"].abs().max() <= 2)
        (torch.Size([5, 3]), torch.Size([5]), True)
    """
    trunk = MLPTrunk(observation_dim, hidden_sizes, activation, feature_norm)
    width = trunk.out_features
    if isinstance(action_spec, Unbounded):
        raise ConfigError(
            f"agent {agent!r} has an unbounded continuous action spec; the soft actor squashes actions with tanh "
            "into a box: give the env Bounded actions (e.g. clip to the physical limits)"
        )

    def squashed_gaussian(spec: Bounded) -> tuple[nn.Module, type[SquashedNormal], dict[str, torch.Tensor]]:
        low = spec.space.low.reshape(-1, spec.shape[-1])[0].clone()
        high = spec.space.high.reshape(-1, spec.shape[-1])[0].clone()
        head = SquashedGaussianHead(width, spec.shape[-1], log_std_bounds, output_gain)
        return head, SquashedNormal, {"low": low, "high": high}

    head = make_actor_head(
        agent,
        width,
        action_spec,
        squashed_gaussian,
        continuous_specs=(Bounded,),
        categorical=(GumbelCategorical, GumbelMultiCategorical),
        categorical_kwargs={"temperature": gumbel_temperature},
        output_gain=output_gain,
        mask_key=mask_key,
        actors="soft actors",
    )
    net = TensorDictModule(ActorNet(trunk, head.module), in_keys=[(agent, observation_key)], out_keys=head.out_keys)
    return head.probabilistic_actor(agent, net)


def make_soft_actors(env, **actor_kwargs) -> dict[str, ProbabilisticActor]:
    """One soft actor per agent group of a multi-agent env (see :func:`make_soft_agent_actor`).

    Each agent gets its own parameters (there is no ``share_params`` here: a shared soft
    policy is built by passing one actor's modules to every agent explicitly, for
    baselines only).

    Args:
        env: a TorchRL env whose groups each hold one agent (``env.group_map``).
        **actor_kwargs: forwarded to :func:`make_soft_agent_actor`.

    Returns:
        ``{agent_name: actor}`` in the env's agent order.
    """
    actors: dict[str, ProbabilisticActor] = {}
    for agent in agent_groups(env):  # refuses a group of several agents, naming the fix
        obs_spec = env.full_observation_spec_unbatched[agent, "observation"]
        action_spec = env.full_action_spec_unbatched[agent, "action"]
        has_mask = "action_mask" in env.full_observation_spec_unbatched[agent].keys()
        actors[agent] = make_soft_agent_actor(
            agent, obs_spec.shape[-1], action_spec, mask_key="action_mask" if has_mask else None, **actor_kwargs
        )
    return actors


def soft_action(actor: ProbabilisticActor, tensordict) -> tuple[torch.Tensor, torch.Tensor]:
    """The agent's reparameterised action and its log-probability, both with gradient.

    Continuous: a squashed-Gaussian ``rsample`` in the box ``[*B, d]``; discrete: a
    straight-through one-hot ``[*B, n]`` (``[*B, sum(nvec)]`` for multi-discrete).
    Log-probability ``[*B]``.

    Args:
        actor: a soft actor from :func:`make_soft_agent_actor`.
        tensordict: holds the agent's observation (and mask).

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Categorical
        >>> actor = make_soft_agent_actor("a", 2, Categorical(n=4), hidden_sizes=(8,))
        >>> action, log_prob = soft_action(actor, TensorDict({("a", "observation"): torch.randn(3, 2)}, [3]))
        >>> action.shape, log_prob.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """
    return actor.get_dist(tensordict).rsample_with_log_prob()

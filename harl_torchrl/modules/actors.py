"""Per-agent stochastic actors: Gaussian for continuous actions, categorical for discrete.

Each agent owns its parameters (no stacked weights shared by one optimiser), so the
sequential scheme can move one agent while the others stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tensordict.nn import InteractionType, TensorDictModule, TensorDictModuleBase, TensorDictSequential
from tensordict.utils import NestedKey
from torch import distributions as D
from torch import nn
from torchrl.data import Bounded, Categorical, MultiCategorical, TensorSpec, Unbounded
from torchrl.modules import GRUModule, IndependentNormal, ProbabilisticActor

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.batched import BatchedJointPolicy
from harl_torchrl.modules.distributions import MaskedCategorical, MaskedMultiCategorical
from harl_torchrl.modules.groups import agent_groups, check_env_clips_actions
from harl_torchrl.modules.mlp import MLPTrunk, orthogonal_
from harl_torchrl.modules.recurrent import is_recurrent, recurrent_network


class GaussianHead(nn.Module):
    r"""Mean from the trunk's features, state-independent standard deviation.

    Following the reference implementation,
    :math:`\sigma = c_y \cdot \mathrm{sigmoid}(w / c_x)` with a learned vector
    :math:`w` initialised to :math:`c_x`, which keeps :math:`\sigma` in
    :math:`(0, c_y)` (:math:`c_x = 1, c_y = 0.5` give an initial
    :math:`\sigma \approx 0.37`).

    Args:
        in_features: trunk width.
        action_dim: number of action dimensions.
        gain: orthogonal gain of the mean layer (0.01: near-zero initial means).
        std_x_coef: :math:`c_x`.
        std_y_coef: :math:`c_y`.
    """

    def __init__(
        self, in_features: int, action_dim: int, gain: float = 0.01, std_x_coef: float = 1.0, std_y_coef: float = 0.5
    ) -> None:
        super().__init__()
        self.mean = orthogonal_(nn.Linear(in_features, action_dim), gain)
        self.std_x_coef = std_x_coef
        self.std_y_coef = std_y_coef
        self.log_std = nn.Parameter(torch.full((action_dim,), float(std_x_coef)))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = self.mean(features)
        scale = torch.sigmoid(self.log_std / self.std_x_coef) * self.std_y_coef
        return loc, scale.expand_as(loc)


class ActorNet(nn.Module):
    """Trunk plus head: ``observation -> (loc, scale)`` or ``observation -> logits``."""

    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, observation: torch.Tensor):
        return self.head(self.trunk(observation))


#: Builds the continuous head from the action spec: ``(module, distribution class, its kwargs)``.
ContinuousHead = Callable[[TensorSpec], tuple[nn.Module, type[D.Distribution], dict[str, Any] | None]]


@dataclass
class ActorHead:
    """An actor's output layer and the distribution its outputs parameterise (see :func:`make_actor_head`).

    Attributes:
        module: maps the trunk's features to the distribution's parameters.
        out_keys: where ``module``'s outputs are written: ``[(agent, "loc"), (agent, "scale")]``
            or ``[(agent, "logits")]``.
        dist_keys: ``{distribution argument: key}``, the mask's key included if any.
        distribution_class: the action distribution.
        distribution_kwargs: its other arguments, or ``None``.

    Example:
        >>> from tensordict import TensorDict
        >>> head = ActorHead(GaussianHead(4, 2), [("a", "loc"), ("a", "scale")],
        ...                  {"loc": ("a", "loc"), "scale": ("a", "scale")}, IndependentNormal)
        >>> net = TensorDictModule(ActorNet(nn.Identity(), head.module), [("a", "observation")], head.out_keys)
        >>> td = head.probabilistic_actor("a", net)(TensorDict({("a", "observation"): torch.ones(3, 4)}, [3]))
        >>> td["a", "action"].shape, td["a", "action_log_prob"].shape
        (torch.Size([3, 2]), torch.Size([3]))
    """

    module: nn.Module
    out_keys: list[NestedKey]
    dist_keys: dict[str, NestedKey]
    distribution_class: type[D.Distribution]
    distribution_kwargs: dict[str, Any] | None = None

    def probabilistic_actor(self, agent: str, net: TensorDictModuleBase) -> ProbabilisticActor:
        """``net`` (which writes :attr:`out_keys`) followed by the distribution.

        The result reads ``net``'s inputs and :attr:`dist_keys`, and writes ``(agent, "action")``
        and ``(agent, "action_log_prob")``; it samples unless an exploration type is set.
        """
        return ProbabilisticActor(
            net,
            in_keys=self.dist_keys,
            out_keys=[(agent, "action")],
            distribution_class=self.distribution_class,
            distribution_kwargs=self.distribution_kwargs,
            return_log_prob=True,
            default_interaction_type=InteractionType.RANDOM,
        )


def make_actor_head(
    agent: str,
    width: int,
    action_spec: TensorSpec,
    continuous: ContinuousHead,
    *,
    continuous_specs: tuple[type[TensorSpec], ...],
    categorical: tuple[type[D.Distribution], type[D.Distribution]],
    categorical_kwargs: Mapping[str, Any] | None = None,
    output_gain: float = 0.01,
    mask_key: str | None = None,
    actors: str = "actors",
) -> ActorHead:
    r"""The head of one agent's stochastic actor, chosen by its action spec: the one place that choice is made.

    * a spec of ``continuous_specs`` (boxes): ``continuous(action_spec)`` builds the module,
      which writes ``(agent, "loc")`` and ``(agent, "scale")``;
    * ``Categorical`` (``n`` actions) or ``MultiCategorical`` (``nvec``): a linear layer of
      :math:`n` (or :math:`\sum \text{nvec}`) logits with orthogonal gain ``output_gain``,
      written to ``(agent, "logits")``; the distribution is ``categorical[0]`` (or
      ``categorical[1]``, given ``nvec=``), with ``categorical_kwargs`` and the mask
      ``(agent, mask_key)`` when ``mask_key`` is given.

    Args:
        agent: the agent's group name.
        width: the trunk's output features.
        action_spec: the agent's action spec.
        continuous: builds the continuous head and names its distribution.
        continuous_specs: the spec types that are boxes for this family.
        categorical: the single and the multi-categorical distribution classes.
        categorical_kwargs: extra arguments of the categorical distributions.
        output_gain: orthogonal gain of the logits layer.
        mask_key: the action mask's name inside the agent's group, or ``None``.
        actors: the actor family, named in the error.

    Raises:
        ConfigError: a spec of another type.

    Example:
        >>> from torchrl.data import Categorical
        >>> from harl_torchrl.modules.distributions import MaskedCategorical, MaskedMultiCategorical
        >>> head = make_actor_head("a", 8, Categorical(n=3), None, continuous_specs=(Bounded,),
        ...                        categorical=(MaskedCategorical, MaskedMultiCategorical), mask_key="action_mask")
        >>> head.module, head.dist_keys
        (Linear(in_features=8, out_features=3, bias=True), {'logits': ('a', 'logits'), 'mask': ('a', 'action_mask')})
    """
    if isinstance(action_spec, continuous_specs):
        module, distribution_class, distribution_kwargs = continuous(action_spec)
        dist_keys = {"loc": (agent, "loc"), "scale": (agent, "scale")}
        return ActorHead(module, list(dist_keys.values()), dist_keys, distribution_class, distribution_kwargs)
    if isinstance(action_spec, Categorical):
        multi = isinstance(action_spec, MultiCategorical)
        nvec = [int(n) for n in action_spec.nvec.reshape(-1, action_spec.nvec.shape[-1])[0]] if multi else None
        module = orthogonal_(nn.Linear(width, sum(nvec) if multi else action_spec.space.n), output_gain)
        dist_keys = {"logits": (agent, "logits")}
        if mask_key is not None:
            dist_keys["mask"] = (agent, mask_key)
        kwargs = {**(categorical_kwargs or {}), **({"nvec": nvec} if multi else {})}
        distribution_class = categorical[1] if multi else categorical[0]
        return ActorHead(module, [(agent, "logits")], dist_keys, distribution_class, kwargs or None)
    boxes = "/".join(spec.__name__ for spec in continuous_specs)
    raise ConfigError(
        f"agent {agent!r} has an action spec of type {type(action_spec).__name__}, which the {actors} do not "
        f"support; supported: {boxes} (continuous), Categorical and MultiCategorical (discrete)"
    )


def make_agent_actor(
    agent: str,
    observation_dim: int,
    action_spec: TensorSpec,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    activation: str = "relu",
    feature_norm: bool = True,
    output_gain: float = 0.01,
    std_x_coef: float = 1.0,
    std_y_coef: float = 0.5,
    observation_key: str = "observation",
    mask_key: str | None = None,
    recurrent: bool = False,
    rnn_hidden_size: int | None = None,
) -> ProbabilisticActor:
    """Builds one agent's stochastic actor.

    Reads ``(agent, observation_key)``; writes ``(agent, "action")`` and
    ``(agent, "action_log_prob")`` (the joint log-probability over action
    dimensions). Actions are sampled unless an exploration type is set (evaluation
    uses ``ExplorationType.DETERMINISTIC``: the mean or the most probable action).
    It also writes ``(agent, "loc")``/``(agent, "scale")`` for continuous actions
    or ``(agent, "logits")`` for discrete ones, which the trust-region losses use as
    the old policy's parameters.

    With ``recurrent=True`` a GRU sits between the MLP trunk and the head (the
    reference's ``MLPBase -> RNNLayer -> ACTLayer``); it also reads ``"is_init"`` and
    ``(agent, "rnn_state")`` and writes ``("next", agent, "rnn_state")``: the env
    needs :func:`~harl_torchrl.modules.recurrent_env_transforms`.

    Args:
        agent: the agent's group name.
        observation_dim: size of its observation.
        action_spec: its unbatched or batched action spec: ``Bounded``/``Unbounded``
            (Gaussian; bounds are enforced by the environment, which clips, as in the
            reference implementation), ``Categorical`` or ``MultiCategorical``.
        hidden_sizes: trunk widths.
        activation: trunk activation.
        feature_norm: LayerNorm the observation first.
        output_gain: orthogonal gain of the output layer.
        std_x_coef: Gaussian std parameterisation (see :class:`GaussianHead`).
        std_y_coef: Gaussian std parameterisation.
        observation_key: name of the observation entry inside the agent's group.
        mask_key: name of the boolean action-availability entry inside the agent's
            group (``"action_mask"``, ``[B, n]`` or ``[B, sum(nvec)]``) for discrete
            actions; unavailable actions are never sampled and have probability zero
            in log-probabilities, entropies and KLs.
        recurrent: put a GRU after the trunk.
        rnn_hidden_size: the GRU's width (default: the trunk's).

    Returns:
        A :class:`~torchrl.modules.ProbabilisticActor` with ``return_log_prob=True``.

    Raises:
        ConfigError: for an action spec this actor does not support.

    Example:
        >>> from torchrl.data import Bounded
        >>> from tensordict import TensorDict
        >>> actor = make_agent_actor("agent_0", 8, Bounded(-1.0, 1.0, shape=(2,)))
        >>> td = actor(TensorDict({("agent_0", "observation"): torch.randn(4, 8)}, [4]))
        >>> td["agent_0", "action"].shape, td["agent_0", "action_log_prob"].shape
        (torch.Size([4, 2]), torch.Size([4]))
    """
    trunk = MLPTrunk(observation_dim, hidden_sizes, activation, feature_norm)
    in_key = (agent, observation_key)
    width = rnn_hidden_size or trunk.out_features if recurrent else trunk.out_features

    def gaussian(spec: TensorSpec) -> tuple[nn.Module, type[IndependentNormal], None]:
        return GaussianHead(width, spec.shape[-1], output_gain, std_x_coef, std_y_coef), IndependentNormal, None

    head = make_actor_head(
        agent,
        width,
        action_spec,
        gaussian,
        continuous_specs=(Bounded, Unbounded),
        categorical=(MaskedCategorical, MaskedMultiCategorical),
        output_gain=output_gain,
        mask_key=mask_key,
    )
    if recurrent:
        net: TensorDictModuleBase = recurrent_network(
            trunk, head.module, in_key, head.out_keys, hidden_size=width, state_key=(agent, "rnn_state"), prefix=agent
        )
    else:
        net = TensorDictModule(ActorNet(trunk, head.module), in_keys=[in_key], out_keys=head.out_keys)
    return head.probabilistic_actor(agent, net)


def make_actors(env, *, share_params: bool = False, **actor_kwargs) -> dict[str, ProbabilisticActor]:
    """One actor per agent group of a multi-agent env (see :func:`make_agent_actor`).

    Continuous actions are sampled from an unsquashed Gaussian and clipped by the
    env, as in the reference (the stored action and log-probability stay the
    sample's): our envs clip; TorchRL's ``VmasEnv`` needs ``clamp_actions=True``.

    Args:
        env: a TorchRL env whose groups each hold one agent (``env.group_map``).
        share_params: one network for every agent (each agent still reads and
            writes its own keys). Only for simultaneous-update baselines such as
            parameter-shared MAPPO; needs identical observation and action specs.
        **actor_kwargs: forwarded to :func:`make_agent_actor`.

    Returns:
        ``{agent_name: actor}`` in the env's agent order.

    Raises:
        ConfigError: ``share_params=True`` with agents of different specs; a group
            of several agents (see :func:`~harl_torchrl.modules.agent_groups`); a
            TorchRL ``VmasEnv`` that does not clip continuous actions.

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> actors = make_actors(make_vmas_env("balance", num_envs=2, n_agents=2))
        >>> sorted(actors), actors["agent_1"].dist_sample_keys
        (['agent_0', 'agent_1'], [('agent_1', 'action')])
    """
    groups = agent_groups(env)
    check_env_clips_actions(env)
    actors: dict[str, ProbabilisticActor] = {}
    for agent in groups:
        obs_spec = env.full_observation_spec_unbatched[agent, "observation"]
        action_spec = env.full_action_spec_unbatched[agent, "action"]
        has_mask = "action_mask" in env.full_observation_spec_unbatched[agent].keys()
        actor = make_agent_actor(
            agent, obs_spec.shape[-1], action_spec, mask_key="action_mask" if has_mask else None, **actor_kwargs
        )
        if share_params and actors:
            _share_networks(next(iter(actors.values())).module[0], actor.module[0])
        actors[agent] = actor
    return actors


def _share_networks(reference: nn.Module, other: nn.Module) -> None:
    """Makes ``other`` (a TensorDict module tree) use ``reference``'s networks, keeping its own keys."""
    ref = {k: v.shape for k, v in reference.state_dict().items()}
    new = {k: v.shape for k, v in other.state_dict().items()}
    if ref != new:
        raise ConfigError(
            "share_params=True needs every agent to have the same observation and action sizes; "
            "use separate parameters (share_params=False) for heterogeneous agents"
        )
    if isinstance(other, TensorDictSequential):
        for ref_child, child in zip(reference.module, other.module, strict=True):
            _share_networks(ref_child, child)
    elif isinstance(other, GRUModule):
        other.gru = reference.gru
    else:
        other.module = reference.module


def joint_policy(
    actors: Mapping[str, ProbabilisticActor], batched: bool = True
) -> BatchedJointPolicy | TensorDictSequential:
    """The policy a collector steps the env with: every agent's actor.

    Args:
        actors: ``{agent: actor}``.
        batched: evaluate same-shaped agents as a group
            (:class:`~harl_torchrl.modules.BatchedJointPolicy`, the default; not
            for recurrent actors) or run the actors one after another (a
            :class:`~tensordict.nn.TensorDictSequential`).

    Example:
        >>> from torchrl.data import Bounded
        >>> actors = {a: make_agent_actor(a, 4, Bounded(-1.0, 1.0, shape=(2,))) for a in ("a", "b")}
        >>> policy = joint_policy(actors)
        >>> sorted(k[0] for k in policy.out_keys if k[-1] == "action")
        ['a', 'b']
    """
    if batched and not any(is_recurrent(actor) for actor in actors.values()):
        return BatchedJointPolicy(actors)
    return TensorDictSequential(*actors.values())

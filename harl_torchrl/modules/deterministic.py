r"""Per-agent deterministic actors for HADDPG, HATD3, MADDPG and MATD3.

Each agent owns its network (one group per agent, own parameters), so the sequential
actor step can move one agent while the others stay bit-identical. The output is squashed
into the agent's action box,

.. math:: \mu(o) = c + h \odot \tanh(f_\theta(o)), \qquad c = \frac{high + low}{2},\;
    h = \frac{high - low}{2},

as in the reference implementation (``DeterministicPolicy``: plain MLP, tanh output, scaled
to the box).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Bounded, TensorSpec

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.groups import agent_groups
from harl_torchrl.modules.mlp import MLPTrunk, activation_class, orthogonal_


def plain_mlp(in_features: int, hidden_sizes: Sequence[int], activation: str) -> nn.Sequential:
    """``(Linear -> act) x L`` with PyTorch's default initialisation (the reference's ``PlainMLP`` trunk).

    Example:
        >>> plain_mlp(4, [8, 8], "relu")(torch.randn(2, 4)).shape
        torch.Size([2, 8])
    """
    act = activation_class(activation)
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), act()]
        width = size
    trunk = nn.Sequential(*layers)
    trunk.out_features = width
    return trunk


def make_trunk(
    in_features: int, hidden_sizes: Sequence[int], activation: str, layer_norm: bool
) -> tuple[nn.Module, bool]:
    """The off-policy networks' trunk: the reference's plain MLP, or :class:`MLPTrunk` with ``layer_norm``.

    Returns:
        ``(trunk, orthogonal)``: whether the output layer should be initialised orthogonally
        (it is with :class:`MLPTrunk`, whose hidden layers are; PyTorch's default otherwise).
    """
    if layer_norm:
        return MLPTrunk(in_features, hidden_sizes, activation, feature_norm=True), True
    return plain_mlp(in_features, hidden_sizes, activation), False


class DeterministicActorNet(nn.Module):
    """``observation -> c + h * tanh(Linear(trunk(observation)))`` for one agent's box.

    Args:
        observation_dim: size of the agent's observation.
        low: lower bounds of the box, shape ``[action_dim]``.
        high: upper bounds of the box, same shape.
        hidden_sizes: trunk widths (reference: 128, 128).
        activation: trunk activation (reference: ``"relu"``).
        layer_norm: use :class:`~harl_torchrl.modules.MLPTrunk` (input and hidden
            LayerNorms, orthogonal weights) instead of the reference's plain MLP.
    """

    def __init__(
        self,
        observation_dim: int,
        low: torch.Tensor,
        high: torch.Tensor,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.trunk, orthogonal = make_trunk(observation_dim, hidden_sizes, activation, layer_norm)
        self.out = nn.Linear(self.trunk.out_features, low.shape[-1])
        if orthogonal:
            orthogonal_(self.out, 0.01)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.center + self.half_range * torch.tanh(self.out(self.trunk(observation)))


class DeterministicActor(TensorDictModuleBase):
    """One agent's deterministic actor as a TensorDict module: reads ``in_keys[0]``, writes ``out_keys[0]``.

    The same contract as ``TensorDictModule(net, in_keys=[obs], out_keys=[action])``
    (``module`` is the network), written out because the off-policy step calls each actor
    several times per gradient step: tensordict 0.14's ``TensorDictModule`` passes every
    output through ``TensorDict.from_any``, which searches ``sys.path`` for pandas on each
    call when pandas is not installed (about 0.2 ms a call; 1.7 ms of a 23 ms HATD3
    actor step on MPE).

    Args:
        module: the network, ``observation -> action``.
        in_key: the observation entry.
        out_key: the action entry.

    Example:
        >>> from tensordict import TensorDict
        >>> actor = DeterministicActor(nn.Linear(3, 2), ("a", "observation"), ("a", "action"))
        >>> actor(TensorDict({("a", "observation"): torch.randn(4, 3)}, [4]))["a", "action"].shape
        torch.Size([4, 2])
    """

    def __init__(self, module: nn.Module, in_key: NestedKey, out_key: NestedKey) -> None:
        super().__init__()
        self.module = module
        self.in_keys = [in_key]
        self.out_keys = [out_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Writes the action computed from the observation into ``tensordict``; returns it."""
        tensordict.set(self.out_keys[0], self.module(tensordict.get(self.in_keys[0])))
        return tensordict


def box_bounds(agent: str, action_spec: TensorSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` of a ``Bounded`` action spec, each ``[action_dim]`` (batch dims of a batched spec dropped).

    Raises:
        ConfigError: the spec is not a finite ``Bounded`` box.
    """
    if not isinstance(action_spec, Bounded):
        raise ConfigError(
            f"agent {agent!r} has a {type(action_spec).__name__} action spec, but deterministic actors "
            "(HADDPG/HATD3/MADDPG/MATD3) need a bounded continuous box; use HASAC/MASAC or HAD3QN for discrete actions"
        )
    low = action_spec.space.low.reshape(-1, action_spec.shape[-1])[0].float()
    high = action_spec.space.high.reshape(-1, action_spec.shape[-1])[0].float()
    if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (high > low).all()):
        raise ConfigError(f"agent {agent!r} has an action box with non-finite or empty bounds [{low}, {high}]")
    return low, high


def make_deterministic_actor(
    agent: str,
    observation_dim: int,
    action_spec: TensorSpec,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    activation: str = "relu",
    layer_norm: bool = False,
    observation_key: str = "observation",
) -> DeterministicActor:
    """Builds one agent's deterministic actor.

    Reads ``(agent, observation_key)``; writes ``(agent, "action")``, inside the box of
    ``action_spec``. Exploration noise is added by the collector's policy wrapper, not here.

    Args:
        agent: the agent's group name.
        observation_dim: size of its observation.
        action_spec: its (unbatched or batched) ``Bounded`` action spec.
        hidden_sizes: trunk widths.
        activation: trunk activation.
        layer_norm: see :class:`DeterministicActorNet`.
        observation_key: name of the observation entry inside the agent's group.

    Raises:
        ConfigError: the action spec is not a bounded box (discrete agents need HASAC or HAD3QN).

    Example:
        >>> from tensordict import TensorDict
        >>> actor = make_deterministic_actor("a", 3, Bounded(-2.0, 2.0, shape=(2,)))
        >>> td = actor(TensorDict({("a", "observation"): torch.randn(5, 3)}, [5]))
        >>> td["a", "action"].shape, bool(td["a", "action"].abs().max() <= 2.0)
        (torch.Size([5, 2]), True)
    """
    low, high = box_bounds(agent, action_spec)
    net = DeterministicActorNet(observation_dim, low, high, hidden_sizes, activation, layer_norm)
    return DeterministicActor(net, (agent, observation_key), (agent, "action"))


def make_deterministic_actors(env, **actor_kwargs) -> dict[str, DeterministicActor]:
    """One deterministic actor per agent group of ``env`` (see :func:`make_deterministic_actor`).

    Returns:
        ``{agent: actor}`` in ``env.group_map`` order, each with its own parameters.
    """
    actors = {}
    for agent in agent_groups(env):  # refuses a group of several agents, naming the fix
        obs_dim = env.full_observation_spec_unbatched[agent, "observation"].shape[-1]
        action_spec = env.full_action_spec_unbatched[agent, "action"]
        actors[agent] = make_deterministic_actor(agent, obs_dim, action_spec, **actor_kwargs)
    return actors

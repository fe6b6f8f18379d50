"""Dueling Q-networks of HAD3QN: per-agent Q over the agent's own actions, a joint-action critic.

Joint discrete actions are indexed row-major over the agents in their fixed order
(the first agent varies slowest), so the critic's ``prod |A_i|`` outputs reshape to a
table ``[*B, |A_1|, ..., |A_n|]`` with one axis per agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Categorical, MultiCategorical, TensorSpec
from torchrl.modules import QValueModule

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.groups import agent_groups
from harl_torchrl.modules.mlp import MLPTrunk, activation_class, orthogonal_


def _head(in_features: int, hidden_sizes: Sequence[int], out_features: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), activation_class(activation)()]
        width = size
    layers.append(orthogonal_(nn.Linear(width, out_features), 0.01))
    return nn.Sequential(*layers)


class DuelingQNet(nn.Module):
    r"""Dueling Q-values :math:`Q(x, \cdot) = V(x) + A(x, \cdot) - \mathrm{mean}_a A(x, a)`.

    Inputs are concatenated (e.g. every agent's observation, or the global state), go
    through a shared trunk, then through a value head (one output) and an advantage head
    (``num_actions`` outputs), as in the reference ``DuelingQNet``.

    Args:
        in_features: total size of the concatenated inputs.
        num_actions: number of outputs (an agent's ``|A_i|``, or ``prod |A_i|`` for the
            joint critic).
        hidden_sizes: trunk widths (the reference: 128x128).
        head_hidden_sizes: hidden widths of each of the two heads (the reference: 128).
        activation: activation of the trunk and the heads.
        feature_norm: LayerNorm the input first.

    Example:
        >>> net = DuelingQNet(4, 3, hidden_sizes=(8,), head_hidden_sizes=(8,))
        >>> net(torch.randn(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        in_features: int,
        num_actions: int,
        hidden_sizes: Sequence[int] = (128, 128),
        head_hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        feature_norm: bool = True,
    ) -> None:
        super().__init__()
        self.trunk = MLPTrunk(in_features, hidden_sizes, activation, feature_norm)
        self.value = _head(self.trunk.out_features, head_hidden_sizes, 1, activation)
        self.advantage = _head(self.trunk.out_features, head_hidden_sizes, num_actions, activation)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        features = self.trunk(torch.cat(inputs, dim=-1))
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(-1, keepdim=True)


def _num_actions(agent: str, action_spec: TensorSpec) -> int:
    if not isinstance(action_spec, Categorical) or isinstance(action_spec, MultiCategorical):
        raise ConfigError(
            f"agent {agent!r} has an action spec of type {type(action_spec).__name__}; HAD3QN needs Discrete "
            "(Categorical) actions: use HASAC or HATD3 for continuous or multi-discrete actions"
        )
    return int(action_spec.space.n)


def make_dueling_agent_qnet(
    agent: str,
    observation_dim: int,
    action_spec: TensorSpec,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    head_hidden_sizes: Sequence[int] = (128,),
    activation: str = "relu",
    feature_norm: bool = True,
    observation_key: str = "observation",
    mask_key: str | None = None,
) -> TensorDictSequential:
    """One agent's greedy dueling Q-actor.

    Reads ``(agent, observation_key)`` (and ``(agent, mask_key)``); writes
    ``(agent, "action_value")`` ``[*B, |A_i|]``, ``(agent, "action")`` (the greedy
    available action, an index) and ``(agent, "chosen_action_value")``. Follow it with
    :func:`harl_torchrl.exploration.epsilon_greedy` (TorchRL's ``EGreedyModule``) for
    collection; it stays greedy under deterministic evaluation.

    Args:
        agent: the agent's group name.
        observation_dim: size of its observation.
        action_spec: its ``Categorical`` action spec.
        hidden_sizes: trunk widths.
        head_hidden_sizes: hidden widths of the value and advantage heads.
        activation: activation function.
        feature_norm: LayerNorm the observation first.
        observation_key: name of the observation entry inside the agent's group.
        mask_key: name of the boolean action-availability entry, or ``None``.

    Raises:
        ConfigError: a non-discrete action spec.

    Example:
        >>> from tensordict import TensorDict
        >>> qnet = make_dueling_agent_qnet("a", 2, Categorical(n=3), hidden_sizes=(8,), head_hidden_sizes=(8,))
        >>> td = qnet(TensorDict({("a", "observation"): torch.randn(4, 2)}, [4]))
        >>> td["a", "action"].shape, td["a", "action_value"].shape
        (torch.Size([4]), torch.Size([4, 3]))
    """
    n = _num_actions(agent, action_spec)
    net = DuelingQNet(observation_dim, n, hidden_sizes, head_hidden_sizes, activation, feature_norm)
    value = TensorDictModule(net, in_keys=[(agent, observation_key)], out_keys=[(agent, "action_value")])
    greedy = QValueModule(
        action_space="categorical",
        action_value_key=(agent, "action_value"),
        action_mask_key=(agent, mask_key) if mask_key is not None else None,
        out_keys=[(agent, "action"), (agent, "action_value"), (agent, "chosen_action_value")],
    )
    return TensorDictSequential(value, greedy)


def make_dueling_agent_qnets(env, **qnet_kwargs) -> dict[str, TensorDictSequential]:
    """One :func:`make_dueling_agent_qnet` per agent group of ``env`` (masks found automatically)."""
    qnets = {}
    for agent in agent_groups(env):  # refuses a group of several agents, naming the fix
        obs_spec = env.full_observation_spec_unbatched[agent, "observation"]
        action_spec = env.full_action_spec_unbatched[agent, "action"]
        has_mask = "action_mask" in env.full_observation_spec_unbatched[agent].keys()
        qnets[agent] = make_dueling_agent_qnet(
            agent, obs_spec.shape[-1], action_spec, mask_key="action_mask" if has_mask else None, **qnet_kwargs
        )
    return qnets


class JointDuelingCritic(nn.Module):
    """The centralised dueling critic's network: inputs -> ``[*B, prod |A_i|]``."""

    def __init__(self, in_features: int, nvec: Sequence[int], **net_kwargs) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.net = DuelingQNet(in_features, int(torch.tensor(self.nvec).prod()), **net_kwargs)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs)


def make_joint_dueling_critic(
    in_keys: Sequence[NestedKey],
    in_features: int,
    action_specs: Mapping[str, TensorSpec],
    *,
    out_key: NestedKey = "joint_action_value",
    hidden_sizes: Sequence[int] = (128, 128),
    head_hidden_sizes: Sequence[int] = (128,),
    activation: str = "relu",
    feature_norm: bool = True,
) -> TensorDictModule:
    """The HAD3QN critic: a dueling Q over every joint discrete action.

    Reads ``in_keys`` (``"state"``, or every agent's observation); writes ``out_key``
    ``[*B, prod |A_i|]``, indexed row-major in the order of ``action_specs`` (see
    :func:`harl_torchrl.objectives.d3qn.joint_index`).

    Args:
        in_keys: inputs, concatenated.
        in_features: their total size.
        action_specs: ``{agent: Categorical spec}`` in the agents' fixed order.
        out_key: where the joint action values go.
        hidden_sizes: trunk widths.
        head_hidden_sizes: hidden widths of the heads.
        activation: activation function.
        feature_norm: LayerNorm the input first.

    Raises:
        ConfigError: a non-discrete spec, or more than 2**16 joint actions (the table would
            be too large: use HASAC instead).

    Example:
        >>> from tensordict import TensorDict
        >>> critic = make_joint_dueling_critic(["state"], 3, {"a": Categorical(n=2), "b": Categorical(n=3)},
        ...                                    hidden_sizes=(8,), head_hidden_sizes=(8,))
        >>> critic(TensorDict({"state": torch.randn(4, 3)}, [4]))["joint_action_value"].shape
        torch.Size([4, 6])
    """
    nvec = [_num_actions(agent, spec) for agent, spec in action_specs.items()]
    size = int(torch.tensor(nvec).prod())
    if size > 2**16:
        raise ConfigError(
            f"the joint action space has {size} actions (per agent: {nvec}); HAD3QN's critic has one output per "
            "joint action: use HASAC for this many agents or actions"
        )
    net = JointDuelingCritic(
        in_features,
        nvec,
        hidden_sizes=hidden_sizes,
        head_hidden_sizes=head_hidden_sizes,
        activation=activation,
        feature_norm=feature_norm,
    )
    return TensorDictModule(net, in_keys=list(in_keys), out_keys=[out_key])

"""Centralised state-value critic V(s) over every agent's observation (or a global state)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.groups import agent_groups
from harl_torchrl.modules.mlp import MLPTrunk, orthogonal_
from harl_torchrl.modules.recurrent import recurrent_network
from harl_torchrl.modules.value_norm import ValueNorm


class CentralValueNet(nn.Module):
    """``V(s)`` from the concatenation of its inputs: ``cat(x_1..x_k) -> trunk -> Linear(1)``.

    Args:
        in_features: total size of the concatenated inputs.
        hidden_sizes: trunk widths.
        activation: trunk activation.
        feature_norm: LayerNorm the input first.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "relu",
        feature_norm: bool = True,
    ) -> None:
        super().__init__()
        self.trunk = MLPTrunk(in_features, hidden_sizes, activation, feature_norm)
        self.out = orthogonal_(nn.Linear(self.trunk.out_features, 1), 1.0)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(torch.cat(inputs, dim=-1)))


class Denormalize(nn.Module):
    """Maps normalised values back to return units with a :class:`ValueNorm` (identity if none)."""

    def __init__(self, value_norm: ValueNorm | None) -> None:
        super().__init__()
        self.value_norm = value_norm

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value if self.value_norm is None else self.value_norm.denormalize(value)


def make_central_critic(
    in_keys: Sequence[NestedKey],
    in_features: int,
    *,
    value_norm: ValueNorm | None = None,
    hidden_sizes: Sequence[int] = (128, 128),
    activation: str = "relu",
    feature_norm: bool = True,
    value_keys: tuple[NestedKey, NestedKey] = ("state_value_normalized", "state_value"),
    recurrent: bool = False,
    rnn_hidden_size: int | None = None,
    state_key: NestedKey = "critic_rnn_state",
) -> TensorDictSequential:
    """Builds the centralised critic as a two-step TensorDict module.

    Reads ``in_keys`` (e.g. every ``(agent, "observation")``, or ``"state"``); writes
    ``"state_value_normalized"``, the network's output (in normalised units when a
    ``value_norm`` is given), and ``"state_value"``, the same value in return units,
    which TorchRL's :class:`~torchrl.objectives.value.GAE` reads by default.

    Args:
        in_keys: the entries concatenated into the critic's input.
        in_features: their total size.
        value_norm: the running normaliser (``ValueNorm()``, the reference's and the
            recipes' default), or ``None``. The value loss takes it from here
            (``CentralValueLoss(critic)``) and updates it.
        hidden_sizes: trunk widths.
        activation: trunk activation.
        feature_norm: LayerNorm the input first.
        value_keys: where to write the normalised and the return-unit values (e.g.
            ``((agent, "state_value_normalized"), (agent, "state_value"))`` for a
            per-agent critic).
        recurrent: put a GRU between the trunk and the value layer (see
            :mod:`harl_torchrl.modules.recurrent`); it reads ``"is_init"`` and
            ``state_key`` and writes ``("next", state_key)``.
        rnn_hidden_size: the GRU's width (default: the trunk's).
        state_key: where the critic's hidden state lives.

    Example:
        >>> from tensordict import TensorDict
        >>> critic = make_central_critic([("a", "observation"), ("b", "observation")], 7)
        >>> td = TensorDict({("a", "observation"): torch.randn(5, 3), ("b", "observation"): torch.randn(5, 4)}, [5])
        >>> critic(td)["state_value"].shape
        torch.Size([5, 1])
    """
    if recurrent:
        trunk = MLPTrunk(in_features, hidden_sizes, activation, feature_norm)
        width = rnn_hidden_size or trunk.out_features
        net: TensorDictModuleBase = recurrent_network(
            trunk,
            orthogonal_(nn.Linear(width, 1), 1.0),
            list(in_keys),
            [value_keys[0]],
            hidden_size=width,
            state_key=state_key,
            prefix=state_key[0] if isinstance(state_key, tuple) else None,
        )
    else:
        net = TensorDictModule(
            CentralValueNet(in_features, hidden_sizes, activation, feature_norm),
            in_keys=list(in_keys),
            out_keys=[value_keys[0]],
        )
    denorm = TensorDictModule(Denormalize(value_norm), in_keys=[value_keys[0]], out_keys=[value_keys[1]])
    return TensorDictSequential(net, denorm)


def critic_value_norm(critic: nn.Module) -> ValueNorm | None:
    """The :class:`ValueNorm` a critic denormalises with (its :class:`Denormalize` step), or ``None``.

    Raises:
        ConfigError: the critic holds several different normalisers.

    Example:
        >>> norm = ValueNorm()
        >>> critic_value_norm(make_central_critic(["state"], 3, value_norm=norm)) is norm
        True
    """
    norms = {
        id(m.value_norm): m.value_norm
        for m in critic.modules()
        if isinstance(m, Denormalize) and m.value_norm is not None
    }
    if len(norms) > 1:
        raise ConfigError(
            f"the critic holds {len(norms)} different ValueNorms; give each critic its own CentralValueLoss"
        )
    return next(iter(norms.values()), None)


def observation_critic_inputs(env) -> tuple[list[NestedKey], int]:
    """The critic inputs for an env: its global ``"state"`` if it has one, else every agent's observation.

    Returns:
        ``(in_keys, in_features)``.

    Raises:
        ConfigError: a group of several agents (see :func:`~harl_torchrl.modules.agent_groups`).

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> observation_critic_inputs(make_vmas_env("balance", num_envs=2, n_agents=2))[1]
        32
    """
    spec = env.full_observation_spec_unbatched
    if "state" in spec.keys():
        return ["state"], spec["state"].shape[-1]
    keys = [(agent, "observation") for agent in agent_groups(env)]
    return keys, sum(spec[key].shape[-1] for key in keys)

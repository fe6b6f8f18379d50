r"""The centralised joint-action Q critic :math:`Q(s, a^1, \dots, a^n)` of the off-policy algorithms.

One critic for the whole team: it reads the global state (or every agent's observation)
and every agent's action, and returns one value per independent network (one for DDPG,
two for TD3/SAC's twin critic). The reference's ``ContinuousQNet``: a plain MLP over
``cat(state, a^1, ..., a^n)`` with a scalar output; discrete actions enter one-hot.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Bounded, Categorical, MultiCategorical, OneHot, TensorSpec, Unbounded

from harl_torchrl.errors import ConfigError, require_positive
from harl_torchrl.modules.critics import observation_critic_inputs
from harl_torchrl.modules.deterministic import make_trunk
from harl_torchrl.modules.groups import agent_groups
from harl_torchrl.modules.mlp import orthogonal_

ActionClasses = int | Sequence[int] | None


class QNet(nn.Module):
    """``x -> Linear(1)(trunk(x))``: one of the critic's independent networks."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], activation: str, layer_norm: bool) -> None:
        super().__init__()
        self.trunk, orthogonal = make_trunk(in_features, hidden_sizes, activation, layer_norm)
        self.out = nn.Linear(self.trunk.out_features, 1)
        if orthogonal:
            orthogonal_(self.out, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(x))


class JointQCritic(TensorDictModuleBase):
    r"""Twin (or single, or any ensemble) centralised Q over the state and the joint action.

    Writes ``out_key`` with shape ``[*B, num_qvalue]``: column :math:`j` is
    :math:`Q_j(s, a^1..a^n)` of the :math:`j`-th independent network (separate parameters,
    separate initialisation). ``forward(td, heads=k)`` evaluates only the first ``k``
    networks (the deterministic actor losses use ``heads=1``: TD3's actor maximises
    :math:`Q_1` only), writing ``[*B, k]``.

    Keys: reads ``state_keys`` then ``action_keys``, concatenated in that order; writes ``out_key``.
    Each entry is flattened after the batch dimensions, so a stacked group's
    ``("agents", "action")`` ``[*B, n, d]`` enters as its ``n`` agents' actions in agent order
    (give it the size ``n * d``; a discrete stack: ``num_classes`` ``[A] * n``).

    Args:
        state_keys: the state entries (``["state"]``, or every ``(agent, "observation")``).
        state_features: their total size.
        action_keys: every agent's action entry, in a fixed agent order.
        action_sizes: each action's size as the network sees it (continuous: its
            dimension; discrete: the number of classes, or ``sum(nvec)``).
        num_qvalue: number of independent networks (1: DDPG; 2: TD3/SAC).
        hidden_sizes: trunk widths (reference: 128, 128).
        activation: trunk activation.
        layer_norm: :class:`~harl_torchrl.modules.MLPTrunk` trunks instead of the
            reference's plain MLP.
        num_classes: per action key, ``None`` (continuous), ``n`` (categorical) or
            ``nvec`` (multi-categorical). Integer actions (what the env and the buffer
            hold) are one-hot encoded; float actions (already one-hot, e.g. Gumbel
            straight-through samples with a gradient) pass through unchanged.
        out_key: where the values are written.

    Raises:
        ConfigError: mismatched key/size lists or ``num_qvalue < 1``.

    Example:
        >>> from tensordict import TensorDict
        >>> critic = JointQCritic(["state"], 4, [("a", "action"), ("b", "action")], [2, 1])
        >>> td = TensorDict({"state": torch.randn(3, 4), ("a", "action"): torch.rand(3, 2),
        ...                  ("b", "action"): torch.rand(3, 1)}, [3])
        >>> critic(td)["state_action_value"].shape
        torch.Size([3, 2])
        >>> critic(td, heads=1)["state_action_value"].shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        state_keys: Sequence[NestedKey],
        state_features: int,
        action_keys: Sequence[NestedKey],
        action_sizes: Sequence[int],
        *,
        num_qvalue: int = 2,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "relu",
        layer_norm: bool = False,
        num_classes: Sequence[ActionClasses] | None = None,
        out_key: NestedKey = "state_action_value",
    ) -> None:
        require_positive("num_qvalue", num_qvalue)
        if len(action_keys) != len(action_sizes):
            raise ConfigError(f"{len(action_keys)} action keys but {len(action_sizes)} action sizes")
        num_classes = [None] * len(action_keys) if num_classes is None else list(num_classes)
        if len(num_classes) != len(action_keys):
            raise ConfigError(f"{len(action_keys)} action keys but {len(num_classes)} num_classes entries")
        super().__init__()
        self.state_keys = list(state_keys)
        self.action_keys = list(action_keys)
        self.num_classes = num_classes
        self.in_keys = [*self.state_keys, *self.action_keys]
        self.out_keys = [out_key]
        self.num_qvalue = num_qvalue
        in_features = state_features + sum(action_sizes)
        self.nets = nn.ModuleList(QNet(in_features, hidden_sizes, activation, layer_norm) for _ in range(num_qvalue))

    def _action_input(self, tensordict: TensorDictBase, key: NestedKey, classes: ActionClasses) -> torch.Tensor:
        action = tensordict.get(key)
        if action.is_floating_point():
            return action.reshape(*tensordict.batch_size, -1)  # a stacked group's [*B, n, d] enters as [*B, n * d]
        if classes is None:
            return action.float()
        action = action.reshape(*tensordict.batch_size, -1).long()
        nvec = [classes] if isinstance(classes, int) else list(classes)
        return torch.cat(
            [nn.functional.one_hot(action[..., i], n).float() for i, n in enumerate(nvec)],
            dim=-1,
        )

    def values(self, tensordict: TensorDictBase, heads: int | None = None) -> torch.Tensor:
        """The ``[*B, heads or num_qvalue]`` values :meth:`forward` writes, returned without writing them.

        For a caller that must not modify ``tensordict`` (a loss on a replay batch): no copy
        of it is needed.
        """
        inputs = [tensordict.get(key).reshape(*tensordict.batch_size, -1) for key in self.state_keys]
        inputs += [
            self._action_input(tensordict, k, c) for k, c in zip(self.action_keys, self.num_classes, strict=True)
        ]
        x = torch.cat(inputs, dim=-1)
        nets = self.nets if heads is None else self.nets[:heads]
        return torch.cat([net(x) for net in nets], dim=-1)

    def forward(self, tensordict: TensorDictBase, heads: int | None = None) -> TensorDictBase:
        """Writes ``[*B, heads or num_qvalue]`` values to ``out_key``; returns ``tensordict``."""
        tensordict.set(self.out_keys[0], self.values(tensordict, heads))
        return tensordict


def action_input_size(agent: str, spec: TensorSpec) -> tuple[int, ActionClasses]:
    """``(size the critic sees, num_classes entry)`` of one agent's action spec."""
    if isinstance(spec, (Bounded, Unbounded, OneHot)):
        return spec.shape[-1], None
    if isinstance(spec, MultiCategorical):
        nvec = [int(n) for n in spec.nvec.reshape(-1, spec.nvec.shape[-1])[0]]
        return sum(nvec), nvec
    if isinstance(spec, Categorical):
        return spec.space.n, spec.space.n
    raise ConfigError(
        f"agent {agent!r} has a {type(spec).__name__} action spec, which the joint Q critic does not support; "
        "supported: Bounded/Unbounded, OneHot, Categorical, MultiCategorical"
    )


def make_joint_q_critic(env, *, num_qvalue: int = 2, **critic_kwargs) -> JointQCritic:
    """The joint-action Q critic for ``env``: its global ``"state"`` if it has one, else every observation.

    Action keys are every ``(agent, "action")`` in ``env.group_map`` order.

    Args:
        env: a TorchRL multi-agent env, one group per agent.
        num_qvalue: independent networks (2 for TD3/SAC).
        **critic_kwargs: forwarded to :class:`JointQCritic`.
    """
    state_keys, state_features = observation_critic_inputs(env)
    action_keys, sizes, classes = [], [], []
    for agent in agent_groups(env):  # refuses a group of several agents, naming the fix
        size, n = action_input_size(agent, env.full_action_spec_unbatched[agent, "action"])
        action_keys.append((agent, "action"))
        sizes.append(size)
        classes.append(n)
    return JointQCritic(
        state_keys, state_features, action_keys, sizes, num_qvalue=num_qvalue, num_classes=classes, **critic_kwargs
    )

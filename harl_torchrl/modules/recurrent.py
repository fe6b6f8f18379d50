"""Recurrent (GRU) networks for actors and critics, and the env transforms they need.

A recurrent network is ``trunk -> GRU -> LayerNorm -> head`` (the reference
implementation's ``MLPBase -> RNNLayer -> output layer``), built from TorchRL's
:class:`~torchrl.modules.GRUModule`. During collection it runs one step at a time,
reading its hidden state from the data and writing the next one under ``"next"``;
the environment must then provide ``"is_init"`` (episode starts, where the hidden
state is reset to zero) and initial hidden states, which
:func:`recurrent_env_transforms` adds. For training, data is cut into chunks of
consecutive steps (see :class:`~harl_torchrl.sequential.PolicyTrainer`'s
``chunk_length``) and run with ``set_recurrent_mode(True)``: each chunk starts from
the hidden state stored at its first step and resets at episode starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torchrl.envs import Compose, InitTracker, Transform
from torchrl.modules import GRUModule


def recurrent_network(
    trunk: nn.Module,
    head: nn.Module,
    in_keys: NestedKey | Sequence[NestedKey],
    out_keys: Sequence[NestedKey],
    *,
    hidden_size: int,
    state_key: NestedKey,
    prefix: str | None = None,
) -> TensorDictSequential:
    """``in_keys -> trunk -> GRU -> LayerNorm -> head -> out_keys`` as TensorDict modules.

    Args:
        trunk: maps the (concatenated) inputs to features of size
            ``trunk.out_features``.
        head: maps the GRU's (normalised) output to the outputs.
        in_keys: the input entry or entries (several are concatenated).
        out_keys: the head's output entries.
        hidden_size: the GRU's width.
        state_key: where the hidden state lives (``("next", *state_key)`` is written).
        prefix: group under which the intermediate features are stored.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from harl_torchrl.modules.mlp import MLPTrunk
        >>> net = recurrent_network(MLPTrunk(3, [8]), nn.Linear(8, 1), "obs", ["out"], hidden_size=8, state_key="h")
        >>> td = TensorDict({"obs": torch.randn(4, 3), "is_init": torch.ones(4, 1, dtype=torch.bool)}, [4])
        >>> net(td)["next", "h"].shape
        torch.Size([4, 1, 8])
    """
    in_keys = list(in_keys) if isinstance(in_keys, list) else [in_keys]
    features = (prefix, "rnn_input") if prefix else "rnn_input"
    output = (prefix, "rnn_output") if prefix else "rnn_output"
    next_state = ("next", *state_key) if isinstance(state_key, tuple) else ("next", state_key)
    return TensorDictSequential(
        TensorDictModule(_Concat(trunk), in_keys=in_keys, out_keys=[features]),
        GRUModule(
            input_size=trunk.out_features,
            hidden_size=hidden_size,
            in_keys=[features, state_key, "is_init"],
            out_keys=[output, next_state],
        ),
        TensorDictModule(nn.Sequential(nn.LayerNorm(hidden_size), head), in_keys=[output], out_keys=list(out_keys)),
    )


class _Concat(nn.Module):
    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.trunk(torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0])


def gru_modules(modules: Iterable[nn.Module]) -> list[GRUModule]:
    """Every :class:`~torchrl.modules.GRUModule` inside ``modules``."""
    found = []
    for module in modules:
        found.extend(m for m in module.modules() if isinstance(m, GRUModule))
    return found


def is_recurrent(module: nn.Module) -> bool:
    """Whether ``module`` contains a GRU."""
    return bool(gru_modules([module]))


def recurrent_env_transforms(modules: Iterable[nn.Module]) -> Transform:
    """``InitTracker`` plus one hidden-state primer per GRU found in ``modules``.

    Append it to the env (``TransformedEnv(env, recurrent_env_transforms([...]))``)
    when any actor or critic is recurrent: it marks episode starts with
    ``"is_init"`` and provides zero hidden states at every reset.
    """
    return Compose(InitTracker(), *(gru.make_tensordict_primer() for gru in gru_modules(modules)))

"""Per-agent parameter ownership, which the sequential schemes rely on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from harl_torchrl.errors import ConfigError


def agent_parameters_by_name(modules: Mapping[str, nn.Module]) -> dict[str, Sequence[nn.Parameter]]:
    """``{agent: list(parameters)}``; raises if two agents share a parameter tensor.

    The sequential scheme needs each agent to own its parameters (a shared tensor
    would move agents that are not being updated).
    """
    seen: dict[int, str] = {}
    result = {}
    for name, module in modules.items():
        params = list(module.parameters())
        for p in params:
            if id(p) in seen and seen[id(p)] != name:
                raise ConfigError(
                    f"agents {seen[id(p)]!r} and {name!r} share a parameter; the sequential scheme needs separate "
                    "per-agent parameters (use share_params only with a simultaneous-update baseline)"
                )
            seen[id(p)] = name
        result[name] = params
    return result

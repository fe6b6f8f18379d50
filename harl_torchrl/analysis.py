r"""Exact multi-agent value functions of one-state cooperative games.

For a one-state game with team payoff :math:`R(a^1, \dots, a^n)` (a tensor with one
dimension per agent) and independent tabular policies :math:`\pi^i`, these functions
compute the quantities of the HARL theory exactly, by enumeration:

* the multi-agent state-action value of a subset of agents,
  :math:`Q^{i_{1:k}}_\pi(a^{i_{1:k}}) = \mathbb{E}_{a^{-i_{1:k}} \sim \pi}[R(a)]`;
* the multi-agent advantage
  :math:`A^{i_{1:m}}_\pi(a^{j_{1:k}}, a^{i_{1:m}}) = Q^{j_{1:k}, i_{1:m}}_\pi - Q^{j_{1:k}}_\pi`.

They serve to check the estimators the training code relies on (the advantage
decomposition, Lemma 6, and the factor-weighted surrogate, Proposition 11, of Zhong,
Kuba et al., 2024) and to explore the theory on small games.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def multi_agent_q(payoff: torch.Tensor, policies: Sequence[torch.Tensor], actions: Mapping[int, int]) -> torch.Tensor:
    """``Q^{agents}(actions)``: the expected payoff with ``actions`` fixed and the others drawn from ``policies``.

    Args:
        payoff: ``[k_1, ..., k_n]`` team payoff.
        policies: ``n`` probability vectors.
        actions: ``{agent_index: action}`` for the agents whose actions are fixed
            (empty: the value ``V``).

    Example:
        >>> payoff = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> uniform = [torch.tensor([0.5, 0.5])] * 2
        >>> float(multi_agent_q(payoff, uniform, {})), float(multi_agent_q(payoff, uniform, {0: 0, 1: 0}))
        (0.5, 1.0)
    """
    value = payoff
    # contract the last agent first so that dimension indices stay valid
    for agent in reversed(range(len(policies))):
        if agent in actions:
            value = value.select(agent, actions[agent])
        else:
            value = torch.tensordot(value, policies[agent], dims=([agent], [0]))
    return value


def multi_agent_advantage(
    payoff: torch.Tensor,
    policies: Sequence[torch.Tensor],
    given: Mapping[int, int],
    new: Mapping[int, int],
) -> torch.Tensor:
    """``A^{new}(given, new) = Q^{given + new} - Q^{given}`` (agents in ``given`` and ``new`` disjoint)."""
    if set(given) & set(new):
        raise ValueError("the agents in `given` and `new` must be disjoint")
    return multi_agent_q(payoff, policies, {**given, **new}) - multi_agent_q(payoff, policies, given)


def joint_advantage(payoff: torch.Tensor, policies: Sequence[torch.Tensor]) -> torch.Tensor:
    """``A(a) = R(a) - V`` for every joint action, ``[k_1, ..., k_n]``."""
    return payoff - multi_agent_q(payoff, policies, {})

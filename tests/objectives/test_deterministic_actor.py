"""DeterministicActorLoss: -Q1 of the joint action with only this agent's entry fresh; gradients stay home."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import JointQCritic, make_deterministic_actor
from harl_torchrl.objectives import DeterministicActorLoss

AGENTS = ("a", "b")


def build(reduction="mean"):
    actors = {a: make_deterministic_actor(a, 3, Bounded(-1.0, 1.0, shape=(2,)), hidden_sizes=(8,)) for a in AGENTS}
    critic = JointQCritic(["state"], 4, [(a, "action") for a in AGENTS], [2, 2], hidden_sizes=(8,))
    return actors, critic, DeterministicActorLoss(actors["a"], critic, reduction=reduction)


def batch():
    g = torch.Generator().manual_seed(4)
    td = TensorDict({"state": torch.randn(16, 4, generator=g)}, [16])
    for a in AGENTS:
        td.set((a, "observation"), torch.randn(16, 3, generator=g))
        td.set((a, "action"), torch.rand(16, 2, generator=g))
    return td


def test_value_is_minus_q1_with_this_agents_fresh_action_and_others_given():
    actors, critic, loss = build()
    td = batch()
    reference = td.clone()
    out = loss(td)
    fresh = actors["a"](td.copy())["a", "action"]
    q1 = critic.nets[0](torch.cat([td["state"], fresh, td["b", "action"]], dim=-1))
    torch.testing.assert_close(out["loss_actor"], -q1.mean())
    torch.testing.assert_close(out["q_value"], q1.mean())
    assert not out["q_value"].requires_grad
    assert (td == reference).all() and set(td.keys(True, True)) == set(reference.keys(True, True))


def test_gradient_reaches_only_this_agents_actor():
    actors, critic, loss = build()
    loss(batch())["loss_actor"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actors["a"].parameters() if p.dim() > 1)
    assert all(p.grad is None for p in actors["b"].parameters())
    assert all(p.grad is None for p in critic.parameters())
    assert set(loss.parameters()) == set(actors["a"].parameters())


def test_reductions_and_bad_reduction():
    _, _, mean_loss = build()
    td = batch()
    _, _, none_loss = build(reduction="none")
    none_loss.actor_network.load_state_dict(mean_loss.actor_network.state_dict())
    none_loss.critic.load_state_dict(mean_loss.critic.state_dict())
    per_sample = none_loss(td)["loss_actor"]
    assert per_sample.shape == (16, 1)
    torch.testing.assert_close(per_sample.mean(), mean_loss(td)["loss_actor"])
    with pytest.raises(ConfigError, match="reduction"):
        build(reduction="avg")

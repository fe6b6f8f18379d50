"""HAD3QN's losses: joint indexing, the critic's TD target, distillation (its best response: tests/sequential)."""

from __future__ import annotations

import copy

import pytest
import torch
from had3qn import KW
from had3qn import batch as _batch
from had3qn import build as _setup
from tensordict import TensorDict
from torchrl.data import Categorical

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.dueling import make_dueling_agent_qnet
from harl_torchrl.objectives.d3qn import HAD3QNAgentLoss, HAD3QNCriticLoss, action_slice, joint_index


def test_joint_index_and_slices_match_the_reshaped_table():
    torch.manual_seed(0)
    nvec = [2, 3, 4]
    table = torch.randn(5, 24)
    actions = [torch.randint(0, n, (5,)) for n in nvec]
    cube = table.view(5, *nvec)
    idx = joint_index(actions, nvec)
    torch.testing.assert_close(table.gather(-1, idx.unsqueeze(-1)).squeeze(-1), cube[(torch.arange(5), *actions)])
    b = torch.arange(5)
    torch.testing.assert_close(action_slice(table, actions, nvec, 0), cube[b, :, actions[1], actions[2]])
    torch.testing.assert_close(action_slice(table, actions, nvec, 1), cube[b, actions[0], :, actions[2]])
    torch.testing.assert_close(action_slice(table, actions, nvec, 2), cube[b, actions[0], actions[1], :])


@pytest.mark.parametrize("next_action", ["target_agents", "critic"])
def test_critic_target_against_a_hand_computation(next_action):
    agents, losses, critic_loss = _setup((2, 3), next_action=next_action)
    td = _batch(agents, (2, 3), n=6, obs=torch.randn(6, 1))
    nxt = _batch(agents, (2, 3), n=6, obs=torch.randn(6, 1))
    nxt.set("reward", torch.arange(6.0).unsqueeze(-1))
    nxt.set("terminated", torch.tensor([[False], [True], [False], [False], [True], [False]]))
    td.set("next", nxt)
    td.set("steps_to_next_obs", torch.tensor([1, 2, 3, 1, 1, 2]))
    # copies of the (target = initial) networks, then move the online ones: the target must use the copies
    target_critic = copy.deepcopy(critic_loss.qvalue_network)
    online_critic = critic_loss.qvalue_network
    target_agents = {a: copy.deepcopy(losses[a].actor_network) for a in agents}
    with torch.no_grad():
        for p in [*online_critic.parameters(), *(p for a in agents for p in losses[a].actor_network.parameters())]:
            p.add_(torch.randn_like(p))
    y = critic_loss.target_value(td)
    with torch.no_grad():
        if next_action == "target_agents":
            a0 = target_agents["agent_0"](nxt.copy())["agent_0", "action"]
            a1 = target_agents["agent_1"](nxt.copy())["agent_1", "action"]
            joint = a0 * 3 + a1
        else:
            joint = online_critic(nxt.copy())["joint_action_value"].argmax(-1)
        q_next = target_critic(nxt.copy())["joint_action_value"].gather(-1, joint.unsqueeze(-1)).squeeze(-1)
    gamma_k = 0.9 ** torch.tensor([1.0, 2.0, 3.0, 1.0, 1.0, 2.0])
    expected = torch.arange(6.0) + gamma_k * (1 - nxt["terminated"].squeeze(-1).float()) * q_next
    torch.testing.assert_close(y, expected)
    out = critic_loss(td)
    q = online_critic(td.copy())["joint_action_value"].gather(
        -1, (td["agent_0", "action"] * 3 + td["agent_1", "action"]).unsqueeze(-1)
    )
    torch.testing.assert_close(out["loss_qvalue"], ((q.squeeze(-1) - expected) ** 2).mean())


def test_critic_loss_parameters_are_the_critics_only():
    agents, losses, critic_loss = _setup()
    critic_ids = {id(p) for p in critic_loss.qvalue_network.parameters()}
    assert {id(p) for p in critic_loss.parameters()} == critic_ids
    for a in agents:
        assert {id(p) for p in losses[a].parameters()} == {id(p) for p in losses[a].actor_network.parameters()}


@pytest.mark.parametrize("distill", ["all_actions", "greedy"])
def test_distillation_loss_by_hand_and_gradient_isolation(distill):
    agents, losses, critic_loss = _setup((3, 2), distill=distill)
    td = _batch(agents, (3, 2), n=8, obs=torch.randn(8, 1))
    target = torch.randn(8, 3)
    td.set(("agent_0", "critic_action_value"), target)
    before = td.clone()
    out = losses["agent_0"](td)
    values = losses["agent_0"].actor_network(td.copy())["agent_0", "action_value"]
    if distill == "all_actions":
        expected = ((values - target) ** 2).mean()
    else:
        greedy = values.argmax(-1, keepdim=True)
        expected = ((values.gather(-1, greedy) - target.gather(-1, greedy)) ** 2).mean()
    torch.testing.assert_close(out["loss_actor"], expected)
    out["loss_actor"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in losses["agent_0"].parameters())
    assert all(p.grad is None for p in losses["agent_1"].parameters())
    assert all(p.grad is None for p in critic_loss.parameters())
    assert (td == before).all()


def test_masked_actions_are_left_out_of_the_distillation():
    agents, losses, _ = _setup((3, 2))
    td = _batch(agents, (3, 2), n=4)
    td.set(("agent_0", "action_mask"), torch.tensor([True, False, True]).expand(4, 3))
    target = torch.zeros(4, 3)
    td.set(("agent_0", "critic_action_value"), target)
    out = losses["agent_0"](td)
    values = losses["agent_0"].actor_network(td.copy())["agent_0", "action_value"]
    torch.testing.assert_close(out["loss_actor"], (values[:, [0, 2]] ** 2).mean())


def test_masked_values_of_a_masking_qnet_give_a_finite_loss_and_gradient():
    """Regression: a Q-net that masks writes finfo.min at unavailable actions; inf * 0 made the loss NaN (SMAX)."""
    torch.manual_seed(0)
    net = make_dueling_agent_qnet("agent_0", 1, Categorical(n=3), mask_key="action_mask", **KW)
    loss = HAD3QNAgentLoss("agent_0", net)
    td = TensorDict({("agent_0", "observation"): torch.ones(4, 1)}, [4])
    td.set(("agent_0", "action_mask"), torch.tensor([True, False, True]).expand(4, 3))
    td.set(("agent_0", "critic_action_value"), torch.zeros(4, 3))
    out = loss(td)
    assert torch.isfinite(out["loss_actor"])
    values = net(td.copy())["agent_0", "action_value"]
    assert values[:, 1].max() < -1e30  # the net does mask
    torch.testing.assert_close(out["loss_actor"], (values[:, [0, 2]] ** 2).mean())
    out["loss_actor"].backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_bad_settings_raise():
    _, losses, critic_loss = _setup()
    with pytest.raises(ConfigError, match="agent_losses"):
        HAD3QNCriticLoss(critic_loss.qvalue_network, {"agent_0": 2, "agent_1": 2})
    with pytest.raises(ConfigError, match="distill"):
        HAD3QNAgentLoss("agent_0", losses["agent_0"].actor_network, distill="max")
    with pytest.raises(ConfigError, match="HAD3QN needs Discrete"):
        make_dueling_agent_qnet("a", 1, Categorical(n=2).to_one_hot_spec())

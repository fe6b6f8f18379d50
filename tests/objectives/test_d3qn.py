"""HAD3QN: joint indexing, the critic's TD target, the distillation losses, the sequential best response."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Categorical
from torchrl.objectives import SoftUpdate

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.dueling import make_dueling_agent_qnet, make_joint_dueling_critic
from harl_torchrl.objectives.d3qn import (
    HAD3QNActorStep,
    HAD3QNAgentLoss,
    HAD3QNCriticLoss,
    action_slice,
    joint_index,
)
from harl_torchrl.sequential import ActorTrainer

KW = {"hidden_sizes": (16,), "head_hidden_sizes": (16,)}


def _setup(nvec=(2, 2), *, next_action="target_agents", distill="all_actions", obs_dim=1, seed=0):
    torch.manual_seed(seed)
    agents = [f"agent_{i}" for i in range(len(nvec))]
    specs = {a: Categorical(n=n) for a, n in zip(agents, nvec, strict=True)}
    losses = {
        a: HAD3QNAgentLoss(a, make_dueling_agent_qnet(a, obs_dim, s, **KW), distill=distill) for a, s in specs.items()
    }
    critic = make_joint_dueling_critic(["state"], obs_dim, specs, **KW)
    critic_loss = HAD3QNCriticLoss(
        critic, dict(zip(agents, nvec, strict=True)), agent_losses=losses, next_action=next_action, gamma=0.9
    )
    return agents, losses, critic_loss


def _batch(agents, nvec, n=16, obs=None):
    obs = torch.ones(n, 1) if obs is None else obs
    td = TensorDict({"state": obs}, [n])
    for a, k in zip(agents, nvec, strict=True):
        td.set((a, "observation"), obs)
        td.set((a, "action"), torch.randint(0, k, (n,)))
    return td


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


def test_best_response_round_follows_the_order():
    """Fixed order: agent_1's target slice is the table's row at agent_0's best response."""
    agents, losses, critic_loss = _setup((3, 3))
    table = torch.tensor([[0.0, 1.0, 2.0], [3.0, 9.0, 4.0], [5.0, 0.0, 1.0]])  # Q(a0, a1)
    net = critic_loss.qvalue_network.module.net
    with torch.no_grad():  # a critic that outputs the table whatever the state
        for p in net.parameters():
            p.zero_()
        net.advantage[-1].bias.copy_(table.flatten())
    trainers = {
        a: ActorTrainer(losses[a], torch.optim.SGD(losses[a].actor_network.parameters(), lr=0.0)) for a in agents
    }
    seen = {}
    for a, trainer in trainers.items():
        train = trainer.train

        def spy(td, _a=a, _train=train):
            seen[_a] = td.get((_a, "critic_action_value")).clone()
            return _train(td)

        trainer.train = spy
    td = _batch(agents, (3, 3), n=2)
    greedy1 = losses["agent_1"].greedy(td)
    table = table - table.mean()  # the dueling head centres the advantages (V = 0 here)
    HAD3QNActorStep(critic_loss, trainers, order="fixed").step(td)
    torch.testing.assert_close(seen["agent_0"], table[:, greedy1].T)
    best0 = seen["agent_0"].argmax(-1)
    torch.testing.assert_close(seen["agent_1"], table[best0])


def test_bad_settings_raise():
    _, losses, critic_loss = _setup()
    with pytest.raises(ConfigError, match="agent_losses"):
        HAD3QNCriticLoss(critic_loss.qvalue_network, {"agent_0": 2, "agent_1": 2})
    with pytest.raises(ConfigError, match="distill"):
        HAD3QNAgentLoss("agent_0", losses["agent_0"].actor_network, distill="max")
    with pytest.raises(ConfigError, match="HAD3QN needs Discrete"):
        make_dueling_agent_qnet("a", 1, Categorical(n=2).to_one_hot_spec())
    with pytest.raises(ConfigError, match="one entry per agent"):
        HAD3QNActorStep(critic_loss, {})


# r = [[10, -20], [5, 4]]: the optimum (0, 0) is the only pure Nash equilibrium, but an agent
# averaging over its partner's uniform exploration prefers action 1 (agent_0) and 0 (agent_1).
PAYOFF = torch.tensor([[10.0, -20.0], [5.0, 4.0]])


def _uniform_batch(n=256):
    agents = ["agent_0", "agent_1"]
    td = _batch(agents, (2, 2), n=n)
    nxt = _batch(agents, (2, 2), n=n)
    nxt.set("reward", PAYOFF[td["agent_0", "action"], td["agent_1", "action"]].unsqueeze(-1))
    nxt.set("terminated", torch.ones(n, 1, dtype=torch.bool))
    td.set("next", nxt)
    return td


def test_the_game_traps_independent_greedy_agents():
    """Independent learners (each regressing its own action's value on the shared data) settle on (1, 0)."""
    nash = [
        (i, j)
        for i, j in itertools.product(range(2), range(2))
        if PAYOFF[i, j] >= PAYOFF[:, j].max() and PAYOFF[i, j] >= PAYOFF[i, :].max()
    ]
    assert nash == [(0, 0)]
    torch.manual_seed(0)
    q = [torch.zeros(2, requires_grad=True) for _ in range(2)]
    opt = torch.optim.Adam(q, lr=0.1)
    for _ in range(300):
        td = _uniform_batch()
        r = td["next", "reward"].squeeze(-1)
        loss = sum(((qi[td[f"agent_{i}", "action"]] - r) ** 2).mean() for i, qi in enumerate(q))
        opt.zero_grad()
        loss.backward()
        opt.step()
    greedy = (int(q[0].argmax()), int(q[1].argmax()))
    assert greedy == (1, 0) and PAYOFF[greedy] < PAYOFF.max()


def test_had3qn_reaches_the_optimum_of_the_matrix_game(seed=0):
    agents, losses, critic_loss = _setup((2, 2), seed=seed)
    critic_opt = torch.optim.Adam(critic_loss.parameters(), lr=1e-2)
    trainers = {a: ActorTrainer(losses[a], torch.optim.Adam(losses[a].parameters(), lr=1e-2)) for a in agents}
    step = HAD3QNActorStep(critic_loss, trainers, seed=seed)
    updaters = [SoftUpdate(critic_loss, tau=0.05), *(SoftUpdate(losses[a], tau=0.05) for a in agents)]
    for _ in range(150):
        batch = _uniform_batch()
        out = critic_loss(batch)
        critic_opt.zero_grad()
        out["loss_qvalue"].backward()
        critic_opt.step()
        step.step(batch)
        for updater in updaters:
            updater.step()
    td = _batch(agents, (2, 2), n=1)
    greedy = tuple(int(losses[a].greedy(td)) for a in agents)
    assert greedy == (0, 0)
    q0 = losses["agent_0"].actor_network(td.copy())["agent_0", "action_value"]
    assert float(q0[0, 0].detach()) == pytest.approx(10.0, abs=1.5)  # distilled towards Q(s, ., a_1 = 0) = [10, 5]

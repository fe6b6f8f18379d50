"""HAD3QN's sequential best response (HAD3QNActorStep): the order of the round, and the matrix game it solves."""

from __future__ import annotations

import itertools

import pytest
import torch
from had3qn import batch as _batch
from had3qn import build as _setup
from torchrl.objectives import SoftUpdate

from harl_torchrl.errors import ConfigError
from harl_torchrl.sequential import ActorTrainer, HAD3QNActorStep


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

        def spy(td, _a=a, _train=train, **kwargs):
            seen[_a] = td.get((_a, "critic_action_value")).clone()
            return _train(td, **kwargs)

        trainer.train = spy
    td = _batch(agents, (3, 3), n=2)
    greedy1 = losses["agent_1"].greedy(td)
    table = table - table.mean()  # the dueling head centres the advantages (V = 0 here)
    HAD3QNActorStep(critic_loss, trainers, order="fixed").step(td)
    torch.testing.assert_close(seen["agent_0"], table[:, greedy1].T)
    best0 = seen["agent_0"].argmax(-1)
    torch.testing.assert_close(seen["agent_1"], table[best0])


def test_trainers_must_match_the_critics_agents():
    _, _, critic_loss = _setup()
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

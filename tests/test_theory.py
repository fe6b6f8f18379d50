"""The HARL theory, checked against the library: Lemma 6 and Proposition 11 on one-state games."""

import itertools

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import InteractionType, TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor

from harl_torchrl.analysis import joint_advantage, multi_agent_advantage, multi_agent_q
from harl_torchrl.modules import MaskedCategorical, joint_policy
from harl_torchrl.objectives import HAA2CLoss
from harl_torchrl.sequential import SequentialUpdater


def _game(n_agents, n_actions, seed):
    g = torch.Generator().manual_seed(seed)
    payoff = torch.randn([n_actions] * n_agents, generator=g, dtype=torch.float64)
    policies = [torch.softmax(torch.randn(n_actions, generator=g, dtype=torch.float64), 0) for _ in range(n_agents)]
    return payoff, policies, g


@pytest.mark.parametrize("n_agents, seed", [(2, 0), (3, 1), (3, 2), (4, 3)])
def test_advantage_decomposition_lemma_6(n_agents, seed):
    payoff, policies, g = _game(n_agents, 3, seed)
    for _ in range(10):
        action = torch.randint(0, 3, (n_agents,), generator=g).tolist()
        order = torch.randperm(n_agents, generator=g).tolist()
        for m in range(1, n_agents + 1):
            prefix = {agent: action[agent] for agent in order[:m]}
            joint = multi_agent_advantage(payoff, policies, {}, prefix)
            parts = sum(
                multi_agent_advantage(payoff, policies, {a: action[a] for a in order[:j]}, {order[j]: action[order[j]]})
                for j in range(m)
            )
            torch.testing.assert_close(joint, parts, rtol=1e-12, atol=1e-12)
    assert multi_agent_q(payoff, policies, {}).abs() > 0


class _Table(nn.Module):
    """A tabular softmax policy: logits that ignore the (constant) observation."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone().float())

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*observation.shape[:-1], -1)


def _tabular_actor(name, probs):
    module = TensorDictModule(_Table(probs.log()), in_keys=[(name, "observation")], out_keys=[(name, "logits")])
    return ProbabilisticActor(
        module,
        in_keys={"logits": (name, "logits")},
        out_keys=[(name, "action")],
        distribution_class=MaskedCategorical,
        return_log_prob=True,
        default_interaction_type=InteractionType.RANDOM,
    )


class _MoveTo:
    """A 'trainer' that sets the agent's policy to a given new policy and records the factor it saw."""

    def __init__(self, actor, new_probs, seen):
        self.actor, self.new_probs, self.seen = actor, new_probs, seen
        self.loss = HAA2CLoss(actor)

    def train(self, batch, generator):
        self.seen.append(batch.get("factor").clone())
        with torch.no_grad():
            self.actor.module[0].module.logits.copy_(self.new_probs.log())
        return TensorDict({})


@pytest.mark.parametrize("n_agents, seed", [(2, 0), (3, 1), (3, 4)])
def test_factor_weighted_surrogate_proposition_11(n_agents, seed):
    payoff, old, g = _game(n_agents, 3, seed)
    new = [torch.softmax(p.log() + 0.7 * torch.randn(3, generator=g, dtype=torch.float64), 0) for p in old]
    names = [f"agent_{i}" for i in range(n_agents)]
    actors = {name: _tabular_actor(name, probs) for name, probs in zip(names, old, strict=True)}
    torch.manual_seed(seed)
    n = 40_000
    batch = TensorDict({(name, "observation"): torch.zeros(n, 1) for name in names}, [n])
    with torch.no_grad():
        batch = joint_policy(actors)(batch)
    actions = torch.stack([batch[name, "action"] for name in names], -1)
    advantage = joint_advantage(payoff, old)[tuple(actions.T)].float()
    batch["advantage"] = advantage.unsqueeze(-1)
    seen = []
    trainers = {
        name: _MoveTo(actor, probs, seen) for name, actor, probs in zip(names, actors.values(), new, strict=True)
    }
    updater = SequentialUpdater(trainers, None, normalize_advantage=False, seed=seed)
    updater.update(batch)
    order = [names.index(name) for name in updater.last_order]
    for m, agent in enumerate(order):
        factor = seen[m].squeeze(-1).double()
        ratio = (new[agent] / old[agent])[actions[:, agent]]
        samples = (ratio - 1) * factor * advantage.double()
        estimate, standard_error = samples.mean(), samples.std() / n**0.5
        exact = sum(
            torch.prod(torch.stack([new[a][x] for a, x in zip(order[: m + 1], prefix, strict=True)]))
            * multi_agent_advantage(payoff, old, dict(zip(order[:m], prefix[:m], strict=True)), {agent: prefix[m]})
            for prefix in itertools.product(range(3), repeat=m + 1)
        )
        assert abs(estimate - exact) <= 4 * standard_error, (m, estimate.item(), exact.item())
        if m > 0:
            assert not torch.allclose(factor, torch.ones_like(factor)), "the factor must matter here"

"""Off-policy probes and one-step continuous games, with the library's pieces in a tiny training loop.

* Q regression: a constant reward of 1 forever, gamma 0.9, must give Q = 10 (bootstrapping
  through the target networks).
* A coupled quadratic game whose optimum (0.6, -0.4) is known: HATD3 must find it.
* The trap of homogeneity, continuous: two agents with the same observation, reward
  ``-a1 * a2`` on ``[-1, 1]^2`` (best: opposite corners, reward 1). A parameter-shared
  deterministic policy acts identically for both agents, so its reward ``-a^2`` can never
  exceed 0; heterogeneous agents updated sequentially must get close to 1.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.data import Bounded
from torchrl.objectives import SoftUpdate

from harl_torchrl.modules import JointQCritic, make_deterministic_actor
from harl_torchrl.objectives import DeterministicActorLoss, JointQLoss, TargetActions
from harl_torchrl.objectives.deterministic_actor import detached_q
from harl_torchrl.sequential import ActorTrainer, DelayedUpdates, SequentialActorStep

SPEC = Bounded(-1.0, 1.0, shape=(1,))
AGENTS = ("agent_0", "agent_1")
HIDDEN = (32, 32)


def joint_critic(num_qvalue=2, hidden=HIDDEN):
    return JointQCritic(
        [(a, "observation") for a in AGENTS[:1]],
        1,
        [(a, "action") for a in AGENTS],
        [1, 1],
        num_qvalue=num_qvalue,
        hidden_sizes=hidden,
    )


def test_q_regression_reaches_the_discounted_fixed_point():
    torch.manual_seed(0)
    critic = JointQCritic(["state"], 1, [("a", "action")], [1], num_qvalue=2, hidden_sizes=(16, 16))
    actors = {"a": make_deterministic_actor("a", 1, SPEC, hidden_sizes=(8,))}
    targets = TargetActions(actors, {"a": SPEC}, noise_std=0.2, noise_clip=0.5)
    loss = JointQLoss(critic, targets, gamma=0.9)
    updaters = [SoftUpdate(loss, tau=0.2), SoftUpdate(targets, tau=0.2)]
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    n = 64
    ones = torch.ones(n, 1)
    for _ in range(400):
        batch = TensorDict(
            {
                "state": ones,
                ("a", "action"): torch.rand(n, 1) * 2 - 1,
                "next": {
                    "state": ones,
                    ("a", "observation"): ones,
                    "reward": ones,
                    "terminated": torch.zeros(n, 1, dtype=torch.bool),
                },
            },
            [n],
        )
        optimizer.zero_grad()
        loss(batch)["loss_qvalue"].backward()
        optimizer.step()
        for updater in updaters:
            updater.step()
    with torch.no_grad():
        q = critic(TensorDict({"state": ones, ("a", "action"): torch.linspace(-1, 1, n)[:, None]}, [n]))
    values = q["state_action_value"]
    assert (values - 10.0).abs().max() < 0.3, values.mean(0)


def collect(policies, reward_fn, n, noise, generator, uniform_share=0.2):
    """One-step transitions around the current policy: Gaussian noise, plus a share of uniform actions."""
    obs = torch.ones(n, 1)
    td = TensorDict({(a, "observation"): obs for a in AGENTS}, [n])
    with torch.no_grad():
        for policy in policies:
            td = policy(td)
    for a in AGENTS:
        action = td[a, "action"] + noise * torch.randn(n, 1, generator=generator)
        uniform = torch.rand(n, 1, generator=generator) < uniform_share
        action = torch.where(uniform, torch.rand(n, 1, generator=generator) * 2 - 1, action)
        td.set((a, "action"), action.clamp(-1.0, 1.0))
    reward = reward_fn(td[AGENTS[0], "action"], td[AGENTS[1], "action"])
    td.set("next", TensorDict({"reward": reward, "terminated": torch.ones(n, 1, dtype=torch.bool)}, [n]))
    return td


class SharedActorLoss(nn.Module):
    """Parameter-shared baseline: one network acts for both agents, one step on -Q1(s, a(theta), a(theta))."""

    def __init__(self, actor_network, critic):
        super().__init__()
        self.actor_network = actor_network
        self.__dict__["critic"] = critic

    def forward(self, td):
        q = detached_q(self.critic, self.actor_network(td.copy()), heads=1)
        return TensorDict({"loss_actor": -q.mean(), "q_value": q.detach().mean()})


def train(
    reward_fn,
    *,
    shared=False,
    iterations=150,
    seed=0,
    n=128,
    actor_lr=3e-3,
    noise=0.3,
    uniform_share=0.2,
    warmup=0,
    critic_hidden=HIDDEN,
):
    """HATD3 (or the shared-parameter baseline) on a one-step two-agent game; returns the greedy actions.

    Each iteration collects ``n`` fresh transitions around the current policy (Gaussian
    noise plus a share of uniform actions; all uniform during the first ``warmup``
    iterations, when only the critic learns), takes one critic step on them and, every
    second iteration (TD3's policy delay), one sequential actor step.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    actors = {a: make_deterministic_actor(a, 1, SPEC, hidden_sizes=HIDDEN) for a in AGENTS}
    if shared:
        actors[AGENTS[1]] = TensorDictModule(
            actors[AGENTS[0]].module, in_keys=[(AGENTS[1], "observation")], out_keys=[(AGENTS[1], "action")]
        )
    critic = joint_critic(hidden=critic_hidden)
    q_loss = JointQLoss(critic, None, gamma=0.99)  # one-step game: every transition is terminal
    q_updater = SoftUpdate(q_loss, tau=0.005)
    critic_optimizer = torch.optim.Adam(q_loss.parameters(), lr=3e-3)
    if shared:
        team = TensorDictSequential(*actors.values())
        trainers = {"team": ActorTrainer(SharedActorLoss(team, critic), torch.optim.Adam(team.parameters(), lr=3e-3))}
        step = SequentialActorStep(trainers, scheme="simultaneous")
    else:
        trainers = {
            a: ActorTrainer(DeterministicActorLoss(actor, critic), torch.optim.Adam(actor.parameters(), lr=actor_lr))
            for a, actor in actors.items()
        }
        step = SequentialActorStep(trainers, scheme="sequential", seed=seed)
    delay = DelayedUpdates(2)
    for iteration in range(iterations):
        # random warm-up (as the reference's): the critic learns the landscape before the actors move
        warming = iteration < warmup
        batch = collect(actors.values(), reward_fn, n, noise, generator, 1.0 if warming else uniform_share)
        # every transition terminal: the target is the reward, whatever the next actions
        batch.set(("next", AGENTS[0], "observation"), batch[AGENTS[0], "observation"])
        batch.get("next").update({(a, "action"): batch[a, "action"] for a in AGENTS})
        critic_optimizer.zero_grad()
        q_loss(batch)["loss_qvalue"].backward()
        critic_optimizer.step()
        if delay.tick() and not warming:
            step.step(batch)
            q_updater.step()
    td = TensorDict({(a, "observation"): torch.ones(1, 1) for a in AGENTS}, [1])
    with torch.no_grad():
        for actor in actors.values():
            td = actor(td)
    return td[AGENTS[0], "action"].item(), td[AGENTS[1], "action"].item()


def quadratic(a1, a2):
    return -((a1 - 0.6) ** 2) - (a2 + 0.4) ** 2 - 0.5 * (a1 + a2 - 0.2) ** 2


def test_hatd3_solves_a_coupled_quadratic_game():
    start = quadratic(0.0, 0.0)
    a1, a2 = train(
        quadratic, iterations=200, n=256, actor_lr=1e-3, noise=0.2, uniform_share=0.0, warmup=50, critic_hidden=(64, 64)
    )
    assert start <= -0.3  # acting at the box centre is far from optimal...
    assert quadratic(a1, a2) > -0.03, (a1, a2)  # ...the learned joint action is not (optimum: 0 at (0.6, -0.4))
    assert abs(a1 - 0.6) < 0.12 and abs(a2 + 0.4) < 0.12, (a1, a2)


def opposite_signs(a1, a2):
    return -a1 * a2


@pytest.mark.parametrize("seed", [0])
def test_trap_of_homogeneity_escaped_by_heterogeneous_agents_not_by_a_shared_policy(seed):
    ha = opposite_signs(*[torch.tensor(a) for a in train(opposite_signs, seed=seed)])
    shared_actions = train(opposite_signs, shared=True, seed=seed)
    shared = opposite_signs(*[torch.tensor(a) for a in shared_actions])
    assert shared_actions[0] == shared_actions[1]  # the trap: one policy, one observation, one action
    assert shared <= 0.0
    assert ha > 0.8, ha

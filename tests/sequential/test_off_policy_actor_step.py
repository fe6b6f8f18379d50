"""The off-policy actor step: who sees which actions, who moves when, and that the critic never does."""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import JointQCritic, make_deterministic_actor
from harl_torchrl.objectives import DeterministicActorLoss
from harl_torchrl.sequential import ActorTrainer, DelayedUpdates, SequentialActorStep

AGENTS = ["a", "b", "c"]
OBS, ACT, BATCH = 3, 2, 32


class RecordingLoss(DeterministicActorLoss):
    """Records the joint action and every actor's parameters each time it is evaluated."""

    def __init__(self, actor, critic, log, actors):
        super().__init__(actor, critic)
        self.__dict__["log"] = log
        self.__dict__["actors"] = actors
        self.__dict__["name"] = actor.out_keys[0][0]

    def forward(self, td):
        self.log.append(
            {
                "agent": self.name,
                "joint": {a: td.get((a, "action")).clone() for a in AGENTS},
                "params": {a: [p.detach().clone() for p in actor.parameters()] for a, actor in self.actors.items()},
            }
        )
        return super().forward(td)


def build(scheme="sequential", seed=0, lr=1e-2, after_step=None):
    torch.manual_seed(1)
    spec = Bounded(-1.0, 1.0, shape=(ACT,))
    actors = {a: make_deterministic_actor(a, OBS, spec, hidden_sizes=(16,)) for a in AGENTS}
    critic = JointQCritic(
        [(a, "observation") for a in AGENTS], OBS * 3, [(a, "action") for a in AGENTS], [ACT] * 3, hidden_sizes=(16,)
    )
    log: list = []
    trainers = {
        a: ActorTrainer(
            RecordingLoss(actor, critic, log, actors),
            torch.optim.SGD(actor.parameters(), lr=lr),
            after_step=after_step,
        )
        for a, actor in actors.items()
    }
    return actors, critic, SequentialActorStep(trainers, scheme=scheme, seed=seed), log


def make_batch():
    g = torch.Generator().manual_seed(5)
    data = {(a, "observation"): torch.randn(BATCH, OBS, generator=g) for a in AGENTS}
    data.update({(a, "action"): torch.rand(BATCH, ACT, generator=g) * 2 - 1 for a in AGENTS})
    data["state"] = torch.randn(BATCH, 4, generator=g)
    return TensorDict(data, [BATCH])


def actions_of(actors, batch):
    with torch.no_grad():
        return {a: actor(batch.copy()).get((a, "action")) for a, actor in actors.items()}


def test_sequential_each_agent_sees_new_actions_of_those_before_and_current_of_those_after():
    actors, _critic, step, log = build()
    batch = make_batch()
    before = actions_of(actors, batch)
    initial = {a: copy.deepcopy(actor) for a, actor in actors.items()}
    step.step(batch)
    order = step.last_order
    after = actions_of(actors, batch)
    assert [entry["agent"] for entry in log] == order
    for m, entry in enumerate(log):
        for j, other in enumerate(order):
            if other == entry["agent"]:
                continue
            expected = after[other] if j < m else before[other]
            torch.testing.assert_close(entry["joint"][other], expected, rtol=0, atol=0)
        # agents not yet updated are bit-identical to their initial parameters
        for other in order[m:]:
            for p, q in zip(entry["params"][other], initial[other].parameters(), strict=True):
                assert torch.equal(p, q)
    for a in AGENTS:  # every agent moved (so the checks above compare moved and unmoved actions)
        assert not torch.equal(before[a], after[a])


def test_critic_untouched_and_gradient_free_during_actor_step():
    _actors, critic, step, _ = build()
    params = [p.detach().clone() for p in critic.parameters()]
    step.step(make_batch())
    assert all(p.grad is None for p in critic.parameters())
    assert all(torch.equal(p, q) for p, q in zip(critic.parameters(), params, strict=True))


def test_batch_not_modified():
    _, _, step, _ = build()
    batch = make_batch()
    reference = batch.clone()
    step.step(batch)
    assert (batch == reference).all()
    assert set(batch.keys(True, True)) == set(reference.keys(True, True))


def test_buffer_scheme_uses_buffer_actions_in_fixed_order():
    _actors, _, step, log = build("buffer")
    batch = make_batch()
    for _ in range(3):
        log.clear()
        diagnostics = step.step(batch)
        assert step.last_order == AGENTS
        assert diagnostics["order"].tolist() == [0, 1, 2]
        for entry in log:
            for other in AGENTS:
                if other != entry["agent"]:
                    assert torch.equal(entry["joint"][other], batch[other, "action"])


def test_simultaneous_scheme_uses_the_current_actions_of_everyone():
    actors, _, step, log = build("simultaneous")
    batch = make_batch()
    before = actions_of(actors, batch)
    step.step(batch)
    for entry in log:
        for other in AGENTS:
            if other != entry["agent"]:
                assert torch.equal(entry["joint"][other], before[other])
    assert step.last_order == AGENTS


def test_same_seed_same_orders_and_state_round_trip():
    def orders(seed, n=8):
        _, _, step, _ = build(seed=seed)
        batch = make_batch()
        return [tuple(step.step(batch)["order"].tolist()) for _ in range(n)]

    first = orders(0)
    assert first == orders(0)
    assert first != orders(1)
    assert len(set(first)) > 1  # the order is redrawn every call
    _, _, step, _ = build(seed=3)
    state = step.state_dict()
    assert set(state) == {"generator"}
    batch = make_batch()
    drawn = step.step(batch)["order"].tolist()
    step.load_state_dict(state)
    assert step.step(batch)["order"].tolist() == drawn


def test_after_step_hook_sees_detached_outputs_and_merges_its_own():
    seen = []

    def hook(out):
        seen.append(out)
        return TensorDict({"hook_value": out["q_value"] * 2})

    _, _, step, _ = build(after_step=hook)
    diagnostics = step.step(make_batch())
    assert len(seen) == 3
    assert all(not v.requires_grad for out in seen for v in out.values())
    for a in AGENTS:
        torch.testing.assert_close(diagnostics[a, "hook_value"], diagnostics[a, "q_value"] * 2)
        assert diagnostics[a, "grad_norm"] > 0


def test_bad_arguments():
    actors, critic, _, _ = build()
    trainer = ActorTrainer(DeterministicActorLoss(actors["a"], critic), torch.optim.SGD(actors["a"].parameters(), 0.1))
    with pytest.raises(ConfigError, match="scheme"):
        SequentialActorStep({"a": trainer}, scheme="together")
    with pytest.raises(ConfigError, match="order"):
        SequentialActorStep({"a": trainer}, order="alphabetical")
    with pytest.raises(ConfigError, match="share a parameter"):
        SequentialActorStep({"a": trainer, "b": trainer})
    with pytest.raises(ConfigError, match="at least one"):
        SequentialActorStep({})
    with pytest.raises(ConfigError, match="max_grad_norm"):
        ActorTrainer(trainer.loss, trainer.optimizer, max_grad_norm=0.0)


def test_grad_clipping_bounds_the_step():
    _, critic, _, _ = build()
    actor = make_deterministic_actor("a", OBS, Bounded(-1.0, 1.0, shape=(ACT,)), hidden_sizes=(16,))
    params = [p.detach().clone() for p in actor.parameters()]
    loss = DeterministicActorLoss(actor, critic)
    batch = make_batch()
    diagnostics = ActorTrainer(loss, torch.optim.SGD(actor.parameters(), lr=1.0), max_grad_norm=1e-3).train(batch)
    moved = torch.linalg.vector_norm(
        torch.stack([(p - q).norm() for p, q in zip(actor.parameters(), params, strict=True)])
    )
    assert diagnostics["grad_norm"] > 1e-3  # the raw gradient was larger than the clip...
    assert moved <= 1e-3 * (1 + 1e-4)  # ...and the SGD step (lr 1) was clipped to it


def test_policy_delay():
    delay = DelayedUpdates(2)
    due = [delay.tick() for _ in range(6)]
    assert due == [False, True, False, True, False, True]
    state = delay.state_dict()
    other = DelayedUpdates(2)
    other.load_state_dict(state)
    assert other.tick() is False and other.tick() is True
    assert all(DelayedUpdates(1).tick() for _ in range(3))
    with pytest.raises(ConfigError):
        DelayedUpdates(0)

"""AgentOrder: the one order generator behind both the on-policy updater and the off-policy actor step."""

from __future__ import annotations

import pytest
import torch
from torchrl.data import Bounded

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import JointQCritic, make_agent_actor, make_deterministic_actor
from harl_torchrl.objectives import DeterministicActorLoss, HAPPOLoss
from harl_torchrl.sequential import ActorTrainer, AgentOrder, PolicyTrainer, SequentialActorStep, SequentialUpdater

NAMES = ["a", "b", "c"]


def test_random_orders_are_permutations_covering_all_and_reproducible():
    orders = AgentOrder(NAMES, seed=7)
    drawn = [tuple(orders.draw()) for _ in range(200)]
    assert all(sorted(order) == NAMES for order in drawn)
    assert len(set(drawn)) == 6  # every permutation of three agents turns up
    again = AgentOrder(NAMES, seed=7)
    assert [tuple(again.draw()) for _ in range(200)] == drawn
    assert [tuple(AgentOrder(NAMES, seed=8).draw()) for _ in range(200)] != drawn


def test_fixed_order_is_the_given_one_and_leaves_the_generator_alone():
    orders = AgentOrder(NAMES, order="fixed", seed=0)
    state = orders.generator.get_state()
    assert [orders.draw() for _ in range(3)] == [NAMES] * 3
    assert torch.equal(orders.generator.get_state(), state)
    assert orders.indices(["c", "a", "b"]).tolist() == [2, 0, 1]


def test_state_dict_shape_and_round_trip():
    orders = AgentOrder(NAMES, seed=1)
    state = orders.state_dict()
    assert list(state) == ["generator"] and state["generator"].dtype == torch.uint8
    first = [orders.draw() for _ in range(5)]
    orders.load_state_dict(state)
    assert [orders.draw() for _ in range(5)] == first


def test_both_schemes_draw_from_the_same_generator_class_with_the_same_stream():
    on_actors = {a: make_agent_actor(a, 2, Bounded(-1.0, 1.0, shape=(1,))) for a in NAMES}
    updater = SequentialUpdater(
        {a: PolicyTrainer(HAPPOLoss(x), torch.optim.Adam(x.parameters())) for a, x in on_actors.items()},
        critic=None,
        seed=3,
    )
    off_actors = {a: make_deterministic_actor(a, 2, Bounded(-1.0, 1.0, shape=(1,)), hidden_sizes=(4,)) for a in NAMES}
    critic = JointQCritic([("a", "observation")], 2, [(a, "action") for a in NAMES], [1, 1, 1], hidden_sizes=(4,))
    step = SequentialActorStep(
        {
            a: ActorTrainer(DeterministicActorLoss(x, critic), torch.optim.Adam(x.parameters()))
            for a, x in off_actors.items()
        },
        seed=3,
    )
    reference = AgentOrder(NAMES, seed=3)
    assert isinstance(updater.orders, AgentOrder) and isinstance(step.orders, AgentOrder)
    assert updater.generator is updater.orders.generator  # minibatch shuffles share the order's stream
    for _ in range(5):
        expected = reference.draw()
        assert updater.draw_order() == expected and step.orders.draw() == expected
    assert set(updater.state_dict()) == set(step.state_dict()) == {"generator"}


def test_bad_arguments():
    with pytest.raises(ConfigError, match="at least one"):
        AgentOrder([])
    with pytest.raises(ConfigError, match="'random' or 'fixed'"):
        AgentOrder(NAMES, order="shuffled")

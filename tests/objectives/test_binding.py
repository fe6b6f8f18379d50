"""ParameterBinding computes what ``params.to_module(module)`` computes, without swapping on each call."""

import copy

import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import Bounded

from harl_torchrl.modules import JointQCritic, make_deterministic_actor
from harl_torchrl.objectives import FusedSoftUpdate, JointQLoss, TargetActions
from harl_torchrl.objectives.binding import ParameterBinding


def _swapped(module, params, x):
    with params.to_module(module):
        return module(x)


def test_target_binding_follows_in_place_changes_and_new_tensors():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    target = TensorDict.from_module(net).data.clone()
    binding = ParameterBinding(net)
    x = torch.randn(5, 3)
    bound = binding.module(target)
    assert bound is not net and list(bound.parameters()) == []  # a copy holding target's tensors as attributes
    with torch.no_grad():
        target.apply_(lambda t: t.mul_(0.5))  # an in-place change (a Polyak step, a checkpoint load)
    assert binding.module(target) is bound
    assert torch.equal(bound(x), _swapped(net, target, x))
    other = target.clone().apply_(lambda t: t.add_(1.0))  # new tensors: bound again, in the same copy
    assert binding.module(other) is bound and torch.equal(bound(x), _swapped(net, other, x))
    assert not torch.equal(bound(x), _swapped(net, target, x))
    assert all(p.requires_grad for p in net.parameters()), "the module itself is untouched"


def test_live_binding_is_the_module_itself():
    net = nn.Linear(3, 2)
    assert ParameterBinding(net).module(TensorDict.from_module(net, as_module=True)) is net


def test_losses_compute_what_the_swap_computes_across_target_updates():
    torch.manual_seed(0)
    specs = {a: Bounded(-2.0, 2.0, shape=(2,)) for a in "ab"}
    actors = {a: make_deterministic_actor(a, 3, spec, hidden_sizes=[8]) for a, spec in specs.items()}
    critic = JointQCritic(["state"], 4, [("a", "action"), ("b", "action")], [2, 2], hidden_sizes=[8])
    targets = TargetActions(actors, specs, noise_std=0.0)
    loss = JointQLoss(critic, targets)
    updaters = [FusedSoftUpdate(loss, tau=0.5), FusedSoftUpdate(targets, tau=0.5)]
    td = TensorDict(
        {
            "state": torch.randn(6, 4),
            **{(a, "action"): torch.rand(6, 2) for a in "ab"},
            "next": {
                "state": torch.randn(6, 4),
                **{(a, "observation"): torch.randn(6, 3) for a in "ab"},
                "reward": torch.randn(6, 1),
                "terminated": torch.zeros(6, 1, dtype=torch.bool),
            },
        },
        [6],
    )
    for _ in range(3):
        with torch.no_grad():  # move the live networks, then the targets half-way
            for p in [*critic.parameters(), *(p for actor in actors.values() for p in actor.parameters())]:
                p.add_(torch.randn_like(p))
        for updater in updaters:
            updater.step()
        next_td = td["next"].copy()
        with targets.target_actors_params.to_module(targets.actors):
            for actor in targets.actors.values():
                actor(next_td)
        with loss.target_qvalue_network_params.to_module(loss.qvalue_network):
            next_q = loss.qvalue_network(next_td)["state_action_value"].min(-1, keepdim=True).values
        expected = td["next", "reward"] + loss.gamma * next_q
        torch.testing.assert_close(loss.target_value(td), expected, rtol=0.0, atol=0.0)
        with loss.qvalue_network_params.to_module(loss.qvalue_network):
            q = loss.qvalue_network(td.copy())["state_action_value"]
        expected_loss = (q - loss.target_value(td)).pow(2).sum(-1).mean()
        torch.testing.assert_close(loss(td)["loss_qvalue"], expected_loss, rtol=0.0, atol=0.0)


def test_losses_follow_a_state_dict_load_and_bind_anew_after_a_cast():
    torch.manual_seed(0)
    specs = {"a": Bounded(-1.0, 1.0, shape=(2,))}
    actors = {"a": make_deterministic_actor("a", 3, specs["a"], hidden_sizes=[8])}
    critic = JointQCritic(["state"], 4, [("a", "action")], [2], hidden_sizes=[8])
    targets = TargetActions(actors, specs, noise_std=0.0)
    loss = JointQLoss(critic, targets)
    td = TensorDict(
        {
            "state": torch.randn(5, 4),
            ("a", "action"): torch.rand(5, 2),
            "next": {
                "state": torch.randn(5, 4),
                ("a", "observation"): torch.randn(5, 3),
                "reward": torch.randn(5, 1),
                "terminated": torch.zeros(5, 1, dtype=torch.bool),
            },
        },
        [5],
    )
    loss.target_value(td)  # bound

    def moved(state):  # every weight and bias moved; gamma and the boxes kept
        return {k: v + 1.0 if k.endswith(("weight", "bias")) else v for k, v in state.items()}

    loss.load_state_dict(moved(loss.state_dict()))  # copied in place
    targets.load_state_dict(moved(targets.state_dict()))

    def reference():  # the swap, on copies (a to_module leaves new tensor objects in the TensorDicts it swapped)
        their_loss, their_targets = copy.deepcopy(loss), copy.deepcopy(targets)
        next_td = td["next"].copy()
        with their_targets.target_actors_params.to_module(their_targets.actors):
            their_targets.actors["a"](next_td)
        next_td.set(("a", "action"), next_td["a", "action"].clamp(-1.0, 1.0))
        with their_loss.target_qvalue_network_params.to_module(their_loss.qvalue_network):
            next_q = their_loss.qvalue_network(next_td)["state_action_value"].min(-1, keepdim=True).values
        return td["next", "reward"] + loss.gamma * next_q

    torch.testing.assert_close(loss.target_value(td), reference(), rtol=0.0, atol=0.0)
    loss.double()  # new tensors: bound anew
    targets.double()
    td = td.apply(lambda t: t.double() if t.is_floating_point() else t)
    value = loss.target_value(td)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, reference(), rtol=0.0, atol=0.0)

"""Deterministic actors: inside each agent's own box, own parameters, refuse what they cannot act in."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, Composite, Unbounded

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import MLPTrunk, make_deterministic_actor, make_deterministic_actors


def test_actions_fill_the_box_and_never_leave_it():
    spec = Bounded(torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.5]), shape=(2,))
    actor = make_deterministic_actor("a", 4, spec, hidden_sizes=(16,))
    obs = torch.randn(512, 4) * 1e3  # saturate the tanh
    action = actor(TensorDict({("a", "observation"): obs}, [512]))["a", "action"]
    assert (action >= spec.space.low).all() and (action <= spec.space.high).all()
    # saturated outputs reach both ends of each dimension: the scale is the box's, per dimension
    torch.testing.assert_close(action.min(0).values, spec.space.low, atol=1e-3, rtol=0)
    torch.testing.assert_close(action.max(0).values, spec.space.high, atol=1e-3, rtol=0)
    zero = actor.module
    torch.testing.assert_close(zero.center, torch.tensor([0.0, 0.25]))
    torch.testing.assert_close(zero.half_range, torch.tensor([2.0, 0.25]))


def test_plain_trunk_by_default_layer_norm_on_request():
    spec = Bounded(-1.0, 1.0, shape=(1,))
    plain = make_deterministic_actor("a", 3, spec).module
    assert [m.out_features for m in plain.trunk if isinstance(m, torch.nn.Linear)] == [128, 128]
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain.modules())
    assert isinstance(make_deterministic_actor("a", 3, spec, layer_norm=True).module.trunk, MLPTrunk)


def test_refuses_discrete_and_unbounded_actions():
    with pytest.raises(ConfigError, match="HASAC"):
        make_deterministic_actor("a", 3, Categorical(n=4))
    with pytest.raises(ConfigError, match="bounded"):
        make_deterministic_actor("a", 3, Unbounded(shape=(2,)))
    with pytest.raises(ConfigError, match="bounds"):
        make_deterministic_actor("a", 3, Bounded(1.0, 1.0, shape=(1,)))


def stub_env(action_specs, obs_dims):
    """What make_deterministic_actors reads from an env: group_map and the unbatched specs."""
    return SimpleNamespace(
        group_map={a: [a] for a in action_specs},
        full_observation_spec_unbatched=Composite(
            {a: Composite(observation=Unbounded(shape=(d,))) for a, d in obs_dims.items()}
        ),
        full_action_spec_unbatched=Composite({a: Composite(action=s) for a, s in action_specs.items()}),
    )


def test_one_actor_per_agent_with_its_own_sizes_and_parameters():
    env = stub_env(
        {"x": Bounded(-1.0, 1.0, shape=(2,)), "y": Bounded(-0.4, 0.4, shape=(3,))},
        {"x": 5, "y": 7},
    )
    actors = make_deterministic_actors(env, hidden_sizes=(8,))
    assert list(actors) == ["x", "y"]
    td = TensorDict({("x", "observation"): torch.randn(4, 5), ("y", "observation"): torch.randn(4, 7)}, [4])
    for actor in actors.values():
        td = actor(td)
    assert td["x", "action"].shape == (4, 2) and td["y", "action"].shape == (4, 3)
    assert td["y", "action"].abs().max() <= 0.4
    ids = [{id(p) for p in actor.parameters()} for actor in actors.values()]
    assert not ids[0] & ids[1]

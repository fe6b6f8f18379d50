"""JointQCritic: independent heads, Q1-only evaluation, one-hot discrete actions, inputs from an env."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, Composite, MultiCategorical, Unbounded

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import JointQCritic, make_joint_q_critic


def td_continuous(n=6):
    g = torch.Generator().manual_seed(0)
    return TensorDict(
        {"state": torch.randn(n, 3, generator=g), ("a", "action"): torch.rand(n, 2, generator=g)},
        [n],
    )


def test_twin_heads_are_independent_networks_and_heads_one_is_q1():
    critic = JointQCritic(["state"], 3, [("a", "action")], [2], num_qvalue=2, hidden_sizes=(8,))
    td = td_continuous()
    both = critic(td.copy())["state_action_value"]
    assert both.shape == (6, 2)
    assert not torch.allclose(both[:, 0], both[:, 1])  # separately initialised
    torch.testing.assert_close(critic(td.copy(), heads=1)["state_action_value"], both[:, :1], rtol=0, atol=0)
    first = {id(p) for p in critic.nets[0].parameters()}
    assert not first & {id(p) for p in critic.nets[1].parameters()}
    # the input is the concatenation state, then actions
    x = torch.cat([td["state"], td["a", "action"]], dim=-1)
    torch.testing.assert_close(both[:, 1:], critic.nets[1](x))


def test_integer_actions_are_one_hot_encoded_float_ones_pass_through():
    critic = JointQCritic(
        ["state"],
        3,
        [("d", "action"), ("m", "action")],
        [4, 5],
        num_classes=[4, [2, 3]],
        num_qvalue=1,
        hidden_sizes=(8,),
    )
    d = torch.tensor([0, 3, 1])
    m = torch.tensor([[1, 2], [0, 0], [1, 1]])
    state = torch.randn(3, 3)
    integer = critic(TensorDict({"state": state, ("d", "action"): d, ("m", "action"): m}, [3]))
    one_hot_m = torch.cat([torch.nn.functional.one_hot(m[:, 0], 2), torch.nn.functional.one_hot(m[:, 1], 3)], -1)
    floats = TensorDict(
        {
            "state": state,
            ("d", "action"): torch.nn.functional.one_hot(d, 4).float(),
            ("m", "action"): one_hot_m.float(),
        },
        [3],
    )
    torch.testing.assert_close(integer["state_action_value"], critic(floats)["state_action_value"])


def stub_env(with_state: bool):
    obs = {a: Composite(observation=Unbounded(shape=(d,))) for a, d in (("x", 2), ("y", 3))}
    if with_state:
        obs["state"] = Unbounded(shape=(7,))
    return SimpleNamespace(
        group_map={"x": ["x"], "y": ["y"]},
        full_observation_spec_unbatched=Composite(obs),
        full_action_spec_unbatched=Composite(
            {"x": Composite(action=Bounded(-1.0, 1.0, shape=(2,))), "y": Composite(action=Categorical(n=4))}
        ),
    )


@pytest.mark.parametrize("with_state", [True, False])
def test_from_env_reads_state_or_observations_and_every_action(with_state):
    critic = make_joint_q_critic(stub_env(with_state), num_qvalue=2, hidden_sizes=(8,))
    state_keys = ["state"] if with_state else [("x", "observation"), ("y", "observation")]
    assert critic.in_keys == [*state_keys, ("x", "action"), ("y", "action")]
    assert critic.nets[0].trunk[0].in_features == (7 if with_state else 5) + 2 + 4
    td = TensorDict(
        {
            "state": torch.randn(5, 7),
            ("x", "observation"): torch.randn(5, 2),
            ("y", "observation"): torch.randn(5, 3),
            ("x", "action"): torch.rand(5, 2),
            ("y", "action"): torch.randint(0, 4, (5,)),
        },
        [5],
    )
    assert critic(td)["state_action_value"].shape == (5, 2)


def test_multicategorical_spec_and_bad_arguments():
    env = stub_env(False)
    env.full_action_spec_unbatched["y", "action"] = MultiCategorical(nvec=[2, 3])
    critic = make_joint_q_critic(env, num_qvalue=1, hidden_sizes=(8,))
    assert critic.num_classes == [None, [2, 3]]
    with pytest.raises(ConfigError, match="num_qvalue"):
        JointQCritic(["state"], 3, [("a", "action")], [2], num_qvalue=0)
    with pytest.raises(ConfigError, match="action sizes"):
        JointQCritic(["state"], 3, [("a", "action")], [2, 1])

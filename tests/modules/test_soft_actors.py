"""Soft actors: the tanh-squashed Gaussian and the Gumbel straight-through categorical."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, MultiCategorical, Unbounded
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.soft_actors import (
    LOG_STD_BOUNDS,
    GumbelCategorical,
    GumbelMultiCategorical,
    SquashedNormal,
    make_soft_actors,
    make_soft_agent_actor,
    soft_action,
)
from tests.games import MatrixGameEnv


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def test_log_prob_matches_numerical_change_of_variables():
    """log pi(a) = log of P(a in [x, x + dx]) / dx, computed from the Gaussian CDF through atanh."""
    torch.manual_seed(0)
    loc = torch.tensor([0.3, -0.8], dtype=torch.float64)
    scale = torch.tensor([0.5, 1.2], dtype=torch.float64)
    low = torch.tensor([-2.0, 0.0], dtype=torch.float64)
    high = torch.tensor([2.0, 5.0], dtype=torch.float64)
    dist = SquashedNormal(loc, scale, low, high)
    centre, half = (high + low) / 2, (high - low) / 2
    actions = dist.sample((20,))
    dx = 1e-6

    def pre_squash(a):
        return torch.atanh((a - centre) / half)

    numerical = torch.log(
        (_normal_cdf((pre_squash(actions + dx) - loc) / scale) - _normal_cdf((pre_squash(actions) - loc) / scale)) / dx
    ).sum(-1)
    torch.testing.assert_close(dist.log_prob(actions), numerical, rtol=0, atol=1e-4)


def test_rsample_log_prob_is_exact_where_tanh_saturates():
    """The cached pre-squash sample keeps log-probabilities finite and exact at the bounds."""
    dist = SquashedNormal(torch.full((1000, 1), 8.0), torch.full((1000, 1), 2.0))
    action, log_prob = dist.rsample_with_log_prob()
    assert torch.isfinite(log_prob).all()
    assert (action.abs() <= 1).all()


def test_actions_inside_each_box_and_deterministic_mean():
    spec = Bounded(torch.tensor([-1.0, 0.0, 10.0]), torch.tensor([1.0, 0.5, 20.0]), shape=(3,))
    actor = make_soft_agent_actor("a", 4, spec, hidden_sizes=(16,), output_gain=5.0)
    td = TensorDict({("a", "observation"): 10 * torch.randn(2000, 4)}, [2000])
    action = actor(td.copy())["a", "action"]
    assert (action >= spec.space.low).all() and (action <= spec.space.high).all()
    # the samples spread over each box (not collapsed on one bound)
    assert (action.std(0) > 0.05 * (spec.space.high - spec.space.low)).all()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first = actor(td.copy())
        second = actor(td.copy())
    assert torch.equal(first["a", "action"], second["a", "action"])
    expected = (spec.space.high + spec.space.low) / 2 + (spec.space.high - spec.space.low) / 2 * torch.tanh(
        first["a", "loc"]
    )
    torch.testing.assert_close(first["a", "action"], expected)


def test_log_std_is_clamped_to_the_reference_range():
    actor = make_soft_agent_actor("a", 2, Bounded(-1.0, 1.0, shape=(2,)), hidden_sizes=(8,))
    head = actor.module[0].module.head
    td = TensorDict({("a", "observation"): torch.randn(5, 2)}, [5])
    for bias, bound in ((100.0, LOG_STD_BOUNDS[1]), (-100.0, LOG_STD_BOUNDS[0])):
        with torch.no_grad():
            head.log_std.bias.fill_(bias)
        scale = actor(td.copy())["a", "scale"]
        torch.testing.assert_close(scale, torch.full_like(scale, math.exp(bound)))


def test_gumbel_straight_through_is_one_hot_forward_with_gradient_to_logits():
    torch.manual_seed(0)
    logits = torch.randn(64, 4, requires_grad=True)
    one_hot, log_prob = GumbelCategorical(logits).rsample_with_log_prob()
    assert torch.equal(one_hot.detach(), torch.nn.functional.one_hot(one_hot.argmax(-1), 4).float())
    (one_hot * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    expected = torch.log_softmax(logits.detach(), -1).gather(-1, one_hot.argmax(-1, keepdim=True)).squeeze(-1)
    torch.testing.assert_close(log_prob.detach(), expected)


def test_gumbel_samples_follow_the_categorical_probabilities():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.6, 0.3])
    one_hot, _ = GumbelCategorical(probs.log().expand(20000, 3)).rsample_with_log_prob()
    torch.testing.assert_close(one_hot.mean(0), probs, rtol=0, atol=0.02)


def test_masked_actions_are_never_chosen():
    torch.manual_seed(0)
    mask = torch.tensor([True, False, True, False]).expand(500, 4)
    logits = torch.zeros(500, 4)
    logits[:, 1] = 50.0  # the masked action would win without the mask
    one_hot, log_prob = GumbelCategorical(logits, mask=mask).rsample_with_log_prob()
    assert one_hot[:, 1].sum() == 0 and one_hot[:, 3].sum() == 0
    assert torch.isfinite(log_prob).all()
    actor = make_soft_agent_actor("a", 2, Categorical(n=4), hidden_sizes=(8,), mask_key="action_mask")
    td = TensorDict({("a", "observation"): torch.randn(500, 2), ("a", "action_mask"): mask}, [500])
    assert set(actor(td.copy())["a", "action"].unique().tolist()) <= {0, 2}
    action, _ = soft_action(actor, td)
    assert action[:, [1, 3]].sum() == 0
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert set(actor(td.copy())["a", "action"].unique().tolist()) <= {0, 2}


def test_multi_discrete_heads():
    dist = GumbelMultiCategorical(torch.randn(10, 5), nvec=[2, 3])
    one_hot, log_prob = dist.rsample_with_log_prob()
    assert torch.equal(one_hot[:, :2].sum(-1), torch.ones(10)) and torch.equal(one_hot[:, 2:].sum(-1), torch.ones(10))
    index = torch.stack([one_hot[:, :2].argmax(-1), one_hot[:, 2:].argmax(-1)], -1)
    torch.testing.assert_close(log_prob, dist.log_prob(index))
    actor = make_soft_agent_actor("a", 3, MultiCategorical(nvec=[2, 3]), hidden_sizes=(8,))
    td = actor(TensorDict({("a", "observation"): torch.randn(6, 3)}, [6]))
    assert td["a", "action"].shape == (6, 2)


def test_builder_gives_each_agent_its_own_parameters():
    env = MatrixGameEnv(torch.zeros(3, 2), num_envs=4)
    actors = make_soft_actors(env, hidden_sizes=(8,))
    assert list(actors) == env.agent_names
    ids = [{id(p) for p in actor.parameters()} for actor in actors.values()]
    assert not ids[0] & ids[1]
    td = env.reset()
    for actor in actors.values():
        actor(td)
    assert td["agent_0", "action"].max() < 3 and td["agent_1", "action"].max() < 2
    env.step(td)


def test_unbounded_and_unsupported_specs_raise():
    with pytest.raises(ConfigError, match="unbounded"):
        make_soft_agent_actor("a", 2, Unbounded(shape=(2,)))
    with pytest.raises(ConfigError, match="not support"):
        make_soft_agent_actor("a", 2, object())

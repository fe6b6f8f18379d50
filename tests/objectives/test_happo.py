import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical
from torchrl.objectives import ClipPPOLoss

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import make_agent_actor
from harl_torchrl.objectives import HAPPOLoss


def _batch(actors, n=3, obs_dim=4):
    td = TensorDict({(a, "observation"): torch.randn(n, obs_dim) for a in actors}, [n])
    with torch.no_grad():
        for actor in actors.values():
            td = actor(td)
    td["advantage"] = torch.randn(n, 1)
    td["factor"] = torch.ones(n, 1)
    return td


@pytest.fixture
def continuous_actors():
    return {a: make_agent_actor(a, 4, Bounded(-1.0, 1.0, shape=(2,))) for a in ("agent_0", "agent_1")}


def test_hand_computed_values(continuous_actors):
    actor = continuous_actors["agent_0"]
    loss = HAPPOLoss(actor, clip_epsilon=0.2, entropy_coeff=0.0, reduction="none")
    td = _batch({"agent_0": actor})
    ratio = torch.tensor([0.5, 1.0, 1.5])
    with torch.no_grad():
        current = loss.log_prob(td)
    # the stored (behaviour) log-probability that makes pi_new / pi_old equal `ratio`
    td["agent_0", "action_log_prob"] = current - ratio.log()
    td["advantage"] = torch.tensor([[1.0], [-1.0], [1.0]])
    td["factor"] = torch.tensor([[2.0], [1.0], [0.5]])
    out = loss(td)
    torch.testing.assert_close(out["loss_objective"].squeeze(-1), torch.tensor([-1.0, 1.0, -0.6]))
    assert out["clip_fraction"].item() == pytest.approx(2 / 3)
    assert out["factor_mean"].item() == pytest.approx(3.5 / 3)
    assert out["factor_min"].item() == 0.5 and out["factor_max"].item() == 2.0
    assert "loss_entropy" not in out.keys()


@pytest.mark.parametrize("discrete", [False, True])
def test_factor_one_equals_clip_ppo(discrete):
    spec = Categorical(5) if discrete else Bounded(-1.0, 1.0, shape=(3,))
    actor = make_agent_actor("agent_0", 4, spec)
    td = _batch({"agent_0": actor}, n=64)
    with torch.no_grad():  # move the policy so that ratios differ from 1 and some get clipped
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ours = HAPPOLoss(actor, clip_epsilon=0.2, entropy_coeff=0.0)
    theirs = ClipPPOLoss(actor, critic_network=None, clip_epsilon=0.2, entropy_bonus=False, functional=False)
    theirs.set_keys(action=("agent_0", "action"), sample_log_prob=("agent_0", "action_log_prob"))
    out_ours, out_theirs = ours(td), theirs(td)
    assert out_theirs["clip_fraction"] > 0
    torch.testing.assert_close(out_ours["loss_objective"], out_theirs["loss_objective"], rtol=1e-6, atol=1e-7)
    grads = []
    for loss_value in (out_ours["loss_objective"], out_theirs["loss_objective"]):
        actor.zero_grad()
        loss_value.backward()
        grads.append([p.grad.clone() for p in actor.parameters()])
    for g_ours, g_theirs in zip(*grads, strict=True):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-7)


def test_factor_scales_the_objective(continuous_actors):
    actor = continuous_actors["agent_0"]
    td = _batch({"agent_0": actor}, n=16)
    loss = HAPPOLoss(actor, entropy_coeff=0.0)
    base = loss(td)["loss_objective"]
    td["factor"] = torch.full((16, 1), 3.0)
    assert loss(td)["loss_objective"].item() == pytest.approx(3 * base.item(), rel=1e-5)


def test_gradient_reaches_only_its_agent(continuous_actors):
    td = _batch(continuous_actors, n=8)
    loss = HAPPOLoss(continuous_actors["agent_0"])
    out = loss(td)
    (out["loss_objective"] + out["loss_entropy"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in continuous_actors["agent_0"].parameters())
    assert all(p.grad is None for p in continuous_actors["agent_1"].parameters())


def test_factor_is_detached(continuous_actors):
    td = _batch(continuous_actors, n=8)
    source = torch.ones(8, 1, requires_grad=True)
    td["factor"] = source * 1.5
    HAPPOLoss(continuous_actors["agent_0"])(td)["loss_objective"].backward()
    assert source.grad is None


def test_input_tensordict_not_mutated(continuous_actors):
    td = _batch(continuous_actors, n=8)
    before = td.clone()
    HAPPOLoss(continuous_actors["agent_0"])(td)
    assert set(td.keys(True, True)) == set(before.keys(True, True))
    for key in before.keys(True, True):
        assert torch.equal(td[key], before[key]), key


def test_set_keys_remaps(continuous_actors):
    td = _batch(continuous_actors, n=8)
    td["my_adv"] = td.pop("advantage")
    td["ha", "M"] = td.pop("factor")
    loss = HAPPOLoss(continuous_actors["agent_0"])
    with pytest.raises(KeyError, match="advantage"):
        loss(td)
    loss.set_keys(advantage="my_adv", factor=("ha", "M"))
    out = loss(td)
    assert torch.isfinite(out["loss_objective"])
    assert ("ha", "M") in loss.in_keys


def test_keys_default_to_the_actors_group(continuous_actors):
    loss = HAPPOLoss(continuous_actors["agent_1"])
    assert loss.tensor_keys.action == ("agent_1", "action")
    assert loss.tensor_keys.sample_log_prob == ("agent_1", "action_log_prob")


def test_state_dict_round_trip(continuous_actors):
    td = _batch(continuous_actors, n=8)
    loss = HAPPOLoss(continuous_actors["agent_0"], clip_epsilon=0.3)
    other = HAPPOLoss(make_agent_actor("agent_0", 4, Bounded(-1.0, 1.0, shape=(2,))), clip_epsilon=0.1)
    assert not torch.equal(loss(td)["loss_objective"], other(td)["loss_objective"])
    other.load_state_dict(loss.state_dict())
    assert other.clip_epsilon.item() == pytest.approx(0.3)
    torch.testing.assert_close(loss(td)["loss_objective"], other(td)["loss_objective"], rtol=0, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions(continuous_actors, reduction):
    td = _batch(continuous_actors, n=8)
    per_sample = HAPPOLoss(continuous_actors["agent_0"], reduction="none")(td)["loss_objective"]
    value = HAPPOLoss(continuous_actors["agent_0"], reduction=reduction)(td)["loss_objective"]
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    torch.testing.assert_close(value, expected)


def test_refuses_advantage_renormalisation(continuous_actors):
    with pytest.raises(ConfigError, match=r"(?i)normalise once"):
        HAPPOLoss(continuous_actors["agent_0"], normalize_advantage=True)


def test_refuses_factor_that_would_broadcast(continuous_actors):
    td = _batch(continuous_actors, n=8)
    td["factor"] = torch.ones(8)
    with pytest.raises(ValueError, match="must match exactly"):
        HAPPOLoss(continuous_actors["agent_0"])(td)


def test_missing_factor_explains_itself(continuous_actors):
    td = _batch(continuous_actors, n=8)
    del td["factor"]
    with pytest.raises(KeyError, match="SequentialUpdater writes it"):
        HAPPOLoss(continuous_actors["agent_0"])(td)


@pytest.mark.parametrize("clip", [0.0, -0.1, math.inf])
def test_refuses_bad_clip(continuous_actors, clip):
    with pytest.raises(ConfigError, match="clip_epsilon"):
        HAPPOLoss(continuous_actors["agent_0"], clip_epsilon=clip)


def test_entropy_bonus_sign(continuous_actors):
    td = _batch(continuous_actors, n=8)
    out = HAPPOLoss(continuous_actors["agent_0"], entropy_coeff=0.5)(td)
    torch.testing.assert_close(out["loss_entropy"], -0.5 * out["entropy"])


@pytest.mark.parametrize("access", ["make_value_estimator", "value_estimator"])
def test_value_estimator_points_to_the_critics_loss(continuous_actors, access):
    from harl_torchrl.objectives import SharedPolicyLoss

    losses = [HAPPOLoss(continuous_actors["agent_0"])]
    losses.append(SharedPolicyLoss({a: HAPPOLoss(actor) for a, actor in continuous_actors.items()}))
    for loss in losses:
        with pytest.raises(ConfigError, match="CentralValueLoss"):
            loss.make_value_estimator() if access == "make_value_estimator" else loss.value_estimator


def test_resetting_a_key_restores_the_actors_key(continuous_actors):
    loss = HAPPOLoss(continuous_actors["agent_1"])
    assert HAPPOLoss.default_keys.action == "action"  # the class cannot know the agent
    loss.set_keys(action=("agent_1", "other"), sample_log_prob=("agent_1", "other_log_prob"))
    loss.set_keys(action=None, sample_log_prob=None)
    assert loss.tensor_keys.action == ("agent_1", "action")
    assert loss.tensor_keys.sample_log_prob == ("agent_1", "action_log_prob")
    loss.set_keys(advantage="adv")
    loss.set_keys(advantage=None)
    assert loss.tensor_keys.advantage == "advantage"

"""Entropy temperatures: target entropies, direction of the updates, per-agent independence."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, MultiCategorical

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules.soft_actors import make_soft_agent_actor
from harl_torchrl.objectives.soft_actor import SoftActorLoss
from harl_torchrl.objectives.temperature import TemperatureLoss, TemperatureStep, target_entropy


class _ZeroCritic(torch.nn.Module):
    """Q = 0 for any input: the actor loss is then the entropy term alone."""

    in_keys = [("a", "observation")]
    out_keys = ["state_action_value"]

    def forward(self, td):
        td.set("state_action_value", torch.zeros(*td.batch_size, 2))
        return td


@pytest.mark.parametrize("n", [2, 5, 9])
def test_discrete_target_entropy_is_098_log_n(n):
    assert target_entropy(Categorical(n=n)) == pytest.approx(0.98 * math.log(n))
    assert target_entropy(Categorical(n=n), mode="reference") == 0.0


def test_box_and_multi_discrete_target_entropies():
    assert target_entropy(Bounded(-1.0, 1.0, shape=(4,))) == -4.0
    assert target_entropy(Bounded(-1.0, 1.0, shape=(4,)), mode="reference") == -4.0
    assert target_entropy(MultiCategorical(nvec=[2, 3])) == pytest.approx(0.98 * (math.log(2) + math.log(3)))
    assert target_entropy(MultiCategorical(nvec=[2, 3]), mode="reference") == pytest.approx(0.98 * math.log(2))
    with pytest.raises(ConfigError, match="mode"):
        target_entropy(Categorical(n=2), mode="intended_typo")


def test_reference_box_target_is_the_reference_target_before_the_scaling_to_the_box():
    """The reference measures log-probabilities on the tanh output in [-1, 1]; ours on the box.

    The same pre-squash Gaussian on [0, 1] and on [-1, 1] has log-probabilities that differ
    by sum(log h) = 5 log 0.5, and the reference-mode targets must differ by exactly that.
    """
    from harl_torchrl.modules.soft_actors import SquashedNormal

    loc, scale = torch.randn(4000, 5), torch.rand(4000, 5) + 0.1
    torch.manual_seed(0)
    on_box = SquashedNormal(loc, scale, low=0.0, high=1.0)
    on_box_lp = on_box.log_prob(on_box.rsample())
    torch.manual_seed(0)
    on_unit = SquashedNormal(loc, scale, low=-1.0, high=1.0)
    on_unit_lp = on_unit.log_prob(on_unit.rsample())
    shift = 5 * math.log(0.5)
    assert torch.allclose(on_box_lp - on_unit_lp, torch.full((4000,), -shift), atol=1e-4)
    box, unit = Bounded(0.0, 1.0, shape=(5,)), Bounded(-1.0, 1.0, shape=(5,))
    assert target_entropy(unit, mode="reference") == -5.0
    assert target_entropy(box, mode="reference") == pytest.approx(-5.0 + shift)
    assert target_entropy(box) == -5.0  # intended: -dim(A) of the action the env receives


def test_loss_value_by_hand():
    loss = TemperatureLoss(target_entropy=-1.0, agent="a", alpha_init=2.0)
    log_prob = torch.tensor([0.5, 1.5, -1.0])
    out = loss(TensorDict({("a", "action_log_prob"): log_prob}, [3]))
    expected = -(math.log(2.0) * (log_prob - 1.0)).mean()
    torch.testing.assert_close(out["loss_alpha"], expected)
    torch.testing.assert_close(out["entropy"], -log_prob.mean())
    torch.testing.assert_close(out["alpha"], torch.tensor(2.0))


def _agent_alpha_after(actor, target: float, steps: int = 50) -> tuple[float, float]:
    """Runs the actor loss + TemperatureStep hook ``steps`` times; returns (initial, final) alpha."""
    temperature = TemperatureLoss(target_entropy=target, agent="a")
    step = TemperatureStep(temperature, lr=0.05)
    loss = SoftActorLoss(actor, _ZeroCritic(), temperature)
    td = TensorDict({("a", "observation"): torch.randn(256, 2)}, [256])
    initial = float(temperature.alpha)
    for _ in range(steps):
        step(loss(td))
    return initial, float(temperature.alpha)


def test_entropy_above_target_lowers_alpha_and_below_raises_it():
    torch.manual_seed(0)
    # a near-uniform categorical over 4 actions: entropy log 4 > 0.98 log 4
    uniform = make_soft_agent_actor("a", 2, Categorical(n=4), hidden_sizes=(8,), output_gain=0.0)
    initial, final = _agent_alpha_after(uniform, target_entropy(Categorical(n=4)))
    assert final < 0.5 * initial
    # a Gaussian squeezed to std e^-20: entropy far below -dim(A) = -1
    narrow = make_soft_agent_actor("a", 2, Bounded(-1.0, 1.0, shape=(1,)), hidden_sizes=(8,))
    with torch.no_grad():
        narrow.module[0].module.head.log_std.bias.fill_(-100.0)
    initial, final = _agent_alpha_after(narrow, target_entropy(Bounded(-1.0, 1.0, shape=(1,))))
    assert final > 2.0 * initial


def test_each_agent_has_its_own_temperature():
    above = TemperatureLoss(target_entropy=0.0, agent="a")
    below = TemperatureLoss(target_entropy=0.0, agent="b")
    steps = {"a": TemperatureStep(above, lr=0.1), "b": TemperatureStep(below, lr=0.1)}
    for _ in range(20):
        steps["a"](TensorDict({"log_prob": torch.tensor(-1.0)}, []))  # entropy 1 > 0
        steps["b"](TensorDict({"log_prob": torch.tensor(1.0)}, []))  # entropy -1 < 0
    assert above.alpha < 1.0 < below.alpha
    assert above.log_alpha is not below.log_alpha


def test_critic_temperature_sums_every_agent():
    loss = TemperatureLoss(target_entropy=-3.0, log_prob_keys=[("a", "action_log_prob"), ("b", "action_log_prob")])
    td = TensorDict({("a", "action_log_prob"): torch.tensor([1.0, 2.0]), ("b", "action_log_prob"): torch.ones(2)}, [2])
    out = loss(td)
    torch.testing.assert_close(out["loss_alpha"], -(loss.log_alpha * (torch.tensor([2.0, 3.0]) - 3.0)).mean())
    torch.testing.assert_close(out["entropy"], torch.tensor(-2.5))


def test_fixed_temperature_never_moves():
    loss = TemperatureLoss(target_entropy=0.0, alpha_init=0.001, fixed=True)
    step = TemperatureStep(loss)
    for _ in range(5):
        step(TensorDict({"log_prob": torch.tensor(5.0)}, []))
    assert float(loss.alpha) == pytest.approx(0.001)
    assert list(loss.parameters()) == []


def test_state_round_trip():
    loss = TemperatureLoss(target_entropy=0.0)
    step = TemperatureStep(loss, lr=0.1)
    step(TensorDict({"log_prob": torch.tensor(1.0)}, []))
    other = TemperatureStep(TemperatureLoss(target_entropy=0.0), lr=0.1)
    other.load_state_dict(step.state_dict())
    assert torch.equal(other.loss.log_alpha, loss.log_alpha)
    step(TensorDict({"log_prob": torch.tensor(1.0)}, []))
    other(TensorDict({"log_prob": torch.tensor(1.0)}, []))
    assert torch.equal(other.loss.log_alpha, loss.log_alpha)


def test_bad_settings_raise():
    with pytest.raises(ConfigError, match="alpha_init"):
        TemperatureLoss(target_entropy=0.0, alpha_init=0.0)
    with pytest.raises(ConfigError, match="reduction"):
        TemperatureLoss(target_entropy=0.0, reduction="none")

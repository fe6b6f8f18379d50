import pytest
import torch
from tensordict import TensorDict

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import ValueNorm, make_central_critic
from harl_torchrl.objectives import CentralValueLoss


def _critic(value_norm=None):
    return make_central_critic(["state"], 2, value_norm=value_norm, hidden_sizes=[8])


def test_clipped_huber_matches_hand_computation():
    critic = _critic()
    loss = CentralValueLoss(critic, clip_value=0.2, huber_delta=1.0, reduction="none")
    td = TensorDict({"state": torch.randn(3, 2)}, [3])
    with torch.no_grad():
        prediction = critic(td.copy())["state_value_normalized"]
    td["state_value_normalized"] = prediction - torch.tensor([[0.5], [0.0], [-0.1]])  # old predictions
    td["value_target"] = prediction + torch.tensor([[2.0], [0.3], [-0.05]])

    def huber(e):
        return torch.where(e.abs() <= 1.0, 0.5 * e**2, e.abs() - 0.5)

    errors = torch.tensor([[2.0], [0.3], [-0.05]])
    # clipped prediction: old + clip(pred - old, -0.2, 0.2)
    clipped_errors = errors + torch.tensor([[0.5 - 0.2], [0.0], [-0.1 + 0.1]])
    expected = torch.maximum(huber(errors), huber(clipped_errors))
    out = loss(td)
    torch.testing.assert_close(out["loss_critic"], expected)
    assert out["value_clip_fraction"].item() == pytest.approx(1 / 3)


def test_value_norm_targets_are_normalised():
    norm = ValueNorm()
    norm.update(torch.tensor([[10.0], [30.0]]))
    critic = _critic(norm)
    loss = CentralValueLoss(critic, value_norm=norm, clip_value=None, loss_type="mse", reduction="none")
    td = TensorDict({"state": torch.randn(4, 2), "value_target": torch.full((4, 1), 20.0)}, [4])
    prediction = critic(td.copy())["state_value_normalized"]
    # the target 20 is the running mean: its normalised value is 0
    torch.testing.assert_close(loss(td)["loss_critic"], prediction.detach() ** 2)


def test_compute_advantage_bootstraps_through_truncation_not_termination():
    critic = _critic()
    loss = CentralValueLoss(critic)
    loss.make_value_estimator(gamma=0.9, lmbda=1.0)
    state = torch.randn(1, 2, 2)
    td = TensorDict(
        {
            "state": state[:, :1],
            "next": {
                "state": state[:, 1:],
                "reward": torch.ones(1, 1, 1),
                "done": torch.ones(1, 1, 1, dtype=torch.bool),
                "terminated": torch.zeros(1, 1, 1, dtype=torch.bool),
                "truncated": torch.ones(1, 1, 1, dtype=torch.bool),
            },
        },
        [1, 1],
    )
    truncated = loss.compute_advantage(td.clone())
    v, v_next = truncated["state_value"], truncated["next", "state_value"]
    torch.testing.assert_close(truncated["value_target"], 1.0 + 0.9 * v_next)
    torch.testing.assert_close(truncated["advantage"], 1.0 + 0.9 * v_next - v)
    td["next", "terminated"] = torch.ones(1, 1, 1, dtype=torch.bool)
    terminated = loss.compute_advantage(td.clone())
    torch.testing.assert_close(terminated["value_target"], torch.ones(1, 1, 1))
    assert "state_value_normalized" in terminated.keys()


def test_compute_advantage_uses_denormalised_values():
    norm = ValueNorm()
    norm.update(torch.tensor([[100.0], [300.0]]))
    critic = _critic(norm)
    loss = CentralValueLoss(critic, value_norm=norm)
    td = TensorDict(
        {
            "state": torch.randn(1, 1, 2),
            "next": {
                "state": torch.randn(1, 1, 2),
                "reward": torch.zeros(1, 1, 1),
                "done": torch.ones(1, 1, 1, dtype=torch.bool),
                "terminated": torch.ones(1, 1, 1, dtype=torch.bool),
            },
        },
        [1, 1],
    )
    loss.compute_advantage(td)
    torch.testing.assert_close(td["state_value"], norm.denormalize(td["state_value_normalized"]))
    # reward 0 and termination: advantage = -V(s) in return units (~ -200)
    torch.testing.assert_close(td["advantage"], -td["state_value"])
    assert td["state_value"].abs().item() > 50


def test_bad_settings():
    with pytest.raises(ConfigError):
        CentralValueLoss(_critic(), loss_type="l1")
    with pytest.raises(ConfigError):
        CentralValueLoss(_critic(), clip_value=0.0)


def test_missing_old_prediction_explains_itself():
    td = TensorDict({"state": torch.randn(3, 2), "value_target": torch.randn(3, 1)}, [3])
    with pytest.raises(KeyError, match="clip_value=None"):
        CentralValueLoss(_critic())(td)

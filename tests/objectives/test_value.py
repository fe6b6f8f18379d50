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


# --- TorchRL's own GAE, estimator instances and the value normaliser's wiring (issue 12) ---


def _trajectory(envs=2, steps=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    state = torch.randn(envs, steps + 1, 2, generator=generator)
    terminated = torch.zeros(envs, steps, 1, dtype=torch.bool)
    terminated[0, -1] = True
    return TensorDict(
        {
            "state": state[:, :-1],
            "next": {
                "state": state[:, 1:],
                "reward": torch.randn(envs, steps, 1, generator=generator) * 10 + 50,
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        [envs, steps],
    )


def _updated_norm():
    norm = ValueNorm()
    norm.update(torch.tensor([[40.0], [90.0]]))
    return norm


def test_torchrl_gae_with_the_critic_feeds_the_clipped_loss():
    from torchrl.objectives.value import GAE

    critic = _critic(_updated_norm())
    loss = CentralValueLoss(critic, clip_value=0.2)
    ours = loss.compute_advantage(_trajectory())
    theirs = _trajectory()
    GAE(gamma=0.99, lmbda=0.95, value_network=critic)(theirs)  # TorchRL's own, run by the user
    assert "state_value_normalized" not in theirs.keys()
    torch.testing.assert_close(theirs["advantage"], ours["advantage"])
    # the normaliser moves between GAE and the epochs: the stored predictions must be recovered first
    loss.update_value_norm(theirs)
    loss.value_norm.load_state_dict(_updated_norm().state_dict())
    loss.update_value_norm(ours)
    torch.testing.assert_close(theirs["state_value_normalized"], ours["state_value_normalized"])
    torch.testing.assert_close(loss(theirs)["loss_critic"], loss(ours)["loss_critic"])


def test_torchrl_gae_through_the_critic_trainer():
    from torchrl.objectives.value import GAE

    from harl_torchrl.sequential import CriticTrainer

    critic = _critic(ValueNorm())
    loss = CentralValueLoss(critic)
    batch = _trajectory()
    with torch.no_grad():
        GAE(gamma=0.99, lmbda=0.95, value_network=critic)(batch)
    out = CriticTrainer(loss, torch.optim.Adam(critic.parameters(), lr=1e-3), epochs=2).train(
        batch, torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(out["loss_critic"])


def test_torchrl_gae_without_value_norm_needs_no_extra_call():
    from torchrl.objectives.value import GAE

    critic = _critic()
    batch = _trajectory()
    with torch.no_grad():
        GAE(gamma=0.99, lmbda=0.95, value_network=critic)(batch)
    out = CentralValueLoss(critic, clip_value=0.2)(batch)
    assert out["value_clip_fraction"].item() == 0.0  # the stored value is the current prediction


def test_make_value_estimator_accepts_an_estimator_instance_or_class():
    from torchrl.objectives.value import GAE

    critic = _critic()
    reference = CentralValueLoss(critic).make_value_estimator(gamma=0.9, lmbda=0.8).compute_advantage(_trajectory())
    instance = GAE(gamma=0.9, lmbda=0.8, value_network=critic)
    loss = CentralValueLoss(critic)
    assert loss.make_value_estimator(instance) is loss and loss.value_estimator is instance
    torch.testing.assert_close(loss.compute_advantage(_trajectory())["advantage"], reference["advantage"])
    loss.make_value_estimator(GAE, gamma=0.9, lmbda=0.8)
    assert loss.value_estimator.value_network is None
    torch.testing.assert_close(loss.compute_advantage(_trajectory())["advantage"], reference["advantage"])


def test_estimator_of_another_network_is_refused():
    from torchrl.objectives.value import GAE

    with pytest.raises(ConfigError, match="value_network=critic"):
        CentralValueLoss(_critic()).make_value_estimator(GAE(gamma=0.9, lmbda=0.9, value_network=_critic()))


def test_loss_takes_the_critics_value_norm():
    norm = ValueNorm()
    assert CentralValueLoss(_critic(norm)).value_norm is norm
    assert CentralValueLoss(_critic(norm), value_norm=norm).value_norm is norm
    assert CentralValueLoss(_critic()).value_norm is None


def test_value_norm_mismatches_are_refused():
    with pytest.raises(ConfigError, match="another ValueNorm"):
        CentralValueLoss(_critic(ValueNorm()), value_norm=ValueNorm())
    with pytest.raises(ConfigError, match="no ValueNorm"):
        CentralValueLoss(_critic(), value_norm=ValueNorm())


def test_never_updated_value_norm_is_refused():
    critic = _critic(ValueNorm())
    loss = CentralValueLoss(critic, clip_value=None)
    td = TensorDict({"state": torch.randn(3, 2), "value_target": torch.randn(3, 1)}, [3])
    with pytest.raises(ConfigError, match="update_value_norm"):
        loss(td)
    loss.update_value_norm(td)
    loss(td)

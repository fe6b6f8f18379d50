"""JointQLoss: n-step TD targets by hand, target networks, soft updates, keys and reductions."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import JointQCritic
from harl_torchrl.objectives import JointQLoss

GAMMA = 0.9
NEXT_ACTIONS = torch.tensor([[0.1], [-0.2], [0.3], [0.4]])


def constant_next_actions(next_td):
    next_td.set(("a", "action"), NEXT_ACTIONS.clone())
    next_td.set(("b", "action"), -NEXT_ACTIONS.clone())
    return next_td


def make_loss(critic, next_actions, **kwargs):
    """A loss with its SoftUpdate (TorchRL warns about target parameters without one)."""
    loss = JointQLoss(critic, next_actions, **kwargs)
    SoftUpdate(loss, tau=0.005)
    return loss


def make_critic(num_qvalue=2):
    torch.manual_seed(0)
    return JointQCritic(
        ["state"], 2, [("a", "action"), ("b", "action")], [1, 1], num_qvalue=num_qvalue, hidden_sizes=(8,)
    )


def make_batch():
    g = torch.Generator().manual_seed(3)
    return TensorDict(
        {
            "state": torch.randn(4, 2, generator=g),
            ("a", "action"): torch.rand(4, 1, generator=g),
            ("b", "action"): torch.rand(4, 1, generator=g),
            "steps_to_next_obs": torch.tensor([1, 3, 2, 1]),
            "next": {
                "state": torch.randn(4, 2, generator=g),
                "reward": torch.tensor([[1.0], [2.0], [-1.0], [0.5]]),
                "terminated": torch.tensor([[False], [True], [False], [False]]),
                # truncation must not stop the bootstrap: row 2 is truncated, not terminated
                "truncated": torch.tensor([[False], [False], [True], [False]]),
                "done": torch.tensor([[False], [True], [True], [False]]),
            },
        },
        [4],
    )


def by_hand_next_value(critic, loss, batch):
    """min_j Q'_j(s', a') evaluated head by head with the target parameters."""
    x = torch.cat([batch["next", "state"], NEXT_ACTIONS, -NEXT_ACTIONS], dim=-1)
    with loss.target_qvalue_network_params.to_module(critic), torch.no_grad():
        values = torch.cat([net(x) for net in critic.nets], dim=-1)
    return values.min(-1, keepdim=True).values


def test_target_by_hand_termination_stops_truncation_bootstraps():
    critic = make_critic()
    loss = make_loss(critic, constant_next_actions, gamma=GAMMA)
    batch = make_batch()
    next_value = by_hand_next_value(critic, loss, batch)
    expected = torch.stack(
        [
            1.0 + GAMMA**1 * next_value[0, 0],
            torch.tensor(2.0),  # terminated: no bootstrap
            -1.0 + GAMMA**2 * next_value[2, 0],  # truncated: bootstraps with gamma^2
            0.5 + GAMMA**1 * next_value[3, 0],
        ]
    ).unsqueeze(-1)
    torch.testing.assert_close(loss.target_value(batch), expected)
    # without steps_to_next_obs: one-step discount everywhere
    one_step = batch.exclude("steps_to_next_obs")
    expected_one = batch["next", "reward"] + GAMMA * (~batch["next", "terminated"]).float() * next_value
    torch.testing.assert_close(loss.target_value(one_step), expected_one)
    # a [B, 1] steps entry reads the same as [B]
    torch.testing.assert_close(
        loss.target_value(batch.set("steps_to_next_obs", batch["steps_to_next_obs"][:, None])), expected
    )


def test_value_bonus_is_added_inside_the_discount():
    critic = make_critic()

    def with_bonus(next_td):
        next_td = constant_next_actions(next_td)
        next_td.set("value_bonus", torch.full((4, 1), -0.5))
        return next_td

    plain = make_loss(critic, constant_next_actions, gamma=GAMMA)
    bonus = make_loss(critic, with_bonus, gamma=GAMMA)
    bonus.target_qvalue_network_params.update_(plain.target_qvalue_network_params)
    batch = make_batch()
    discount = GAMMA ** batch["steps_to_next_obs"].float()[:, None] * (~batch["next", "terminated"]).float()
    torch.testing.assert_close(bonus.target_value(batch), plain.target_value(batch) - 0.5 * discount)


def test_loss_is_sum_over_heads_of_mse_and_reaches_only_the_critic():
    critic = make_critic()
    actor = torch.nn.Linear(2, 1)

    def actor_next_actions(next_td):
        next_td.set(("a", "action"), actor(next_td["state"]))
        next_td.set(("b", "action"), actor(next_td["state"]))
        return next_td

    loss = make_loss(critic, actor_next_actions, gamma=GAMMA)
    batch = make_batch()
    reference = batch.clone()
    out = loss(batch)
    y = loss.target_value(batch)
    x = torch.cat([batch["state"], batch["a", "action"], batch["b", "action"]], dim=-1)
    q = torch.cat([net(x) for net in critic.nets], dim=-1)
    torch.testing.assert_close(out["loss_qvalue"], ((q - y) ** 2).mean(0).sum())
    torch.testing.assert_close(out["td_error"], (q[:, :1] - y).abs().mean())
    out["loss_qvalue"].backward()
    assert all(p.grad is not None for p in critic.parameters())
    assert all(p.grad is None for p in actor.parameters())  # targets carry no gradient
    assert all(not out[k].requires_grad for k in ("td_error", "q_value", "target_value"))
    assert (batch == reference).all() and set(batch.keys(True, True)) == set(reference.keys(True, True))
    assert set(loss.parameters()) == set(critic.parameters())  # the critic optimiser can use loss.parameters()


def test_target_parameters_move_only_by_soft_update_exactly():
    critic = make_critic()
    loss = JointQLoss(critic, constant_next_actions, gamma=GAMMA)
    updater = SoftUpdate(loss, tau=0.25)
    batch = make_batch()
    before = loss.target_value(batch)
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.5)
    loss(batch)["loss_qvalue"].backward()
    optimizer.step()
    torch.testing.assert_close(loss.target_value(batch), before, rtol=0, atol=0)  # online moved, target did not
    old_target = loss.target_qvalue_network_params.clone()
    online = loss.qvalue_network_params.detach().clone()
    assert not (old_target == online).all()
    updater.step()
    expected = old_target.apply(lambda t, s: 0.75 * t + 0.25 * s, online)
    torch.testing.assert_close(loss.target_qvalue_network_params.to_dict(), expected.to_dict())


def test_set_keys_and_reductions():
    critic = make_critic()
    loss = make_loss(critic, constant_next_actions, gamma=GAMMA, reduction="none")
    batch = make_batch()
    per_sample = loss(batch)["loss_qvalue"]
    assert per_sample.shape == (4, 1)
    summed = make_loss(critic, constant_next_actions, gamma=GAMMA, reduction="sum")
    summed.target_qvalue_network_params.update_(loss.target_qvalue_network_params)
    torch.testing.assert_close(summed(batch)["loss_qvalue"], per_sample.sum())
    renamed = batch.clone()
    renamed.rename_key_(("next", "reward"), ("next", "team_reward"))
    renamed.rename_key_("steps_to_next_obs", "k")
    loss.set_keys(reward="team_reward", steps_to_next_obs="k")
    torch.testing.assert_close(loss(renamed)["loss_qvalue"], per_sample)


def test_single_critic_ddpg():
    critic = make_critic(num_qvalue=1)
    loss = make_loss(critic, constant_next_actions, gamma=GAMMA)
    batch = make_batch()
    next_value = by_hand_next_value(critic, loss, batch)
    not_terminal = (~batch["next", "terminated"]).float()
    discount = GAMMA ** batch["steps_to_next_obs"].float()[:, None]
    torch.testing.assert_close(loss.target_value(batch), batch["next", "reward"] + discount * not_terminal * next_value)


def test_bad_arguments():
    critic = make_critic()
    with pytest.raises(ConfigError, match="reduction"):
        JointQLoss(critic, None, reduction="avg")
    with pytest.raises(ConfigError, match="loss_function"):
        JointQLoss(critic, None, loss_function="huber")
    with pytest.raises(ConfigError, match="gamma"):
        JointQLoss(critic, None, gamma=1.5)

"""The reference's linear learning-rate decay (algo.lr_decay=linear): the schedule and where it lands."""

import pytest
import torch

from harl_torchrl.algorithms import make_on_policy_components, scale_learning_rates
from harl_torchrl.config import algo_config
from harl_torchrl.envs import make_vmas_env
from harl_torchrl.errors import ConfigError
from harl_torchrl.training import linear_lr_factor


def test_linear_factor_is_the_reference_schedule():
    # HARL's lr_decay(episode, episodes): lr0 * (1 - episode / episodes) for episode = 1..episodes
    assert [linear_lr_factor(i, 5) for i in range(1, 6)] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    assert linear_lr_factor(7, 5) == 0.0  # a run extended past its horizon does not go negative
    with pytest.raises(ValueError, match="total_iterations"):
        linear_lr_factor(1, 0)


@pytest.mark.parametrize(
    "algo",
    [
        {"name": "happo", "actor_lr": 1e-3, "critic_lr": 2e-3},
        {"name": "mappo", "share_params": True, "actor_lr": 1e-3, "critic_lr": 2e-3},
        {"name": "ippo", "actor_lr": 1e-3, "critic_lr": 2e-3},
        {"name": "hatrpo", "critic_lr": 2e-3},  # trust-region actors: no optimiser to scale
    ],
    ids=["happo", "mappo_shared", "ippo", "hatrpo"],
)
def test_every_optimizer_gets_its_scaled_rate_and_keeps_its_moments(algo):
    env = make_vmas_env("balance", num_envs=4, max_steps=5, n_agents=2, seed=0)
    parts = make_on_policy_components(algo, {"hidden_sizes": [8]}, env, seed=0)
    with torch.no_grad():
        batch = env.rollout(5, parts.policy, break_when_any_done=False)
    parts.compute_advantage(batch)
    parts.updater.update(batch)  # Adam moments exist now
    critics = parts.updater.critic if isinstance(parts.updater.critic, dict) else {"central": parts.updater.critic}
    before = {name: dict(t.optimizer.state) for name, t in critics.items()}
    scale_learning_rates(parts.updater, algo.get("actor_lr"), algo["critic_lr"], 0.25)
    actor_optimizers = [t.optimizer for t in parts.updater.agents.values() if getattr(t, "optimizer", None)]
    assert len(actor_optimizers) == (0 if algo["name"] == "hatrpo" else len(parts.updater.agents))
    for optimizer in actor_optimizers:
        assert all(group["lr"] == pytest.approx(0.25e-3) for group in optimizer.param_groups)
    for name, trainer in critics.items():
        assert all(group["lr"] == pytest.approx(0.5e-3) for group in trainer.optimizer.param_groups)
        assert dict(trainer.optimizer.state).keys() == before[name].keys() and before[name]


def test_lr_decay_is_a_checked_choice():
    assert algo_config({"name": "happo"}).lr_decay == "none"
    assert algo_config({"name": "mappo", "lr_decay": "linear"}).lr_decay == "linear"
    with pytest.raises(ConfigError, match="lr_decay"):
        algo_config({"name": "happo", "lr_decay": "cosine"})

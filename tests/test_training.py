import pytest
import torch

from harl_torchrl.algorithms import make_on_policy_components
from harl_torchrl.envs import make_vmas_env
from harl_torchrl.training import episode_stats, flatten_metrics
from harl_torchrl.utils.checkpoint import load_checkpoint, save_checkpoint

ALGO = {
    "happo": {
        "name": "happo",
        "actor_lr": 1e-3,
        "critic_lr": 1e-3,
        "clip_epsilon": 0.2,
        "entropy_coeff": 0.01,
        "epochs": 2,
        "num_minibatches": 2,
        "max_grad_norm": 10.0,
    },
}
ALGO["ippo"] = {**ALGO["happo"], "name": "ippo"}


def _trained(algo, seed):
    torch.manual_seed(seed)
    env = make_vmas_env("balance", num_envs=8, max_steps=10, n_agents=2, seed=seed)
    parts = make_on_policy_components(ALGO[algo], {"hidden_sizes": [16]}, env, seed=seed)
    with torch.no_grad():
        batch = env.rollout(10, parts.policy, break_when_any_done=False)
    parts.compute_advantage(batch)
    parts.updater.update(batch)
    return parts, batch


@pytest.mark.parametrize("algo", ["happo", "ippo"])
def test_state_round_trip_restores_everything(tmp_path, algo):
    parts, batch = _trained(algo, seed=0)
    # the components' own state (the run loop adds the counters, envs and random streams)
    path = save_checkpoint(tmp_path / "ckpt.pt", {**parts.state_dict(), "frames": 80, "iteration": 1})
    other, _ = _trained(algo, seed=1)
    state = load_checkpoint(path)
    other.load_state_dict(state)
    assert (state["frames"], state["iteration"]) == (80, 1)
    for name in parts.actors:
        for a, b in zip(parts.actors[name].parameters(), other.actors[name].parameters(), strict=True):
            assert torch.equal(a, b)
    for a, b in zip(parts.critic.state_dict().values(), other.critic.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the next update is then identical too (optimiser moments, value normaliser, order generator)
    torch.manual_seed(5)
    first = parts.updater.update(batch)
    torch.manual_seed(5)
    second = other.updater.update(batch)
    assert parts.updater.last_order == other.updater.last_order
    for name in parts.actors:
        for a, b in zip(parts.actors[name].parameters(), other.actors[name].parameters(), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(first["order"], second["order"])


def test_mismatched_agents_are_refused(tmp_path):
    parts, _ = _trained("happo", seed=0)
    state = parts.state_dict()
    state["actors"]["stranger"] = state["actors"].pop("agent_0")
    with pytest.raises(ValueError, match="same env configuration"):
        parts.load_state_dict(state)


def test_episode_stats_and_flat_metrics():
    parts, batch = _trained("happo", seed=0)
    stats = episode_stats(batch)
    assert stats["episodes"] == 8  # every sub-environment hits the 10-step limit once
    done = batch["next", "done"].squeeze(-1)
    torch.testing.assert_close(
        torch.tensor(stats["episode_return_mean"]), batch["next", "episode_reward"].squeeze(-1)[done].mean()
    )
    flat = flatten_metrics(parts.updater.update(batch))
    assert "agent_0/loss_objective" in flat and "critic/loss_critic" in flat and "order" not in flat

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from harl_torchrl.envs import VmasTeamEnv, make_env, make_vmas_env
from harl_torchrl.errors import ConfigError


@pytest.mark.parametrize("continuous", [True, False])
def test_specs_pass_torchrl_checks(continuous):
    env = make_vmas_env("balance", num_envs=4, max_steps=10, continuous_actions=continuous, n_agents=3, seed=0)
    check_env_specs(env, seed=0)


def test_one_group_per_agent_and_team_signals_at_the_root():
    env = make_vmas_env("balance", num_envs=4, max_steps=10, n_agents=3, seed=0)
    assert env.group_map == {f"agent_{i}": [f"agent_{i}"] for i in range(3)}
    td = env.rollout(3)
    for agent in env.group_map:
        assert td[agent, "observation"].shape == (4, 3, 16)
        assert td["next", agent, "reward"].shape == (4, 3, 1)
    for key in ("reward", "done", "terminated", "truncated", "episode_reward"):
        assert td["next", key].shape == (4, 3, 1)


@pytest.mark.parametrize("team_reward", ["mean", "sum"])
def test_team_reward_combines_the_agents_rewards(team_reward):
    env = VmasTeamEnv(
        "navigation", num_envs=6, max_steps=20, team_reward=team_reward, n_agents=3, shared_rew=False, seed=1
    )
    td = env.rollout(8)
    agent_rewards = torch.stack([td["next", a, "reward"] for a in env.group_map], dim=0)
    expected = agent_rewards.mean(0) if team_reward == "mean" else agent_rewards.sum(0)
    torch.testing.assert_close(td["next", "reward"], expected)
    assert agent_rewards.std(0).max() > 0, "navigation rewards differ per agent: the check must be able to fail"


def test_time_limit_is_truncation_not_termination():
    env = VmasTeamEnv("navigation", num_envs=8, max_steps=5, n_agents=2, seed=0)
    td = env.rollout(12, break_when_any_done=False)
    truncated = td["next", "truncated"].squeeze(-1)
    terminated = td["next", "terminated"].squeeze(-1)
    assert truncated[:, 4].all() and truncated[:, 9].all()
    assert truncated.sum() == 16
    assert not terminated.any()
    torch.testing.assert_close(td["next", "done"], td["next", "truncated"] | td["next", "terminated"])


def test_termination_is_not_reported_as_truncation():
    env = VmasTeamEnv("balance", num_envs=64, max_steps=200, n_agents=2, seed=0)
    torch.manual_seed(0)
    td = env.rollout(60, break_when_any_done=False)  # random actions drop the package quickly
    terminated = td["next", "terminated"]
    assert terminated.any()
    assert not (terminated & td["next", "truncated"]).any()


def test_episode_reward_resets_with_the_episode():
    env = make_vmas_env("navigation", num_envs=2, max_steps=4, n_agents=2, seed=0)
    td = env.rollout(8, break_when_any_done=False)
    rewards = td["next", "reward"].squeeze(-1)
    torch.testing.assert_close(td["next", "episode_reward"][:, 3, 0], rewards[:, :4].sum(-1))
    torch.testing.assert_close(td["next", "episode_reward"][:, 7, 0], rewards[:, 4:].sum(-1))


def test_same_seed_same_rollout_other_seed_differs():
    def rollout(seed):
        env = make_vmas_env("balance", num_envs=4, max_steps=30, n_agents=3, seed=seed)
        torch.manual_seed(0)
        return env.rollout(40, break_when_any_done=False)

    a, b, c = rollout(1), rollout(1), rollout(2)
    assert torch.equal(a["next", "agent_0", "observation"], b["next", "agent_0", "observation"])
    assert not torch.equal(a["next", "agent_0", "observation"], c["next", "agent_0", "observation"])


def test_envs_have_independent_random_streams():
    def rollout(with_other_env):
        env = make_vmas_env("balance", num_envs=4, max_steps=10, n_agents=2, seed=3)
        if with_other_env:
            make_vmas_env("balance", num_envs=4, max_steps=10, n_agents=2, seed=9).rollout(15)
        torch.manual_seed(0)
        return env.rollout(25, break_when_any_done=False)["next", "agent_0", "observation"]

    assert torch.equal(rollout(False), rollout(True))


def test_discrete_actions():
    env = make_vmas_env("navigation", num_envs=4, max_steps=10, continuous_actions=False, n_agents=2, seed=0)
    spec = env.full_action_spec_unbatched["agent_0", "action"]
    assert spec.space.n == 9
    td = env.rollout(3)
    assert td["agent_0", "action"].shape == (4, 3)


@pytest.mark.parametrize("scenario", ["balance", "navigation", "transport", "give_way", "wheel"])
def test_twin_reset_is_chosen_for_builtin_scenarios(scenario):
    assert VmasTeamEnv(scenario, num_envs=16).reset_mode == "twin"


@pytest.mark.parametrize("mode", ["twin", "blend", "loop"])
def test_partial_reset_touches_only_the_finished_rows(mode):
    env = VmasTeamEnv("balance", num_envs=12, max_steps=None, n_agents=3, reset_mode=mode, seed=0)
    td = env.reset()
    for _ in range(3):
        td = env.step(td.update(env.full_action_spec.rand()))["next"]
    before = env._observations()
    mask = torch.zeros(12, 1, dtype=torch.bool)
    mask[[0, 4, 11]] = True
    after = env.reset(td.clone().set("_reset", mask))
    for agent in env.group_map:
        assert torch.equal(after[agent, "observation"][~mask[:, 0]], before[agent][~mask[:, 0]])
        assert not torch.equal(after[agent, "observation"][mask[:, 0]], before[agent][mask[:, 0]])


def test_unknown_scenario_lists_close_matches():
    with pytest.raises(ConfigError, match="Did you mean 'balance'"):
        make_vmas_env("balanse", num_envs=2)


def test_bad_scenario_kwargs_are_reported():
    with pytest.raises(ConfigError, match="not_an_argument"):
        make_vmas_env("balance", num_envs=2, not_an_argument=3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        make_vmas_env("balance", num_envs=2, device="cuda")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"max_steps": 0}, "max_steps"), ({"num_envs": 0}, "num_envs"), ({"team_reward": "max"}, "team_reward")],
)
def test_bad_settings(kwargs, match):
    settings = {"num_envs": 2, **kwargs}
    with pytest.raises(ConfigError, match=match):
        VmasTeamEnv("balance", **settings)


def test_factory_dispatch():
    env = make_env({"family": "vmas", "scenario": "balance", "num_envs": 3, "scenario_kwargs": {"n_agents": 2}})
    assert env.batch_size == (3,)
    with pytest.raises(ConfigError, match="env family"):
        make_env({"family": "atari"})


@pytest.mark.filterwarnings("ignore:VMAS scenario 'simple_speaker_listener' keeps state")
@pytest.mark.parametrize("scenario", ["simple_speaker_listener", "kinematic_bicycle"])
@pytest.mark.parametrize("continuous", [True, False])
def test_heterogeneous_agents_get_their_own_shapes(scenario, continuous):
    from harl_torchrl.algorithms import make_on_policy_components

    env = make_vmas_env(scenario, num_envs=8, max_steps=10, continuous_actions=continuous, seed=0)
    check_env_specs(env, seed=0)
    obs = {a: env.full_observation_spec_unbatched[a, "observation"].shape for a in env.group_map}
    act = {a: env.full_action_spec_unbatched[a, "action"] for a in env.group_map}
    sizes = {a: (s.shape[-1] if continuous else s.space.n) for a, s in act.items()}
    assert len(set(obs.values())) > 1 or len(set(sizes.values())) > 1
    algo = {
        "name": "happo",
        "actor_lr": 5e-4,
        "critic_lr": 5e-4,
        "clip_epsilon": 0.2,
        "entropy_coeff": 0.01,
        "epochs": 2,
        "num_minibatches": 1,
        "max_grad_norm": 10.0,
    }
    parts = make_on_policy_components(algo, {"hidden_sizes": [16]}, env, seed=0)
    for agent, actor in parts.actors.items():
        assert actor.module[0].module.trunk[0].normalized_shape == tuple(obs[agent])
    with torch.no_grad():
        batch = env.rollout(10, parts.policy, break_when_any_done=False)
    parts.compute_advantage(batch)
    diagnostics = parts.updater.update(batch)
    assert all(torch.isfinite(diagnostics[a, "loss_objective"]) for a in env.group_map)


def test_speaker_listener_falls_back_to_per_index_resets():
    with pytest.warns(UserWarning, match="drawn once for the whole batch"):
        env = VmasTeamEnv("simple_speaker_listener", num_envs=8)
    assert env.reset_mode == "loop"


def test_a_bare_assert_in_the_scenario_is_reported_with_its_source_line():
    # regression: balance asserts n_agents > 1 without a message, and the error ended in ": "
    expected = r"assert self\.n_agents > 1.*balance\.py, line \d+.*Fix: set env\.scenario_kwargs"
    with pytest.raises(ConfigError, match=expected):
        VmasTeamEnv("balance", num_envs=2, n_agents=1)

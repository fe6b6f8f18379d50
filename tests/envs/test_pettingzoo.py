import sys

import numpy as np
import pytest
import torch
from rollouts import fixed_actions, replay
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from harl_torchrl.envs import MPETeamEnv, make_env, make_pettingzoo_env
from harl_torchrl.envs import pettingzoo as mpe_module
from harl_torchrl.errors import ConfigError, MissingDependencyError

pytest.importorskip("mpe2")

SCENARIOS = ["simple_spread", "simple_speaker_listener", "simple_reference"]


@pytest.mark.parametrize("continuous", [True, False])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_specs_pass_torchrl_checks(scenario, continuous):
    env = make_pettingzoo_env(scenario, num_envs=3, continuous_actions=continuous, seed=0)
    check_env_specs(env, seed=0)
    assert env.group_map == {name: [name] for name in env.agent_names}
    for name in env.agent_names:
        spec = env.full_action_spec_unbatched[name, "action"]
        if continuous:
            assert spec.dtype == torch.float32
            assert torch.equal(spec.space.low, torch.zeros_like(spec.space.low))
            assert torch.equal(spec.space.high, torch.ones_like(spec.space.high))
        else:
            assert spec.dtype == torch.int64 and spec.shape == ()


def test_layout_and_team_signals_at_the_root():
    env = make_pettingzoo_env("simple_spread", num_envs=4, seed=0)
    assert env.group_map == {f"agent_{i}": [f"agent_{i}"] for i in range(3)}
    td = env.rollout(3)
    for agent in env.group_map:
        assert td[agent, "observation"].shape == (4, 3, 18)
        assert td[agent, "action"].shape == (4, 3, 5)
        assert td["next", agent, "reward"].shape == (4, 3, 1)
    assert td["state"].shape == (4, 3, 54)
    for key in ("reward", "done", "terminated", "truncated", "episode_reward"):
        assert td["next", key].shape == (4, 3, 1)


@pytest.mark.parametrize("continuous", [True, False])
def test_speaker_and_listener_are_separate_groups_of_different_sizes(continuous):
    env = make_pettingzoo_env("simple_speaker_listener", num_envs=2, continuous_actions=continuous, seed=0)
    assert env.group_map == {"speaker_0": ["speaker_0"], "listener_0": ["listener_0"]}
    obs = env.full_observation_spec_unbatched
    assert obs["speaker_0", "observation"].shape == (3,)
    assert obs["listener_0", "observation"].shape == (11,)
    actions = env.full_action_spec_unbatched
    if continuous:
        assert actions["speaker_0", "action"].shape == (3,)
        assert actions["listener_0", "action"].shape == (5,)
    else:
        assert actions["speaker_0", "action"].n == 3
        assert actions["listener_0", "action"].n == 5
    td = env.rollout(4)
    assert td["speaker_0", "observation"].shape == (2, 4, 3)
    assert td["listener_0", "observation"].shape == (2, 4, 11)


def test_state_is_the_raw_envs_state():
    env = make_pettingzoo_env("simple_reference", num_envs=3, seed=0)
    td = env.rollout(4)
    raw = np.stack([copy.state() for copy in env._envs])
    np.testing.assert_array_equal(td["next", "state"][:, -1].numpy(), raw)


def test_team_reward_is_the_sum_of_the_agents_rewards():
    env = make_pettingzoo_env("simple_reference", num_envs=6, seed=1)
    td = env.rollout(10)
    agent_rewards = torch.stack([td["next", a, "reward"] for a in env.agent_names], dim=0)
    torch.testing.assert_close(td["next", "reward"], agent_rewards.sum(0))
    assert agent_rewards.std(0).max() > 0, "rewards differ per agent: the check must be able to fail"


def test_time_limit_is_truncation_not_termination():
    env = make_pettingzoo_env("simple_spread", num_envs=3, max_steps=5, seed=0)
    td = env.rollout(12, break_when_any_done=False)
    truncated = td["next", "truncated"].squeeze(-1)
    assert truncated[:, 4].all() and truncated[:, 9].all()
    assert truncated.sum() == 6
    assert not td["next", "terminated"].any()
    assert torch.equal(td["next", "done"], td["next", "truncated"] | td["next", "terminated"])


def test_episode_reward_resets_with_the_episode():
    env = make_pettingzoo_env("simple_spread", num_envs=2, max_steps=4, seed=0)
    td = env.rollout(8, break_when_any_done=False)
    rewards = td["next", "reward"].squeeze(-1)
    torch.testing.assert_close(td["next", "episode_reward"][:, 3, 0], rewards[:, :4].sum(-1))
    torch.testing.assert_close(td["next", "episode_reward"][:, 7, 0], rewards[:, 4:].sum(-1))


@pytest.mark.parametrize("continuous", [True, False])
def test_same_seed_same_rollout_other_seed_differs(continuous):
    def rollout(seed):
        env = make_pettingzoo_env("simple_spread", num_envs=3, max_steps=10, continuous_actions=continuous, seed=seed)
        return replay(env, fixed_actions(env, 15))

    a, b, c = rollout(1), rollout(1), rollout(2)
    assert torch.equal(a["next", "agent_0", "observation"], b["next", "agent_0", "observation"])
    assert torch.equal(a["next", "reward"], b["next", "reward"])
    assert not torch.equal(a["next", "agent_0", "observation"], c["next", "agent_0", "observation"])


def test_copies_get_different_seeds():
    env = make_pettingzoo_env("simple_spread", num_envs=3, seed=0)
    obs = env.reset()["agent_0", "observation"]
    assert not torch.equal(obs[0], obs[1]) and not torch.equal(obs[1], obs[2])


def test_set_seed_replays_the_episode():
    env = make_pettingzoo_env("simple_spread", num_envs=2, seed=None)
    env.set_seed(7)
    first = env.reset()["agent_0", "observation"]
    env.rollout(3)
    env.set_seed(7)
    assert torch.equal(env.reset()["agent_0", "observation"], first)


def test_partial_reset_resets_only_the_masked_copies():
    env = make_pettingzoo_env("simple_spread", num_envs=4, max_steps=6, seed=0)
    td = env.reset()
    for _ in range(3):
        td = env.step(td.update(env.full_action_spec.rand()))["next"]
    raw_before = [copy.state() for copy in env._envs]
    mask = torch.tensor([True, False, True, False])
    # the env's own answer: observations of every copy, fresh ones where masked
    after = env._reset(TensorDict({"_reset": mask.unsqueeze(-1)}, batch_size=[4]))
    for name in env.agent_names:
        assert torch.equal(after[name, "observation"][~mask], td[name, "observation"][~mask])
        assert not torch.equal(after[name, "observation"][mask], td[name, "observation"][mask])
    assert torch.equal(after["episode_reward"][~mask], td["episode_reward"][~mask])
    assert (after["episode_reward"][mask] == 0).all() and (td["episode_reward"][mask] != 0).all()
    for i, copy in enumerate(env._envs):
        assert np.array_equal(copy.state(), raw_before[i]) == (not mask[i])
    # the reset copies restarted their clocks: the others hit the 6-step limit 3 steps earlier
    td = td.update(after)
    truncated = []
    for _ in range(6):
        transition, td = env.step_and_maybe_reset(td.update(env.full_action_spec.rand()))
        truncated.append(transition["next", "truncated"].squeeze(-1).clone())
    truncated = torch.stack(truncated, dim=1)
    assert truncated[:, 2].tolist() == [False, True, False, True]
    assert truncated[:, 5].tolist() == [True, False, True, False]
    assert truncated.sum() == 4


def test_torchrl_reset_with_a_mask_keeps_the_other_copies():
    env = make_pettingzoo_env("simple_spread", num_envs=3, max_steps=6, seed=0)
    td = env.reset()
    td = env.step(td.update(env.full_action_spec.rand()))["next"]
    mask = torch.tensor([False, True, False])
    out = env.reset(td.clone().set("_reset", mask.unsqueeze(-1)))
    assert torch.equal(out["agent_0", "observation"][~mask], td["agent_0", "observation"][~mask])
    assert not torch.equal(out["agent_0", "observation"][mask], td["agent_0", "observation"][mask])
    assert torch.equal(out["state"][mask], torch.cat([out[a, "observation"][mask] for a in env.agent_names], -1))


def test_continuous_actions_are_clipped_to_the_box():
    def last_obs(action):
        env = make_pettingzoo_env("simple_spread", num_envs=2, seed=3)
        td = env.reset()
        for _ in range(3):
            td = env.step(td.update({(a, "action"): action.expand(2, 5) for a in env.agent_names}))["next"]
        return td["agent_0", "observation"]

    outside = last_obs(torch.tensor([-5.0, -1.0, 0.3, 7.0, 2.0]))
    assert torch.equal(outside, last_obs(torch.tensor([0.0, 0.0, 0.3, 1.0, 1.0])))
    assert not torch.equal(outside, last_obs(torch.tensor([0.0, 0.0, 0.3, 0.9, 1.0])))


def test_discrete_action_out_of_range_raises():
    env = make_pettingzoo_env("simple_spread", num_envs=2, continuous_actions=False, seed=0)
    td = env.reset().update(env.full_action_spec.rand())
    td["agent_1", "action"] = torch.tensor([0, 5])
    with pytest.raises(ValueError, match=r"agent_1: discrete actions must lie in \[0, 5\)"):
        env.step(td)


@pytest.mark.parametrize(("scenario", "continuous"), [("simple_speaker_listener", True), ("simple_reference", False)])
def test_direct_stepping_reproduces_the_parallel_api(scenario, continuous):
    def rollout(step_mode):
        env = MPETeamEnv(scenario, num_envs=3, max_steps=7, continuous_actions=continuous, seed=4, step_mode=step_mode)
        assert env.step_mode == step_mode
        return replay(env, fixed_actions(env, 16))

    direct, parallel = rollout("direct"), rollout("parallel")
    assert (direct == parallel).all()
    assert direct["next", "truncated"].sum() == 6  # two time limits per copy, with resets in between


def test_a_mismatching_direct_step_falls_back_to_the_parallel_api(monkeypatch):
    original = mpe_module._step_direct

    def forgets_the_clock(raws, *args):
        original(raws, *args)
        for raw in raws:
            raw.steps -= 1

    monkeypatch.setattr(mpe_module, "_step_direct", forgets_the_clock)
    with pytest.warns(UserWarning, match="parallel API"):
        env = MPETeamEnv("simple_spread", num_envs=2, seed=0)
    assert env.step_mode == "parallel"
    with pytest.raises(ConfigError, match="step_mode='direct'"):
        MPETeamEnv("simple_spread", num_envs=2, step_mode="direct")


def test_unknown_scenario_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Did you mean 'simple_spread'.*simple_reference.*simple_speaker_listener"):
        make_pettingzoo_env("simple_sprad", num_envs=2)
    with pytest.raises(ConfigError, match="unknown MPE scenario 'simple_tag'"):
        make_pettingzoo_env("simple_tag", num_envs=2)  # competitive: a summed team reward is meaningless
    assert make_pettingzoo_env("simple_spread_v3", num_envs=1).agent_names == ["agent_0", "agent_1", "agent_2"]


def test_bad_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="simple_spread"):
        make_pettingzoo_env("simple_spread", num_envs=2, n_landmarks=4)
    with pytest.raises(ConfigError, match="num_envs"):
        make_pettingzoo_env("simple_spread", num_envs=0)
    with pytest.raises(ConfigError, match="max_steps"):
        make_pettingzoo_env("simple_spread", num_envs=2, max_steps=0)
    with pytest.raises(ConfigError, match="step_mode"):
        MPETeamEnv("simple_spread", num_envs=2, step_mode="fast")


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpe2", None)  # any `import mpe2...` now raises ImportError
    for name in list(sys.modules):
        if name.startswith("mpe2."):
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingDependencyError, match=r"pip install 'harl-torchrl\[pettingzoo\]'"):
        make_pettingzoo_env("simple_spread", num_envs=2)
    with pytest.raises(MissingDependencyError, match=r"harl-torchrl\[pettingzoo\]"):
        make_env({"family": "pettingzoo", "scenario": "simple_spread", "num_envs": 2})


def test_factory_builds_the_family_from_a_config():
    cfg = {
        "family": "pettingzoo",
        "scenario": "simple_spread",
        "num_envs": 8,
        "max_steps": 10,
        "continuous_actions": False,
        "scenario_kwargs": {"N": 2},
    }
    env = make_env(cfg, num_envs=3, seed=0)
    assert isinstance(env, MPETeamEnv)
    assert env.batch_size == (3,) and env.max_steps == 10 and not env.continuous_actions
    assert sorted(env.group_map) == ["agent_0", "agent_1"]

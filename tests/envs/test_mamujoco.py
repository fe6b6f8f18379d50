import sys

import numpy as np
import pytest
import torch
from rollouts import fixed_actions, replay
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from harl_torchrl.envs import MaMuJoCoTeamEnv, make_env, make_mamujoco_env
from harl_torchrl.envs.mamujoco import (
    ONE_AGENT_PER_JOINT,
    make_raw_mamujoco_env,
    mamujoco_factorization,
    mujoco_warnings_as_python_warnings,
    reference_standardize,
)
from harl_torchrl.errors import ConfigError, MissingDependencyError

pytest.importorskip("gymnasium_robotics")
pytest.importorskip("mujoco")


def constant_policy(env, value):
    def policy(td):
        return td.update(
            {(a, "action"): torch.full((env.num_envs, *env.action_spaces[a].shape), value) for a in env.agent_names}
        )

    return policy


@pytest.mark.parametrize(
    ("scenario", "agent_conf", "obs_mode"),
    [("HalfCheetah", "2x3", "local"), ("HalfCheetah", "6x1", "local"), ("HalfCheetah", "2x3", "global")],
)
def test_specs_pass_torchrl_checks(scenario, agent_conf, obs_mode):
    env = make_mamujoco_env(scenario, agent_conf, num_envs=2, obs_mode=obs_mode, seed=0)
    check_env_specs(env, seed=0)
    assert env.group_map == {name: [name] for name in env.agent_names}
    for name in env.agent_names:
        spec = env.full_action_spec_unbatched[name, "action"]
        assert torch.equal(spec.space.low, -torch.ones(spec.shape))
        assert torch.equal(spec.space.high, torch.ones(spec.shape))


@pytest.mark.parametrize("obs_mode", ["local", "global"])
def test_humanoid_17x1_specs_pass_torchrl_checks(obs_mode):
    env = make_mamujoco_env("Humanoid", "17x1", num_envs=2, obs_mode=obs_mode, seed=0)
    check_env_specs(env, seed=0)
    assert env.agent_names == [f"agent_{i}" for i in range(17)]
    assert env.group_map == {name: [name] for name in env.agent_names}
    for name in env.agent_names:
        spec = env.full_action_spec_unbatched[name, "action"]
        assert spec.shape == (1,)
        assert torch.equal(spec.space.low, torch.full((1,), -0.4))
        assert torch.equal(spec.space.high, torch.full((1,), 0.4))
    sizes = {env.full_observation_spec_unbatched[a, "observation"].shape[-1] for a in env.agent_names}
    assert sizes == ({348 + 17} if obs_mode == "global" else {92, 64, 61, 85, 38})
    assert env.full_observation_spec_unbatched["state"].shape == (348,)


def test_humanoid_17x1_is_one_agent_per_actuated_joint():
    """Agent i drives actuator i alone (the reference's 17x1), over MaMuJoCo's own Humanoid graph."""
    from gymnasium_robotics import mamujoco_v1

    factorization = mamujoco_factorization("Humanoid", "17x1")
    parts = factorization["partition"]
    assert [len(part) for part in parts] == [1] * 17
    (all_joints,), edges, _ = mamujoco_v1.get_parts_and_edges("Humanoid", None)
    assert sorted(node.label for (node,) in parts) == sorted(node.label for node in all_joints)
    assert [node.label for (node,) in parts][:4] == ["abdomen_y", "abdomen_z", "abdomen_x", "right_hip_x"]
    assert len(factorization["edges"]) == len(edges)
    raw = make_raw_mamujoco_env("Humanoid", "17x1")
    for i in range(17):
        actions = {a: np.zeros(1) for a in raw.possible_agents}
        actions[f"agent_{i}"] = np.ones(1)
        np.testing.assert_array_equal(raw.map_local_actions_to_global_action(actions), np.eye(17)[i])
    # agent_obsk=0: each agent observes its own joint (position and velocity) and the torso
    raw0 = make_raw_mamujoco_env("Humanoid", "17x1", agent_obsk=0)
    obs, _ = raw0.reset(seed=0)
    data = raw0.single_agent_env.unwrapped.data
    for i, (node,) in enumerate(parts):
        assert data.qpos[node.qpos_ids] in obs[f"agent_{i}"]
        assert data.qvel[node.qvel_ids] in obs[f"agent_{i}"]
    assert mamujoco_factorization("Humanoid", "9|8") is None
    assert ("Humanoid", "17x1") in ONE_AGENT_PER_JOINT


def test_halfcheetah_6x1_agents_are_groups_of_different_sizes():
    env = make_mamujoco_env("HalfCheetah", "6x1", num_envs=2, seed=0)
    assert env.group_map == {f"agent_{i}": [f"agent_{i}"] for i in range(6)}
    sizes = [env.full_observation_spec_unbatched[a, "observation"].shape[-1] for a in env.agent_names]
    assert sizes == [9, 9, 8, 9, 9, 8]
    td = env.rollout(3)
    assert td["agent_2", "observation"].shape == (2, 3, 8)
    assert td["agent_0", "action"].shape == (2, 3, 1)
    assert td["state"].shape == (2, 3, 17)
    for key in ("reward", "done", "terminated", "truncated", "episode_reward"):
        assert td["next", key].shape == (2, 3, 1)


@pytest.mark.parametrize(
    ("scenario", "agent_conf"),
    # 6x1: one joint per agent; Walker2d: permuted action slots; Reacher: observations built by MaMuJoCo
    [
        ("HalfCheetah", "6x1"),
        ("Walker2d", "2x3"),
        ("Hopper", "3x1"),
        ("Reacher", "2x1"),
        ("Ant", "2x4"),
        ("Humanoid", "9|8"),
        ("Humanoid", "17x1"),  # a custom factorization: one agent per actuated joint
    ],
)
def test_matches_the_raw_parallel_env(scenario, agent_conf):
    """Same seeds, same actions: our batched env and mamujoco_v1.parallel_env agree exactly."""
    env = make_mamujoco_env(scenario, agent_conf, num_envs=2, seed=5)
    # mamujoco_v1.parallel_env(scenario, agent_conf), with the custom factorization for 17x1
    # (checked on its own in test_humanoid_17x1_is_one_agent_per_actuated_joint)
    raws = [make_raw_mamujoco_env(scenario, agent_conf) for _ in range(2)]
    td = env.reset()
    for i, raw in enumerate(raws):
        raw.reset(seed=5 + i)
    for action in fixed_actions(env, 30):
        # bang-bang at the action bounds: large velocities (which Hopper's state clips, unlike obs)
        for a in env.agent_names:
            space = env.full_action_spec_unbatched[a, "action"].space
            action[a, "action"] = torch.where(action[a, "action"] > 0, space.high, space.low)
        td = env.step(td.update(action))
        for i, raw in enumerate(raws):
            obs, rewards, terminations, _, _ = raw.step(
                {a: action[a, "action"][i].double().numpy() for a in env.agent_names}
            )
            for a in env.agent_names:
                np.testing.assert_array_equal(td["next", a, "observation"][i].numpy(), obs[a].astype(np.float32))
                assert td["next", a, "reward"][i].item() == np.float32(rewards[a])
            np.testing.assert_array_equal(td["next", "state"][i].numpy(), raw.state().astype(np.float32))
            assert td["next", "reward"][i].item() == np.float32(rewards["agent_0"])
            assert td["next", "terminated"][i].item() == terminations["agent_0"]
        td = td["next"]


@pytest.mark.parametrize("clip_actions", [True, False])
def test_out_of_box_actions_are_clipped_or_passed_as_asked(clip_actions):
    """Humanoid's box is [-0.4, 0.4]: the control cost sees the clipped or the raw action."""
    from gymnasium_robotics import mamujoco_v1

    env = make_mamujoco_env("Humanoid", "9|8", num_envs=1, clip_actions=clip_actions, seed=2)
    with mujoco_warnings_as_python_warnings():
        raw = mamujoco_v1.parallel_env("Humanoid", "9|8")
    td = env.reset()
    raw.reset(seed=2)
    action = {a: np.full(env.action_spaces[a].shape, 0.9) for a in env.agent_names}
    td = env.step(td.update({(a, "action"): torch.tensor(v[None], dtype=torch.float32) for a, v in action.items()}))
    sent = {a: np.clip(v, -0.4, 0.4) if clip_actions else v for a, v in action.items()}
    _, rewards, _, _, _ = raw.step(sent)
    assert td["next", "reward"].item() == np.float32(rewards["agent_0"])
    clipped_cost = 0.1 * 17 * 0.4**2  # Humanoid's ctrl_cost_weight x sum of squared controls
    raw_cost = 0.1 * 17 * 0.9**2
    other = rewards["agent_0"] + (clipped_cost - raw_cost if clip_actions else raw_cost - clipped_cost)
    assert abs(td["next", "reward"].item() - other) > 0.5, "the two settings differ: the test can fail"


def test_team_reward_is_the_shared_reward():
    env = make_mamujoco_env("HalfCheetah", "2x3", num_envs=3, seed=0)
    td = env.rollout(5)
    for a in env.agent_names:
        assert torch.equal(td["next", a, "reward"], td["next", "reward"])
    assert td["next", "reward"].std() > 0


def test_time_limit_is_truncation_not_termination():
    env = make_mamujoco_env("HalfCheetah", "2x3", num_envs=2, max_steps=5, seed=0)
    td = env.rollout(12, break_when_any_done=False)
    truncated = td["next", "truncated"].squeeze(-1)
    assert truncated[:, 4].all() and truncated[:, 9].all()
    assert truncated.sum() == 4
    assert not td["next", "terminated"].any()
    assert torch.equal(td["next", "done"], td["next", "truncated"] | td["next", "terminated"])


def test_falling_is_termination_not_truncation():
    # Hopper with every joint at -1 falls over on its 6th step, well before the time limit
    env = make_mamujoco_env("Hopper", "3x1", num_envs=2, max_steps=1000, seed=0)
    td = env.rollout(14, constant_policy(env, -1.0), break_when_any_done=False)
    terminated = td["next", "terminated"].squeeze(-1)
    assert terminated[:, 5].all() and terminated[:, 11].all() and terminated.sum() == 4
    assert not td["next", "truncated"].any()
    assert torch.equal(td["next", "done"], td["next", "terminated"])
    rewards = td["next", "reward"].squeeze(-1)
    torch.testing.assert_close(td["next", "episode_reward"][:, 5, 0], rewards[:, :6].sum(-1))
    torch.testing.assert_close(td["next", "episode_reward"][:, 11, 0], rewards[:, 6:12].sum(-1))


def test_global_obs_mode_is_the_reference_standardised_state_with_one_hot_id():
    env = make_mamujoco_env("HalfCheetah", "6x1", num_envs=3, obs_mode="global", seed=0)
    n, size = 6, 17
    assert all(env.full_observation_spec_unbatched[a, "observation"].shape == (size + n,) for a in env.agent_names)
    td = env.rollout(4)
    raw_state = np.stack([copy.state() for copy in env._envs])  # the copies' current (last) state
    for k, name in enumerate(env.agent_names):
        obs = td["next", name, "observation"][:, -1].double().numpy()
        assert obs.shape == (3, size + n)
        # standardised per vector: mean 0 and (population) std 1 over the vector's own entries
        np.testing.assert_allclose(obs.mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(obs.std(-1), 1.0, atol=1e-5)
        # the agent's id: the single largest of the last n entries, all others equal
        ids = obs[:, size:]
        assert (ids.argmax(-1) == k).all()
        assert np.allclose(np.delete(ids, k, axis=-1), ids[:, [(k + 1) % n]])
        # exactly the reference's formula on concat(state, one_hot(k))
        one_hot = np.zeros((3, n))
        one_hot[:, k] = 1.0
        expected = reference_standardize(np.concatenate([raw_state, one_hot], -1))
        np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-6)
    # as in the reference, the critic's state is standardised the same way
    np.testing.assert_allclose(
        td["next", "state"][:, -1].double().numpy(), reference_standardize(raw_state), rtol=1e-6, atol=1e-6
    )
    raw = make_mamujoco_env("HalfCheetah", "6x1", num_envs=3, obs_mode="global", standardize_state=False, seed=0)
    np.testing.assert_array_equal(raw.reset()["state"].numpy(), np.stack([c.state() for c in raw._envs]).astype("f4"))


def test_reference_standardize():
    x = np.array([[1.0, 2.0, 3.0, 6.0], [2.0, 2.0, 2.0, 2.0]])
    out = reference_standardize(x)
    np.testing.assert_allclose(out[0], (x[0] - 3.0) / np.sqrt(3.5))
    np.testing.assert_array_equal(out[1], np.zeros(4))


def test_local_obs_mode_state_is_the_raw_state():
    env = make_mamujoco_env("Hopper", "3x1", num_envs=2, seed=0)
    td = env.rollout(3)
    raw = np.stack([copy.state() for copy in env._envs]).astype(np.float32)
    np.testing.assert_array_equal(td["next", "state"][:, -1].numpy(), raw)
    assert [td[a, "observation"].shape[-1] for a in env.agent_names] == [8, 9, 8]


def test_same_seed_same_rollout_other_seed_differs():
    def rollout(seed):
        env = make_mamujoco_env("Hopper", "3x1", num_envs=2, max_steps=50, seed=seed)
        return replay(env, fixed_actions(env, 30))

    a, b, c = rollout(1), rollout(1), rollout(2)
    assert torch.equal(a["next", "state"], b["next", "state"])
    assert torch.equal(a["next", "reward"], b["next", "reward"])
    assert not torch.equal(a["next", "state"], c["next", "state"])
    assert not torch.equal(a["state"][0, 0], a["state"][1, 0]), "copies get different seeds"


def test_partial_reset_resets_only_the_masked_copies():
    env = make_mamujoco_env("HalfCheetah", "2x3", num_envs=4, max_steps=6, seed=0)
    td = env.reset()
    for _ in range(3):
        td = env.step(td.update(env.full_action_spec.rand()))["next"]
    raw_before = [copy.state() for copy in env._envs]
    mask = torch.tensor([False, True, True, False])
    after = env._reset(TensorDict({"_reset": mask.unsqueeze(-1)}, batch_size=[4]))
    for key in [(a, "observation") for a in env.agent_names] + ["state", "episode_reward"]:
        assert torch.equal(after[key][~mask], td[key][~mask])
        assert not torch.equal(after[key][mask], td[key][mask])
    assert (after["episode_reward"][mask] == 0).all()
    for i, copy in enumerate(env._envs):
        assert np.array_equal(copy.state(), raw_before[i]) == (not mask[i])
    td = td.update(after)
    truncated = []
    for _ in range(6):
        transition, td = env.step_and_maybe_reset(td.update(env.full_action_spec.rand()))
        truncated.append(transition["next", "truncated"].squeeze(-1).clone())
    truncated = torch.stack(truncated, dim=1)
    assert truncated[:, 2].tolist() == [True, False, False, True]
    assert truncated[:, 5].tolist() == [False, True, True, False]


def test_building_leaves_no_mujoco_log_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_mamujoco_env("HalfCheetah", "2x3", num_envs=1).rollout(2)
    assert list(tmp_path.iterdir()) == []


def test_actions_are_clipped_to_the_box():
    def final_state(value):
        env = make_mamujoco_env("HalfCheetah", "2x3", num_envs=1, seed=0)
        return env.rollout(3, constant_policy(env, value))["next", "state"][:, -1]

    assert torch.equal(final_state(25.0), final_state(1.0))
    assert not torch.equal(final_state(0.9), final_state(1.0))


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Did you mean 'HalfCheetah'.*Ant.*Hopper.*Walker2d"):
        make_mamujoco_env("Halfcheetah", "2x3", num_envs=1)
    with pytest.raises(ConfigError, match=r"agent_conf for MaMuJoCo HalfCheetah '3x2'.*Valid choices: 2x3, 6x1"):
        make_mamujoco_env("HalfCheetah", "3x2", num_envs=1)
    with pytest.raises(ConfigError, match=r"obs_mode.*global, local"):
        make_mamujoco_env("HalfCheetah", "2x3", num_envs=1, obs_mode="state")
    with pytest.raises(ConfigError, match="agent_obsk"):
        make_mamujoco_env("HalfCheetah", "2x3", num_envs=1, agent_obsk=-1)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # `import gymnasium_robotics` now fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'harl-torchrl\[mujoco\]'"):
        make_mamujoco_env("HalfCheetah", "2x3", num_envs=1)
    with pytest.raises(MissingDependencyError, match=r"harl-torchrl\[mujoco\]"):
        make_env({"family": "mamujoco", "scenario": "HalfCheetah", "agent_conf": "2x3", "num_envs": 1})


def test_factory_builds_the_family_from_a_config():
    cfg = {
        "family": "mamujoco",
        "scenario": "Walker2d",
        "agent_conf": "2x3",
        "num_envs": 8,
        "max_steps": 20,
        "obs_mode": "global",
        "env_kwargs": {"ctrl_cost_weight": 0.0},
    }
    env = make_env(cfg, num_envs=2, seed=0)
    assert isinstance(env, MaMuJoCoTeamEnv)
    assert env.batch_size == (2,) and env.max_steps == 20 and env.obs_mode == "global"
    assert env._envs[0].single_agent_env.unwrapped._ctrl_cost_weight == 0.0
    with pytest.raises(ConfigError, match="agent_conf"):
        make_env({"family": "mamujoco", "scenario": "Walker2d"})


@pytest.mark.parametrize("clip_actions", [True, False])
def test_normalized_actions_are_mapped_onto_the_actuator_range(clip_actions):
    """normalize_actions: the agents act in [-1, 1]; Humanoid's [-0.4, 0.4] receives 0.4 a (the reference's)."""
    env = make_mamujoco_env(
        "Humanoid", "17x1", num_envs=1, normalize_actions=True, clip_actions=clip_actions, max_steps=50, seed=3
    )
    for name in env.agent_names:
        space = env.full_action_spec_unbatched[name, "action"].space
        assert torch.equal(space.low, -torch.ones(1)) and torch.equal(space.high, torch.ones(1))
    raw = make_raw_mamujoco_env("Humanoid", "17x1")
    td = env.reset()
    raw.reset(seed=3)
    values = np.linspace(-1.5, 1.5, 17)  # some outside [-1, 1]: clipped, or mapped beyond the box
    for step in range(3):
        action = {a: np.array([values[(k + step) % 17]]) for k, a in enumerate(env.agent_names)}
        td = env.step(td.update({(a, "action"): torch.tensor(v[None], dtype=torch.float32) for a, v in action.items()}))
        unit = {a: np.clip(v, -1.0, 1.0) if clip_actions else v for a, v in action.items()}
        obs, rewards, _, _, _ = raw.step({a: 0.4 * v.astype(np.float32).astype(np.float64) for a, v in unit.items()})
        assert td["next", "reward"].item() == pytest.approx(rewards["agent_0"], rel=1e-6, abs=1e-5)
        for a in env.agent_names:
            np.testing.assert_allclose(td["next", a, "observation"][0].numpy(), obs[a], rtol=1e-5, atol=1e-5)
        td = td["next"]
    plain = make_mamujoco_env("Humanoid", "17x1", num_envs=1, seed=3)
    assert torch.equal(plain.full_action_spec_unbatched["agent_0", "action"].space.high, torch.full((1,), 0.4))


def test_zero_contact_forces_zeroes_only_the_state_contact_forces():
    """The reference's Humanoid-v2 reported zero contact forces; v5 computes them (state[270:348] on Humanoid)."""
    kwargs = {"num_envs": 2, "obs_mode": "global", "seed": 4}
    zeroed = make_mamujoco_env("Humanoid", "17x1", zero_contact_forces=True, standardize_state=False, **kwargs)
    plain = make_mamujoco_env("Humanoid", "17x1", standardize_state=False, **kwargs)
    actions = fixed_actions(plain, 15)
    a, b = replay(zeroed, actions), replay(plain, actions)
    contact = slice(270, 348)
    assert (a["next", "state"][..., contact] == 0).all()
    assert (b["next", "state"][..., contact] != 0).any(), "v5 computes contact forces: the test can fail"
    torch.testing.assert_close(a["next", "state"][..., :270], b["next", "state"][..., :270], rtol=0, atol=0)
    torch.testing.assert_close(a["next", "reward"], b["next", "reward"], rtol=0, atol=0)  # the reward is untouched
    # every agent's observation is the reference formula on the zeroed state
    state = a["next", "state"][:, -1].double().numpy()
    for k, name in enumerate(zeroed.agent_names):
        one_hot = np.zeros((2, 17))
        one_hot[:, k] = 1.0
        expected = reference_standardize(np.concatenate([state, one_hot], -1))
        np.testing.assert_allclose(a["next", name, "observation"][:, -1].numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="obs_mode=global"):
        make_mamujoco_env("Humanoid", "17x1", num_envs=1, zero_contact_forces=True)
    with pytest.raises(ConfigError, match="no contact forces"):
        make_mamujoco_env("HalfCheetah", "2x3", num_envs=1, obs_mode="global", zero_contact_forces=True)

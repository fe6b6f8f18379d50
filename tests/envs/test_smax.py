"""SMAX (JaxMARL) env: specs, seeding, exact parity with the raw env, masks, time limit, win flag, resume, recipe."""

import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type

from harl_torchrl.config import env_config
from harl_torchrl.errors import ConfigError, MissingDependencyError

HAS_JAXMARL = importlib.util.find_spec("jaxmarl") is not None
# not pytest.importorskip: importing jaxmarl outside the env's guard resets sys.stdout/stderr (see smax.py)
needs_jaxmarl = pytest.mark.skipif(not HAS_JAXMARL, reason="needs jaxmarl: pip install 'harl-torchrl[smax]'")
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
B = 3


def _env(scenario="3m", num_envs=B, seed=0, **kwargs):
    from harl_torchrl.envs import make_smax_env

    return make_smax_env(scenario, num_envs=num_envs, seed=seed, **kwargs)


def _strongest_available(td, agents):
    """Scripted actions: each ally's highest available action (an attack when one is in range, else stop)."""
    for agent in agents:
        mask = td[agent, "action_mask"]
        td[agent, "action"] = (mask.long() * torch.arange(mask.shape[-1])).argmax(-1)
    return td


def _play(env, steps, policy=_strongest_available):
    """Steps ``env`` with ``policy`` for ``steps`` steps (auto-resetting); returns the stacked ``step`` outputs."""
    td = env.reset()
    out = []
    for _ in range(steps):
        td = env.step(policy(td, env.agent_names))
        out.append(td.clone())
        td = env.step_mdp(td)
        if td["done"].any():
            td["_reset"] = td["done"].clone()
            td = env.reset(td)
    return torch.stack(out, dim=1)


def stop_policy(td, agents):
    """Every ally stops (always available)."""
    for agent in agents:
        td[agent, "action"] = torch.full(td.batch_size, 4)
    return td


class _ScriptedPolicy(TensorDictModuleBase):
    def __init__(self, agents):
        super().__init__()
        self.agents = agents
        self.in_keys = [(agent, "action_mask") for agent in agents]
        self.out_keys = [(agent, "action") for agent in agents]

    def forward(self, td):
        return _strongest_available(td, self.agents)


def _raw_trajectories(scenario, seed, num_envs, steps, max_steps=101, stop=False, **kwargs):
    """The raw JaxMARL env, one copy at a time with the key schedule the batched env documents.

    Copy ``i`` starts from ``PRNGKey(seed + i)``; each reset and each step splits the
    copy's key (``key, sub = split(key)``) and hands ``sub`` to ``reset`` / ``step_env``;
    a copy is reset after its done step. Actions: :func:`_strongest_available` (or
    :func:`stop_policy` with ``stop``).
    """
    import jax
    import jax.numpy as jnp
    from jaxmarl import make
    from jaxmarl.environments.smax import map_name_to_scenario

    raw = make("HeuristicEnemySMAX", scenario=map_name_to_scenario(scenario), max_steps=max_steps - 1, **kwargs)
    agents = raw.agents
    copies = []
    for i in range(num_envs):
        key = jax.random.PRNGKey(seed + i)
        key, sub = jax.random.split(key)
        obs, state = raw.reset(sub)
        rows = []
        for _ in range(steps):
            masks = raw.get_avail_actions(state)
            actions = {a: jnp.asarray(4 if stop else int(np.flatnonzero(np.asarray(masks[a]))[-1])) for a in agents}
            key, sub = jax.random.split(key)
            obs, state, rewards, dones, _ = raw.step_env(sub, state, actions)
            next_masks = raw.get_avail_actions(state)
            rows.append(
                {
                    "obs": {a: np.asarray(obs[a]) for a in agents},
                    "state": np.asarray(obs["world_state"]),
                    "mask": {a: np.asarray(next_masks[a]).astype(bool) for a in agents},
                    "reward": {a: float(rewards[a]) for a in agents},
                    "done": bool(dones["__all__"]),
                    "alive": np.asarray(state.state.unit_alive),
                }
            )
            if dones["__all__"]:
                key, sub = jax.random.split(key)
                obs, state = raw.reset(sub)
        copies.append(rows)
    return agents, raw.num_allies, copies


@pytest.fixture(scope="module")
def scripted():
    """Our 3m env and the raw JaxMARL env, both played for 130 steps (at least one reset per copy)."""
    steps = 130
    env = _env("3m", seed=5)
    ours = _play(env, steps)
    return ours, _raw_trajectories("3m", 5, B, steps)


# --------------------------------------------------------------------------- without jaxmarl
def test_config_refuses_a_missing_or_too_short_time_limit():
    assert env_config({"family": "smax", "scenario": "3m"}).max_steps == 101
    for bad in (None, 1):
        with pytest.raises(ConfigError, match=r"env\.max_steps"):
            env_config({"family": "smax", "scenario": "3m", "max_steps": bad})
    with pytest.raises(ConfigError, match=r"env\.continuous_actions must be false"):
        env_config({"family": "smax", "scenario": "3m", "continuous_actions": True})


def test_settings_the_env_sets_itself_are_refused():
    from harl_torchrl.envs import make_smax_env

    with pytest.raises(ConfigError, match=r"env.env_kwargs.*max_steps.*env.max_steps"):
        env_config({"family": "smax", "scenario": "3m", "env_kwargs": {"max_steps": 50}})
    with pytest.raises(ConfigError, match=r"\['num_allies'\] are set by the env itself"):
        make_smax_env("3m", num_envs=2, num_allies=4)


def test_missing_jaxmarl_names_the_install_command(monkeypatch):
    from harl_torchrl.envs.smax import smax_map_names

    monkeypatch.setitem(sys.modules, "jaxmarl", None)  # makes `import jaxmarl` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'harl-torchrl\[smax\]'"):
        smax_map_names()


# ------------------------------------------------------------------------------ with jaxmarl
@needs_jaxmarl
@pytest.mark.parametrize("scenario", ["3m", "2s3z"])
def test_specs_pass_torchrl_checks(scenario):
    env = _env(scenario, num_envs=2)
    check_env_specs(env, seed=0)
    allies = {"3m": 3, "2s3z": 5}[scenario]
    assert env.group_map == {f"ally_{i}": [f"ally_{i}"] for i in range(allies)}, "one group per agent"
    spec = env.full_observation_spec_unbatched
    assert spec["ally_0", "action_mask"].shape == (5 + allies,) and spec["ally_0", "action_mask"].dtype == torch.bool
    assert spec["state"].shape == (env.raw_env.state_size,)


@needs_jaxmarl
def test_unknown_map_and_unknown_setting_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown SMAX map '3mm'\. Did you mean '3m'"):
        _env("3mm")
    with pytest.raises(ConfigError, match="could not build SMAX map"):
        _env("3m", not_a_setting=1)


@needs_jaxmarl
def test_same_seed_same_rollout_and_each_copy_its_own_stream():
    first, second = _play(_env(seed=3), 40), _play(_env(seed=3), 40)
    assert (first == second).all()
    other = _play(_env(seed=4), 40)
    assert not torch.equal(first["next", "ally_0", "observation"], other["next", "ally_0", "observation"])
    # copy 1 of a batch seeded 3 plays what a lone copy seeded 4 plays: streams are per copy
    assert (first[1] == _play(_env(num_envs=1, seed=4), 40)[0]).all()


@needs_jaxmarl
def test_masks_dones_observations_match_the_raw_env_exactly(scripted):
    ours, (agents, num_allies, copies) = scripted
    assert list(agents) == [f"ally_{i}" for i in range(3)]
    for i, rows in enumerate(copies):
        done = [row["done"] for row in rows]
        assert any(done), "the scripted battles end inside the sequence (resets are covered)"
        np.testing.assert_array_equal(ours["next", "done"][i].flatten().numpy(), done)
        np.testing.assert_array_equal(ours["next", "state"][i].numpy(), np.stack([row["state"] for row in rows]))
        for agent in agents:
            np.testing.assert_array_equal(
                ours["next", agent, "observation"][i].numpy(), np.stack([row["obs"][agent] for row in rows])
            )
            raw_mask = np.stack([row["mask"][agent] for row in rows])
            np.testing.assert_array_equal(ours["next", agent, "action_mask"][i].numpy(), raw_mask)
            assert not raw_mask.all(), "some actions are unavailable (the masks carry information)"
        # a done step is a battle's end (terminated) unless both teams still stand (truncated)
        alive = np.stack([row["alive"] for row in rows])
        over = ~alive[:, :num_allies].any(-1) | ~alive[:, num_allies:].any(-1)
        np.testing.assert_array_equal(ours["next", "terminated"][i].flatten().numpy(), np.array(done) & over)
        np.testing.assert_array_equal(ours["next", "truncated"][i].flatten().numpy(), np.array(done) & ~over)
        won = np.array(done) & ~alive[:, num_allies:].any(-1) & alive[:, :num_allies].any(-1)
        np.testing.assert_array_equal(ours["next", "battle_won"][i].flatten().numpy(), won)


@needs_jaxmarl
def test_team_reward_equals_the_raw_env_reward(scripted):
    ours, (agents, _, copies) = scripted
    for i, rows in enumerate(copies):
        for agent in agents:
            raw = np.array([row["reward"][agent] for row in rows], dtype=np.float32)
            np.testing.assert_array_equal(ours["next", agent, "reward"][i].flatten().numpy(), raw)
        raw_team = np.array([row["reward"]["ally_0"] for row in rows], dtype=np.float32)
        np.testing.assert_array_equal(ours["next", "reward"][i].flatten().numpy(), raw_team)
        assert raw_team.max() > 0, "damage was dealt: the rewards carry information"
    # the running episode return restarts at each reset and ends at the episode's return
    reward, done = ours["next", "reward"][0].flatten(), ours["next", "done"][0].flatten()
    end = int(done.nonzero()[0])
    assert ours["next", "episode_reward"][0, end].item() == pytest.approx(reward[: end + 1].sum().item(), rel=1e-6)


@needs_jaxmarl
def test_masked_actions_are_never_sampled_by_our_actors():
    from harl_torchrl.modules.actors import make_actors

    env = _env("3m", num_envs=8, seed=1)
    torch.manual_seed(0)
    actors = make_actors(env, hidden_sizes=[16])
    assert all((agent, "action_mask") in actor.in_keys for agent, actor in actors.items())
    with set_exploration_type(ExplorationType.RANDOM):
        rollout = env.rollout(150, TensorDictSequential(*actors.values()), break_when_any_done=False)
    unavailable = 0
    for agent in env.agent_names:
        mask, action = rollout[agent, "action_mask"], rollout[agent, "action"]
        assert mask.gather(-1, action.unsqueeze(-1)).all(), f"{agent} took an unavailable action"
        unavailable += int((~mask).sum())
    assert unavailable > 1000, "the masks excluded actions a uniform policy would pick"


@needs_jaxmarl
def test_time_limit_is_truncation_after_101_steps_and_a_battle_end_is_termination():
    # enemies that do not shoot and allies that only stop: nobody dies, the clock ends every episode
    calm = _env("3m", num_envs=2, enemy_shoots=False)
    stop = _play(calm, 103, policy=stop_policy)
    for key in ("done", "truncated"):
        assert stop["next", key].squeeze(-1).nonzero()[:, 1].tolist() == [100, 100], key
    assert not stop["next", "terminated"].any() and not stop["next", "battle_won"].any()
    # the raw env's own clock agrees: SMAX checks max_steps=100 before its counter moves
    _, _, raw = _raw_trajectories("3m", 0, 1, 101, stop=True, enemy_shoots=False)
    assert [row["done"] for row in raw[0]].index(True) == 100
    # a shorter limit counts in steps too
    short = _play(_env("3m", num_envs=2, max_steps=20, enemy_shoots=False), 20, policy=stop_policy)
    assert short["next", "truncated"].squeeze(-1).nonzero()[:, 1].tolist() == [19, 19]
    # allies that shoot unharmed enemies win: terminated (not truncated), flagged as won, before the limit
    win = _play(calm, 60)
    ended = win["next", "done"].squeeze(-1)
    assert ended.any(-1).all()
    assert torch.equal(win["next", "terminated"].squeeze(-1), ended)
    assert torch.equal(win["next", "battle_won"].squeeze(-1), ended) and not win["next", "truncated"].any()


@needs_jaxmarl
def test_win_rate_in_training_stats_and_evaluation():
    from harl_torchrl.evaluation import evaluate
    from harl_torchrl.training import episode_stats

    calm = _env("3m", num_envs=2, enemy_shoots=False)
    figures = evaluate(calm, _ScriptedPolicy(calm.agent_names), 101)
    assert figures["win_rate"] == 1.0 and figures["return_mean"] > 1.0
    stats = episode_stats(_play(calm, 60))
    assert stats["win_rate"] == 1.0 and stats["episodes"] >= 2
    stopped = episode_stats(_play(_env("3m", num_envs=2, enemy_shoots=False), 101, policy=stop_policy))
    assert stopped["win_rate"] == 0.0 and stopped["episodes"] == 2


@needs_jaxmarl
def test_capture_and_restore_continue_bit_identically():
    env = _env("3m", seed=2)
    _play(env, 1)  # a reset and a step
    td = env.reset()
    for _ in range(15):
        td = env.step_mdp(env.step(_strongest_available(td, env.agent_names)))
    saved = env.capture_state()
    assert all(isinstance(leaf, torch.Tensor) for leaf in saved["state"])
    restored = _env("3m", seed=9)
    restored.restore_state(saved)

    def continue_(e, start):
        out, td = [], start.clone()
        for _ in range(25):
            td = e.step(_strongest_available(td, e.agent_names))
            out.append(td["next"].clone())
            td = e.step_mdp(td)
            if td["done"].any():
                td["_reset"] = td["done"].clone()
                td = e.reset(td)
        return torch.stack(out, 1)

    assert (continue_(env, td) == continue_(restored, td)).all()
    with pytest.raises(ValueError, match="cannot be restored"):
        _env("3m", num_envs=2).restore_state(saved)


TINY_3M = [
    "env=smax/3m",
    "algo=happo",
    "env.num_envs=4",
    "collector.rollout_steps=10",
    "eval.interval=1",
    "eval.episodes=2",
    "checkpoint.interval=1",
    "logger.progress_bar=false",
    "model.hidden_sizes=[16]",
]


def _train(out, *overrides):
    from hydra import compose, initialize_config_dir

    import harl_torchrl.run as recipe  # the one run loop, which recipes/train.py and harl-train call

    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY_3M, *overrides])
    return recipe.run(cfg, out)


def _metric_rows(out):
    with open(out / "metrics.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["iteration"]]


@needs_jaxmarl
def test_recipe_trains_happo_on_3m_and_logs_the_win_rate(tmp_path):
    result = _train(tmp_path, "total_frames=80")
    rows = _metric_rows(tmp_path)
    assert [int(row["step"]) for row in rows] == [40, 80]
    assert all(math.isfinite(float(row["ally_0/loss_objective"])) for row in rows)
    assert "win_rate" in rows[0] and "eval/win_rate" in rows[0]
    assert 0.0 <= float(rows[-1]["eval/win_rate"]) <= 1.0
    assert result["frames"] == 80


def test_episode_stats_without_a_win_flag_has_no_win_rate():
    from harl_torchrl.training import episode_stats

    batch = TensorDict(
        {"next": {"done": torch.tensor([[True], [True]]), "episode_reward": torch.tensor([[1.0], [3.0]])}}, [2]
    )
    assert episode_stats(batch) == {"episode_return_mean": 2.0, "episodes": 2.0}


@needs_jaxmarl
def test_resumed_run_continues_the_same_battles_bit_identically(tmp_path):
    torch.set_num_threads(1)
    whole = _train(tmp_path / "whole", "total_frames=160")
    _train(tmp_path / "first", "total_frames=80")
    resumed = _train(tmp_path / "resumed", "total_frames=160", f"resume={tmp_path / 'first' / 'checkpoint.pt'}")
    timing = ("collect_fps", "update_seconds", "fps")

    def rows(out):
        return [{k: v for k, v in row.items() if k not in timing} for row in _metric_rows(out)]

    assert rows(tmp_path / "resumed")[-2:] == rows(tmp_path / "whole")[-2:], "iterations 3 and 4 logged the same"
    from harl_torchrl.utils.checkpoint import load_checkpoint

    mine, theirs = load_checkpoint(resumed["checkpoint"]), load_checkpoint(whole["checkpoint"])
    for agent in mine["actors"]:
        for key, value in mine["actors"][agent].items():
            assert torch.equal(value, theirs["actors"][agent][key]), (agent, key)


@needs_jaxmarl
def test_reset_prepared_in_the_step_equals_the_separate_reset_and_keeps_other_copies():
    fused, separate = _env(seed=6), _env(seed=6)
    tds = []
    for env in (fused, separate):
        td = env.reset()
        for _ in range(40):  # until some copy has finished
            td = env.step(_strongest_available(td, env.agent_names))
            if td["next", "done"].any():
                break
        tds.append(td)
    done = tds[0]["next", "done"].clone()
    assert done.any() and not done.all()
    separate._pending = None  # forces the separate jitted reset (the path for any other mask)
    after = [env.reset(env.step_mdp(td).set("_reset", done)) for env, td in zip((fused, separate), tds, strict=True)]
    assert (after[0] == after[1]).all()
    # a copy that did not finish, reset on request: only it changes
    target = int((~done.flatten()).nonzero()[0, 0])
    mask = torch.zeros_like(done)
    mask[target] = True
    again = separate.reset(after[1].clone().set("_reset", mask))
    for i in range(B):
        same = torch.equal(again["ally_0", "observation"][i], after[1]["ally_0", "observation"][i])
        assert same != (i == target), (i, target)

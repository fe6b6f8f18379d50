"""preset=reference/...: the reference HARL implementation's tuned MaMuJoCo runs, composed in-process."""

import csv
import math
from pathlib import Path

import pytest

from harl_torchrl.config import HAPPOConfig, MAPPOConfig, validate_run_config
from harl_torchrl.config.hydra_checks import compose_run_config, group_options
from harl_torchrl.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CONF = RECIPES / "conf"

# The reference's tuned_configs/mamujoco/<task>/<algo>/config.json, key by key, in our names.
_COMMON = {
    "env.num_envs": 20,  # n_rollout_threads
    "env.max_steps": 1000,  # episode_limit
    "env.obs_mode": "global",  # MujocoMulti.get_obs: standardise(state + one-hot id)
    "env.clip_actions": False,  # actions reach the env unclipped
    "env.normalize_actions": True,  # NormalizedActions
    "total_frames": 10_000_000,  # num_env_steps
    "algo.actor_lr": 5e-4,
    "algo.critic_lr": 5e-4,
    "algo.adam_eps": 1e-5,
    "algo.num_minibatches": 1,
    "algo.critic_num_minibatches": 1,
    "algo.max_grad_norm": 10.0,
    "algo.gamma": 0.99,
    "algo.gae_lambda": 0.95,
    "algo.value_norm": True,
    "algo.value_loss": "huber",
    "algo.huber_delta": 10.0,
    "model.hidden_sizes": [128, 128, 128],
    "model.activation": "relu",
    "model.feature_norm": True,
    "model.output_gain": 0.01,
    "model.std_x_coef": 1.0,
    "model.std_y_coef": 0.5,
}
EXPECTED = {
    "reference/halfcheetah_2x3_happo": {
        **_COMMON,
        "algo.name": "happo",
        "env.scenario": "HalfCheetah",
        "env.agent_conf": "2x3",
        "collector.rollout_steps": 200,
        "algo.clip_epsilon": 0.05,
        "algo.value_clip": 0.05,
        "algo.epochs": 15,
        "algo.critic_epochs": 15,
        "algo.entropy_coeff": 0.01,
        "algo.order": "random",
        "algo.lr_decay": "none",
        "env.env_kwargs": {},
        "env.zero_contact_forces": False,
    },
    "reference/humanoid_17x1_happo": {
        **_COMMON,
        "algo.name": "happo",
        "env.scenario": "Humanoid",
        "env.agent_conf": "17x1",
        "collector.rollout_steps": 200,
        "algo.clip_epsilon": 0.1,
        "algo.value_clip": 0.1,
        "algo.epochs": 5,
        "algo.critic_epochs": 5,
        "algo.entropy_coeff": 0.0,
        "algo.order": "random",
        "algo.lr_decay": "linear",
        "env.env_kwargs": {"contact_cost_weight": 0.0},  # Humanoid-v2 under mujoco-py: no contact cost
        "env.zero_contact_forces": True,  # ... and contact forces observed as 0
    },
    "reference/humanoid_17x1_mappo": {
        **_COMMON,
        "algo.name": "mappo",
        "algo.share_params": True,
        "env.scenario": "Humanoid",
        "env.agent_conf": "17x1",
        "collector.rollout_steps": 100,  # the reference's MAPPO config: episode_length 100
        "algo.clip_epsilon": 0.1,
        "algo.value_clip": 0.1,
        "algo.epochs": 5,
        "algo.critic_epochs": 5,
        "algo.entropy_coeff": 0.0,
        "algo.lr_decay": "linear",
        "env.env_kwargs": {"contact_cost_weight": 0.0},
        "env.zero_contact_forces": True,
    },
}
EXPECTED["reference/humanoid_17x1_mappo_unshared"] = {
    **EXPECTED["reference/humanoid_17x1_mappo"],
    "algo.share_params": False,
}


def _get(run, dotted):
    value = run
    for part in dotted.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, list) else value


def test_every_preset_is_checked_here():
    assert group_options(CONF, "preset") == sorted(EXPECTED)


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_preset_composes_validates_and_holds_the_reference_settings(preset):
    run = validate_run_config(compose_run_config(CONF, [f"preset={preset}"]))
    assert isinstance(run.algo, HAPPOConfig if "happo" in preset else MAPPOConfig)
    wrong = {key: (_get(run, key), value) for key, value in EXPECTED[preset].items() if _get(run, key) != value}
    assert not wrong, f"{preset}: (ours, reference) {wrong}"
    assert run.env.num_envs * run.collector.rollout_steps == 20 * EXPECTED[preset]["collector.rollout_steps"]


def test_preset_values_yield_to_the_command_line_and_the_default_run_is_untouched():
    run = validate_run_config(
        compose_run_config(CONF, ["preset=reference/humanoid_17x1_happo", "algo.clip_epsilon=0.2", "seed=3"])
    )
    assert run.algo.clip_epsilon == 0.2 and run.seed == 3 and run.algo.epochs == 5
    default = validate_run_config(compose_run_config(CONF, []))
    assert default.env.family == "vmas" and default.collector.rollout_steps == 100 and default.algo.lr_decay == "none"


def test_unshared_mappo_differs_from_the_reference_mappo_only_in_sharing():
    shared, unshared = (
        validate_run_config(compose_run_config(CONF, [f"preset=reference/humanoid_17x1_{name}"])).to_dict()
        for name in ("mappo", "mappo_unshared")
    )
    assert shared["algo"].pop("share_params") is True and unshared["algo"].pop("share_params") is False
    assert shared == unshared


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_preset_builds_the_reference_env(preset):
    pytest.importorskip("gymnasium_robotics")
    from harl_torchrl.envs import make_env

    run = validate_run_config(compose_run_config(CONF, [f"preset={preset}"]))
    env = make_env(run.env, num_envs=1, seed=0)
    n_agents, state_dim = (17, 348) if "humanoid" in preset else (2, 17)
    assert len(env.agent_names) == n_agents and env.normalize_actions and not env._clip_actions
    for name in env.agent_names:
        assert env.full_observation_spec_unbatched[name, "observation"].shape == (state_dim + n_agents,)
        assert env.full_action_spec_unbatched[name, "action"].space.high.max().item() == 1.0
    weight = env._envs[0].single_agent_env.unwrapped._contact_cost_weight if "humanoid" in preset else None
    assert weight == (0.0 if "humanoid" in preset else None)
    assert env.zero_contact_forces == ("humanoid" in preset)
    if "humanoid" in preset:
        state = env.rollout(3)["next", "state"]  # standardised: the 78 zeroed contact forces map to one value
        assert (state[..., 270:348] == state[..., 270:271]).all()


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Did you mean 'reference/humanoid_17x1_happo'.*halfcheetah_2x3_happo"):
        compose_run_config(CONF, ["preset=reference/humanoid_17x1_hapo"])


def _recipe():
    import harl_torchrl.run  # the one run loop, which recipes/train.py and harl-train call

    return harl_torchrl.run


@pytest.mark.parametrize("preset", ["reference/humanoid_17x1_happo", "reference/humanoid_17x1_mappo"])
def test_humanoid_preset_trains_two_iterations_with_the_linear_decay(tmp_path, preset):
    tiny = [
        "env.num_envs=2",
        "env.max_steps=10",
        "collector.rollout_steps=5",
        "total_frames=20",
        "eval.interval=2",
        "eval.episodes=1",
        "model.hidden_sizes=[8]",
        "logger.progress_bar=false",
    ]
    _recipe().run(compose_run_config(CONF, [f"preset={preset}", *tiny]), tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["iteration"]]
    # the reference's schedule: 1 - i / I before update i, so 0.5 then 0 over two iterations
    assert [float(row["lr_factor"]) for row in rows] == [0.5, 0.0]
    assert all(math.isfinite(float(row["critic/loss_critic"])) for row in rows)

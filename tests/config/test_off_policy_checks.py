"""Off-policy runs that would train nothing, or ignore a setting, are refused before anything is built."""

import pytest

from harl_torchrl.config import validate_run_config
from harl_torchrl.errors import ConfigError

BASE = {"model": {"name": "mlp"}, "env": {"family": "vmas", "scenario": "balance"}}


@pytest.mark.parametrize(
    "algo, extra, expected",
    [
        ({"name": "hatd3"}, {"total_frames": 5000}, "algo.warmup_steps is not below the run's 5000 frames"),
        ({"name": "hatd3", "warmup_steps": 100_000}, {"total_frames": 200}, "raise total_frames above 100000"),
        ({"name": "hasac", "n_step": 100_000}, {}, "algo.n_step exceeds the episode length env.max_steps=100"),
        ({"name": "hatd3"}, {"collector": {"rollout_steps": 50}}, "Fix: set algo.train_interval=50 instead"),
    ],
    ids=["default_warmup_above_budget", "warmup_above_budget", "n_step_above_episode", "rollout_steps_ignored"],
)
def test_runs_that_would_train_nothing_are_refused_with_the_numbers(algo, extra, expected):
    with pytest.raises(ConfigError, match="Fix:") as info:
        validate_run_config({**BASE, "algo": algo, **extra})
    assert expected in str(info.value)


def test_a_run_just_past_its_warmup_is_accepted():
    validate_run_config({**BASE, "algo": {"name": "hatd3", "warmup_steps": 1000}, "total_frames": 2000})


@pytest.mark.parametrize(
    "algo, env, fix, not_suggested",
    [
        (
            "hatd3",
            {"family": "vmas", "scenario": "balance", "continuous_actions": False},
            "env.continuous_actions=true",
            None,
        ),
        ("hatd3", {"family": "smax", "scenario": "3m"}, "algo=hasac", "continuous_actions"),
        (
            "had3qn",
            {"family": "mamujoco", "scenario": "HalfCheetah", "agent_conf": "2x3"},
            "algo=hatd3",
            "continuous_actions",
        ),
    ],
    ids=["vmas_can_switch", "smax_cannot_switch", "mamujoco_has_no_switch"],
)
def test_the_action_space_refusal_suggests_only_what_the_env_family_takes(algo, env, fix, not_suggested):
    with pytest.raises(ConfigError) as info:
        validate_run_config({**BASE, "algo": {"name": algo}, "env": env})
    message = str(info.value)
    assert fix in message, message
    if not_suggested:
        assert not_suggested not in message.split("Fix:")[1], message

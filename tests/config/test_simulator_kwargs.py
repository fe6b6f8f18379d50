"""Reading what a simulator expects: VMAS scenario defaults from source, constructor signatures."""

import pytest

from harl_torchrl.config.simulator_kwargs import (
    UNREADABLE,
    check_simulator_kwargs,
    kwargs_named_in,
    mamujoco_env_defaults,
    mpe_scenario_defaults,
    vmas_count_key,
    vmas_scenario_defaults,
)
from harl_torchrl.errors import ConfigError


def test_vmas_defaults_read_from_make_world():
    navigation = vmas_scenario_defaults("navigation")
    assert navigation is not None and len(navigation) == 16
    assert navigation["collisions"] is True and navigation["n_agents"] == 4
    assert navigation["lidar_range"] == 0.35 and navigation["comms_range"] == 0
    balance = vmas_scenario_defaults("balance")
    assert balance == {"n_agents": 3, "package_mass": 5, "random_package_pos_on_line": True}


def test_vmas_defaults_follow_init_params_and_module_names():
    football = vmas_scenario_defaults("football")  # make_world(**kwargs) -> self.init_params(**kwargs)
    assert football is not None and football["n_blue_agents"] == 3 and football["ai_red_agents"] is True
    assert isinstance(football["shooting_angle"], float)  # torch.pi / 2, evaluated in the module
    dropout = vmas_scenario_defaults("dropout")
    assert dropout is not None and isinstance(dropout["energy_coeff"], float)  # a module-level constant
    dispersion = vmas_scenario_defaults("dispersion")
    assert dispersion is not None and dispersion["n_food"] is UNREADABLE  # defaults to another keyword


def test_vmas_unknown_scenario_reads_nothing():
    assert vmas_scenario_defaults("no_such_scenario") is None


def test_count_keys():
    assert all(map(vmas_count_key, ["n_agents", "num_food", "agents_with_same_goal", "n_lidar_rays", "dim_c"]))
    assert not any(map(vmas_count_key, ["package_mass", "pos_shaping_factor", "comms_range", "collision_reward"]))


def test_signatures():
    assert mpe_scenario_defaults("simple_spread")["local_ratio"] == 0.5
    assert mpe_scenario_defaults("simple_spread_v3")["N"] == 3
    assert mpe_scenario_defaults("no_such") is None
    cheetah = mamujoco_env_defaults("HalfCheetah")
    assert cheetah["ctrl_cost_weight"] == 0.1 and "width" in cheetah  # MujocoEnv's, through **kwargs
    assert mamujoco_env_defaults("NoSuchRobot") is None


def test_check_names_the_key_value_and_default():
    with pytest.raises(
        ConfigError, match=r"env\.k\.n=2\.5 is a float.*expects an integer.*n=3\)\. Fix: set env\.k\.n=3"
    ):
        check_simulator_kwargs({"n": 2.5}, {"n": 3}, key_prefix="env.k", owner="x")
    with pytest.raises(ConfigError, match=r"env\.k\.colisions is not a keyword of x.*Did you mean 'collisions'"):
        check_simulator_kwargs({"colisions": 1}, {"collisions": True}, key_prefix="env.k", owner="x")
    check_simulator_kwargs({"n": 2.5}, {"n": 3}, key_prefix="env.k", owner="x", int_only=lambda key: False)
    check_simulator_kwargs({"anything": "x"}, None, key_prefix="env.k", owner="x")  # nothing readable
    check_simulator_kwargs({"n": "x"}, {"n": UNREADABLE}, key_prefix="env.k", owner="x")


def test_build_errors_traced_to_the_key():
    from harl_torchrl.envs.vmas import make_vmas_env

    with pytest.raises(
        ConfigError, match=r"env\.scenario_kwargs\.n_agents=1\b.*Fix: set env\.scenario_kwargs\.n_agents"
    ):
        make_vmas_env("balance", num_envs=1, n_agents=1)  # VMAS's bare `assert self.n_agents > 1`
    assert kwargs_named_in(ValueError("no"), {"n_agents": 1}) == []

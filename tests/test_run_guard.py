import pytest
import torch
from tensordict import TensorDict

from harl_torchrl.errors import ConfigError
from harl_torchrl.run_guard import (
    NonFiniteError,
    check_finite,
    check_resume,
    check_schedule_horizon,
    config_differences,
)

SAVED = {
    "algo": {"name": "happo", "actor_lr": 5e-4},
    "env": {"family": "vmas", "scenario": "balance", "scenario_kwargs": {"n_agents": 2}},
    "model": {"hidden_sizes": [16]},
}


def _run(**changes):
    cfg = {group: {**values} for group, values in SAVED.items()}
    for key, value in changes.items():
        group, _, name = key.partition("__")
        if "__" in name:
            sub, _, leaf = name.partition("__")
            cfg[group][sub] = {**cfg[group][sub], leaf: value}
        else:
            cfg[group][name] = value
    return cfg


def test_identical_configs_resume_silently():
    assert check_resume({"config": SAVED}, _run()) == []


def test_each_difference_is_listed_with_both_values():
    differences = config_differences(SAVED, _run(algo__name="hatrpo", env__scenario_kwargs__n_agents=3))
    assert differences == {"algo.name": ("happo", "hatrpo"), "env.scenario_kwargs.n_agents": (2, 3)}
    with pytest.raises(ConfigError, match=r"algo.name: 'happo' \(checkpoint\) -> 'hatrpo'.*n_agents: 2"):
        check_resume(
            {"config": SAVED, "algorithm": "happo"}, _run(algo__name="hatrpo", env__scenario_kwargs__n_agents=3)
        )


def test_an_override_covers_its_key_and_children_only():
    run = _run(algo__actor_lr=1e-3, env__scenario_kwargs__n_agents=3)
    assert check_resume({"config": SAVED}, run, overrides=["algo.actor_lr", "env.scenario_kwargs"]) == [
        "algo.actor_lr",
        "env.scenario_kwargs.n_agents",
    ]
    with pytest.raises(ConfigError, match=r"env\.scenario_kwargs\.n_agents"):
        check_resume({"config": SAVED}, run, overrides=["algo.actor_lr"])
    assert len(check_resume({"config": SAVED}, run, overrides=["*"])) == 2


def test_a_checkpoint_without_config_is_refused():
    with pytest.raises(ConfigError, match="records no config"):
        check_resume({}, _run())


def test_check_finite_names_the_quantity_and_the_iteration():
    check_finite(1, {"a/loss": 1.0}, {"agent_0": torch.nn.Linear(2, 2)})
    with pytest.raises(NonFiniteError, match="iteration 7: agent_1/loss_objective is nan"):
        check_finite(7, {"agent_1/ESS": float("nan"), "agent_1/loss_objective": float("nan")})
    with pytest.raises(NonFiniteError, match="iteration 2: critic/grad_norm is inf"):
        check_finite(2, TensorDict({"critic": {"grad_norm": torch.tensor(float("inf"))}}, []))
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.bias[0] = float("nan")
    with pytest.raises(NonFiniteError, match="iteration 3: agent_0 parameter bias is not finite"):
        check_finite(3, {"x/loss": 0.0}, {"agent_0": net})


def test_check_finite_reads_a_collected_batch():
    batch = TensorDict(
        {"next": {"agent_0": {"reward": torch.zeros(4, 3, 1)}}, "done": torch.zeros(4, 3, 1, dtype=torch.bool)}, [4, 3]
    )
    check_finite(5, batch, source="collected batch")
    batch["next", "agent_0", "reward"][1, 2] = float("-inf")
    with pytest.raises(NonFiniteError, match="iteration 5: collected batch next/agent_0/reward is -inf"):
        check_finite(5, batch, source="collected batch")


def test_a_checkpoint_older_than_a_key_reads_as_the_behaviour_it_had():
    """algo.lr_decay and env.normalize_actions came later: older checkpoints resume if the run keeps their effect."""
    old = {"algo": {"name": "happo", "actor_lr": 5e-4}, "env": {"family": "mamujoco"}, "model": {}}
    meta = {"algorithm": "happo", "config": old}
    same = {
        "algo": {"name": "happo", "actor_lr": 5e-4, "lr_decay": "none"},
        "env": {"family": "mamujoco", "normalize_actions": False},
        "model": {},
    }
    assert config_differences(old, same) == {}
    assert check_resume(meta, same) == []
    changed = {**same, "algo": {**same["algo"], "lr_decay": "linear"}}
    assert config_differences(old, changed) == {"algo.lr_decay": ("none", "linear")}
    with pytest.raises(ConfigError, match=r"algo\.lr_decay: 'none' \(checkpoint\) -> 'linear'"):
        check_resume(meta, changed)
    other_new_key = {**same, "model": {"width": 3}}  # keys not listed still count as differences
    assert "model.width" in config_differences(old, other_new_key)


@pytest.mark.parametrize(
    "meta, run",
    [
        ({"frames": 300, "total_frames": 1000}, {"total_frames": 1000, "algo": {"lr_decay": "linear"}}),
        ({"frames": 300, "total_frames": 1000}, {"total_frames": 400, "algo": {"lr_decay": "none"}}),
        ({"frames": 300}, {"total_frames": 400, "algo": {"lr_decay": "linear"}}),  # written before it was recorded
        ({"frames": 300, "total_frames": 1000}, {"total_frames": 400, "algo": {}}),  # off-policy: no decay
    ],
    ids=["same_budget", "no_decay", "old_checkpoint", "no_decay_key"],
)
def test_a_resume_that_keeps_the_learning_rate_schedule_passes(meta, run):
    check_schedule_horizon(meta, run)


def test_a_new_budget_under_linear_decay_is_refused_with_both_factors_and_the_fix():
    meta = {"frames": 3_000_000, "total_frames": 10_000_000}
    run = {"total_frames": 4_000_000, "algo": {"lr_decay": "linear"}}
    with pytest.raises(ConfigError) as info:
        check_schedule_horizon(meta, run, path="run/checkpoint.pt")
    message = str(info.value)
    assert "from 0.70 to 0.25 of their base value" in message and "run/checkpoint.pt" in message
    assert "keep total_frames=10000000" in message and "resume_override=[total_frames]" in message
    check_schedule_horizon(meta, run, overrides=["total_frames"])
    check_schedule_horizon(meta, run, overrides=["*"])
    # extending a finished run would restart a decayed-to-zero rate
    with pytest.raises(ConfigError, match=r"from 0\.00 to 0\.50"):
        check_schedule_horizon(
            {"frames": 1000, "total_frames": 1000}, {"total_frames": 2000, "algo": {"lr_decay": "linear"}}
        )


def test_total_frames_is_a_known_resume_override():
    assert check_resume({"config": SAVED}, _run(), overrides=["total_frames"]) == []

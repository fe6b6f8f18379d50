"""The one run loop: any registered algorithm trains through it; one run owns a run dir."""

import csv
import json
import os
import socket

import pytest
import torch

from harl_torchrl.config import ALGO_SCHEMAS
from harl_torchrl.errors import ConfigError
from harl_torchrl.run import Components, run
from harl_torchrl.run.lock import LOCK_NAME, RunDirLock
from harl_torchrl.utils.checkpoint import load_checkpoint


def _config(algo, total_frames=160, **extra):
    return {
        "algo": algo,
        "model": {"name": "mlp", "hidden_sizes": [16]},
        "env": {
            "family": "vmas",
            "scenario": "balance",
            "num_envs": 8,
            "max_steps": 10,
            "scenario_kwargs": {"n_agents": 2},
        },
        "collector": {"rollout_steps": 10},
        "total_frames": total_frames,
        "eval": {"interval": 1, "episodes": 2},
        "checkpoint": {"interval": 1},
        "logger": {"progress_bar": False},
        **extra,
    }


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(__file__))
    import toy_algorithm  # registers algo=toy on import, as a user's own module would

    yield toy_algorithm
    ALGO_SCHEMAS.pop("toy", None)


def test_a_toy_algorithm_registered_from_one_module_trains_checkpoints_and_resumes(toy, tmp_path):
    result = run(_config({"name": "toy", "lr": 0.1}), tmp_path / "first")
    rows = list(csv.DictReader(open(result["log"])))
    assert [r["toy/updates"] for r in rows if r["iteration"]] == ["1.0", "2.0"]
    assert any(r.get("eval/return_mean") for r in rows)
    state = load_checkpoint(result["checkpoint"])
    assert state["updates"] == 2 and state["frames"] == 160
    moved = state["actors"]["agent_0"]["module.mean"]
    assert moved.abs().sum() > 0  # the toy's train() ran and its parameters were saved

    resumed = run(
        _config({"name": "toy", "lr": 0.1}, total_frames=240, resume=str(result["checkpoint"])), tmp_path / "r"
    )
    assert load_checkpoint(resumed["checkpoint"])["updates"] == 3


def test_the_components_of_every_builtin_family_follow_the_protocol():
    from harl_torchrl.config import algo_config, model_config
    from harl_torchrl.envs import make_vmas_env

    env = make_vmas_env("balance", num_envs=2, n_agents=2, max_steps=5)
    for name in ("happo", "hatrpo", "mappo", "ippo", "hatd3", "hasac"):
        parts = algo_config({"name": name}).build(env, model_config({"hidden_sizes": [8]}), seed=0)
        assert isinstance(parts, Components), name


def test_a_second_run_into_a_live_run_dir_is_refused_in_one_line(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))  # pid 1 lives
    with pytest.raises(ConfigError, match=r"in use by another run: process 1 on .* Fix:"):
        run(_config({"name": "happo"}), tmp_path)
    assert not (tmp_path / "metrics.csv").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_and_released(tmp_path, capsys):
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that no longer runs
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    with RunDirLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of process {dead}" in capsys.readouterr().out
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(ConfigError):
        run(_config({"name": "happo"}, resume=str(tmp_path / "missing.pt")), tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    torch.set_num_threads(1)

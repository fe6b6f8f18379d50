"""Multiruns: Hydra's joblib and submitit launchers with our configs, and every job checked before any starts."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harl_torchrl.config.hydra_checks import check_command_line, sweep_jobs
from harl_torchrl.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CONF = RECIPES / "conf"
TINY = [
    "env.num_envs=8",
    "env.max_steps=10",
    "env.scenario_kwargs.n_agents=2",
    "collector.rollout_steps=10",
    "total_frames=160",
    "eval.interval=1",
    "eval.episodes=2",
    "logger.progress_bar=false",
]


def _hydra(overrides):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the launchers extra")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the launchers extra")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    return cfg.hydra


def test_local_seeds_is_the_joblib_launcher_with_one_thread_per_run():
    hydra = _hydra(["hydra/launcher=local_seeds", "hydra.launcher.n_jobs=3"])
    assert hydra.launcher._target_.endswith("JoblibLauncher")
    assert hydra.launcher.n_jobs == 3
    assert hydra.job.env_set.OMP_NUM_THREADS == "1"


def test_slurm_is_the_submitit_launcher_and_gives_torch_the_cores_it_asked_for():
    hydra = _hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.cpus_per_task=6"])
    assert hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert hydra.launcher.partition == "gpu"
    resolved = OmegaConf.to_container(hydra.job.env_set, resolve=True)
    assert str(resolved["OMP_NUM_THREADS"]) == "6"


def test_sweep_jobs_follow_the_basic_sweepers_order():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(["algo=happo,mappo", "seed=0,1", "total_frames=10"])
    jobs = sweep_jobs(parsed)
    assert len(jobs) == 4
    assert jobs[1] == ["algo=happo", "seed=1", "total_frames=10"]
    assert jobs[2] == ["algo=mappo", "seed=0", "total_frames=10"]


def test_a_bad_job_in_a_multirun_is_reported_before_any_runs():
    with pytest.raises(ConfigError) as info:
        check_command_line(["-m", "seed=0,1", "algo.actor_lr=1e-3,-1"], CONF)
    message = str(info.value)
    assert message.startswith("multirun job 2 of 4 (seed=0 algo.actor_lr=-1)")
    assert "algo.actor_lr" in message
    check_command_line(["-m", "seed=0,1", "algo.actor_lr=1e-3,3e-4", "hydra/launcher=local_seeds"], CONF)


def test_a_bad_job_stops_the_multirun_command_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), "-m", "seed=0,-3", *TINY, f"hydra.sweep.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: multirun job 2 of 2 (seed=-3")
    assert not any(tmp_path.iterdir())  # nothing was launched


@pytest.mark.parametrize("launcher", ["submitit_local", "local_seeds"])
def test_launcher_runs_two_seeds_into_their_own_dirs(tmp_path, launcher):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the launchers extra")
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the launchers extra")
    extra = ["hydra.launcher.timeout_min=10"] if launcher == "submitit_local" else []
    out = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "train.py"),
            "-m",
            "seed=0,1",
            *TINY,
            f"hydra/launcher={launcher}",
            *extra,
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for seed in (0, 1):
        run = tmp_path / f"{seed}_happo_vmas_balance_seed{seed}"
        rows = (run / "metrics.csv").read_text().splitlines()
        assert len(rows) > 1 and (run / "checkpoint.pt").is_file()
        assert f"seed={seed}" in (run / ".hydra" / "overrides.yaml").read_text().replace("- ", "")
    logs = [(tmp_path / f"{s}_happo_vmas_balance_seed{s}" / "metrics.csv").read_text() for s in (0, 1)]
    assert logs[0] != logs[1]  # two seeds, two different runs

"""``harl-train`` and ``harl-evaluate`` work from a wheel installed into a fresh virtual environment.

The wheel is built from this checkout, installed (CPU torch first, as the README says) into
a new venv with nothing else, and both commands run from an empty directory: the configs
must ship inside the package, and run outputs land under ``./outputs`` there.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _sh(command, cwd, timeout=900, env=None):
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_trains_and_evaluates_from_an_empty_dir(tmp_path):
    wheels = tmp_path / "wheels"
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], tmp_path)
    (wheel,) = wheels.glob("harl_torchrl-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    # CPU torch first (a bare torch requirement would pull a CUDA build), the same version as here
    _sh([python, "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}"], tmp_path)
    _sh([python, "-m", "pip", "install", "-q", str(wheel)], tmp_path)

    work = tmp_path / "empty"
    work.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
    tiny = [
        "env.num_envs=4",
        "env.max_steps=10",
        "env.scenario_kwargs.n_agents=2",
        "collector.rollout_steps=10",
        "total_frames=80",
        "eval.episodes=2",
        "eval.interval=1",
        "model.hidden_sizes=[16]",
        "logger.progress_bar=false",
        "threads=1",
    ]
    out = _sh(["harl-train", *tiny], work, env=clean)
    assert "done: 80 frames" in out, out
    (checkpoint,) = (work / "outputs").glob("*/*/checkpoint.pt")
    assert (checkpoint.parent / "metrics.csv").exists()
    assert "harl_torchrl" in _sh([python, "-c", "import harl_torchrl; print(harl_torchrl.__file__)"], work, env=clean)
    assert str(ROOT) not in _sh([python, "-c", "import harl_torchrl; print(harl_torchrl.__file__)"], work, env=clean)

    out = _sh(["harl-evaluate", f"checkpoint={checkpoint}", "episodes=2"], work, env=clean)
    assert "2 deterministic episodes" in out and "team" in out, out

    bad = subprocess.run(["harl-train", "algo=hapo"], cwd=work, capture_output=True, text=True, env=clean, timeout=300)
    assert bad.returncode == 1 and "Did you mean 'happo'" in bad.stderr, bad.stderr

"""recipes/evaluate.py: a checkpoint alone rebuilds the policy and reproduces the run's final evaluation."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

from harl_torchrl.errors import ConfigError
from harl_torchrl.run import run
from harl_torchrl.run.evaluate import evaluate_checkpoint
from harl_torchrl.utils.checkpoint import CheckpointError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
COMMON = ["eval.interval=1", "eval.episodes=3", "logger.progress_bar=false", "model.hidden_sizes=[16]"]
RUNS = {
    "vmas_happo": [
        "env.num_envs=8",
        "env.max_steps=10",
        "env.scenario_kwargs.n_agents=2",
        "collector.rollout_steps=10",
        "total_frames=160",
    ],
    "mpe_hatd3": [
        "algo=hatd3",
        "env=pettingzoo/simple_spread",
        "env.max_steps=10",
        "algo.num_envs=4",
        "algo.train_interval=5",
        "algo.warmup_steps=40",
        "algo.batch_size=16",
        "algo.buffer_size=1000",
        "total_frames=80",
    ],
    "mamujoco_happo": [
        "env=mamujoco/halfcheetah_2x3",
        "env.num_envs=4",
        "env.max_steps=10",
        "collector.rollout_steps=10",
        "total_frames=80",
    ],
}


def _train(tmp_path, overrides):
    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*COMMON, *overrides])
    return run(cfg, tmp_path)


def _eval_cfg(checkpoint, **settings):
    return SimpleNamespace(
        **{
            "checkpoint": str(checkpoint),
            "episodes": None,
            "deterministic": True,
            "seed": 1,
            "device": "cpu",
            "json_out": None,
            "video": False,
            "video_episodes": 1,
            "video_path": None,
            "video_fps": 20,
            **settings,
        }
    )


@pytest.mark.parametrize("run", sorted(RUNS))
def test_reproduces_the_final_deterministic_evaluation_exactly(tmp_path, run):
    if run.startswith("mpe"):
        pytest.importorskip("mpe2")
    if run.startswith("mamujoco"):
        pytest.importorskip("gymnasium_robotics")
    result = _train(tmp_path, RUNS[run])
    with open(result["log"], newline="") as handle:
        final = float(list(csv.DictReader(handle))[-1]["eval/return_mean"])  # the final evaluation's row
    figures = evaluate_checkpoint(_eval_cfg(result["checkpoint"]))
    assert figures["restored_eval_state"] is True
    assert figures["episodes"] == 3
    assert figures["team"]["mean"] == pytest.approx(final, rel=1e-6, abs=1e-6)
    agents = [k for k in figures if k.startswith("agent")]
    assert agents and all(figures[a]["min"] <= figures[a]["mean"] <= figures[a]["max"] for a in agents)
    # other episode counts, or sampled actions, start fresh episodes instead
    stochastic = evaluate_checkpoint(_eval_cfg(result["checkpoint"], episodes=2, deterministic=False))
    assert stochastic["restored_eval_state"] is False and stochastic["episodes"] == 2
    # the video: two 10-step episodes drawn offscreen, 11 frames each (reset + 10 steps), an MP4 that decodes
    pytest.importorskip("imageio_ffmpeg", reason="the video extra")
    import imageio.v3 as iio

    video = tmp_path / "eval.mp4"
    watched = evaluate_checkpoint(_eval_cfg(result["checkpoint"], video=True, video_episodes=2, video_path=video))
    assert watched["video"] == [str(video), str(video.with_suffix(".gif"))]
    frames = list(iio.imiter(video, plugin="FFMPEG"))
    assert len(frames) == 22
    assert frames[0].ndim == 3 and frames[0].shape[-1] == 3
    assert frames[0].std() > 1  # a picture, not a blank frame
    gif = list(iio.imiter(video.with_suffix(".gif"), plugin="pillow"))  # Pillow merges repeated frames
    assert 1 < len(gif) <= 22 and gif[0].shape[1] == 320


def test_bad_input_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        evaluate_checkpoint(_eval_cfg(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="episodes=0"):
        evaluate_checkpoint(_eval_cfg(tmp_path / "missing.pt", episodes=0))
    out = subprocess.run([sys.executable, str(RECIPES / "evaluate.py")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "checkpoint=<path to checkpoint.pt> is required" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_checkpoint_errors_name_this_command_s_key(tmp_path):
    """Regression (issue 27 item 15): harl-evaluate said "resume=" where its key is checkpoint=, and a replay
    sidecar given as the checkpoint got "wrong structure" instead of "pass checkpoint.pt"."""
    import torch

    from harl_torchrl.utils.checkpoint import previous_checkpoint, save_checkpoint

    def refused(path, **settings):
        with pytest.raises(CheckpointError) as info:
            evaluate_checkpoint(_eval_cfg(path, **settings))
        message = str(info.value)
        assert "resume=" not in message and "\n" not in message
        return message

    assert refused(tmp_path / "missing.pt").endswith(
        "no such file (check the checkpoint= path: the checkpoint.pt file)"
    )
    path = tmp_path / "checkpoint.pt"
    for frames in (10, 20):
        save_checkpoint(path, {"frames": frames}, sidecars={"replay": {"obs": torch.full((8,), float(frames))}})
    sidecar = tmp_path / torch.load(path, weights_only=True)["sidecars"]["replay"]["file"]
    assert refused(sidecar).endswith(
        f"not a checkpoint: the checkpoint is {path}, which loads it; pass checkpoint={path}"
    )
    path.write_bytes(path.read_bytes()[:200])
    prev = previous_checkpoint(path)
    assert refused(path).endswith(f"the previous checkpoint {prev} (and its sidecar) is intact: checkpoint={prev}")
    with pytest.raises(ConfigError, match="seed=4294967296: must be an integer from 0 to 4294967295"):
        evaluate_checkpoint(_eval_cfg(prev, seed=2**32))

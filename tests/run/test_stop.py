"""A stop loses at most the iteration in flight: real SIGINT / SIGTERM sent to a training process.

The stopped run writes a checkpoint, prints it and the command that resumes it, and exits
130 / 143; resumed to the same budget, it ends bit-identical to a run never stopped.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harl_torchrl.utils.checkpoint import load_checkpoint

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
COMMON = ["threads=1", "logger.progress_bar=false", "model.hidden_sizes=[16]", "eval.episodes=0", "seed=5"]
ON_POLICY = ["env.num_envs=8", "env.max_steps=10", "env.scenario_kwargs.n_agents=2", "collector.rollout_steps=10"]
OFF_POLICY = [
    "algo=hatd3",
    "env.num_envs=8",
    "env.max_steps=10",
    "env.scenario_kwargs.n_agents=2",
    "algo.num_envs=4",
    "algo.train_interval=5",
    "algo.warmup_steps=40",
    "algo.batch_size=16",
    "algo.buffer_size=100000",
]
FRAMES_PER_ITERATION = {"on": 80, "off": 20}


def _train(run_dir, *overrides):
    command = [sys.executable, str(RECIPES / "train.py"), *COMMON, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows(run_dir: Path) -> int:
    try:
        return max(0, len((run_dir / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _params(path):
    state = load_checkpoint(path)
    tree = state["actors"] if "actors" in state else state["components"]["updater"]["modules"]

    def leaves(x, p=""):
        if isinstance(x, dict):
            for k, v in x.items():
                yield from leaves(v, f"{p}/{k}")
        elif isinstance(x, torch.Tensor):
            yield p, x

    return dict(leaves(tree))


@pytest.mark.parametrize(
    "family, sig, code",
    [("on", signal.SIGINT, 130), ("off", signal.SIGTERM, 143)],
    ids=["happo_sigint", "hatd3_sigterm"],
)
def test_a_signal_checkpoints_prints_the_resume_command_and_resumes_bit_identically(tmp_path, family, sig, code):
    overrides = ON_POLICY if family == "on" else OFF_POLICY
    stopped_dir = tmp_path / "stopped"
    process = _train(stopped_dir, *overrides, "total_frames=400000", "checkpoint.interval=0")
    deadline = time.monotonic() + 180
    while _rows(stopped_dir) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[0]
    process.send_signal(sig)
    out, _ = process.communicate(timeout=180)
    assert process.returncode == code, out
    assert "resume with: python recipes/train.py resume=" in out, out
    assert "Traceback" not in out, out
    state = load_checkpoint(stopped_dir / "checkpoint.pt")
    frames = state["frames"]
    assert frames >= 3 * FRAMES_PER_ITERATION[family] and frames < 400000
    assert not list(stopped_dir.glob(".harl_run.lock"))

    budget = frames + 2 * FRAMES_PER_ITERATION[family]
    resumed = _train(stopped_dir, f"resume={stopped_dir}", f"total_frames={budget}")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    whole = _train(tmp_path / "whole", *overrides, f"total_frames={budget}", "checkpoint.interval=0")
    out, _ = whole.communicate(timeout=300)
    assert whole.returncode == 0, out

    a, b = _params(stopped_dir / "checkpoint.pt"), _params(tmp_path / "whole" / "checkpoint.pt")
    assert load_checkpoint(stopped_dir / "checkpoint.pt")["frames"] == budget
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_a_second_signal_ends_the_run_at_once(tmp_path):
    # iterations of 6,400 frames (a second or more each), so that the second signal lands inside one
    big = ["env.num_envs=64", "env.max_steps=100", "env.scenario_kwargs.n_agents=2", "collector.rollout_steps=100"]
    process = _train(tmp_path, *big, "total_frames=4000000", "checkpoint.interval=1")
    deadline = time.monotonic() + 180
    # a complete checkpoint first (iteration 1's is written after its metrics row)
    while _rows(tmp_path) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    seen = []
    for line in process.stdout:  # the first signal's line: the handler is installed and has run
        seen.append(line)
        if "stopping after this iteration" in line:
            break
    process.send_signal(signal.SIGTERM)
    out = "".join(seen) + process.communicate(timeout=60)[0]
    assert process.returncode == 143, out
    assert "stopping at once" in out and "resume with" not in out, out
    load_checkpoint(tmp_path / "checkpoint.pt")  # the last complete checkpoint is intact

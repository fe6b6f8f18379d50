"""The run's banner, progress postfix and closing summary."""

from __future__ import annotations

import math

from harl_torchrl.utils.progress import RunProgress, format_banner


def test_banner_names_the_algorithm_env_agents_frames_device_and_run_dir():
    text = format_banner(
        algorithm="hatd3",
        env={"family": "mamujoco", "scenario": "HalfCheetah", "agent_conf": "2x3"},
        agents=[f"agent_{i}" for i in range(8)],
        frames_per_batch=500,
        total_frames=2_000_000,
        run_dir="outputs/run",
        device="cpu",
        start_frames=1500,
    )
    assert text.splitlines()[0].startswith("hatd3 on mamujoco/HalfCheetah 2x3: 8 agents (agent_0")
    assert "2 more" in text and "2,000,000 in batches of 500, resuming at 1,500" in text
    assert "torch threads:" in text and "run dir: outputs/run" in text


def test_postfix_says_when_no_episode_has_finished_and_keeps_the_last_return():
    progress = RunProgress(total_frames=300, enabled=False)
    progress.update(100, {"episode_return_mean": math.nan})
    assert progress.postfix() == {"return": "no episode finished yet"}
    progress.update(100, {"episode_return_mean": -4.0})
    progress.update(100, {"episode_return_mean": math.nan})  # a batch in which no episode ended
    assert progress.postfix() == {"return": "-4.000"}


def test_summary_reports_best_and_final_evaluation_and_ignores_nan():
    progress = RunProgress(total_frames=300, start_frames=100, enabled=False)
    progress.update(100, {"eval/return_mean": -2.0})
    progress.update(100, {"eval/return_mean": math.nan})
    summary = progress.close(final_eval=-3.0, logs="m.csv", checkpoint="c.pt")
    assert "300 frames (200 in this run)" in summary
    assert "final eval return: -3.000" in summary and "best eval return: -2.000" in summary
    assert "logs: m.csv" in summary and "checkpoint: c.pt" in summary
    assert "n/a" in RunProgress(total_frames=1, enabled=False).close()

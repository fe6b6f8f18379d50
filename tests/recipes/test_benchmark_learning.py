"""recipes/benchmarks/benchmark_learning.py: multiruns over algorithms x tasks x seeds, marl-eval JSON, rliable."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import trim_mean

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "benchmarks" / "benchmark_learning.py"
TINY = [
    "env.num_envs=8",
    "env.max_steps=10",
    "env.scenario_kwargs.n_agents=2",
    "collector.rollout_steps=10",
    "total_frames=160",  # 2 iterations of 80 frames
    "eval.interval=1",
    "eval.episodes=2",
]


def _module():
    spec = importlib.util.spec_from_file_location("benchmark_learning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _eval_curve(metrics: Path) -> list[tuple[int, float]]:
    """The evaluation returns by step; the final evaluation replaces the last iteration's at the same step."""
    with metrics.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["eval/return_mean"]]
    return list({int(r["step"]): float(r["eval/return_mean"]) for r in rows}.items())


def test_an_algorithm_runs_as_one_multirun_over_tasks_and_seeds_into_the_benchmark_dirs(tmp_path):
    module = _module()
    command = module.multirun_command(
        "shared:mappo:algo.share_params=true",
        ["vmas/balance", "vmas/navigation"],
        [0, 1],
        ["a=1"],
        tmp_path,
        "local_seeds",
        3,
    )
    assert command[2:] == [
        "-m",
        "algo=mappo",
        "algo.share_params=true",
        "env=vmas/balance,vmas/navigation",
        "seed=0,1",
        "logger.progress_bar=false",
        "a=1",
        f"hydra.sweep.dir={tmp_path}",
        "hydra.sweep.subdir='${harl_slug:${hydra:runtime.choices.env}}/shared_seed${seed}'",
        "hydra/launcher=local_seeds",
        "hydra.launcher.n_jobs=3",
    ]
    jobs = module.plan(["happo", "shared:mappo:algo.share_params=true"], ["vmas/balance"], [0, 1], TINY, tmp_path)
    assert [j.run_dir.relative_to(tmp_path).as_posix() for j in jobs] == [
        "vmas_balance/happo_seed0",
        "vmas_balance/happo_seed1",
        "vmas_balance/shared_seed0",
        "vmas_balance/shared_seed1",
    ]
    assert {j.total_frames for j in jobs} == {160} and not any(j.done() for j in jobs)


def test_a_bad_value_in_the_last_algorithm_stops_the_benchmark_before_any_run(tmp_path):
    with pytest.raises(SystemExit, match=r"algo\.clip_epsilon must be > 0"):
        _module().main(["--algos", "happo", "bad:mappo:algo.clip_epsilon=-1", "--seeds", "0", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_two_algorithms_two_seeds_two_iterations(tmp_path, capsys):
    pytest.importorskip("rliable")
    module = _module()
    argv = ["--algos", "happo", "mappo", "--seeds", "0", "1", "--out", str(tmp_path), "--reps", "100"]
    module.main([*argv, "--overrides", *TINY])
    printed = capsys.readouterr().out
    assert "| final deterministic eval |" in printed and "P(happo > mappo)" in printed

    layout = json.loads((tmp_path / "marl_eval.json").read_text())
    runs = layout["vmas"]["balance"]
    assert sorted(runs) == ["happo", "mappo"] and sorted(runs["happo"]) == ["0", "1"]
    finals = {}
    for algo in ("happo", "mappo"):
        for seed in ("0", "1"):
            curve = _eval_curve(tmp_path / "vmas_balance" / f"{algo}_seed{seed}" / "metrics.csv")
            entry = runs[algo][seed]
            steps = [entry[f"step_{i}"] for i in range(len(curve))]
            np.testing.assert_allclose([(s["step_count"], s["return"][0]) for s in steps], curve, atol=1e-3)
            assert entry["absolute_metrics"]["return"][0] == pytest.approx(curve[-1][1], abs=1e-3)
            assert steps[-1]["step_count"] >= 160
            finals[algo, seed] = [v for _, v in curve]
    for stem in ("sample_efficiency", "aggregates", "probability_of_improvement"):
        assert (tmp_path / "vmas_balance" / "plots" / f"{stem}.png").stat().st_size > 1000

    # the aggregates against a direct computation: min-max over every run and step, then the final column
    # (the result files keep returns to 3 decimals, so the direct computation starts from the same values)
    finals = {key: [round(v, 3) for v in curve] for key, curve in finals.items()}
    values = np.array(list(finals.values()))
    low, high = values.min(), values.max()
    summary = json.loads((tmp_path / "summary.json").read_text())
    for algo in ("happo", "mappo"):
        normalised = np.array([(finals[algo, s][-1] - low) / (high - low) for s in ("0", "1")])
        figures = summary["tasks"]["vmas/balance"][algo]
        assert figures["iqm"][0] == pytest.approx(trim_mean(normalised, 0.25))
        assert figures["mean"][0] == pytest.approx(normalised.mean())
        assert figures["optimality_gap"][0] == pytest.approx(np.clip(1 - normalised, 0, None).mean())
    assert sorted(summary["launch_seconds"]) == ["happo", "launcher", "mappo"]

    # a second call reuses the finished runs: nothing is launched, the metrics are untouched
    stamp = (tmp_path / "vmas_balance" / "happo_seed0" / "metrics.csv").stat().st_mtime_ns
    module.main([*argv, "--no-plots", "--overrides", *TINY])
    assert json.loads((tmp_path / "summary.json").read_text())["launch_seconds"] == {"launcher": "basic"}
    assert (tmp_path / "vmas_balance" / "happo_seed0" / "metrics.csv").stat().st_mtime_ns == stamp

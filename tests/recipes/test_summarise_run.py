"""recipes/benchmarks/summarise_run.py: a run's metrics.csv condensed into the result file the benchmark tables use."""

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "benchmarks" / "summarise_run.py"


def _module():
    spec = importlib.util.spec_from_file_location("summarise_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(run_dir: Path, rows: list[dict]) -> None:
    run_dir.mkdir()
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_curves_frames_and_wall_time_come_from_the_rows(tmp_path):
    rows = [
        {
            "step": 100 * (i + 1),
            "episode_return_mean": "" if i == 0 else float(i),
            "collect_fps": 50.0,
            "update_seconds": 1.0,
            "eval/return_mean": 10.0 * i if i % 2 else "",
        }
        for i in range(4)
    ]
    _write(tmp_path / "run", rows)
    result = _module().summarise(tmp_path / "run", every=2)
    assert result["frames"] == 400 and result["iterations"] == 4
    assert result["eval_curve"] == [[200, 10.0], [400, 30.0]]
    assert result["train_curve"] == [[200, 1.0], [400, 3.0]]  # every 2nd row; the first has no ended episode
    # 4 batches of 100 frames at 50 frames/s (2 s each) plus 1 s of update each: 12 s
    assert math.isclose(result["wall_minutes_estimate"], round(12 / 60, 1))


def test_a_finished_runs_final_evaluation_row_does_not_poison_the_timings(tmp_path):
    # Regression: a finished run ends with a row holding only the final evaluation (no
    # iteration, no timings); the means came out NaN and the iterations one too many.
    rows = [
        {
            "step": 100 * (i + 1),
            "iteration": i + 1,
            "episode_return_mean": 1.0,
            "collect_fps": 50.0,
            "update_seconds": 1.0,
            "eval/return_mean": "",
        }
        for i in range(3)
    ]
    rows.append(
        {
            "step": 300,
            "iteration": "",
            "episode_return_mean": "",
            "collect_fps": "",
            "update_seconds": "",
            "eval/return_mean": 7.0,
        }
    )
    _write(tmp_path / "run", rows)
    result = _module().summarise(tmp_path / "run", every=1)
    assert result["iterations"] == 3
    assert result["collect_fps_mean"] == 50.0 and result["update_seconds_mean"] == 1.0
    assert result["eval_curve"] == [[300, 7.0]]
    assert math.isclose(result["wall_minutes_estimate"], round(9 / 60, 1))


def test_a_success_rate_logged_by_the_evaluations_gets_its_own_curve(tmp_path):
    rows = [
        {
            "step": 100 * (i + 1),
            "iteration": i + 1,
            "episode_return_mean": 1.0,
            "collect_fps": 50.0,
            "update_seconds": 1.0,
            "eval/return_mean": 2.0 if i % 2 else "",
            "eval/win_rate": 0.25 * i if i % 2 else "",
        }
        for i in range(4)
    ]
    _write(tmp_path / "run", rows)
    result = _module().summarise(tmp_path / "run", every=1)
    assert result["eval_win_rate_curve"] == [[200, 0.25], [400, 0.75]]


def test_a_directory_without_metrics_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="Fix: pass a run directory"):
        _module().summarise(tmp_path)


def test_the_result_file_names_the_runs_algorithm_and_seed_from_its_hydra_config(tmp_path, monkeypatch, capsys):
    module = _module()
    run = tmp_path / "run"
    _write(
        run,
        [
            {
                "step": 100,
                "episode_return_mean": 1.0,
                "collect_fps": 50.0,
                "update_seconds": 1.0,
                "eval/return_mean": 2.0,
            }
        ],
    )
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("algo:\n  name: mappo\nseed: 3\n")
    out = tmp_path / "results"
    argv = ["summarise_run.py", str(run), "--name", "x", "--command", "c", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    module.main()
    assert {k: json.loads((out / "x.json").read_text())[k] for k in ("algo", "seed")} == {"algo": "mappo", "seed": 3}
    monkeypatch.setattr("sys.argv", [*argv, "--algo", "mappo_unshared"])
    module.main()
    assert json.loads((out / "x.json").read_text())["algo"] == "mappo_unshared"
    (run / ".hydra" / "config.yaml").unlink()
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit):
        module.main()
    assert "Fix: pass --algo and --seed" in capsys.readouterr().err

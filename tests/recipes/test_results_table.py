"""recipes/benchmarks/results_table.py: the benchmark tables printed from result files."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "benchmarks" / "results_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(path: Path, algo: str, seed: int, evals: list[float], trains: list[float]) -> Path:
    run = {
        "algo": algo,
        "seed": seed,
        "eval_curve": [[100 * (i + 1), v] for i, v in enumerate(evals)],
        "train_curve": [[100 * (i + 1), v] for i, v in enumerate(trains)],
    }
    path.write_text(json.dumps(run))
    return path


def test_value_at_takes_the_last_evaluation_at_or_before_and_nothing_past_the_end():
    table = _module()
    curve = [[100, 1.0], [200, 2.0], [400, 4.0]]
    assert table.value_at(curve, 300) == 2.0
    assert table.value_at(curve, 400) == 4.0
    assert math.isnan(table.value_at(curve, 500))
    assert table.window_mean(curve, 400, 300) == 3.0  # 200 and 400 fall in (100, 400]
    assert math.isnan(table.window_mean(curve, 500, 300))


def test_cells_are_mean_and_sample_std_over_seeds_and_dashes_where_a_seed_is_short(tmp_path):
    table = _module()
    paths = [
        _run(tmp_path / "a0.json", "a", 0, [10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0]),
        _run(tmp_path / "a1.json", "a", 1, [30.0, 40.0, 50.0], [3.0, 4.0, 5.0]),
        _run(tmp_path / "b0.json", "b", 0, [5.0, 6.0, 7.0, 8.0], [0.5, 0.5, 0.5, 0.5]),
    ]
    header, rows = table.table_rows(table._load_runs(paths), at=[200, 400], window=200)
    assert header == ["env steps", "a eval (window), 2 seeds", "a train, 2 seeds", "b eval (window)", "b train"]
    # at 200: a's evals 20 and 40 (mean 30, std 14), window (0, 200] means 15 and 35 (25 ± 14)
    assert rows[0] == ["200", "30 ± 14 (25 ± 14)", "2 ± 1", "6 (6)", "0"]
    # at 400 seed 1 of a has stopped at 300: a's cells are empty, b's are not
    assert rows[1] == ["400", "-", "-", "8 (8)", "0"]
    text = table.rst_table(header, rows)
    assert text.splitlines()[0] == text.splitlines()[-1] and "30 ± 14 (25 ± 14)" in text


def test_another_curve_with_decimals_and_the_first_step_it_reaches_a_value(tmp_path):
    table = _module()
    runs = []
    for seed, rates in enumerate([[0.0, 0.5, 1.0, 1.0], [0.25, 1.0, 1.0, 0.75]]):
        run = {"algo": "a", "seed": seed, "eval_curve": [], "eval_win_rate_curve": []}
        run["eval_win_rate_curve"] = [[500_000 * (i + 1), v] for i, v in enumerate(rates)]
        runs.append(run)
    header, rows = table.table_rows(
        runs, at=[1_000_000], window=1_000_000, curve="eval_win_rate_curve", train=False, digits=2, reach=1.0
    )
    assert header == ["env steps", "a win rate (window), 2 seeds"]
    # at 1M: 0.5 and 1.0 (0.75 ± 0.35); windows (0, 1M] hold 0.0, 0.5 and 0.25, 1.0 (0.44 ± 0.27)
    assert rows[0] == ["1,000,000", "0.75 ± 0.35 (0.44 ± 0.27)"]
    # first 1.0 at 1.5M (seed 0) and 1.0M (seed 1)
    assert rows[1] == ["first ≥ 1", "1.25M ± 0.35M"]
    runs[1]["eval_win_rate_curve"] = [[500_000, 0.5]]
    assert table.table_rows(runs, at=[], window=1, curve="eval_win_rate_curve", train=False, reach=1.0)[1] == [
        ["first ≥ 1", "-"]
    ]


def test_a_curve_the_runs_lack_is_refused_with_the_curves_they_have():
    table = _module()
    with pytest.raises(ValueError, match=r"no 'eval_goal_curve'.*eval_curve"):
        table.table_rows([{"algo": "a", "seed": 0, "eval_curve": []}], at=[1], window=1, curve="eval_goal_curve")

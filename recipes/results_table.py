r"""The benchmark page's tables, printed from committed result files (RST grid tables).

    python recipes/results_table.py recipes/results/halfcheetah_2x3_happo_seed{1,2,3}.json \\
        --at 1_000_000 2_000_000 5_000_000 10_000_000 --window 500_000

Input: result files as ``recipes/summarise_run.py`` writes them (one run each, naming its
``algo`` and ``seed``) or as ``recipes/benchmark_off_policy.py`` writes them (a list of runs).
For every frame count of ``--at`` and every algorithm it prints two columns:

* **eval**: the deterministic evaluation return at that step (the last evaluation at or
  before it), and in parentheses the mean of the run's evaluations in the ``--window``
  frames up to it (one evaluation is noisy; the window mean is what the text compares);
* **train**: the mean of the run's recorded training returns in the same window.

With several seeds of an algorithm each cell is ``mean ± std`` over the seeds (sample
standard deviation, ``ddof=1``) of those per-run values; a step a run has not reached is
``-``, and a cell is only filled when every seed of the algorithm reached the step.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections import defaultdict
from pathlib import Path

import numpy as np


def _load_runs(paths: list[Path]) -> list[dict]:
    spec = importlib.util.spec_from_file_location("plot_benchmarks", Path(__file__).with_name("plot_benchmarks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_runs(paths)


def value_at(curve: list[list[float]], frames: int) -> float:
    """The last value of ``curve`` (``[[frames, value], ...]``) at or before ``frames``; NaN past its end."""
    if not curve or curve[-1][0] < frames:
        return math.nan
    before = [v for f, v in curve if f <= frames]
    return float(before[-1]) if before else math.nan


def window_mean(curve: list[list[float]], frames: int, window: int) -> float:
    """The mean of ``curve``'s values in ``(frames - window, frames]``; NaN past its end or if empty."""
    if not curve or curve[-1][0] < frames:
        return math.nan
    values = [v for f, v in curve if frames - window < f <= frames]
    return float(np.mean(values)) if values else math.nan


def _cell(values: list[float]) -> str:
    if not values or any(math.isnan(v) for v in values):
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return f"{np.mean(values):,.0f} ± {np.std(values, ddof=1):,.0f}"


def table_rows(runs: list[dict], at: list[int], window: int) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the table: ``env steps``, then eval and train columns per algorithm."""
    by_algo: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_algo[run["algo"]].append(run)
    header = ["env steps"]
    for algo, group in by_algo.items():
        seeds = f", {len(group)} seeds" if len(group) > 1 else ""
        header += [f"{algo} eval (window){seeds}", f"{algo} train{seeds}"]
    rows = []
    for frames in at:
        row = [f"{frames:,}"]
        for group in by_algo.values():
            point = _cell([value_at(r["eval_curve"], frames) for r in group])
            mean = _cell([window_mean(r["eval_curve"], frames, window) for r in group])
            row.append(f"{point} ({mean})" if point != "-" else "-")
            row.append(_cell([window_mean(r.get("train_curve", []), frames, window) for r in group]))
        rows.append(row)
    return header, rows


def rst_table(header: list[str], rows: list[list[str]]) -> str:
    """``header`` and ``rows`` as an RST simple table."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([*lines, rule])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--at", nargs="+", type=int, required=True, help="frame counts, one row each")
    parser.add_argument("--window", type=int, default=500_000, help="frames averaged up to each row")
    args = parser.parse_args(argv)
    print(rst_table(*table_rows(_load_runs(args.results), args.at, args.window)))


if __name__ == "__main__":
    main()

r"""The benchmark page's tables, printed from committed result files (RST grid tables).

    python recipes/benchmarks/results_table.py recipes/results/halfcheetah_2x3_happo_seed{1,2,3}.json \\
        --at 1_000_000 2_000_000 5_000_000 10_000_000 --window 500_000

Input: result files as ``recipes/benchmarks/summarise_run.py`` writes them (one run each, naming its
``algo`` and ``seed``) or as ``recipes/benchmarks/benchmark_off_policy.py`` writes them (a list of runs).
For every frame count of ``--at`` and every algorithm it prints two columns:

* **eval**: the deterministic evaluation return at that step (the last evaluation at or
  before it), and in parentheses the mean of the run's evaluations in the ``--window``
  frames up to it (one evaluation is noisy; the window mean is what the text compares);
* **train**: the mean of the run's recorded training returns in the same window.

With several seeds of an algorithm each cell is ``mean ± std`` over the seeds (sample
standard deviation, ``ddof=1``) of those per-run values; a step a run has not reached is
``-``, and a cell is only filled when every seed of the algorithm reached the step.

Another evaluation curve of the result files can stand in for the return, e.g. SMAX's win rate
(``--curve eval_win_rate_curve --digits 2 --no-train``), and ``--reach V`` adds a last row: the
first evaluation step at which each run's curve reached ``V`` (mean ± std over seeds, in
millions of env steps; ``-`` if some seed never did)::

    python recipes/benchmarks/results_table.py recipes/results/smax_2s3z_*_seed*.json --at 500_000 1_000_000 \
        --curve eval_win_rate_curve --digits 2 --no-train --reach 1.0
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


def first_reach(curve: list[list[float]], value: float) -> float:
    """The first frame count at which ``curve`` is at least ``value``; NaN if it never is."""
    return next((float(f) for f, v in curve if v >= value), math.nan)


def _cell(values: list[float], digits: int = 0, unit: str = "") -> str:
    if not values or any(math.isnan(v) for v in values):
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.{digits}f}{unit}"
    return f"{np.mean(values):,.{digits}f}{unit} ± {np.std(values, ddof=1):,.{digits}f}{unit}"


def table_rows(
    runs: list[dict],
    at: list[int],
    window: int,
    curve: str = "eval_curve",
    train: bool = True,
    digits: int = 0,
    reach: float | None = None,
) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the table: ``env steps``, then eval (and train) columns per algorithm.

    ``curve`` names the evaluation curve read from each run, ``digits`` the decimals shown;
    ``reach`` adds a row with the first step at which each algorithm's runs reached that value.
    """
    by_algo: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        if curve not in run:
            raise ValueError(
                f"run {run['algo']} seed {run['seed']} has no {curve!r}. Fix: pick --curve from {sorted(run)}"
            )
        by_algo[run["algo"]].append(run)
    label = "eval" if curve == "eval_curve" else curve.removeprefix("eval_").removesuffix("_curve").replace("_", " ")
    header = ["env steps"]
    for algo, group in by_algo.items():
        seeds = f", {len(group)} seeds" if len(group) > 1 else ""
        header += [f"{algo} {label} (window){seeds}"] + ([f"{algo} train{seeds}"] if train else [])
    rows = []
    for frames in at:
        row = [f"{frames:,}"]
        for group in by_algo.values():
            point = _cell([value_at(r[curve], frames) for r in group], digits)
            mean = _cell([window_mean(r[curve], frames, window) for r in group], digits)
            row.append(f"{point} ({mean})" if point != "-" else "-")
            if train:
                row.append(_cell([window_mean(r.get("train_curve", []), frames, window) for r in group]))
        rows.append(row)
    if reach is not None:
        row = [f"first ≥ {reach:g}"]
        for group in by_algo.values():
            row.append(_cell([first_reach(r[curve], reach) / 1e6 for r in group], 2, "M"))
            row += ["-"] if train else []
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
    parser.add_argument("--curve", default="eval_curve", help="the evaluation curve to show (e.g. eval_win_rate_curve)")
    parser.add_argument("--digits", type=int, default=0, help="decimals of the evaluation cells")
    parser.add_argument("--no-train", dest="train", action="store_false", help="leave out the training columns")
    parser.add_argument("--reach", type=float, help="add a row: the first step each run's curve reached this value")
    args = parser.parse_args(argv)
    rows = table_rows(_load_runs(args.results), args.at, args.window, args.curve, args.train, args.digits, args.reach)
    print(rst_table(*rows))


if __name__ == "__main__":
    main()

r"""Learning curves of several algorithms on one task, over seeds, with an equal budget.

    python recipes/benchmark_learning.py                                  # HAPPO vs MAPPO, VMAS balance, 3 seeds
    python recipes/benchmark_learning.py --algos happo hatrpo mappo_shared:mappo:algo.share_params=true \\
        --seeds 0 1 2 --overrides env=vmas/navigation env.continuous_actions=false

Each (algorithm, seed) is one run of ``recipes/train.py`` (same code path as the
command line) with the given Hydra overrides, writing under ``--out``. The script
then prints, at regular frame counts, the mean and standard deviation over seeds of
the training episodes' team return (averaged over the iterations up to that point
since the previous row), and the final deterministic evaluation return. Runs whose
``metrics.csv`` already covers the budget are reused, so an interrupted benchmark
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

RECIPES = Path(__file__).resolve().parent


def _train_module():
    spec = importlib.util.spec_from_file_location("harl_train_recipe", RECIPES / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def parse_algo(spec: str) -> tuple[str, list[str]]:
    """``"label:algo:override:..."`` (or just ``"algo"``) -> (label, overrides)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return spec, [f"algo={spec}"]
    label, algo, *extra = parts
    return label, [f"algo={algo}", *extra]


def run_one(spec: str, seed: int, overrides: list[str], out: Path) -> tuple[list[dict[str, str]], float]:
    """Trains (or reuses) one run; returns its metrics rows and wall-clock seconds."""
    label, algo_overrides = parse_algo(spec)
    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*algo_overrides, f"seed={seed}", "logger.progress_bar=false", *overrides])
    run_dir = out / f"{label}_seed{seed}"
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        rows = _rows(metrics)
        done = [r for r in rows if r.get("iteration")]
        if done and int(done[-1]["step"]) >= cfg.total_frames:
            return rows, float("nan")
    start = time.perf_counter()
    _train_module().run(cfg, run_dir)
    return _rows(metrics), time.perf_counter() - start


def curve(rows: list[dict[str, str]], marks: list[int]) -> list[float]:
    """Mean training return over the iterations in each ``(previous mark, mark]`` window."""
    points = [(int(r["step"]), float(r["episode_return_mean"])) for r in rows if r.get("episode_return_mean")]
    values, low = [], 0
    for mark in marks:
        window = [v for step, v in points if low < step <= mark]
        values.append(statistics.fmean(window) if window else math.nan)
        low = mark
    return values


def final_eval(rows: list[dict[str, str]]) -> float:
    evals = [float(r["eval/return_mean"]) for r in rows if r.get("eval/return_mean")]
    return evals[-1] if evals else math.nan


def _fmt(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--algos",
        nargs="+",
        default=["happo", "mappo"],
        help="algorithm names, or label:algo:override:... (e.g. mappo_shared:mappo:algo.share_params=true)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=6, help="frame counts reported")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_learning"))
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=["env=vmas/balance", "total_frames=1_000_000"],
        help="Hydra overrides shared by every run",
    )
    args = parser.parse_args()
    results: dict[str, list[list[dict[str, str]]]] = {}
    seconds: dict[str, list[float]] = {}
    labels = [parse_algo(spec)[0] for spec in args.algos]
    for spec, label in zip(args.algos, labels, strict=True):
        for seed in args.seeds:
            rows, elapsed = run_one(spec, seed, args.overrides, args.out)
            results.setdefault(label, []).append(rows)
            seconds.setdefault(label, []).append(elapsed)
    budget = max(int(r["step"]) for runs in results.values() for rows in runs for r in rows if r.get("iteration"))
    marks = [round(budget * (i + 1) / args.rows) for i in range(args.rows)]
    print(f"\noverrides: {' '.join(args.overrides)}; seeds {args.seeds}; mean ± std over seeds\n")
    header = "| frames | " + " | ".join(labels) + " |"
    print(header)
    print("|" + "---|" * (len(labels) + 1))
    curves = {algo: [curve(rows, marks) for rows in runs] for algo, runs in results.items()}
    for i, mark in enumerate(marks):
        cells = [_fmt([c[i] for c in curves[label]]) for label in labels]
        print(f"| {mark:,} | " + " | ".join(cells) + " |")
    cells = [_fmt([final_eval(rows) for rows in results[label]]) for label in labels]
    print("| final deterministic eval | " + " | ".join(cells) + " |")
    cells = [_fmt([s for s in seconds[label] if not math.isnan(s)]) for label in labels]
    print("| wall-clock s per run | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

r"""Algorithms x tasks x seeds with an equal budget: Hydra multiruns, marl-eval JSON, rliable plots.

    python recipes/benchmarks/benchmark_learning.py                       # HAPPO vs MAPPO, VMAS balance, 3 seeds
    python recipes/benchmarks/benchmark_learning.py --algos happo mappo_shared:mappo:algo.share_params=true \\
        --tasks vmas/balance pettingzoo/simple_spread --seeds 0 1 2 \\
        --launcher local_seeds --n-jobs 2 --overrides total_frames=500_000

Each algorithm is one ``recipes/train.py -m`` multirun over ``--tasks`` x ``--seeds`` (the
same code path, config checks and launchers as the command line): with ``--launcher
basic`` (the default) one run after another in one process; with ``--launcher
local_seeds`` through Hydra's joblib launcher, ``--n-jobs`` runs at once with one torch
thread each; any other ``hydra/launcher`` option (``slurm``) is passed through. An
algorithm is a config name or ``label:algo:override:...``
(``mappo_shared:mappo:algo.share_params=true``). Every job is composed and checked before
anything starts.

Runs land in ``<out>/<task>/<label>_seed<seed>/``. A run whose ``metrics.csv`` already
covers its budget is reused, so an interrupted benchmark resumes where it stopped (a run
that was cut short starts again). Then, under ``--out``:

* ``marl_eval.json``: every run's deterministic evaluation curve in marl-eval's layout;
* ``<task>/runs.json``: the same curves as ``recipes/benchmarks/plot_benchmarks.py`` reads them;
* ``<task>/plots/``: sample-efficiency curves (IQM, 95% bootstrap band), IQM / mean /
  optimality gap of the min-max-normalised final return, and P(first > second algorithm);
* ``plots/`` (two tasks or more): the same aggregates over all tasks, each task normalised
  on its own;
* ``summary.json``: those estimates as ``[point, low, high]`` and each run's wall time.

It prints, per task, the mean ± std over seeds of the training return in ``--rows`` windows,
the final deterministic evaluation, and the minutes of collection + update per run.
``--no-plots`` skips rliable (the ``plots`` extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import harl_torchrl.conf
from harl_torchrl.config.hydra_checks import check_command_line, compose_run_config, run_dir_slug
from harl_torchrl.errors import ConfigError

HERE = Path(__file__).resolve().parent  # recipes/benchmarks: summarise_run.py, plot_benchmarks.py
TRAIN = HERE.parent / "train.py"  # recipes/train.py
CONF = Path(harl_torchrl.conf.__file__).resolve().parent  # the recipe configs, shipped in the package
DEFAULT_TASK = "vmas/balance"


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"harl_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_algo(spec: str) -> tuple[str, list[str]]:
    """``"label:algo:override:..."`` (or just ``"algo"``) -> (label, overrides)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return spec, [f"algo={spec}"]
    label, algo, *extra = parts
    return label, [f"algo={algo}", *extra]


@dataclass(frozen=True)
class Job:
    """One (algorithm, task, seed) run of the benchmark and where it lives."""

    label: str
    task: str
    seed: int
    run_dir: Path
    total_frames: int

    def done(self) -> bool:
        """Whether the run's ``metrics.csv`` reaches its ``total_frames``."""
        try:
            rows = _recipe("summarise_run").summarise(self.run_dir)
        except (FileNotFoundError, ValueError):
            return False
        return rows["frames"] >= self.total_frames


def plan(specs: list[str], tasks: list[str], seeds: list[int], overrides: list[str], out: Path) -> list[Job]:
    """Every job of the benchmark and its run dir; each job's config is checked first.

    The checks are the command line's own (:func:`check_command_line` on each algorithm's
    multirun), all made in-process before anything runs, so a bad value in the last
    algorithm does not wait for the first to finish training.

    Raises:
        ConfigError: a job's config is invalid (the message names the job and the fix).
    """
    for spec in specs:
        check_command_line(multirun_command(spec, tasks, seeds, overrides, out, "basic", 1)[2:], CONF)
    jobs = []
    for spec in specs:
        label, algo_overrides = parse_algo(spec)
        for task in tasks:
            for seed in seeds:
                cfg = compose_run_config(CONF, [*algo_overrides, f"env={task}", f"seed={seed}", *overrides])
                run_dir = out / run_dir_slug(task) / f"{label}_seed{seed}"
                jobs.append(Job(label, task, seed, run_dir, int(cfg.total_frames)))
    return jobs


def multirun_command(
    spec: str, tasks: list[str], seeds: list[int], overrides: list[str], out: Path, launcher: str, n_jobs: int
) -> list[str]:
    """The ``train.py -m`` command line that runs ``spec`` on ``tasks`` x ``seeds`` into the benchmark's dirs."""
    label, algo_overrides = parse_algo(spec)
    command = [
        sys.executable,
        str(TRAIN),
        "-m",
        *algo_overrides,
        "env=" + ",".join(tasks),
        "seed=" + ",".join(str(s) for s in seeds),
        "logger.progress_bar=false",
        *overrides,
        f"hydra.sweep.dir={out}",
        # quoted: the override grammar reads a nested interpolation only inside a quoted string
        "hydra.sweep.subdir='${harl_slug:${hydra:runtime.choices.env}}/" + label + "_seed${seed}'",
    ]
    if launcher != "basic":
        command.append(f"hydra/launcher={launcher}")
        if launcher == "local_seeds":
            command.append(f"hydra.launcher.n_jobs={n_jobs}")
    return command


def run_pending(
    specs: list[str], jobs: list[Job], overrides: list[str], out: Path, launcher: str, n_jobs: int
) -> dict[str, float]:
    """Launches the jobs that are not done: per algorithm, one multirun per set of seeds still missing.

    Returns the wall-clock seconds of each algorithm's multiruns (start-up and evaluations included).
    """
    seconds: dict[str, float] = {}
    for spec in specs:
        label = parse_algo(spec)[0]
        missing: dict[tuple[int, ...], list[str]] = {}
        for task in dict.fromkeys(j.task for j in jobs):
            seeds = tuple(j.seed for j in jobs if j.label == label and j.task == task and not j.done())
            if seeds:
                missing.setdefault(seeds, []).append(task)
        for seeds, tasks in missing.items():
            command = multirun_command(spec, tasks, list(seeds), overrides, out, launcher, n_jobs)
            print(f"{label}: {len(tasks)} task(s) x {len(seeds)} seed(s) through the {launcher} launcher", flush=True)
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"{label}: the multirun failed\n{' '.join(command)}\n{result.stderr[-4000:]}")
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - start
            print(f"{label}: done in {time.perf_counter() - start:.1f} s", flush=True)
    return seconds


def curve(rows: list[dict[str, str]], marks: list[int]) -> list[float]:
    """Mean training return over the iterations in each ``(previous mark, mark]`` window."""
    points = [(int(r["step"]), float(r["episode_return_mean"])) for r in rows if r.get("episode_return_mean")]
    values, low = [], 0
    for mark in marks:
        window = [v for step, v in points if low < step <= mark]
        values.append(statistics.fmean(window) if window else math.nan)
        low = mark
    return values


def mean_std(values: list[float]) -> str:
    """``"mean ± std"`` over the finite values (sample std; the value alone for one, ``n/a`` for none)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def print_table(task: str, labels: list[str], jobs: list[Job], rows: int) -> None:
    """Training-return windows, final evaluation and minutes per run of ``task``, mean ± std over seeds."""
    import csv

    def metrics(job: Job) -> list[dict[str, str]]:
        with (job.run_dir / "metrics.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    runs = {label: [metrics(j) for j in jobs if j.label == label and j.task == task] for label in labels}
    steps = sorted({int(r["step"]) for per_seed in runs.values() for rs in per_seed for r in rs})
    budget = max(j.total_frames for j in jobs if j.task == task)
    # one row per iteration when there are fewer iterations than rows
    marks = steps if len(steps) <= rows else [round(budget * (i + 1) / rows) for i in range(rows)]
    curves = {label: [curve(r, marks) for r in runs[label]] for label in labels}
    print(f"\n{task}: mean ± std over seeds\n")
    print("| frames | " + " | ".join(labels) + " |")
    print("|" + "---|" * (len(labels) + 1))
    for i, mark in enumerate(marks):
        print(f"| {mark:,} | " + " | ".join(mean_std([c[i] for c in curves[label]]) for label in labels) + " |")
    finals = {
        label: [float([r for r in rs if r.get("eval/return_mean")][-1]["eval/return_mean"]) for rs in runs[label]]
        for label in labels
    }
    print("| final deterministic eval | " + " | ".join(mean_std(finals[label]) for label in labels) + " |")
    summarise = _recipe("summarise_run").summarise
    minutes = {
        label: [summarise(j.run_dir)["wall_minutes_estimate"] for j in jobs if j.label == label and j.task == task]
        for label in labels
    }
    print("| minutes per run (collect + update) | " + " | ".join(mean_std(minutes[label]) for label in labels) + " |")


def write_results(jobs: list[Job], labels: list[str], out: Path, plots: bool, reps: int) -> dict:
    """marl-eval JSON, per-task run files, rliable figures and ``summary.json``; returns the summary."""
    plotting = _recipe("plot_benchmarks")
    summarise = _recipe("summarise_run").summarise
    by_task: dict[str, list[dict]] = {}
    summary: dict = {"runs": [], "tasks": {}}
    for job in jobs:
        run = summarise(job.run_dir)
        by_task.setdefault(job.task, []).append({"algo": job.label, "seed": job.seed, "eval_curve": run["eval_curve"]})
        summary["runs"].append(
            {
                "algo": job.label,
                "task": job.task,
                "seed": job.seed,
                "frames": run["frames"],
                "final_eval": run["eval_curve"][-1][1],
                "wall_minutes_estimate": run["wall_minutes_estimate"],
            }
        )
    layout: dict = {}
    for task, runs in by_task.items():
        env, _, name = task.partition("/")
        layout.setdefault(env, {}).update(plotting.to_marl_eval(runs, env, name or env)[env])
        (out / run_dir_slug(task) / "runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    (out / "marl_eval.json").write_text(json.dumps(layout, indent=1) + "\n")
    compare = labels[:2] if len(labels) >= 2 else None
    if plots:
        for task, runs in by_task.items():
            summary["tasks"][task] = plotting.plot(runs, out / run_dir_slug(task) / "plots", task, compare, reps)
        if len(by_task) > 1:
            final = plotting.final_scores_over_tasks(by_task)
            summary["all_tasks"] = plotting.aggregate_figures(final, out / "plots", compare, reps)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--algos",
        nargs="+",
        default=["happo", "mappo"],
        help="algorithm names, or label:algo:override:... (e.g. mappo_shared:mappo:algo.share_params=true)",
    )
    parser.add_argument(
        "--tasks", nargs="+", help=f"env config names (default: env= in --overrides, else {DEFAULT_TASK})"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=6, help="frame counts reported")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_learning"))
    parser.add_argument("--launcher", default="basic", help="basic, local_seeds (joblib), or a hydra/launcher option")
    parser.add_argument("--n-jobs", type=int, default=2, help="runs at once with --launcher local_seeds")
    parser.add_argument("--no-plots", action="store_true", help="skip the rliable figures")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument(
        "--overrides", nargs="*", default=["total_frames=1_000_000"], help="Hydra overrides shared by every run"
    )
    args = parser.parse_args(argv)
    overrides = [o for o in args.overrides if not o.startswith("env=")]
    tasks = args.tasks or [o.split("=", 1)[1] for o in args.overrides if o.startswith("env=")] or [DEFAULT_TASK]
    labels = [parse_algo(spec)[0] for spec in args.algos]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"error: two algorithms share a label ({labels}). Fix: name them label:algo:...")
    args.out = args.out.resolve()
    try:
        jobs = plan(args.algos, tasks, args.seeds, overrides, args.out)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    seconds = run_pending(args.algos, jobs, overrides, args.out, args.launcher, args.n_jobs)
    for task in tasks:
        print_table(task, labels, jobs, args.rows)
    summary = write_results(jobs, labels, args.out, plots=not args.no_plots, reps=args.reps)
    summary["launch_seconds"] = {"launcher": args.launcher, **seconds}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    for scope, figures in [*summary["tasks"].items(), *(("all tasks", summary.get("all_tasks")),)]:
        for name, values in (figures or {}).items():
            rows = values.items() if isinstance(values, dict) else [("", values)]
            shown = ", ".join(f"{k} {v:.3f} [{lo:.3f}, {hi:.3f}]".strip() for k, (v, lo, hi) in rows)
            print(f"{scope}: {name}: {shown}")
    print(f"\nwrote {args.out}/marl_eval.json, summary.json" + ("" if args.no_plots else " and plots"))


if __name__ == "__main__":
    main()

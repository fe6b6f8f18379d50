r"""Multi-seed plots of committed benchmark results with rliable, and the curves in marl-eval's JSON layout.

    python recipes/benchmarks/plot_benchmarks.py recipes/results/off_policy_mpe_spread_500k.json \\
        --task pettingzoo/simple_spread --out docs/_static/benchmarks/mpe_spread_off_policy \\
        --compare hatd3 matd3

Input: result files holding runs as ``{"algo", "seed", "eval_curve": [[frames, return], ...]}``
(a list of them, as ``recipes/benchmarks/benchmark_off_policy.py`` writes, or one run per file, as
``recipes/benchmarks/summarise_run.py`` writes: there ``--algo`` and ``--seed`` name the run when
the file does not). Output, under ``--out``:

* ``marl_eval.json``: every run in marl-eval's layout, ``{env: {task: {algo: {seed:
  {"step_<i>": {"step_count": frames, "return": [value]}, "absolute_metrics": {"return":
  [final]}}}}}}``, so marl-eval's own tools read it;
* ``sample_efficiency.{png,svg}``: the IQM of the evaluation return per algorithm at each
  evaluation step, with a 95% stratified-bootstrap band over seeds
  (:func:`rliable.plot_utils.plot_sample_efficiency_curve`);
* ``aggregates.{png,svg}``: IQM, mean and optimality gap of the final scores with 95%
  bootstrap intervals (:func:`rliable.library.get_interval_estimates`);
* ``probability_of_improvement.{png,svg}``: P(first ``--compare`` algorithm > second) with its
  interval, when ``--compare`` is given.

Across several tasks (``recipes/benchmarks/benchmark_learning.py`` with ``--tasks``),
:func:`final_scores_over_tasks` normalises each task on its own and
:func:`aggregate_figures` draws the same aggregates over the ``[seeds, tasks]`` scores.

``--metric win_rate`` (or any ``<name>`` whose ``eval_<name>_curve`` the result files hold,
such as SMAX's win rate or football's goal rate) plots that curve instead of the return, and
marl-eval's layout then names the metric ``win_rate``.

The aggregates need a common scale: scores are min-max normalised over every run and step of
the task (0: the worst evaluation seen, 1: the best), so the optimality gap is the distance to
the best return any run reached, not to a known optimum. The curves stay in raw returns.
With a handful of seeds the intervals are wide; they are drawn, not hidden.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load_runs(paths: list[Path], algo: str | None = None, seed: int | None = None) -> list[dict]:
    """The runs in ``paths``: each ``{"algo", "seed", "eval_curve"}``; ``algo``/``seed`` fill a file that lacks them."""
    runs = []
    for path in paths:
        data = json.loads(path.read_text())
        for run in data if isinstance(data, list) else [data]:
            run = {"algo": algo, "seed": seed, **run}
            if run["algo"] is None or run["seed"] is None:
                raise ValueError(f"{path}: a run without 'algo' or 'seed'. Fix: pass --algo and --seed for this file")
            runs.append(run)
    return runs


def curve_key(metric: str) -> str:
    """The result files' key of ``metric``'s curve: ``eval_curve`` for the return, else ``eval_<metric>_curve``."""
    return "eval_curve" if metric == "return" else f"eval_{metric}_curve"


def _curve(run: dict, metric: str) -> list[list[float]]:
    key = curve_key(metric)
    if key not in run:
        curves = sorted(
            "return" if k == "eval_curve" else k.removeprefix("eval_").removesuffix("_curve")
            for k in run
            if k.startswith("eval_") and k.endswith("_curve")
        )
        raise ValueError(f"run {run['algo']} seed {run['seed']} has no {key!r}. Fix: pick --metric from {curves}")
    return run[key]


def to_marl_eval(runs: list[dict], env: str, task: str, metric: str = "return") -> dict:
    """Runs in marl-eval's raw-data layout (one evaluation value per step, the last as absolute metric).

    Where a run evaluated twice at one frame count (the last iteration's evaluation and the
    final one), the later is kept. ``metric`` names both the curve read and marl-eval's key.
    """
    out: dict = defaultdict(dict)
    for run in runs:
        # one entry per frame count: the final evaluation replaces the last iteration's at the same step
        curve = {int(frames): float(value) for frames, value in _curve(run, metric)}
        steps = {
            f"step_{i}": {"step_count": frames, metric: [value]} for i, (frames, value) in enumerate(curve.items())
        }
        steps["absolute_metrics"] = {metric: [float(_curve(run, metric)[-1][1])]}
        out[run["algo"]][str(run["seed"])] = steps
    return {env: {task: dict(out)}}


def score_matrices(runs: list[dict], metric: str = "return") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The evaluation steps all runs share and, per algorithm, a ``[seeds, steps]`` array of ``metric``."""
    common = sorted(set.intersection(*({int(f) for f, _ in _curve(r, metric)} for r in runs)))
    if not common:
        raise ValueError("the runs share no evaluation step. Fix: plot runs evaluated at the same frame counts")
    scores: dict[str, list[list[float]]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r["algo"], r["seed"])):
        curve = {int(f): v for f, v in _curve(run, metric)}
        scores[run["algo"]].append([curve[f] for f in common])
    return np.array(common), {algo: np.array(v) for algo, v in scores.items()}


def normalise(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Min-max normalised over every algorithm, seed and step (0: the worst return seen, 1: the best)."""
    low = min(v.min() for v in scores.values())
    high = max(v.max() for v in scores.values())
    return {algo: (v - low) / max(high - low, 1e-12) for algo, v in scores.items()}


def plot(runs: list[dict], out: Path, task: str, compare: list[str] | None, reps: int, metric: str = "return") -> dict:
    """Writes the three figures (PNG and SVG) under ``out``; returns the estimates as (point, low, high).

    ``metric`` picks the evaluation curve (``return``, or e.g. ``win_rate``) of curves and aggregates.

    The result maps each algorithm to ``{"iqm", "mean", "optimality_gap"}`` of its normalised
    final scores, and ``"P(x > y)"`` (with ``compare``) to the probability of improvement.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import metrics, plot_utils

    frames, raw = score_matrices(runs, metric)
    label = f"evaluation {metric.replace('_', ' ')}"
    algos = sorted(raw)
    # sample efficiency: IQM over seeds at each step (rliable takes [runs, tasks, steps]; one task here)

    def iqm(s: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(s[..., j]) for j in range(s.shape[-1])])

    curves = {a: raw[a][:, None, :] for a in algos}
    point, bands = rly.get_interval_estimates(curves, iqm, reps=reps)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_sample_efficiency_curve(
        frames / 1e6,
        point,
        bands,
        algorithms=algos,
        xlabel="env steps (millions)",
        ylabel=f"IQM {label}",
        ax=ax,
    )
    # "happo: 2 seeds", not "happo 2", which reads as seed number 2
    seeds = ", ".join(f"{a}: {len(raw[a])} seed{'s' if len(raw[a]) > 1 else ''}" for a in algos)
    ax.set_title(f"{task}: IQM, 95% bootstrap band ({seeds})", fontsize="small")
    ax.legend(ax.get_lines(), algos, loc="lower right")
    _save(fig, out / "sample_efficiency")

    final = {a: normalise(raw)[a][:, -1:] for a in algos}  # [seeds, 1 task]
    figures = aggregate_figures(final, out, compare, reps, xlabel=f"normalised final {label}")
    plt.close("all")
    return figures


def final_scores_over_tasks(runs_by_task: dict[str, list[dict]]) -> dict[str, np.ndarray]:
    """Per algorithm, a ``[seeds, tasks]`` array of final returns, min-max normalised within each task.

    Each task is normalised on its own (0: the worst evaluation any run of that task reached,
    1: the best), so tasks with different return scales weigh the same in an aggregate.

    Raises:
        ValueError: an algorithm is missing from a task, or has a different number of seeds on it.
    """
    columns: dict[str, list[np.ndarray]] = defaultdict(list)
    for _, runs in sorted(runs_by_task.items()):
        _, raw = score_matrices(runs)
        for algo, scores in normalise(raw).items():
            columns[algo].append(scores[:, -1])
    counts = {algo: [len(c) for c in cols] for algo, cols in columns.items()}
    if any(len(c) != len(runs_by_task) or len(set(c)) != 1 for c in counts.values()):
        raise ValueError(
            f"seeds per algorithm and task differ ({counts}, tasks {sorted(runs_by_task)}). "
            "Fix: aggregate runs with the same seeds of every algorithm on every task"
        )
    return {algo: np.stack(cols, axis=1) for algo, cols in columns.items()}


def aggregate_figures(
    final: dict[str, np.ndarray],
    out: Path,
    compare: list[str] | None,
    reps: int,
    xlabel: str = "normalised final return",
) -> dict:
    """IQM, mean and optimality gap (and P(x > y) with ``compare``) of ``[seeds, tasks]`` normalised scores.

    Writes ``aggregates.{png,svg}`` (and ``probability_of_improvement.{png,svg}``) under ``out``
    and returns the estimates as (point, low, high) with 95% stratified-bootstrap intervals:
    ``{algo: {"iqm", "mean", "optimality_gap"}, "P(x > y)": ...}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import metrics, plot_utils

    algos = sorted(final)

    def aggregate(s: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s), metrics.aggregate_optimality_gap(s)])

    agg_point, agg_bands = rly.get_interval_estimates(final, aggregate, reps=reps)
    fig, _ = plot_utils.plot_interval_estimates(
        agg_point,
        agg_bands,
        metric_names=["IQM", "Mean", "Optimality gap"],
        algorithms=algos,
        xlabel=xlabel,
        subfigure_width=3.4,
    )
    _save(fig, out / "aggregates")
    figures = {
        a: {name: (agg_point[a][i], *agg_bands[a][:, i]) for i, name in enumerate(("iqm", "mean", "optimality_gap"))}
        for a in algos
    }

    if compare:
        x, y = compare
        pair = {f"{x},{y}": (final[x], final[y])}
        p_point, p_bands = rly.get_interval_estimates(pair, metrics.probability_of_improvement, reps=reps)
        ax = plot_utils.plot_probability_of_improvement(p_point, p_bands)
        _save(ax.figure, out / "probability_of_improvement")
        figures[f"P({x} > {y})"] = (float(p_point[f"{x},{y}"]), *p_bands[f"{x},{y}"].ravel())
    plt.close("all")
    return figures


def _save(fig, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "svg"):
        fig.savefig(stem.with_suffix(f".{suffix}"), bbox_inches="tight", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--task", required=True, help="env/task, e.g. pettingzoo/simple_spread")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", nargs=2, metavar=("X", "Y"), help="plot P(X > Y)")
    parser.add_argument("--algo", help="the algorithm of files that do not name one")
    parser.add_argument("--seed", type=int, help="the seed of files that do not name one")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--metric", default="return", help="the evaluation curve: return, or e.g. win_rate")
    args = parser.parse_args()
    runs = load_runs(args.results, args.algo, args.seed)
    env, _, task = args.task.partition("/")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "marl_eval.json").write_text(
        json.dumps(to_marl_eval(runs, env, task or env, args.metric), indent=1) + "\n"
    )
    for name, values in plot(runs, args.out, args.task, args.compare, args.reps, args.metric).items():
        rows = values.items() if isinstance(values, dict) else [("", values)]
        shown = ", ".join(f"{k} {v:.3f} [95% CI {lo:.3f}, {hi:.3f}]".strip() for k, (v, lo, hi) in rows)
        print(f"{name}: {shown}")
    print(
        f"wrote {args.out}/marl_eval.json, sample_efficiency, aggregates"
        + (", probability_of_improvement" if args.compare else "")
    )


if __name__ == "__main__":
    main()

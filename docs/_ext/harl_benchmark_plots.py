"""Sphinx extension: the benchmarks page's rliable figures, drawn at build time from committed result files.

Each entry of :data:`FIGURES` names result files under ``recipes/results`` and an output
folder under ``docs/generated/benchmarks`` (not committed); ``recipes/benchmarks/plot_benchmarks.py``
draws them when the builder starts, so the page always shows what the committed data say.
A failure stops the build (the figures are part of the page).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "generated" / "benchmarks"

#: name -> (task, [(result file, algo, seed) or (result file, None, None)], --compare pair or None);
#: a result file may be a glob (each match one run naming its own algo and seed)
FIGURES = {
    "mpe_spread_off_policy": (
        "pettingzoo/simple_spread",
        [("off_policy_mpe_spread_500k.json", None, None)],
        ("hatd3", "matd3"),
    ),
    "humanoid_17x1_happo_mappo": (
        "mamujoco/humanoid_17x1",
        [
            ("humanoid_17x1_happo_seed1.json", "happo", 1),
            ("humanoid_17x1_mappo_seed1.json", "mappo (shared)", 1),
            ("humanoid_17x1_mappo_unshared_seed1.json", "mappo (unshared)", 1),
        ],
        None,
    ),
    "halfcheetah_2x3_happo": (
        "mamujoco/halfcheetah_2x3",
        [("halfcheetah_2x3_happo_seed*.json", None, None)],
        None,
    ),
    "smax_3s5z": ("smax/3s5z", [("smax_3s5z_*_seed*.json", None, None)], None),
    "smax_2s3z": ("smax/2s3z", [("smax_2s3z_*_seed*.json", None, None)], None),
}

#: name -> the metric its figures show, where it is not the return
METRICS = {"smax_3s5z": "win_rate", "smax_2s3z": "win_rate"}


def _plot_module():
    spec = importlib.util.spec_from_file_location(
        "harl_plot_benchmarks", ROOT / "recipes" / "benchmarks" / "plot_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def draw_all(app=None) -> None:
    """Draws every figure of :data:`FIGURES` (the ``builder-inited`` handler)."""
    logging.getLogger("absl").setLevel(logging.WARNING)  # rliable's per-algorithm INFO lines
    plots = _plot_module()
    started = time.perf_counter()
    for number, (name, (task, files, compare)) in enumerate(FIGURES.items(), start=1):
        # say what is drawn: the figures take minutes (rliable's bootstrap), which was a silent wait
        print(
            f"harl_benchmark_plots: figure {number}/{len(FIGURES)} {name} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        runs = []
        for file, algo, seed in files:
            paths = sorted((ROOT / "recipes" / "results").glob(file))
            if not paths:
                raise FileNotFoundError(f"figure {name}: no result file matches recipes/results/{file}")
            runs += plots.load_runs(paths, algo, seed)
        metric = METRICS.get(name, "return")
        out = OUT / name
        out.mkdir(parents=True, exist_ok=True)
        env, _, task_name = task.partition("/")
        (out / "marl_eval.json").write_text(
            json.dumps(plots.to_marl_eval(runs, env, task_name, metric), indent=1) + "\n"
        )
        plots.plot(runs, out, task, list(compare) if compare else None, reps=2000, metric=metric)


def setup(app):
    app.connect("builder-inited", draw_all)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

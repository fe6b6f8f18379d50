r"""Condense one training run's ``metrics.csv`` into a small result file the docs can plot from.

Run directories (logs, checkpoints) are never committed; this keeps what a benchmark table
needs: the evaluation curve, the frames reached, the wall time and the throughput::

    python recipes/benchmarks/summarise_run.py outputs/happo_mamujoco_humanoid_17x1/<time> \
        --name humanoid_17x1_happo_seed1 --command "python recipes/train.py preset=... seed=1" \
        --out recipes/results

writes ``recipes/results/humanoid_17x1_happo_seed1.json`` with ``eval_curve`` as
``[[frames, deterministic eval return], ...]`` and ``train_curve`` as
``[[frames, mean return of the episodes that ended in that batch], ...]`` (every
``--every``-th batch). A run that was stopped before its ``total_frames`` is summarised as
far as it got (``frames`` says where). ``algo`` and ``seed`` are recorded too (by default the
run's own ``algo.name`` and ``seed`` from its ``.hydra/config.yaml``; ``--algo`` gives a label
such as ``mappo_unshared``), so ``recipes/benchmarks/plot_benchmarks.py`` and ``recipes/benchmarks/results_table.py``
read the file without being told.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path


def _float(value: str | None) -> float:
    return float(value) if value not in (None, "") else math.nan


def summarise(run_dir: Path, every: int = 10) -> dict:
    """The curves, frames, wall time and throughput of the run in ``run_dir``.

    Args:
        run_dir: a run directory holding ``metrics.csv`` (one row per iteration, with
            ``step``; ``eval/return_mean`` on evaluation rows; ``collect_fps`` and
            ``update_seconds`` per iteration).
        every: keep the training return of every ``every``-th iteration.

    Returns:
        ``{"frames", "iterations", "eval_curve", "train_curve", "collect_fps_mean",
        "update_seconds_mean", "wall_minutes_estimate"}``; the wall time is the sum of
        collection and update time over the iterations (evaluation time excluded). Runs
        whose evaluations log a win rate (``eval/win_rate``, SMAX) or a goal rate
        (``eval/goal_rate``, football) also get ``"eval_win_rate_curve"`` /
        ``"eval_goal_rate_curve"``, ``[[step, rate], ...]``.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``metrics.csv`` (not a run directory).
    """
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. Fix: pass a run directory written by recipes/train.py")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows yet. Fix: wait for the run's first iteration")
    eval_curve = [
        [int(_float(r["step"])), round(_float(r["eval/return_mean"]), 3)]
        for r in rows
        if not math.isnan(_float(r.get("eval/return_mean")))
    ]
    train_curve = [
        [int(_float(r["step"])), round(_float(r["episode_return_mean"]), 3)]
        for i, r in enumerate(rows)
        if (i + 1) % every == 0 and not math.isnan(_float(r.get("episode_return_mean")))
    ]
    frames = int(_float(rows[-1]["step"]))
    # A finished run's last row is the final evaluation alone (no iteration, no timings):
    # averaging it in made the means NaN and miscounted the iterations.
    iterations = [r for r in rows if not math.isnan(_float(r.get("iteration")))] or rows
    batch = frames / len(iterations)
    fps = [v for v in (_float(r.get("collect_fps")) for r in iterations) if not math.isnan(v)]
    updates = [u for u in (_float(r.get("update_seconds")) for r in iterations) if not math.isnan(u)]
    seconds = sum(batch / v for v in fps if v > 0) + sum(updates)
    rate_curves = {
        f"eval_{key}_curve": [
            [int(_float(r["step"])), round(_float(r[f"eval/{key}"]), 4)]
            for r in rows
            if not math.isnan(_float(r.get(f"eval/{key}")))
        ]
        for key in ("win_rate", "goal_rate")
        if f"eval/{key}" in rows[0]
    }
    return {
        "frames": frames,
        "iterations": len(iterations),
        "eval_curve": eval_curve,
        "train_curve": train_curve,
        "collect_fps_mean": round(sum(fps) / len(fps), 1) if fps else math.nan,
        "update_seconds_mean": round(sum(updates) / len(updates), 3) if updates else math.nan,
        "wall_minutes_estimate": round(seconds / 60, 1),
        **rate_curves,
    }


def run_identity(run_dir: Path) -> dict:
    """``{"algo": algo.name, "seed": seed}`` from the run's ``.hydra/config.yaml`` (empty if it has none)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    return {"algo": OmegaConf.select(cfg, "algo.name"), "seed": OmegaConf.select(cfg, "seed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True, help="the result file's stem")
    parser.add_argument("--command", required=True, help="the command that made the run, recorded verbatim")
    parser.add_argument("--note", default="", help="anything a reader must know (machine, stopped early, ...)")
    parser.add_argument("--algo", help="the run's label (default: its algo.name)")
    parser.add_argument("--seed", type=int, help="the run's seed (default: its config's)")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("recipes/results"))
    args = parser.parse_args()
    identity = run_identity(args.run_dir)
    identity.update({k: v for k, v in {"algo": args.algo, "seed": args.seed}.items() if v is not None})
    if identity.get("algo") is None or identity.get("seed") is None:
        parser.error(f"{args.run_dir} records no algo.name or seed. Fix: pass --algo and --seed")
    result = {"name": args.name, "command": args.command, "note": args.note, **identity}
    result.update(summarise(args.run_dir, args.every))
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{args.name}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    last = result["eval_curve"][-1] if result["eval_curve"] else None
    print(f"{target}: {result['frames']:,} frames, last eval {last}, ~{result['wall_minutes_estimate']} min")


if __name__ == "__main__":
    main()

r"""Off-policy throughput and learning on MPE simple_spread (continuous): env steps/s end to end, gradient-step time.

    python recipes/benchmarks/benchmark_off_policy.py                      # HATD3, 20k steps, seed 0
    python recipes/benchmarks/benchmark_off_policy.py --algos hatd3 hasac matd3 --seeds 0 1 2 --frames 500_000
    python recipes/benchmarks/benchmark_off_policy.py --reference-utd --frames 20_000  # the reference's exact UTD
    python recipes/benchmarks/benchmark_off_policy.py --overrides device=cuda env.max_steps=25

Each (algorithm, seed) is one run of ``recipes/train.py`` in-process (a run already finished
under ``--out`` with the same budget is not repeated: a long plan can be restarted) (the command-line
code path) with the algorithm's own defaults (the reference's: 20 envs, 10k warm-up
transitions, batch 1000, one gradient step per vector step) unless overridden.
``--reference-utd`` pins exactly those (``algo.num_envs=20``, ``algo.batch_size=1000``,
``algo.updates_per_step=1``, ``algo.train_interval=50``, ``algo.warmup_steps=10000``)
whatever the other overrides say, for a side-by-side with the reference's harness.

Printed per run: env steps per second end to end (frames / wall-clock of the whole run,
evaluation and checkpoints included), the same for the training iterations only
(collection + updates), for the iterations after the warm-up only (the steady-state rate,
which a run of millions of steps approaches), the mean time of one gradient step (sample + critic step +
actor step and targets when due), and the deterministic evaluation return curve. The
results go to ``<out>/results.json`` and ``<out>/results.csv``.

Return scale: mpe2's ``simple_spread_v3`` no longer charges each agent for colliding with
itself; the reference's returns (pettingzoo <= 1.22.3) are lower by exactly 37.5 per
25-step episode for the same behaviour. The ``reference_scale`` column subtracts 37.5
from our evaluation return (valid for 3 agents and ``env.max_steps=25``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

from benchmark_learning import mean_std  # the scripts' one mean ± std cell (this folder is on sys.path)

import harl_torchrl.conf
from harl_torchrl.config.hydra_checks import compose_run_config
from harl_torchrl.run import run as train
from harl_torchrl.utils.checkpoint import read_metadata

CONF = Path(harl_torchrl.conf.__file__).resolve().parent  # the recipe configs, shipped in the package
REFERENCE_UTD = [
    "algo.num_envs=20",
    "algo.batch_size=1000",
    "algo.updates_per_step=1.0",
    "algo.train_interval=50",
    "algo.warmup_steps=10000",
]
#: mpe2 simple_spread_v3 minus the reference's simple_spread_v2 return, 3 agents x 0.5 x 25 steps.
SELF_COLLISION_OFFSET = 37.5


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("iteration")]


def run_one(algo: str, seed: int, frames: int, overrides: list[str], out: Path) -> dict:
    """Trains one run and returns its figures."""
    run_dir = out / f"{algo}_seed{seed}"
    settings = [
        f"algo={algo}",
        "env=pettingzoo/simple_spread",
        f"seed={seed}",
        f"total_frames={frames}",
        "logger.progress_bar=false",
        *overrides,
    ]
    resumed = (run_dir / "checkpoint.pt").is_file()
    start_frames = 0
    if resumed:  # an interrupted run of this plan: continue it from its last checkpoint
        settings.append(f"resume={run_dir / 'checkpoint.pt'}")
        start_frames = int(read_metadata(run_dir / "checkpoint.pt")["frames"])
    cfg = compose_run_config(CONF, settings)
    start = time.perf_counter()
    train(cfg, run_dir)  # the loop recipes/train.py and harl-train run
    wall = time.perf_counter() - start
    rows = _rows(run_dir / "metrics.csv")
    done = int(rows[-1]["step"])
    steps_before = [0, *(int(r["step"]) for r in rows[:-1])]
    # seconds of each iteration's collection + updates: its frames over its end-to-end fps
    loop = sum((int(r["step"]) - before) / float(r["fps"]) for before, r in zip(steps_before, rows, strict=True))
    trained = [(int(r["step"]) - before, r) for before, r in zip(steps_before, rows, strict=True)]
    trained = [(n, r) for n, r in trained if int(r["gradient_steps"]) > 0]
    trained_seconds = sum(n / float(r["fps"]) for n, r in trained)
    steps = int(rows[-1]["gradient_steps"])
    update = sum(float(r["update_seconds"]) for r in rows if int(r["gradient_steps"]) > 0)
    curve = [(int(r["step"]), float(r["eval/return_mean"])) for r in rows if r.get("eval/return_mean")]
    final = curve[-1][1] if curve else math.nan
    return {
        "algo": algo,
        "seed": seed,
        "frames": done,
        "resumed": resumed,  # then wall_seconds and env_steps_per_second cover the resumed part only
        "wall_seconds": wall,
        "env_steps_per_second": (done - start_frames) / wall,
        "loop_env_steps_per_second": done / loop if loop else math.nan,
        # the iterations after the warm-up alone (collection + gradient steps): the steady-state rate
        "trained_env_steps_per_second": sum(n for n, _ in trained) / trained_seconds if trained else math.nan,
        "gradient_steps": steps,
        # update_seconds holds the gradient steps plus the (small) buffer insertion of each iteration
        "gradient_step_ms": 1000.0 * update / steps if steps else math.nan,
        "eval_curve": curve,
        "final_eval_return": final,
        "reference_scale": final - SELF_COLLISION_OFFSET,
        "overrides": settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["hatd3"], help="hatd3 haddpg hasac matd3 maddpg masac")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--frames", type=int, default=20_000, help="env steps (summed over copies) per run")
    parser.add_argument("--reference-utd", action="store_true", help="pin the reference's UTD settings")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_off_policy"))
    parser.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides shared by every run")
    parser.add_argument("--report-only", action="store_true", help="tabulate the finished runs under --out, train none")
    parser.add_argument("--rst-every", type=int, default=0, help="also print an RST table every N env steps")
    args = parser.parse_args()
    overrides = [*args.overrides, *(REFERENCE_UTD if args.reference_utd else [])]
    results = []
    for algo in args.algos:
        for seed in args.seeds:
            done = _finished(args.out, algo, seed, args.frames)
            if done is None and args.report_only:
                continue
            results.append(done or run_one(algo, seed, args.frames, overrides, args.out))
            _write_results(args.out, results)  # after each run: a long plan that is stopped keeps what it measured
    if not results:
        raise SystemExit(f"no finished run under {args.out} for {args.algos} x seeds {args.seeds}")

    print(f"\nMPE simple_spread (continuous), {args.frames:,} env steps per run; overrides: {' '.join(overrides)}\n")
    print(
        "| algo | seed | env steps/s (end to end) | env steps/s (loop) | env steps/s (after warm-up) "
        "| gradient steps | ms / gradient step | final eval return (mpe2) | same, reference scale |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['algo']} | {r['seed']} | {r['env_steps_per_second']:.0f} | {r['loop_env_steps_per_second']:.0f} "
            f"| {r['trained_env_steps_per_second']:.0f} "
            f"| {r['gradient_steps']} | {r['gradient_step_ms']:.2f} | {r['final_eval_return']:.2f} "
            f"| {r['reference_scale']:.2f} |"
        )
    for algo in args.algos:
        runs = [r for r in results if r["algo"] == algo]
        if not runs:
            continue
        print(f"\n{algo}: deterministic eval return (mean ± std over seeds {[r['seed'] for r in runs]})")
        print("  env steps  mpe2 scale        reference scale (- 37.5)")
        for i, (step, _) in enumerate(runs[0]["eval_curve"]):
            values = [r["eval_curve"][i][1] for r in runs if i < len(r["eval_curve"])]
            shifted = [v - SELF_COLLISION_OFFSET for v in values]
            print(f"  {step:>9,}  {mean_std(values):<16}  {mean_std(shifted)}")
    if args.rst_every:
        print("\n" + rst_table(results, args.algos, args.rst_every))
    print(f"\nresults: {args.out / 'results.json'}, {args.out / 'results.csv'}")


def rst_table(results: list[dict], algos: list[str], every: int) -> str:
    """An RST table of the eval curves on the reference's scale: mean ± std over seeds every ``every`` steps."""
    present = [a for a in algos if any(r["algo"] == a for r in results)]
    steps = sorted({step for r in results for step, _ in r["eval_curve"] if step % every == 0})
    counts = {a: len([r for r in results if r["algo"] == a]) for a in present}
    header = ["env steps"] + [f"{a.upper()} ({n} seed{'s' if n > 1 else ''})" for a, n in counts.items()]
    rows = []
    for step in steps:
        cells = [f"{step:,}"]
        for algo in present:
            values = [
                v - SELF_COLLISION_OFFSET for r in results if r["algo"] == algo for s, v in r["eval_curve"] if s == step
            ]
            cells.append(mean_std(values))
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([*lines, rule])


def _finished(out: Path, algo: str, seed: int, frames: int) -> dict | None:
    """The figures of a run this plan already finished (same algorithm, seed and budget), if any."""
    path = out / f"{algo}_seed{seed}" / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("frames", 0) >= frames else None


def _write_results(out: Path, results: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        (out / f"{r['algo']}_seed{r['seed']}" / "result.json").write_text(json.dumps(r, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    columns = [k for k in results[0] if k not in ("eval_curve", "overrides")]
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)


if __name__ == "__main__":
    main()

"""Wall time of a multi-seed run: one after another (Hydra's basic launcher) against the joblib launcher.

    python recipes/benchmarks/benchmark_launchers.py          # 3 seeds x 200k frames of the default recipe
    python recipes/benchmarks/benchmark_launchers.py --seeds 4 --frames 500000 --n-jobs 2

Each variant is one command, timed from start to exit (start-up, evaluations and the
final checkpoints included):

* ``sequential``: ``train.py -m seed=0,...`` with Hydra's basic launcher, torch's default
  threads (one per core), one run at a time;
* ``joblib``: the same sweep with ``hydra/launcher=local_seeds`` (``--n-jobs`` runs at once,
  one torch thread each: ``OMP_NUM_THREADS=1`` through ``hydra.job.env_set``).

Needs the ``launchers`` extra. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "train.py"  # recipes/train.py


def sweep_seconds(seeds: int, frames: int, launcher: list[str]) -> float:
    """Wall-clock seconds of ``train.py -m seed=0..seeds-1 total_frames=frames`` with ``launcher``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            str(TRAIN),
            "-m",
            "seed=" + ",".join(str(s) for s in range(seeds)),
            f"total_frames={frames}",
            "logger.progress_bar=false",
            f"hydra.sweep.dir={out}",
            *launcher,
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200_000, help="frames per run")
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib runs at once")
    args = parser.parse_args()
    variants = {
        "sequential": [],
        f"joblib, {args.n_jobs} at once": ["hydra/launcher=local_seeds", f"hydra.launcher.n_jobs={args.n_jobs}"],
    }
    seconds = {}
    for name, launcher in variants.items():
        seconds[name] = sweep_seconds(args.seeds, args.frames, launcher)
        print(f"{name}: {seconds[name]:.1f} s", flush=True)
    total = args.seeds * args.frames
    print(f"\n{os.cpu_count()} cores, {args.seeds} seeds x {args.frames:,} frames of the default recipe")
    print(f"{'launcher':<24}{'wall s':>10}{'frames/s':>12}{'speed-up':>10}")
    base = seconds["sequential"]
    for name, value in seconds.items():
        print(f"{name:<24}{value:>10.1f}{total / value:>12,.0f}{base / value:>10.2f}")


if __name__ == "__main__":
    main()

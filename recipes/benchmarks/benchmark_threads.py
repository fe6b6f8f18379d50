"""Frames per second of the default recipe with one torch thread against torch's default (one per core).

    python recipes/benchmarks/benchmark_threads.py           # 200k frames, 2 interleaved rounds
    python recipes/benchmarks/benchmark_threads.py --frames 1000000 --rounds 1 --threads 1 2

Each measurement runs ``recipes/train.py`` (HAPPO on VMAS ``balance``, the default config)
in a fresh process with ``threads=<T>`` (``0`` here means ``threads=null``: torch's own
default, one thread per core) and ``total_frames=--frames``, and reports frames divided by
the process's wall time (start-up, evaluations and the final checkpoint included: what a user
waits for). ``OMP_NUM_THREADS`` is removed from the children's environment so that it cannot
decide for them. Rounds are interleaved; medians are printed. Run it on an otherwise idle
machine: the point of the default is what a user gets, and other load changes the answer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "train.py"  # recipes/train.py


def run_once(threads: int, frames: int) -> float:
    """Wall-clock seconds of one default run of ``frames`` frames with ``threads`` torch threads (0: null)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            str(TRAIN),
            f"threads={threads if threads > 0 else 'null'}",
            f"total_frames={frames}",
            "logger.progress_bar=false",
            f"hydra.run.dir={out}",
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0], help="0: torch's default (threads=null)")
    args = parser.parse_args()
    seconds: dict[int, list[float]] = {t: [] for t in args.threads}
    for round_ in range(args.rounds):
        for threads in args.threads:
            seconds[threads].append(run_once(threads, args.frames))
            print(f"round {round_ + 1}, threads={threads or 'null'}: {seconds[threads][-1]:.1f} s", flush=True)
    print(f"\n{os.cpu_count()} cores, {args.frames:,} frames of the default recipe (HAPPO, VMAS balance)")
    print(f"{'threads':<10} {'wall s (median)':>16} {'frames/s':>10}")
    for threads, values in seconds.items():
        median = statistics.median(values)
        print(f"{threads or 'null':<10} {median:>16.1f} {args.frames / median:>10,.0f}")


if __name__ == "__main__":
    main()

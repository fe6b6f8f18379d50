"""MPE collection throughput: in-process, worker processes, and Ray actors (collector.backend=ray).

    python recipes/benchmarks/benchmark_collectors.py        # simple_spread, 8 copies x 100 steps per batch
    python recipes/benchmarks/benchmark_collectors.py --num-envs 16 --batches 8

Every variant collects the same ``[num_envs, steps]`` batches with the HAPPO policy of the
default config (sampled actions) through :func:`harl_torchrl.collection.make_collector`:
in-process (one process steps every copy), ``workers`` local processes (TorchRL's
``MultiSyncCollector``), and ``workers`` Ray actors on a local Ray instance (TorchRL's
``RayCollector``). Reported: frames/s over ``--batches`` batches after one warm-up batch
(start-up excluded, given apart), and the ratio to in-process. Needs the ``ray`` extra;
run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import harl_torchrl.conf
from harl_torchrl.algorithms import make_on_policy_components
from harl_torchrl.collection import make_collector
from harl_torchrl.config.hydra_checks import compose_run_config
from harl_torchrl.envs import make_env

CONF = Path(harl_torchrl.conf.__file__).resolve().parent  # the recipe configs, shipped in the package


def measure(env_cfg: dict, policy, workers: int, backend: str, steps: int, batches: int) -> tuple[float, float]:
    """(start-up seconds, frames/s) of one collector variant."""
    env = make_env(env_cfg, seed=0)
    frames_per_batch = env_cfg["num_envs"] * steps
    start = time.perf_counter()
    collector = make_collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=frames_per_batch * (batches + 1),
        workers=workers,
        env_cfg=env_cfg,
        seed=0,
        backend=backend,
    )
    batches_seen = iter(collector)
    next(batches_seen)  # warm-up: worker start, first resets
    startup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(batches_seen)
    rate = frames_per_batch * batches / (time.perf_counter() - start)
    collector.shutdown()
    env.close()
    return startup, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100, help="steps per copy per batch")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env_cfg = {"family": "pettingzoo", "scenario": "simple_spread", "num_envs": args.num_envs, "max_steps": 25}
    cfg = compose_run_config(CONF, ["env=pettingzoo/simple_spread"])
    policy = make_on_policy_components(cfg.algo, cfg.model, make_env(env_cfg, seed=0), seed=0).policy
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    variants = [("in-process", 1, "local"), ("2 local processes", 2, "local"), ("ray, 1 actor", 1, "ray")]
    variants.append(("ray, 2 actors", 2, "ray"))
    results = {}
    for name, workers, backend in variants:
        results[name] = measure(env_cfg, policy, workers, backend, args.steps, args.batches)
        print(f"{name}: start-up {results[name][0]:.1f} s, {results[name][1]:,.0f} frames/s", flush=True)
    ray.shutdown()
    base = results["in-process"][1]
    print(f"\n{os.cpu_count()} cores, MPE simple_spread, {args.num_envs} copies x {args.steps} steps per batch")
    print(f"{'collector':<20}{'start-up s':>12}{'frames/s':>12}{'x in-process':>14}")
    for name, (startup, rate) in results.items():
        print(f"{name:<20}{startup:>12.1f}{rate:>12,.0f}{rate / base:>14.2f}")


if __name__ == "__main__":
    main()

"""Update time per iteration against the number of agents: the cost of the sequential scheme.

    python recipes/benchmarks/benchmark_update_time.py             # balance, 2/4/8 agents, 20k-frame batches
    python recipes/benchmarks/benchmark_update_time.py --agents 2 4 8 16 --num-envs 400

For each number of agents, one batch is collected on VMAS (same number of frames for
every agent count) and the update (GAE + the updater's whole iteration, critic
included) of HAPPO, HATRPO and the MAPPO baseline is timed on it. Algorithms are
interleaved round by round and medians are reported, with the ratio to MAPPO.
HAPPO and MAPPO do the same optimisation work per agent (5 epochs of Adam on the
whole batch), so their ratio is the overhead of the sequential scheme itself (the
factor's extra forward pass per agent); HATRPO replaces Adam epochs by a natural
gradient step (conjugate gradient on Fisher-vector products, line search), shown
with the exact full-batch Fisher (the default) and with ``algo.fisher_fraction=0.1``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torchrl.collectors import Collector

import harl_torchrl.conf
from harl_torchrl.algorithms import make_on_policy_components
from harl_torchrl.config.hydra_checks import compose_run_config
from harl_torchrl.envs import make_vmas_env
from harl_torchrl.utils.rng import seed_everything

CONF = str(Path(harl_torchrl.conf.__file__).resolve().parent)  # the recipe configs, shipped in the package
# label -> Hydra overrides
ALGOS = {
    "happo": ["algo=happo"],
    "hatrpo": ["algo=hatrpo"],
    "hatrpo_fisher0.1": ["algo=hatrpo", "algo.fisher_fraction=0.1"],
    "mappo": ["algo=mappo"],
}

RATIOS = {"HAPPO / MAPPO": "happo", "HATRPO / MAPPO": "hatrpo", "HATRPO (Fisher on 10%) / MAPPO": "hatrpo_fisher0.1"}


def components(algo: str, env):
    cfg = compose_run_config(CONF, ALGOS[algo])
    seed_everything(0)
    return make_on_policy_components(cfg.algo, cfg.model, env, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="balance")
    parser.add_argument("--agents", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--num-envs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"scenario={args.scenario}, batch={args.num_envs}x{args.steps} frames, torch threads={torch.get_num_threads()}"
    )
    print("\n| agents | " + " | ".join(f"{a} update s" for a in ALGOS) + " | " + " | ".join(RATIOS) + " |")
    print("|---" * (len(ALGOS) + len(RATIOS) + 1) + "|")
    for n_agents in args.agents:
        env = make_vmas_env(args.scenario, num_envs=args.num_envs, max_steps=args.steps, n_agents=n_agents, seed=0)
        parts = {algo: components(algo, env) for algo in ALGOS}
        collector = Collector(
            env,
            parts["happo"].policy,
            frames_per_batch=args.num_envs * args.steps,
            total_frames=args.num_envs * args.steps,
            auto_register_policy_transforms=False,
        )
        batch = next(iter(collector))
        collector.shutdown()
        times: dict[str, list[float]] = {algo: [] for algo in ALGOS}
        for _ in range(args.rounds):
            for algo in ALGOS:
                data = batch.clone()
                start = time.perf_counter()
                parts[algo].compute_advantage(data)
                parts[algo].updater.update(data)
                times[algo].append(time.perf_counter() - start)
        med = {algo: statistics.median(values) for algo, values in times.items()}
        print(
            f"| {n_agents} | "
            + " | ".join(f"{med[a]:.2f}" for a in ALGOS)
            + " | "
            + " | ".join(f"{med[a] / med['mappo']:.2f}" for a in RATIOS.values())
            + " |"
        )


if __name__ == "__main__":
    main()

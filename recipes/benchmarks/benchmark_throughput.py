"""Throughput of collection and training on VMAS: our env layer, HAPPO and a MAPPO baseline.

    python recipes/benchmarks/benchmark_throughput.py           # balance, 4 agents, 600 and 4096 envs
    python recipes/benchmarks/benchmark_throughput.py --num-envs 600 --iterations 3 --device cuda

For each number of sub-environments it measures, over ``--steps`` steps per iteration:

* raw VMAS stepping: ``vmas.make_env(...).step`` with fixed random actions and no resets
  (the simulator alone);
* VMAS with its own per-index resets (``reset_at`` for every finished sub-environment,
  what TorchRL's ``VmasEnv`` does);
* TorchRL's ``VmasEnv`` with random actions (context);
* our env layer with the HAPPO policy in the loop, through TorchRL's ``Collector``;
* HAPPO and the MAPPO baseline (TorchRL's ``ClipPPOLoss`` per agent, simultaneous
  updates; identical batch, epochs and minibatches): collection, update (GAE +
  optimisation) and end-to-end frames per second.

Frames are environment steps summed over sub-environments. The measurements are
interleaved round by round (this machine's speed drifts by tens of percent over
minutes) and the table gives medians; the tracked ratios are computed within each
round, then their median is printed with the per-round values.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import vmas
from torchrl.collectors import Collector
from torchrl.envs.libs.vmas import VmasEnv

import harl_torchrl.conf
from harl_torchrl.algorithms import make_on_policy_components
from harl_torchrl.config.hydra_checks import compose_run_config
from harl_torchrl.envs import make_vmas_env
from harl_torchrl.utils.device import resolve_device
from harl_torchrl.utils.rng import seed_everything

CONF = str(__import__("pathlib").Path(harl_torchrl.conf.__file__).resolve().parent)  # the recipe configs


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class RawVmas:
    """The simulator alone: ``step`` with fixed random actions; optionally VMAS's per-index resets."""

    def __init__(self, scenario: str, num_envs: int, device, with_resets: bool, **kwargs) -> None:
        self.env = vmas.make_env(scenario, num_envs=num_envs, device=device, seed=0, clamp_actions=True, **kwargs)
        self.actions = [self.env.get_random_action(agent) for agent in self.env.agents]
        self.with_resets, self.num_envs, self.device = with_resets, num_envs, device

    def fps(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            _, _, dones, _ = self.env.step(self.actions)
            if self.with_resets:
                for index in dones.nonzero().flatten().tolist():
                    self.env.reset_at(index)
        _sync(self.device)
        return self.num_envs * steps / (time.perf_counter() - start)


def torchrl_vmasenv_fps(scenario: str, num_envs: int, steps: int, device, max_steps: int, **kwargs) -> float:
    env = VmasEnv(scenario, num_envs=num_envs, device=device, max_steps=max_steps, seed=0, **kwargs)
    td = env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        td.update(env.full_action_spec.rand())
        _, td = env.step_and_maybe_reset(td)
    _sync(device)
    return num_envs * steps / (time.perf_counter() - start)


class Training:
    """One algorithm's collector and updater; ``iteration()`` times one collect and one update."""

    def __init__(self, algo: str, scenario: str, num_envs: int, steps: int, device, **kwargs) -> None:
        cfg = compose_run_config(CONF, [f"algo={algo}"])
        seed_everything(0)
        env = make_vmas_env(scenario, num_envs=num_envs, device=device, max_steps=steps, seed=0, **kwargs)
        self.parts = make_on_policy_components(cfg.algo, cfg.model, env, device=device, seed=0)
        self.collector = Collector(
            env,
            self.parts.policy,
            frames_per_batch=num_envs * steps,
            total_frames=-1,
            device=device,
            auto_register_policy_transforms=False,
        )
        self.batches = iter(self.collector)
        self.frames, self.device = num_envs * steps, device

    def iteration(self) -> tuple[float, float]:
        """Frames/s of one collection and of one update (GAE + optimisation)."""
        start = time.perf_counter()
        batch = next(self.batches)
        _sync(self.device)
        collect = time.perf_counter() - start
        start = time.perf_counter()
        self.parts.compute_advantage(batch)
        self.parts.updater.update(batch)
        _sync(self.device)
        update = time.perf_counter() - start
        return self.frames / collect, self.frames / update


def end_to_end(collect_fps: float, update_fps: float) -> float:
    return 1.0 / (1.0 / collect_fps + 1.0 / update_fps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="balance")
    parser.add_argument("--n-agents", type=int, default=4)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[600, 4096])
    parser.add_argument("--steps", type=int, default=100, help="steps per sub-environment per iteration")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (after one warm-up round)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-torchrl-vmasenv", action="store_true", help="skip the slow VmasEnv reference")
    args = parser.parse_args()
    device = resolve_device(args.device)
    kwargs = {"n_agents": args.n_agents}
    print(f"scenario={args.scenario} n_agents={args.n_agents} steps={args.steps} device={device}")
    print(f"torch threads={torch.get_num_threads()}, medians over {args.rounds} interleaved rounds")
    for num_envs in args.num_envs:
        raw = RawVmas(args.scenario, num_envs, device, with_resets=False, **kwargs)
        raw_resets = RawVmas(args.scenario, num_envs, device, with_resets=True, **kwargs)
        runs = {
            algo: Training(algo, args.scenario, num_envs, args.steps, device, **kwargs) for algo in ("happo", "mappo")
        }
        samples: dict[str, list[float]] = {}
        for round_ in range(args.rounds + 1):
            # Interleaved, so that a slow spell of the machine hits every measurement alike.
            measured = {"raw": raw.fps(args.steps), "raw_resets": raw_resets.fps(args.steps)}
            for algo, run in runs.items():
                measured[f"{algo}_collect"], measured[f"{algo}_update"] = run.iteration()
                measured[f"{algo}_e2e"] = end_to_end(measured[f"{algo}_collect"], measured[f"{algo}_update"])
            measured["collect_ratio"] = measured["happo_collect"] / measured["raw"]
            measured["happo_vs_mappo"] = measured["happo_e2e"] / measured["mappo_e2e"]
            if round_ > 0:  # round 0 warms up
                for key, value in measured.items():
                    samples.setdefault(key, []).append(value)
        med = {key: statistics.median(values) for key, values in samples.items()}
        rows = [
            ("raw VMAS step, no resets", med["raw"]),
            ("raw VMAS step + reset_at loop", med["raw_resets"]),
        ]
        if not args.skip_torchrl_vmasenv:
            reference = torchrl_vmasenv_fps(args.scenario, num_envs, args.steps, device, args.steps, **kwargs)
            rows.append(("TorchRL VmasEnv, random actions (one run)", reference))
        rows.append(("ours: Collector + HAPPO policy (collection)", med["happo_collect"]))
        for algo in ("happo", "mappo"):
            rows.append((f"{algo.upper()} update (GAE + optimisation)", med[f"{algo}_update"]))
            rows.append((f"{algo.upper()} end to end", med[f"{algo}_e2e"]))
        print(f"\n## {num_envs} envs\n")
        print(f"| {'measurement':<46} | {'frames/s':>10} | {'x raw':>6} |")
        print(f"|{'-' * 48}|{'-' * 12}|{'-' * 8}|")
        for name, fps in rows:
            print(f"| {name:<46} | {fps:>10,.0f} | {fps / med['raw']:>6.2f} |")
        print(
            f"\ncollection with policy / raw VMAS stepping: {med['collect_ratio']:.2f} (target >= 0.6)"
            f"  [per round: {', '.join(f'{v:.2f}' for v in samples['collect_ratio'])}]"
            f"\nHAPPO / MAPPO end-to-end frames/s: {med['happo_vs_mappo']:.2f} (target >= 0.9)"
            f"  [per round: {', '.join(f'{v:.2f}' for v in samples['happo_vs_mappo'])}]"
        )
        for run in runs.values():
            run.collector.shutdown()


if __name__ == "__main__":
    main()

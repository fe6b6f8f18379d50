r"""Env steps per second of our football layer against gfootball's raw engine, on one CPU core.

    OMP_NUM_THREADS=1 taskset -c 1 python recipes/benchmarks/benchmark_football.py  # 3 vs 1, 8 copies
    python recipes/benchmarks/benchmark_football.py --scenario academy_counterattack_easy --num-envs 4 8 --steps 400

For every number of copies, each measurement runs ``--steps`` vector steps with uniformly
random actions (19 per player), in this process:

* raw: ``num_envs`` of gfootball's ``FootballEnv`` (what ``create_environment`` wraps)
  stepped one after another, each reward passed through ``CheckpointRewardWrapper`` and
  each observation through ``Simple115StateWrapper.convert_observation`` (the same work
  our layer asks of gfootball), a finished copy reset at once;
* ours: :class:`~harl_torchrl.envs.FootballTeamEnv` through ``step_and_maybe_reset`` (what
  TorchRL's ``Collector`` calls): torch tensors, the state, the flags, and the resets.

Steps per second count env steps summed over copies; rounds are interleaved, medians are
printed, and the ratio is taken within each round. The recipes' layout is 8 copies per
run (``env.num_envs``), optionally spread over ``collector.workers`` processes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from harl_torchrl.envs import make_football_env
from harl_torchrl.envs.football import FOOTBALL_SCENARIOS, import_gfootball


def raw_measure(scenario: str, num_envs: int, steps: int):
    config, football_env, wrappers = import_gfootball()
    n = FOOTBALL_SCENARIOS[scenario]
    envs, shaped = [], []
    for i in range(num_envs):
        cfg = config.Config({"level": scenario, "players": [f"agent:left_players={n}"], "game_engine_random_seed": i})
        envs.append(football_env.FootballEnv(cfg))
        shaped.append(wrappers.CheckpointRewardWrapper(envs[-1]))
        wrappers.Simple115StateWrapper.convert_observation(shaped[-1].reset(), True)
    rng = np.random.default_rng(0)

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            actions = rng.integers(0, 19, size=(num_envs, n))
            for env, wrapper, action in zip(envs, shaped, actions, strict=True):
                obs, reward, done, _ = env.step(action.tolist())
                wrapper.reward(np.asarray(reward, dtype=np.float64))
                wrappers.Simple115StateWrapper.convert_observation(obs, True)
                if done:
                    wrappers.Simple115StateWrapper.convert_observation(wrapper.reset(), True)
        return num_envs * steps / (time.perf_counter() - start)

    return measure, envs


def ours_measure(scenario: str, num_envs: int, steps: int):
    env = make_football_env(scenario, num_envs=num_envs, seed=0)
    td = env.reset()
    generator = torch.Generator().manual_seed(0)

    def act(td):
        for name in env.agent_names:
            td[name, "action"] = torch.randint(0, 19, env.batch_size, generator=generator)
        return td

    def measure() -> float:
        nonlocal td
        start = time.perf_counter()
        for _ in range(steps):
            _, td = env.step_and_maybe_reset(act(td))
        return num_envs * steps / (time.perf_counter() - start)

    return measure, [env]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="academy_3_vs_1_with_keeper", choices=sorted(FOOTBALL_SCENARIOS))
    parser.add_argument("--num-envs", type=int, nargs="+", default=[8])
    parser.add_argument("--steps", type=int, default=300, help="vector steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.scenario}: {args.steps} vector steps x {args.rounds} rounds, random actions, one process")
    print(f"{'copies':>6} {'raw steps/s':>12} {'ours steps/s':>13} {'ours / raw':>11}")
    for num_envs in args.num_envs:
        raw, raw_envs = raw_measure(args.scenario, num_envs, args.steps)
        ours, our_envs = ours_measure(args.scenario, num_envs, args.steps)
        raw(), ours()  # warm-up: engines built, first episodes under way
        rows = [(raw(), ours()) for _ in range(args.rounds)]
        raw_rate = statistics.median(r for r, _ in rows)
        our_rate = statistics.median(o for _, o in rows)
        ratio = statistics.median(o / r for r, o in rows)
        print(f"{num_envs:>6} {raw_rate:>12,.0f} {our_rate:>13,.0f} {ratio:>11.2f}")
        for env in raw_envs + our_envs:
            env.close()


if __name__ == "__main__":
    main()

"""Env steps per second of our PettingZoo MPE and MaMuJoCo layers against the raw envs.

    python recipes/benchmarks/benchmark_envs.py               # MPE simple_spread + HalfCheetah 2x3, 1 and 16 copies
    python recipes/benchmarks/benchmark_envs.py --num-envs 1 4 32 --rounds 7 --frames 6000
    python recipes/benchmarks/benchmark_envs.py --tasks mpe:simple_speaker_listener mamujoco:Hopper:3x1

For every task and number of copies it measures, each over ``--frames`` frames:

* raw: that many ``parallel_env`` copies (``mpe2.<scenario>.parallel_env`` or
  ``mamujoco_v1.parallel_env``) stepped in one Python loop with random actions sampled
  from the raw action spaces ahead of time, each copy reset when it finishes;
* ours: :class:`~harl_torchrl.envs.MPETeamEnv` / :class:`~harl_torchrl.envs.MaMuJoCoTeamEnv`
  with the same number of copies, through ``step_and_maybe_reset`` (what TorchRL's
  ``Collector`` calls) with random actions sampled from its specs ahead of time;
  MaMuJoCo in both observation modes;
* TorchRL's generic ``PettingZooWrapper(return_state=True)`` (one copy, or a
  ``SerialEnv`` of copies), the same way; a failure is reported as such.

Steps per second count env steps summed over copies. Measurements are interleaved
round by round (this machine's speed drifts by tens of percent over minutes); the
table gives medians over the rounds after a warm-up round, and the ratios to raw are
computed within each round, then their median is printed.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
import warnings
from collections.abc import Callable

from harl_torchrl.envs import make_mamujoco_env, make_pettingzoo_env
from harl_torchrl.envs.mamujoco import mujoco_warnings_as_python_warnings
from harl_torchrl.envs.pettingzoo import MPE_SCENARIOS

Measure = Callable[[], float]


def raw_parallel(make: Callable[[int], object], num_envs: int, frames: int) -> Measure:
    """Times ``num_envs`` raw parallel envs stepped in a loop with pre-sampled actions."""
    envs = [make(i) for i in range(num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    steps = max(1, frames // num_envs)
    agents = list(envs[0].possible_agents)
    actions = [[{a: env.action_space(a).sample() for a in agents} for env in envs] for _ in range(steps)]

    def measure() -> float:
        start = time.perf_counter()
        for step_actions in actions:
            for env, action in zip(envs, step_actions, strict=True):
                _, _, terminations, truncations, _ = env.step(action)
                if any(terminations.values()) or any(truncations.values()):
                    env.reset()
        return steps * num_envs / (time.perf_counter() - start)

    return measure


def torchrl_env(env, num_envs: int, frames: int) -> Measure:
    """Times a batched TorchRL env through ``step_and_maybe_reset`` with pre-sampled actions."""
    steps = max(1, frames // num_envs)
    actions = [env.full_action_spec.rand() for _ in range(steps)]
    state = {"td": env.reset()}

    def measure() -> float:
        td = state["td"]
        start = time.perf_counter()
        for action in actions:
            td.update(action)
            _, td = env.step_and_maybe_reset(td)
        elapsed = time.perf_counter() - start
        state["td"] = td
        return steps * num_envs / elapsed

    return measure


def pettingzoo_wrapper(make: Callable[[], object], num_envs: int, frames: int) -> Measure:
    from torchrl.envs import SerialEnv
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper

    def wrapped():
        return PettingZooWrapper(env=make(), return_state=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "PettingZoo in TorchRL is tested using version == 1.24.3"
        env = wrapped() if num_envs == 1 else SerialEnv(num_envs, wrapped)
        env.set_seed(0)
        measure = torchrl_env(env, num_envs, frames)
        measure()  # fail here, not mid-table
    return measure


def build(task: str, num_envs: int, frames: int) -> dict[str, Measure | str]:
    """The measurements of one task; a string where a measurement could not be built."""
    family, *rest = task.split(":")
    out: dict[str, Measure | str] = {}
    if family == "mpe":
        (scenario,) = rest
        module = importlib.import_module(f"mpe2.{MPE_SCENARIOS[scenario]}")

        def make(i: int = 0):
            return module.parallel_env(max_cycles=25, continuous_actions=True)

        out["raw parallel_env loop"] = raw_parallel(make, num_envs, frames)
        out["ours (MPETeamEnv)"] = torchrl_env(
            make_pettingzoo_env(scenario, num_envs=num_envs, max_steps=25, seed=0), num_envs, frames
        )
    elif family == "mamujoco":
        scenario, agent_conf = rest
        from gymnasium_robotics import mamujoco_v1

        def make(i: int = 0):
            with mujoco_warnings_as_python_warnings():
                return mamujoco_v1.parallel_env(scenario, agent_conf)

        out["raw parallel_env loop"] = raw_parallel(make, num_envs, frames)
        for mode in ("local", "global"):
            env = make_mamujoco_env(scenario, agent_conf, num_envs=num_envs, obs_mode=mode, seed=0)
            out[f"ours (MaMuJoCoTeamEnv, obs_mode={mode})"] = torchrl_env(env, num_envs, frames)
    else:
        raise SystemExit(f"unknown task {task!r}: use mpe:<scenario> or mamujoco:<scenario>:<agent_conf>")
    try:
        out["TorchRL PettingZooWrapper"] = pettingzoo_wrapper(make, num_envs, frames)
    except Exception as err:  # reported in the table
        out["TorchRL PettingZooWrapper"] = f"fails: {type(err).__name__}: {err}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["mpe:simple_spread", "mamujoco:HalfCheetah:2x3"])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--frames", type=int, default=3000, help="env steps (summed over copies) per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after one warm-up round)")
    args = parser.parse_args()
    print(f"{args.frames} frames per measurement, medians over {args.rounds} interleaved rounds")
    for task in args.tasks:
        for num_envs in args.num_envs:
            measurements = build(task, num_envs, args.frames)
            timed = {name: m for name, m in measurements.items() if callable(m)}
            samples: dict[str, list[float]] = {name: [] for name in timed}
            ratios: dict[str, list[float]] = {name: [] for name in timed}
            for round_ in range(args.rounds + 1):
                # interleaved, so that a slow spell of the machine hits every measurement alike
                measured = {name: measure() for name, measure in timed.items()}
                if round_ == 0:
                    continue  # warm-up
                for name, value in measured.items():
                    samples[name].append(value)
                    ratios[name].append(value / measured["raw parallel_env loop"])
            print(f"\n## {task}, {num_envs} cop{'y' if num_envs == 1 else 'ies'}\n")
            print(f"| {'implementation':<42} | {'steps/s':>9} | {'x raw':>5} | per-round x raw")
            print(f"|{'-' * 44}|{'-' * 11}|{'-' * 7}|{'-' * 24}")
            for name, measurement in measurements.items():
                if not callable(measurement):
                    print(f"| {name:<42} | {'-':>9} | {'-':>5} | {measurement[:110]}")
                    continue
                per_round = ", ".join(f"{r:.2f}" for r in ratios[name])
                print(
                    f"| {name:<42} | {statistics.median(samples[name]):>9,.0f} | "
                    f"{statistics.median(ratios[name]):>5.2f} | {per_round}"
                )


if __name__ == "__main__":
    main()

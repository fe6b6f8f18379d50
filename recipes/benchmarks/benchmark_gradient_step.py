r"""Our HATD3 gradient step against a minimal plain-PyTorch one of the same math, interleaved in one process.

    python recipes/benchmarks/benchmark_gradient_step.py                  # MPE simple_spread, batch 1000, 128x128
    python recipes/benchmarks/benchmark_gradient_step.py --rounds 20 --transitions 20000
    python recipes/benchmarks/benchmark_gradient_step.py --profile 100    # cProfile of 100 of our steps, then exit

The reference settings of ``algo=hatd3`` on ``env=pettingzoo/simple_spread`` (twin critic,
policy delay 2, target smoothing, 128x128 plain MLPs, batch 1000), one torch thread. The
replay buffer is filled with ``--transitions`` random-action transitions of the env
(the warm-up's), and the minimal version (``minimal_hatd3.py``, plain tensors and
``nn.Linear``) starts from our parameters and a copy of our buffer's rows
(``tests/recipes/test_minimal_hatd3.py`` checks it computes what ours computes).

One round times, in turn, ours and the minimal version on:

* **gradient step**: a block of ``--steps`` gradient steps (default: one iteration of the
  reference, ``algo.train_interval x algo.updates_per_step`` = 50), each on a freshly
  sampled batch, as the run loop takes them (ours: ``OffPolicyUpdater.run``, which keeps
  the diagnostics of the last steps only, what the loop logs);
* **same batch**: the same block on one batch sampled beforehand (the update alone);
* **sampling alone**: ``--steps`` draws of a batch (ours: ``NStepReplayBuffer.sample``;
  minimal: ``torch.randint`` and one ``index_select`` per stored tensor).

Printed: min and median over rounds of the CPU milliseconds (the process's CPU time, not
wall time, so that time spent waiting for a shared core does not count) per gradient step
(or per draw), and the ratios ours / minimal of the mins and of the medians.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import harl_torchrl.conf
from harl_torchrl.config import env_config
from harl_torchrl.config.hydra_checks import compose_run_config
from harl_torchrl.off_policy import make_off_policy_components

CONF = Path(harl_torchrl.conf.__file__).resolve().parent
HERE = Path(__file__).resolve().parent


def _minimal_module():
    spec = importlib.util.spec_from_file_location("minimal_hatd3", HERE / "minimal_hatd3.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def build(args: argparse.Namespace):
    """Our components with a filled buffer, and the minimal version with a copy of it."""
    overrides = [
        "algo=hatd3",
        "env=pettingzoo/simple_spread",
        f"algo.batch_size={args.batch_size}",
        f"model.hidden_sizes=[{','.join(str(h) for h in args.hidden)}]",
        *args.overrides,
    ]
    cfg = compose_run_config(CONF, overrides)
    env = env_config(cfg.env).make(num_envs=args.envs, seed=args.seed, device="cpu")
    torch.manual_seed(args.seed)
    components = make_off_policy_components(cfg.algo, cfg.model, env, seed=args.seed)
    components.warmup.active = True  # random actions, as the reference's warm-up
    steps = -(-args.transitions // args.envs) + components.buffer.n_steps
    components.buffer.extend(env.rollout(steps, components.policy, break_when_any_done=False))
    env.close()
    minimal = _minimal_module()
    agents = list(components.actors)
    mine = minimal.from_components(components, seed=args.seed)
    replay = minimal.replay_from(components.buffer, agents)
    return cfg, components, minimal, mine, replay


def our_steps(components, steps: int, batch=None) -> None:
    """``steps`` of our gradient steps as the run loop takes them (on ``batch`` if given, else sampled)."""
    updater, buffer, size = components.updater, components.buffer, components.algo.batch_size
    sample = (lambda: batch) if batch is not None else (lambda: buffer.sample(size))
    if hasattr(updater, "run"):
        updater.run(sample, steps)
    else:  # a library from before OffPolicyUpdater.run: the loop OffPolicyComponents.train had
        latest = {}
        for _ in range(steps):
            latest.update(updater.step(sample()))


def _time(fn: Callable[[], None]) -> float:
    """CPU seconds of the process (not wall time: on a shared core, waiting for the CPU would count)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="gradient steps per timed block (default: 50)")
    parser.add_argument("--transitions", type=int, default=10_000, help="transitions in the buffer")
    parser.add_argument("--envs", type=int, default=20, help="env copies that collect them")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, help="cProfile this many of our gradient steps and exit")
    parser.add_argument("--overrides", nargs="*", default=[], help="further Hydra overrides of ours")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg, components, minimal, mine, replay = build(args)
    steps = args.steps or int(cfg.algo.train_interval * cfg.algo.updates_per_step)
    size = cfg.algo.batch_size
    print(
        f"HATD3 on MPE simple_spread: batch {size}, hidden {args.hidden}, {len(components.buffer)} transitions, "
        f"{steps} gradient steps per block, {args.rounds} rounds, {torch.get_num_threads()} thread(s)"
    )
    our_steps(components, 4)  # warm-up: first calls allocate
    for _ in range(4):
        mine.step(replay.sample(size))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        our_steps(components, args.profile)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        return

    def minimal_steps(batch=None) -> None:
        for _ in range(steps):
            mine.step(batch if batch is not None else replay.sample(size))

    def our_samples() -> None:
        for _ in range(steps):
            components.buffer.sample(size)

    def minimal_samples() -> None:
        for _ in range(steps):
            replay.sample(size)

    times: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        batch = components.buffer.sample(size)
        fixed = minimal.transitions_from(batch, list(components.actors))
        pairs = {
            "gradient step": (lambda: our_steps(components, steps), minimal_steps),
            "same batch": (
                lambda batch=batch: our_steps(components, steps, batch),
                lambda fixed=fixed: minimal_steps(fixed),
            ),
            "sampling alone": (our_samples, minimal_samples),
        }
        for name, (ours, theirs) in pairs.items():
            order = [("ours", ours), ("minimal", theirs)]
            for who, fn in order if round_ % 2 == 0 else order[::-1]:  # alternate who goes first
                times.setdefault(f"{name}/{who}", []).append(_time(fn) / steps)

    header = "ms per step (per draw) | ours min | ours median | minimal min | minimal median | ratio min | ratio median"
    print(f"\n| {header} |")
    print("|---|---|---|---|---|---|---|")
    for name in ("gradient step", "same batch", "sampling alone"):
        ours, theirs = times[f"{name}/ours"], times[f"{name}/minimal"]
        o_min, o_med = 1e3 * min(ours), 1e3 * statistics.median(ours)
        m_min, m_med = 1e3 * min(theirs), 1e3 * statistics.median(theirs)
        print(
            f"| {name} | {o_min:.2f} | {o_med:.2f} | {m_min:.2f} | {m_med:.2f} "
            f"| {o_min / m_min:.2f}x | {o_med / m_med:.2f}x |"
        )


if __name__ == "__main__":
    main()

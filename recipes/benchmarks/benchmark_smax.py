r"""Env steps per second of our SMAX layer against the raw JaxMARL env (jit + vmap), on the CPU.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" OMP_NUM_THREADS=1 \
        python recipes/benchmarks/benchmark_smax.py              # 3m, 64 and 512 copies
    python recipes/benchmarks/benchmark_smax.py --maps 3m 3s5z --num-envs 64 512 --steps 200 --rounds 3

For every map and number of copies, each measurement runs ``--steps`` vector steps:

* raw: JaxMARL's ``HeuristicEnemySMAX`` as the issue measured it: one jitted function
  that vmaps ``env.step`` (which resets finished copies itself) and draws each ally's
  action uniformly among its available ones, over all copies; the state stays in JAX;
* ours: :class:`~harl_torchrl.envs.SMAXTeamEnv` through ``step_and_maybe_reset`` (what
  TorchRL's ``Collector`` calls), each ally's action drawn uniformly among its available
  ones from the ``action_mask`` in torch (a policy's cheapest stand-in): outputs as
  torch tensors, terminal observations kept, finished copies reset from what the step call
  prepared.

Both are compiled and warmed up before timing. Steps per second count env steps summed
over copies; rounds are interleaved, medians are printed, and the ratio is taken within
each round.

Measured on this 2-core CPU shared with other runs (load average about 4; single-threaded
XLA), 3m, 200 steps x 5 rounds: 64 copies raw 67k, ours 19k steps/s (0.31); 512 copies raw
59k, ours 27k (0.52); three runs gave 0.17-0.37 and 0.39-0.61. Ours pays TorchRL's per-step
Python overhead (about 1 ms per vector step, which dominates at 64 copies).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harl_torchrl.envs import make_smax_env
from harl_torchrl.envs.smax import import_jaxmarl


def raw_measure(map_name: str, num_envs: int, steps: int):
    jax, make, maps = import_jaxmarl()
    import jax.numpy as jnp

    env = make("HeuristicEnemySMAX", scenario=maps[map_name])
    agents = env.agents

    def one(key, state):
        key, act_key, step_key = jax.random.split(key, 3)
        masks = env.get_avail_actions(state)
        act_keys = jax.random.split(act_key, len(agents))
        actions = {
            a: jax.random.categorical(k, jnp.log(masks[a].astype(jnp.float32)))
            for a, k in zip(agents, act_keys, strict=True)
        }
        _, state, _, dones, _ = env.step(step_key, state, actions)
        return key, state, dones["__all__"]

    step = jax.jit(jax.vmap(one))
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    _, state = jax.jit(jax.vmap(env.reset))(keys)
    for _ in range(3):  # the vmapped step compiles twice (weak types of the reset state)
        keys, state, done = step(keys, state)
    done.block_until_ready()

    def measure() -> float:
        nonlocal keys, state
        start = time.perf_counter()
        for _ in range(steps):
            keys, state, done = step(keys, state)
        done.block_until_ready()
        return steps * num_envs / (time.perf_counter() - start)

    return measure


def ours_measure(map_name: str, num_envs: int, steps: int):
    env = make_smax_env(map_name, num_envs=num_envs, seed=0)
    generator = torch.Generator().manual_seed(0)
    agents = env.agent_names
    td = env.reset()

    def act(td):
        for agent in agents:
            mask = td[agent, "action_mask"].float()
            td[agent, "action"] = torch.multinomial(mask, 1, generator=generator).squeeze(-1)
        return td

    for _ in range(40):  # compiles the step and, once a battle ends, the partial reset
        _, td = env.step_and_maybe_reset(act(td))

    def measure() -> float:
        nonlocal td
        start = time.perf_counter()
        for _ in range(steps):
            _, td = env.step_and_maybe_reset(act(td))
        return steps * num_envs / (time.perf_counter() - start)

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", nargs="+", default=["3m"])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--steps", type=int, default=200, help="vector steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("| map | copies | raw steps/s | ours steps/s | ours / raw |")
    print("|---|---|---|---|---|")
    for map_name in args.maps:
        for num_envs in args.num_envs:
            raw, ours = raw_measure(map_name, num_envs, args.steps), ours_measure(map_name, num_envs, args.steps)
            rows = [(raw(), ours()) for _ in range(args.rounds)]
            raw_sps = statistics.median(r for r, _ in rows)
            ours_sps = statistics.median(o for _, o in rows)
            ratio = statistics.median(o / r for r, o in rows)
            print(f"| {map_name} | {num_envs} | {raw_sps:,.0f} | {ours_sps:,.0f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()

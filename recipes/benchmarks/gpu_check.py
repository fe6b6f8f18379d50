r"""A GPU check anyone can run: the VMAS recipe on CUDA end to end, tensors on the device, the first update the CPU's.

    python recipes/benchmarks/gpu_check.py                   # CUDA: 4,096 and 32,768 envs, HAPPO and MAPPO
    python recipes/benchmarks/gpu_check.py --envs 4096 --algos happo --iterations 2
    python recipes/benchmarks/gpu_check.py --device cpu      # the same checks on the CPU, at small sizes (the test's)

Without CUDA (and without ``--device cpu``) it says so and exits 0: the project never
needs a GPU to install or pass its tests. One call on a GPU machine takes a few minutes.

The recipe is the default one (``recipes/train.py``: HAPPO, or ``algo=mappo``, on VMAS
``balance`` with 4 agents, the 128x128 MLPs), composed through the recipe config
(``compose_run_config``) with ``device``, ``env.num_envs``, ``total_frames`` and
``collector.rollout_steps`` set, evaluation off, and trained by
:func:`harl_torchrl.run.run`, the loop ``harl-train`` runs. For each algorithm:

1. **The first update, CPU against the device.** One set of components is built on the
   CPU from the seed and a copy of it on the device (the same parameters, loaded from
   the CPU's state dict); one batch of ``--compare-envs x --compare-steps`` frames is
   collected on the CPU and given to both. Compared: the deterministic policy's actions
   on the batch's observations, every diagnostic of the first update (losses, KL,
   entropies, gradient norms, ...) and every parameter after it. The batch is shared
   because a whole run cannot be compared element by element: VMAS's resets and the
   policy's sampling draw from the device's random generator, which is not the CPU's
   (the same seed gives other episodes on CUDA). Tolerances: float32 matrix products on
   the GPU sum in another order than on the CPU (about 1e-7 relative per product; TF32
   is off unless torch says otherwise, printed below), and five epochs of Adam carry
   such differences into the parameters. Actions: max abs difference ``1e-5``;
   diagnostics: ``|gpu - cpu| <= 1e-4 + 1e-3 |cpu|``; parameters after the update: max
   abs difference ``1e-4`` (5% of the largest move five Adam epochs at lr 5e-4 can make).
   On the CPU path both sides are CPU runs and must be bit-identical.
2. **End to end on the device**, at each ``--envs``: ``--iterations`` iterations of the
   recipe through ``run()``, with probes on the components' ``train``: every tensor of the
   collected batch, of the batch after the update (values, advantages) and every
   parameter, buffer and optimiser moment after it lives on the device (Adam's step
   counts excepted: PyTorch keeps them on the CPU by design).
3. **Frames per second**, from the run's ``metrics.csv``: collection (frames over the
   loop's collection time) and update (frames over its update time), the first
   iteration left out when there are more (CUDA's start-up), and the peak device memory.

Exit status 1 when a check fails (all checks run first). The results also go to
``<out>/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

import harl_torchrl.conf
from harl_torchrl.algorithms import OnPolicyComponents
from harl_torchrl.collection import make_collector
from harl_torchrl.config.hydra_checks import compose_run_config
from harl_torchrl.config.run import validate_run_config
from harl_torchrl.run import run
from harl_torchrl.utils.rng import seed_everything

CONF = Path(harl_torchrl.conf.__file__).resolve().parent
ACTION_ATOL = 1e-5
DIAGNOSTIC_ATOL, DIAGNOSTIC_RTOL = 1e-4, 1e-3
PARAMETER_ATOL = 1e-4
CUDA_SIZES = [4096, 32768]
CPU_SIZES = [64, 128]  # the CPU path's defaults: the same checks, small


def recipe_config(algo: str, *, envs: int, steps: int, iterations: int, device: str, seed: int):
    """The default recipe (VMAS balance, 4 agents) composed as ``recipes/train.py`` does, with the sizes set."""
    return compose_run_config(
        CONF,
        [
            f"algo={algo}",
            "env=vmas/balance",
            f"env.num_envs={envs}",
            f"collector.rollout_steps={steps}",
            f"total_frames={envs * steps * iterations}",
            f"device={device}",
            f"seed={seed}",
            "eval.episodes=0",
            "logger.progress_bar=false",
        ],
    )


# --- where tensors live ------------------------------------------------------------------------


def _same_device(tensor: torch.Tensor, device: torch.device) -> bool:
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def _tensors(obj: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, TensorDictBase):
        for key, value in obj.items(include_nested=True, leaves_only=True):
            yield f"{path}/{'/'.join(key) if isinstance(key, tuple) else key}", value
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{path}/{key}")
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{path}/{index}")


def off_device(obj: Any, device: torch.device, what: str) -> list[str]:
    """``what/key (device)`` for every tensor of ``obj`` not on ``device`` (Adam's ``step`` counts excepted)."""
    return [
        f"{what}{path} ({tensor.device})"
        for path, tensor in _tensors(obj)
        if not _same_device(tensor, device) and not path.endswith("/step")
    ]


@contextlib.contextmanager
def device_probes(device: torch.device, calls: list[dict[str, Any]]) -> Iterator[None]:
    """Checks, around every ``OnPolicyComponents.train`` of a run, that its tensors stay on ``device``.

    The batch as collected, the batch after the update, and the actors', critic's and
    optimisers' tensors after it; a tensor elsewhere raises ``AssertionError``. Each
    call appends what it checked to ``calls``.
    """
    original = OnPolicyComponents.train

    def train(self: OnPolicyComponents, batch: TensorDictBase, *, frames: int, iteration: int) -> dict[str, float]:
        misplaced = off_device(batch, device, "collected batch")
        diagnostics = original(self, batch, frames=frames, iteration=iteration)
        state = self.state_dict()
        misplaced += off_device(batch, device, "batch after the update")
        for part in ("actors", "critic", "actor_optimizers", "critic_optimizers"):
            misplaced += off_device(state[part], device, part)
        checked = sum(1 for _ in _tensors(batch)) + sum(1 for p in ("actors", "critic") for _ in _tensors(state[p]))
        calls.append({"iteration": iteration, "tensors_checked": checked, "misplaced": misplaced[:10]})
        if misplaced:
            raise AssertionError(f"iteration {iteration}: tensors off {device}: {', '.join(misplaced[:10])}")
        return diagnostics

    OnPolicyComponents.train = train
    try:
        yield
    finally:
        OnPolicyComponents.train = original


# --- 1. the first update, CPU against the device ----------------------------------------------


def _state_tensors(components: OnPolicyComponents) -> dict[str, torch.Tensor]:
    state = components.state_dict()
    return {path: t for part in ("actors", "critic") for path, t in _tensors(state[part], part)}


def compare_first_update(algo: str, device: torch.device, *, envs: int, steps: int, seed: int) -> dict[str, Any]:
    """The first update of the recipe on the CPU and on ``device``, from the same parameters and batch."""
    typed = validate_run_config(recipe_config(algo, envs=envs, steps=steps, iterations=1, device="cpu", seed=seed))
    seed_everything(seed)
    env = typed.env.make(seed=seed, device="cpu")
    cpu = typed.algo.build(env, typed.model, device="cpu", seed=seed)
    on_device = typed.algo.build(
        typed.env.make(num_envs=2, seed=seed, device=device), typed.model, device=device, seed=seed
    )
    on_device.load_state_dict(cpu.state_dict())  # the same start, whatever the device's initialisation
    frames = envs * steps
    collector = make_collector(env, cpu.policy, frames_per_batch=frames, total_frames=frames, seed=seed, device="cpu")
    batch = next(iter(collector))
    collector.shutdown()
    for components in (cpu, on_device):
        components.start(frames=0, total_iterations=1)

    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        acted_cpu = cpu.policy(batch.clone())
        acted_device = on_device.policy(batch.clone().to(device))
    action_keys = [(agent, "action") for agent in cpu.actors]
    action_diff = max((acted_device.get(k).cpu() - acted_cpu.get(k)).abs().max().item() for k in action_keys)

    diag_cpu = cpu.train(batch.clone(), frames=frames, iteration=1)
    diag_device = on_device.train(batch.clone().to(device), frames=frames, iteration=1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    worst_diag, worst_key, failed = -1.0, "", []
    for key, value in diag_cpu.items():
        other = diag_device.get(key, math.nan)
        excess = abs(other - value) / (DIAGNOSTIC_ATOL + DIAGNOSTIC_RTOL * abs(value))
        if not excess <= 1.0:  # NaN fails too
            failed.append(f"{key}: cpu {value:.6g} vs {device.type} {other:.6g}")
        if excess > worst_diag or math.isnan(excess):
            worst_diag, worst_key = excess, key
    params_cpu, params_device = _state_tensors(cpu), _state_tensors(on_device)
    param_diff = max(
        (params_device[k].cpu().double() - t.double()).abs().max().item()
        for k, t in params_cpu.items()
        if t.is_floating_point()
    )
    exact = device.type == "cpu"  # both sides CPU runs: bit-identical
    problems = list(failed)
    if action_diff > (0.0 if exact else ACTION_ATOL):
        problems.append(f"deterministic actions differ by {action_diff:.3g}")
    if param_diff > (0.0 if exact else PARAMETER_ATOL):
        problems.append(f"parameters after the update differ by {param_diff:.3g}")
    if exact and any(diag_device.get(k) != v for k, v in diag_cpu.items()):
        problems.append("diagnostics differ between two CPU runs")
    return {
        "algo": algo,
        "frames": frames,
        "max_action_diff": action_diff,
        "max_parameter_diff": param_diff,
        "worst_diagnostic": worst_key,
        "worst_diagnostic_fraction_of_tolerance": worst_diag,
        "diagnostics_compared": len(diag_cpu),
        "problems": problems,
    }


# --- 2 and 3. end to end on the device, frames per second -------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("iteration")]


def train_on_device(
    algo: str, device: torch.device, *, envs: int, steps: int, iterations: int, seed: int, out: Path
) -> dict[str, Any]:
    """``iterations`` iterations of the recipe through ``run()`` with the device probes; its throughput."""
    cfg = recipe_config(algo, envs=envs, steps=steps, iterations=iterations, device=str(device), seed=seed)
    calls: list[dict[str, Any]] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    problems: list[str] = []
    start = time.perf_counter()
    try:
        with device_probes(device, calls):
            run(cfg, out / f"{algo}_{envs}")
    except AssertionError as err:
        problems.append(str(err))
    wall = time.perf_counter() - start
    rows = _rows(out / f"{algo}_{envs}" / "metrics.csv") if (out / f"{algo}_{envs}" / "metrics.csv").exists() else []
    steady = rows[1:] if len(rows) > 1 else rows  # the first iteration pays CUDA's start-up
    frames = envs * steps
    collect = sum(frames / float(r["collect_fps"]) for r in steady)
    update = sum(float(r["update_seconds"]) for r in steady)
    if len(calls) != iterations and not problems:
        problems.append(f"{len(calls)} updates probed, {iterations} expected")
    return {
        "algo": algo,
        "envs": envs,
        "frames_per_iteration": frames,
        "iterations": len(rows),
        "collection_fps": len(steady) * frames / collect if collect else math.nan,
        "update_fps": len(steady) * frames / update if update else math.nan,
        "end_to_end_fps": len(steady) * frames / (collect + update) if collect + update else math.nan,
        "wall_seconds": wall,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan,
        "tensors_checked_per_update": calls[-1]["tensors_checked"] if calls else 0,
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for the CPU path")
    parser.add_argument("--envs", type=int, nargs="+", default=None, help=f"CUDA: {CUDA_SIZES}; CPU: {CPU_SIZES}")
    parser.add_argument("--algos", nargs="+", default=["happo", "mappo"])
    parser.add_argument("--iterations", type=int, default=None, help="per run (CUDA: 3; CPU: 2)")
    parser.add_argument(
        "--rollout-steps", type=int, default=None, help="per iteration (CUDA: 100, the recipe's; CPU: 10)"
    )
    parser.add_argument("--compare-envs", type=int, default=None, help="the comparison batch (CUDA: 1024; CPU: 32)")
    parser.add_argument("--compare-steps", type=int, default=None, help="(CUDA: 20; CPU: 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="run dirs and gpu_check.json (default: a temp dir)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here (torch.cuda.is_available() is False): nothing to check.")
        print("Run it on a CUDA machine, or its checks on the CPU: python recipes/benchmarks/gpu_check.py --device cpu")
        return 0
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cuda = device.type == "cuda"
    sizes = args.envs or (CUDA_SIZES if cuda else CPU_SIZES)
    iterations = args.iterations or (3 if cuda else 2)
    steps = args.rollout_steps or (100 if cuda else 10)
    compare_envs, compare_steps = (
        args.compare_envs or (1024 if cuda else 32),
        args.compare_steps or (20 if cuda else 10),
    )
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    out.mkdir(parents=True, exist_ok=True)

    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    tf32 = torch.backends.cuda.matmul.allow_tf32 if cuda else False
    print(f"gpu_check on {device} ({name}); torch {torch.__version__}; TF32 matmul: {tf32}; out: {out}")
    comparisons, runs = [], []
    for algo in args.algos:
        result = compare_first_update(algo, device, envs=compare_envs, steps=compare_steps, seed=args.seed)
        comparisons.append(result)
        print(
            f"[compare] {algo}: {result['frames']} frames, first update on {device.type} vs cpu: "
            f"actions max |diff| {result['max_action_diff']:.3g}, parameters max |diff| "
            f"{result['max_parameter_diff']:.3g}, worst of {result['diagnostics_compared']} diagnostics "
            f"{result['worst_diagnostic']} at {result['worst_diagnostic_fraction_of_tolerance']:.3g} of its tolerance"
            + (f"; FAILED: {'; '.join(result['problems'])}" if result["problems"] else "; ok")
        )
        for envs in sizes:
            result = train_on_device(
                algo, device, envs=envs, steps=steps, iterations=iterations, seed=args.seed, out=out
            )
            runs.append(result)
            print(
                f"[train] {algo} x {envs} envs: {result['iterations']} iterations of "
                f"{result['frames_per_iteration']:,} frames, tensors on {device}: "
                f"{'ok' if not result['problems'] else 'FAILED: ' + result['problems'][0]}"
            )
            sys.stdout.flush()

    print(f"\nVMAS balance, 4 agents, {steps} steps per iteration, {iterations} iterations ({name}):\n")
    print("| algo | envs | collection frames/s | update frames/s | end to end frames/s | peak memory GiB |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['algo']} | {r['envs']:,} | {r['collection_fps']:,.0f} | {r['update_fps']:,.0f} "
            f"| {r['end_to_end_fps']:,.0f} | {r['peak_memory_gib']:.1f} |"
        )
    problems = [p for r in (*comparisons, *runs) for p in r["problems"]]
    summary = {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "tf32_matmul": tf32,
        "rollout_steps": steps,
        "iterations": iterations,
        "tolerances": {
            "action_atol": ACTION_ATOL,
            "diagnostic_atol": DIAGNOSTIC_ATOL,
            "diagnostic_rtol": DIAGNOSTIC_RTOL,
            "parameter_atol": PARAMETER_ATOL,
        },
        "comparisons": comparisons,
        "runs": runs,
        "ok": not problems,
    }
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'all checks passed' if not problems else f'{len(problems)} check(s) FAILED'}; {out / 'gpu_check.json'}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

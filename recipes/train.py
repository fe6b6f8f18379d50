"""Train an on-policy heterogeneous-agent algorithm on a multi-agent environment.

    python recipes/train.py                                   # HAPPO, VMAS balance, 4 agents, CPU
    python recipes/train.py env=vmas/navigation total_frames=1_000_000
    python recipes/train.py env.scenario=wheel env.scenario_kwargs.n_agents=3 device=cuda
    python recipes/train.py resume=outputs/.../checkpoint.pt

Reads top to bottom: build the env, the per-agent actors and the centralised critic,
the losses and the sequential updater; then collect -> GAE -> update, with periodic
evaluation and checkpoints. Logs go to ``<run dir>/metrics.csv``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm import tqdm

from harl_torchrl.algorithms import make_on_policy_components
from harl_torchrl.collection import make_collector
from harl_torchrl.config import validate_run_config
from harl_torchrl.envs import make_env
from harl_torchrl.errors import ConfigError, MissingDependencyError
from harl_torchrl.evaluation import evaluate
from harl_torchrl.training import episode_stats, flatten_metrics, load_on_policy_state, on_policy_state
from harl_torchrl.utils.checkpoint import load_checkpoint, save_checkpoint, seed_everything
from harl_torchrl.utils.device import resolve_device
from harl_torchrl.utils.logging import MetricLogger


def run(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Trains as ``cfg`` says, writing logs and checkpoints under ``output_dir``."""
    validate_run_config(cfg)  # fails here, before anything is built, on any bad setting
    output_dir = Path(output_dir)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    # Environments: one for training, one for deterministic evaluation.
    env = make_env(cfg.env, seed=cfg.seed, device=device)
    eval_env = (
        make_env(cfg.env, num_envs=cfg.eval.episodes, seed=cfg.seed + 1, device=device) if cfg.eval.episodes else None
    )
    eval_steps = cfg.env.max_steps or 1000

    # Per-agent actors, the centralised critic (normalised values, reference semantics),
    # their losses and optimisers, all driven by the one sequential updater.
    parts = make_on_policy_components(cfg.algo, cfg.model, env, device=device, seed=cfg.seed)
    env = parts.prepare_env(env)  # recurrent networks need episode-start markers and hidden states
    eval_env = parts.prepare_env(eval_env) if eval_env is not None else None

    frames, iteration = 0, 0
    if cfg.resume:
        frames, iteration = load_on_policy_state(
            load_checkpoint(cfg.resume, device), parts.actors, parts.critic, parts.updater
        )
        print(f"resumed from {cfg.resume} at {frames} frames (iteration {iteration})")

    frames_per_batch = env.batch_size.numel() * cfg.collector.rollout_steps
    iterations_left = max(0, math.ceil((cfg.total_frames - frames) / frames_per_batch))
    collector = make_collector(
        env,
        parts.policy,
        frames_per_batch=frames_per_batch,
        total_frames=iterations_left * frames_per_batch,
        workers=cfg.collector.get("workers", 1),
        env_cfg=cfg.env,
        seed=cfg.seed,
        device=device,
        prepare_env=parts.prepare_env,
    )
    logger = MetricLogger(output_dir, cfg.logger.backends, resume=bool(cfg.resume))
    checkpoint_path = output_dir / "checkpoint.pt"
    progress = tqdm(total=cfg.total_frames, initial=frames, unit="frames", disable=not cfg.logger.progress_bar)
    metrics: dict[str, float] = {}

    def checkpoint() -> None:
        save_checkpoint(
            checkpoint_path,
            on_policy_state(parts.actors, parts.critic, parts.updater, frames=frames, iteration=iteration),
        )

    collect_start = time.perf_counter()
    for batch in collector:
        collect_time = time.perf_counter() - collect_start
        update_start = time.perf_counter()
        parts.compute_advantage(batch)
        diagnostics = parts.updater.update(batch)
        if cfg.collector.get("workers", 1) > 1:
            collector.update_policy_weights_()  # the worker processes get the new policy
        update_time = time.perf_counter() - update_start
        frames += batch.numel()
        iteration += 1

        metrics = {"iteration": iteration, **episode_stats(batch), **flatten_metrics(diagnostics)}
        metrics["collect_fps"] = batch.numel() / collect_time
        metrics["update_seconds"] = update_time
        if eval_env is not None and cfg.eval.interval and iteration % cfg.eval.interval == 0:
            metrics.update({f"eval/{k}": v for k, v in evaluate(eval_env, parts.policy, eval_steps).items()})
        logger.log(metrics, step=frames)
        if cfg.checkpoint.interval and iteration % cfg.checkpoint.interval == 0:
            checkpoint()
        progress.update(batch.numel())
        progress.set_postfix(ret=f"{metrics['episode_return_mean']:.3f}")
        collect_start = time.perf_counter()

    collector.shutdown()
    progress.close()
    if eval_env is not None:
        final_eval = evaluate(eval_env, parts.policy, eval_steps)
        metrics.update({f"eval/{k}": v for k, v in final_eval.items()})
        logger.log({f"eval/{k}": v for k, v in final_eval.items()}, step=frames)
    checkpoint()
    logger.close()
    print(f"logs: {logger.csv_path}\ncheckpoint: {checkpoint_path}")
    return {"metrics": metrics, "frames": frames, "checkpoint": checkpoint_path, "log": logger.csv_path}


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: ``python recipes/train.py [overrides]``."""
    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, MissingDependencyError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()

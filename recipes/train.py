"""Train an on-policy heterogeneous-agent algorithm on a multi-agent environment.

    python recipes/train.py                                   # HAPPO, VMAS balance, 4 agents, CPU
    python recipes/train.py env=vmas/navigation total_frames=1_000_000
    python recipes/train.py preset=reference/humanoid_17x1_happo seed=1   # a published run's settings
    python recipes/train.py env.scenario=wheel env.scenario_kwargs.n_agents=3 device=cuda
    python recipes/train.py resume=outputs/.../checkpoint.pt total_frames=2_000_000
    python recipes/train.py resume=outputs/.../checkpoint.pt 'resume_override=[algo.actor_lr]' algo.actor_lr=1e-4

Reads top to bottom: build the env, the per-agent actors and the centralised critic,
the losses and the sequential updater; then collect -> GAE -> update, with periodic
evaluation and checkpoints. Logs go to ``<run dir>/metrics.csv``.

Guards (docs/checkpoints.rst): a resumed checkpoint must be intact and describe this
run; a NaN or infinity in a loss, gradient norm or parameter stops the run before it
is logged or saved (the last checkpoint stays the last good one); checkpoints hold the
envs' and the collector's state, so a resumed run continues the same episodes.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from harl_torchrl.algorithms import make_on_policy_components
from harl_torchrl.collection import make_collector
from harl_torchrl.config import RunConfig, validate_run_config
from harl_torchrl.config.hydra_checks import check_command_line, resume_run_dir
from harl_torchrl.envs import make_env
from harl_torchrl.errors import ConfigError, MissingDependencyError
from harl_torchrl.evaluation import evaluate
from harl_torchrl.rollout_state import capture_rollout_state
from harl_torchrl.run_guard import NonFiniteError, check_finite, open_resume, restore_run
from harl_torchrl.training import (
    episode_stats,
    flatten_metrics,
    linear_lr_factor,
    load_on_policy_state,
    on_policy_state,
    scale_learning_rates,
)
from harl_torchrl.utils.checkpoint import run_metadata, save_checkpoint, seed_everything
from harl_torchrl.utils.device import resolve_device, set_threads
from harl_torchrl.utils.logging import MetricLogger
from harl_torchrl.utils.progress import RunProgress
from harl_torchrl.video import EvaluationVideos, check_video_support


def run(cfg: DictConfig | RunConfig, output_dir: str | Path) -> dict[str, Any]:
    """Trains as ``cfg`` says, writing logs and checkpoints under ``output_dir``."""
    # The typed config (one schema instance per group), built and checked once, before anything
    # is built: unknown keys, wrong types and values out of range fail here, naming the key.
    cfg = validate_run_config(cfg)
    if cfg.eval.video_interval and cfg.eval.interval and cfg.eval.episodes:
        # a renderer, the video extra and the backends' encoders, before anything is built
        check_video_support(cfg.env.family, cfg.logger.backends)
    if cfg.algo.kind == "off_policy":  # HADDPG, HATD3, HASAC, HAD3QN, MADDPG, MATD3, MASAC: their own loop
        return _off_policy_loop().run(cfg, output_dir)
    output_dir = Path(output_dir)
    set_threads(cfg.threads)  # before anything is built: every net and env op of the run uses it
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    # Resume: the checkpoint must be intact and describe this run (algorithm, env, model),
    # unless resume_override names the settings that differ on purpose. Checked before
    # anything is built; the state itself is restored once the collector exists.
    resume = open_resume(cfg, device)
    frames, iteration = (resume.frames, resume.iteration) if resume else (0, 0)

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

    frames_per_batch = env.batch_size.numel() * cfg.collector.rollout_steps
    iterations_left = max(0, math.ceil((cfg.total_frames - frames) / frames_per_batch))
    total_iterations = max(1, math.ceil(cfg.total_frames / frames_per_batch))  # lr_decay's horizon
    workers = cfg.collector.get("workers", 1)
    collector = make_collector(
        env,
        parts.policy,
        frames_per_batch=frames_per_batch,
        total_frames=iterations_left * frames_per_batch,
        workers=workers,
        backend=str(cfg.collector.backend),
        env_cfg=cfg.env,
        seed=cfg.seed,
        device=device,
        prepare_env=parts.prepare_env,
    )
    remote = workers > 1 or cfg.collector.backend == "ray"  # the training envs live in the workers
    envs = {"train": None if remote else env, "eval": eval_env}
    if resume:
        # envs and the collector's carried step first (building the collector reset the env),
        # then networks, optimisers and, last, the random streams
        exact = restore_run(
            resume,
            collector,
            envs,
            lambda state: load_on_policy_state(state, parts.actors, parts.critic, parts.updater),
        )
        episodes = "same episodes" if "train" in exact else "fresh episodes"
        print(f"resumed from {resume.path} at {frames} frames (iteration {iteration}, {episodes})")
        if resume.accepted:
            print(f"resume_override: these settings now differ from the checkpoint's: {', '.join(resume.accepted)}")
    logger = MetricLogger(
        output_dir,
        cfg.logger.backends,
        resume=resume is not None,
        resume_step=frames if resume else None,  # rows an interrupted run logged after its checkpoint go
        previous_log=resume.path.parent / "metrics.csv" if resume else None,  # a new run dir gets the old rows
        config=cfg.to_dict(),  # the W&B / MLflow run's hyperparameters
    )
    checkpoint_path = output_dir / "checkpoint.pt"
    checkpoint_every = cfg.checkpoint.every(frames_per_batch, off_policy=False)
    progress = RunProgress.start(
        cfg,
        agents=list(parts.actors),
        frames_per_batch=frames_per_batch,
        iterations=iterations_left,
        start_frames=frames,
        run_dir=output_dir,
        device=device,
    )
    metrics: dict[str, float] = {}
    videos = EvaluationVideos(
        cfg.eval,
        cfg.env,
        parts.policy,
        eval_steps,
        output_dir,
        seed=cfg.seed + 2,
        device=device,
        prepare_env=getattr(parts, "prepare_env", None),
        logger=logger,
    )
    trained = {**parts.actors, "critic": parts.critic}

    def checkpoint() -> None:
        save_checkpoint(
            checkpoint_path,
            on_policy_state(
                parts.actors,
                parts.critic,
                parts.updater,
                frames=frames,
                iteration=iteration,
                rollout=capture_rollout_state(collector, envs),
            ),
            metadata=run_metadata(cfg, frames=frames, iteration=iteration),
        )

    collect_start = time.perf_counter()
    for batch in collector:
        collect_time = time.perf_counter() - collect_start
        update_start = time.perf_counter()
        check_finite(iteration + 1, batch, source="collected batch")  # an env that diverged, named
        parts.compute_advantage(batch)
        lr_factor = 1.0
        if cfg.algo.lr_decay == "linear":  # the reference's: lr x (1 - i / I) before update i, 0 at the last
            lr_factor = linear_lr_factor(iteration + 1, total_iterations)
            scale_learning_rates(parts.updater, getattr(cfg.algo, "actor_lr", None), cfg.algo.critic_lr, lr_factor)
        diagnostics = flatten_metrics(parts.updater.update(batch))
        frames += batch.numel()
        iteration += 1
        check_finite(iteration, diagnostics, trained)  # a NaN stops the run before it is logged or saved
        if remote:
            collector.update_policy_weights_()  # the worker processes get the new policy
        update_time = time.perf_counter() - update_start

        metrics = {"iteration": iteration, **episode_stats(batch), **diagnostics}
        metrics["collect_fps"] = batch.numel() / collect_time
        metrics["update_seconds"] = update_time
        metrics["lr_factor"] = lr_factor
        if eval_env is not None and cfg.eval.interval and iteration % cfg.eval.interval == 0:
            metrics.update({f"eval/{k}": v for k, v in evaluate(eval_env, parts.policy, eval_steps).items()})
            videos.after_evaluation(iteration, frames)
        logger.log(metrics, step=frames)
        if checkpoint_every and iteration % checkpoint_every == 0:
            checkpoint()
        progress.update(batch.numel(), metrics)
        collect_start = time.perf_counter()

    checkpoint()  # before the final evaluation: a run extended from here continues the same random streams
    collector.shutdown()
    if eval_env is not None:
        final_eval = evaluate(eval_env, parts.policy, eval_steps)
        metrics.update({f"eval/{k}": v for k, v in final_eval.items()})
        logger.log({f"eval/{k}": v for k, v in final_eval.items()}, step=frames)
        videos.after_evaluation(iteration, frames, final=True)
    logger.close()
    final = metrics.get("eval/return_mean") if eval_env is not None else None
    print(progress.close(final_eval=final, logs=logger.csv_path, checkpoint=checkpoint_path, videos=videos.written))
    return {"metrics": metrics, "frames": frames, "checkpoint": checkpoint_path, "log": logger.csv_path}


def _off_policy_loop() -> Any:
    """``recipes/train_off_policy.py``, loaded from this recipe's directory (the recipes are scripts)."""
    path = Path(__file__).with_name("train_off_policy.py")
    spec = importlib.util.spec_from_file_location("harl_train_off_policy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: ``python recipes/train.py [overrides]``."""
    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, MissingDependencyError, NonFiniteError) as err:
        sys.exit(f"error: {err}")  # one line, exit status 1


if __name__ == "__main__":
    try:  # a bad override, reported in one line naming the key, the value and the fix, before Hydra runs
        sys.argv[1:] = resume_run_dir(sys.argv[1:])  # resume=<run dir>: that run's own overrides, same dir
        check_command_line(sys.argv[1:], Path(__file__).parent / "conf")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    main()

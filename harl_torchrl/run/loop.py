"""The one training loop: ``run(cfg, output_dir)`` for every algorithm, on- and off-policy.

Reads top to bottom, one phase per block: check the config; open a resume before
anything is built; build the envs and the algorithm's components through its schema
(:meth:`~harl_torchrl.config.AlgoConfig.build`); the collector; restore the run; then
collect -> ``components.train`` -> check -> log / evaluate / checkpoint, until the
budget is spent or a stop is asked for; last the final checkpoint and evaluation.
The loop never asks which family it runs: everything it needs is the
:class:`~harl_torchrl.run.Components` protocol and three questions to the schema
(training envs, vector steps per iteration, checkpoint cadence).

Guards (``docs/checkpoints.rst``): a resumed checkpoint must be intact and describe this
run; a NaN or infinity in the batch, a diagnostic or a parameter stops the run before it
is logged or saved (the last checkpoint stays the last good one); checkpoints hold the
envs' and the collector's state, so a resumed run continues the same episodes; one run
owns its run dir (:mod:`harl_torchrl.run.lock`); SIGINT / SIGTERM stop at the end of the
iteration in flight with a checkpoint (:mod:`harl_torchrl.run.stop`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harl_torchrl.collection import make_collector
from harl_torchrl.config import RunConfig, validate_run_config
from harl_torchrl.envs import make_env
from harl_torchrl.evaluation import evaluate
from harl_torchrl.rollout_state import capture_rollout_state
from harl_torchrl.run.lock import RunDirLock
from harl_torchrl.run.quiet import quiet_library_logs
from harl_torchrl.run.stop import RunStopped, StopSignals
from harl_torchrl.run_guard import check_finite, open_resume, restore_run
from harl_torchrl.training import episode_stats
from harl_torchrl.utils.checkpoint import run_metadata, save_checkpoint
from harl_torchrl.utils.device import resolve_device, set_threads
from harl_torchrl.utils.logging import MetricLogger
from harl_torchrl.utils.progress import RunProgress
from harl_torchrl.utils.rng import rng_state, seed_everything, set_rng_state
from harl_torchrl.video import EvaluationVideos, check_video_support


def run(cfg: DictConfig | RunConfig | dict, output_dir: str | Path) -> dict[str, Any]:
    """Trains as ``cfg`` says, writing logs and checkpoints under ``output_dir``.

    Args:
        cfg: the run config: a composed recipe config, a plain nested dict, or a
            :class:`~harl_torchrl.config.RunConfig`; checked before anything is built.
        output_dir: the run dir (``metrics.csv``, ``checkpoint.pt``, videos).

    Returns:
        ``{"metrics": last metrics, "frames", "checkpoint": path, "log": metrics.csv path}``.

    Raises:
        ConfigError: a bad setting, a resume that does not fit, or a run dir owned by
            another live run.
        NonFiniteError: a NaN or infinity appeared (nothing non-finite was saved).
        RunStopped: SIGINT or SIGTERM arrived; a checkpoint was written first.

    Example:
        >>> result = run({"algo": {"name": "happo"}, "model": {"name": "mlp", "hidden_sizes": [8]},
        ...               "env": {"family": "vmas", "scenario": "balance", "num_envs": 4, "max_steps": 5,
        ...                       "scenario_kwargs": {"n_agents": 2}},
        ...               "collector": {"rollout_steps": 5}, "total_frames": 40, "eval": {"episodes": 0},
        ...               "logger": {"progress_bar": False}}, getfixture("tmp_path"))  # doctest: +ELLIPSIS
        happo ...
        >>> result["frames"]
        40
    """
    cfg = validate_run_config(cfg)  # unknown keys, wrong types, out-of-range values: one line, nothing built
    if cfg.eval.video_interval and cfg.eval.interval and cfg.eval.episodes:
        check_video_support(cfg.env.family, cfg.logger.backends)  # a renderer and the encoders, before building
    algo = cfg.algo
    num_envs = algo.effective_num_envs(cfg)  # off-policy: algo.num_envs (the reference's 20) replaces env.num_envs
    if num_envs != cfg.env.num_envs:
        print(f"{algo.name}: {num_envs} training envs (algo.num_envs; algo.num_envs=null uses env.num_envs)")
        cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, num_envs=num_envs))
    output_dir = Path(output_dir)
    with RunDirLock(output_dir), StopSignals() as stop, quiet_library_logs():
        return _train(cfg, output_dir, stop)


def _train(cfg: RunConfig, output_dir: Path, stop: StopSignals) -> dict[str, Any]:
    algo = cfg.algo
    set_threads(cfg.threads)  # before anything is built: every net and env op of the run uses it
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    # Resume: the checkpoint must be intact and describe this run (algorithm, env, model),
    # unless resume_override names the settings that differ on purpose. Checked before
    # anything is built; the state itself is restored once the collector exists.
    resume = open_resume(cfg, device)
    frames, iteration = (resume.frames, resume.iteration) if resume else (0, 0)

    # Environments (one for training, one for deterministic evaluation) and the algorithm's
    # components: networks, losses, optimisers and the sequential scheme, built by its schema.
    env = make_env(cfg.env, seed=cfg.seed, device=device)
    eval_env = (
        make_env(cfg.env, num_envs=cfg.eval.episodes, seed=cfg.seed + 1, device=device) if cfg.eval.episodes else None
    )
    eval_steps = cfg.env.max_steps or 1000
    components = algo.build(env, cfg.model, device=device, seed=cfg.seed)
    env = components.prepare_env(env)  # recurrent networks need episode-start markers and hidden states
    eval_env = components.prepare_env(eval_env) if eval_env is not None else None

    # The collector, sized to whole batches of the remaining budget.
    frames_per_batch = env.batch_size.numel() * algo.rollout_steps(cfg)
    iterations_left = max(0, math.ceil((cfg.total_frames - frames) / frames_per_batch))
    last_iteration = iteration + iterations_left
    components.start(frames=frames, total_iterations=max(1, math.ceil(cfg.total_frames / frames_per_batch)))
    workers, backend = cfg.collector.workers, str(cfg.collector.backend)
    collector = make_collector(
        env,
        components.policy,
        frames_per_batch=frames_per_batch,
        total_frames=iterations_left * frames_per_batch,
        workers=workers,
        backend=backend,
        env_cfg=cfg.env,
        seed=cfg.seed,
        device=device,
        prepare_env=components.prepare_env,
    )
    remote = workers > 1 or backend == "ray"  # the training envs live in the workers
    envs = {"train": None if remote else env, "eval": eval_env}
    if resume:
        _restore(resume, collector, envs, components, frames, iteration)

    # Logging, progress, videos and the checkpoint writer.
    logger = MetricLogger(
        output_dir,
        cfg.logger.backends,
        resume=resume is not None,
        resume_step=frames if resume else None,  # rows an interrupted run logged after its checkpoint go
        previous_log=resume.path.parent / "metrics.csv" if resume else None,  # a new run dir gets the old rows
        config=cfg.to_dict(),  # the W&B / MLflow run's hyperparameters
    )
    checkpoint_path = output_dir / "checkpoint.pt"
    checkpoint_every = cfg.checkpoint.every(algo.checkpoint_iterations(frames_per_batch))
    progress = RunProgress.start(
        cfg,
        agents=list(components.actors),
        frames_per_batch=frames_per_batch,
        iterations=iterations_left,
        start_frames=frames,
        run_dir=output_dir,
        device=device,
    )
    videos = EvaluationVideos(
        cfg.eval,
        cfg.env,
        components.policy,
        eval_steps,
        output_dir,
        seed=cfg.seed + 2,
        device=device,
        prepare_env=components.prepare_env,
        logger=logger,
    )
    trained = {**components.actors, "critic": components.critic}

    def checkpoint() -> None:
        state = {
            **components.state_dict(),
            "rollout": capture_rollout_state(collector, envs),
            "rng": rng_state(),
            "frames": frames,
            "iteration": iteration,
        }
        sidecars = components.sidecars() if cfg.checkpoint.replay_buffer else {}
        meta = run_metadata(cfg, frames=frames, iteration=iteration)
        save_checkpoint(checkpoint_path, state, metadata=meta, sidecars=sidecars or None)

    # The loop: collect -> train -> check -> log / evaluate / checkpoint.
    metrics: dict[str, float] = {}
    collect_start = time.perf_counter()
    for batch in collector:
        collect_time = time.perf_counter() - collect_start
        update_start = time.perf_counter()
        frames += batch.numel()
        iteration += 1
        check_finite(iteration, batch, source="collected batch")  # an env that diverged, named
        diagnostics = components.train(batch, frames=frames, iteration=iteration)
        check_finite(iteration, diagnostics, trained)  # a NaN stops the run before it is logged or saved
        if remote:
            collector.update_policy_weights_()  # the worker processes get the new policy
        update_time = time.perf_counter() - update_start

        metrics = {"iteration": iteration, **episode_stats(batch), **diagnostics}
        metrics["collect_fps"] = batch.numel() / collect_time
        metrics["update_seconds"] = update_time
        metrics["fps"] = batch.numel() / (collect_time + update_time)
        if eval_env is not None and cfg.eval.interval and iteration % cfg.eval.interval == 0:
            metrics.update({f"eval/{k}": v for k, v in evaluate(eval_env, components.policy, eval_steps).items()})
            videos.after_evaluation(iteration, frames)
        logger.log(metrics, step=frames)
        # the last one is written before the final evaluation, so that a run extended from it
        # continues exactly as this run would have (evaluation moves the eval env and random streams)
        if iteration == last_iteration or (checkpoint_every and iteration % checkpoint_every == 0) or stop.requested:
            checkpoint()
        progress.update(batch.numel(), metrics)
        if stop.requested:
            collector.shutdown()
            logger.close()
            progress.close_quietly()
            raise RunStopped(stop.signal_name, checkpoint_path, frames)
        collect_start = time.perf_counter()

    if iterations_left == 0:
        checkpoint()  # a resumed run with nothing left to do still records this run's config
    collector.shutdown()
    if eval_env is not None:
        progress.note("final evaluation")
        final_eval = {f"eval/{k}": v for k, v in evaluate(eval_env, components.policy, eval_steps).items()}
        metrics.update(final_eval)
        logger.log(final_eval, step=frames)
        videos.after_evaluation(iteration, frames, final=True)
    logger.close()
    final = metrics.get("eval/return_mean") if eval_env is not None else None
    print(progress.close(final_eval=final, logs=logger.csv_path, checkpoint=checkpoint_path, videos=videos.written))
    return {"metrics": metrics, "frames": frames, "checkpoint": checkpoint_path, "log": logger.csv_path}


def _restore(resume: Any, collector: Any, envs: dict[str, Any], components: Any, frames: int, iteration: int) -> None:
    """Restores a run: envs, collector, components, then the random streams.

    The envs and the collector's carried step first (building the collector reset the
    env), then the components, and last the random streams (building and loading must
    not move them).
    """

    def load(state: dict[str, Any]) -> None:
        components.load_state_dict(state)
        set_rng_state(state["rng"])

    exact = restore_run(resume, collector, envs, load)
    episodes = "same episodes" if "train" in exact else "fresh episodes"
    notes = [f"iteration {iteration}", episodes, *components.describe_state()]
    print(f"resumed from {resume.path} at {frames} frames ({', '.join(notes)})")
    if resume.accepted:
        print(f"resume_override: these settings now differ from the checkpoint's: {', '.join(resume.accepted)}")

"""The off-policy training loop (HADDPG, HATD3, HASAC, HAD3QN; MADDPG, MATD3, MASAC).

Started through the one entry point, which dispatches here on ``algo.kind``:

    python recipes/train.py algo=hatd3 env=pettingzoo/simple_spread
    python recipes/train.py algo=hasac env=pettingzoo/simple_spread env.continuous_actions=false
    python recipes/train.py algo=had3qn env=pettingzoo/simple_spread env.continuous_actions=false
    python recipes/train.py algo=hatd3 env=mamujoco/halfcheetah_2x3 total_frames=1_000_000
    python recipes/train.py algo=hatd3 resume=outputs/.../checkpoint.pt total_frames=2_000_000

Reads top to bottom: build the envs, the components (actors, critic, targets, losses,
optimisers, the sequential actor step) and the n-step replay buffer; then per iteration
collect ``algo.train_interval`` vector steps of ``algo.num_envs`` sub-environments
(uniformly random actions during the first ``algo.warmup_steps`` transitions), store them,
and take ``algo.updates_per_step`` gradient steps per vector step on uniform minibatches;
with periodic deterministic evaluation and checkpoints (networks, targets, optimisers,
temperatures, counters, envs and, unless ``checkpoint.replay_buffer=false``, the buffer).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from tensordict import TensorDict

from harl_torchrl.collection import make_collector
from harl_torchrl.config import RunConfig
from harl_torchrl.envs import make_env
from harl_torchrl.evaluation import evaluate
from harl_torchrl.off_policy import make_off_policy_components
from harl_torchrl.replay import make_replay_buffer
from harl_torchrl.rollout_state import capture_rollout_state
from harl_torchrl.run_guard import check_finite, open_resume, restore_run
from harl_torchrl.training import episode_stats, flatten_metrics
from harl_torchrl.utils.checkpoint import rng_state, run_metadata, save_checkpoint, seed_everything, set_rng_state
from harl_torchrl.utils.device import resolve_device, set_threads
from harl_torchrl.utils.logging import MetricLogger
from harl_torchrl.utils.progress import RunProgress
from harl_torchrl.video import EvaluationVideos


def run(cfg: RunConfig, output_dir: str | Path) -> dict[str, Any]:
    """Trains the off-policy algorithm ``cfg.algo`` (a validated :class:`RunConfig`) under ``output_dir``."""
    output_dir = Path(output_dir)
    algo = cfg.algo
    # algo.num_envs (the reference's 20 by default) replaces the env group's number of copies
    num_envs = algo.effective_num_envs(cfg)
    if num_envs != cfg.env.num_envs:
        print(f"{algo.name}: {num_envs} training envs (algo.num_envs; algo.num_envs=null uses env.num_envs)")
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, num_envs=num_envs))
    set_threads(cfg.threads)  # before anything is built: every net and env op of the run uses it
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    # Environments: one for training, one for deterministic evaluation.
    env = make_env(cfg.env, seed=cfg.seed, device=device)
    eval_env = (
        make_env(cfg.env, num_envs=cfg.eval.episodes, seed=cfg.seed + 1, device=device) if cfg.eval.episodes else None
    )
    eval_steps = cfg.env.max_steps or 1000

    # Actors, critic, targets, losses, optimisers and the actor step; the n-step replay buffer.
    parts = make_off_policy_components(algo, cfg.model, env, device=device, seed=cfg.seed)
    buffer = make_replay_buffer(env, algo.buffer_size, n_steps=algo.n_step, gamma=algo.gamma, device=device)

    # Resume: the checkpoint must be intact and describe this run (see docs/checkpoints.rst).
    resume = open_resume(cfg, device)
    frames, iteration, owed = (resume.frames, resume.iteration, resume.state["owed_updates"]) if resume else (0, 0, 0.0)

    frames_per_batch = env.batch_size.numel() * algo.train_interval
    iterations_left = max(0, math.ceil((cfg.total_frames - frames) / frames_per_batch))
    last_iteration = iteration + iterations_left
    workers = cfg.collector.workers
    parts.warmup.active = frames < algo.warmup_steps
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
    )
    remote = workers > 1 or cfg.collector.backend == "ray"  # the training envs live in the workers
    envs = {"train": None if remote else env, "eval": eval_env}
    if resume:

        def load(state: dict[str, Any]) -> None:
            parts.load_state_dict(state["components"])
            if "replay" in state:
                buffer.load_state_dict(state["replay"])
            set_rng_state(state["rng"])  # last: building and loading must not move the random streams

        exact = restore_run(resume, collector, envs, load)
        episodes = "same episodes" if "train" in exact else "fresh episodes"
        replay = f"{len(buffer)} transitions in the buffer" if len(buffer) else "an empty buffer (none saved)"
        print(f"resumed from {resume.path} at {frames} frames (iteration {iteration}, {episodes}, {replay})")
    logger = MetricLogger(
        output_dir,
        cfg.logger.backends,
        resume=resume is not None,
        resume_step=frames if resume else None,
        previous_log=resume.path.parent / "metrics.csv" if resume else None,
        config=cfg.to_dict(),  # the W&B / MLflow run's hyperparameters
    )
    checkpoint_path = output_dir / "checkpoint.pt"
    save_buffer = bool(cfg.checkpoint.get("replay_buffer", True))
    checkpoint_every = cfg.checkpoint.every(frames_per_batch, off_policy=True)
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
        state = {
            "components": parts.state_dict(),
            "rollout": capture_rollout_state(collector, envs),
            "rng": rng_state(),
            "frames": frames,
            "iteration": iteration,
            "owed_updates": owed,
        }
        meta = run_metadata(cfg, frames=frames, iteration=iteration, kind="off_policy")
        sidecars = {"replay": buffer.state_dict()} if save_buffer else None  # written atomically, own checksum
        save_checkpoint(checkpoint_path, state, metadata=meta, sidecars=sidecars)

    collect_start = time.perf_counter()
    for batch in collector:
        collect_time = time.perf_counter() - collect_start
        update_start = time.perf_counter()
        frames += batch.numel()
        iteration += 1
        buffer.extend(batch)

        # The reference's UTD: updates_per_step gradient steps per vector step, once warm-up is over.
        steps = 0
        latest = TensorDict({}, batch_size=[])
        if frames > algo.warmup_steps and len(buffer) >= algo.batch_size:
            owed += algo.updates_per_step * algo.train_interval
            steps, owed = int(owed), owed - int(owed)
            for _ in range(steps):
                latest.update(parts.updater.step(buffer.sample(algo.batch_size)))  # keeps the last actor step's
        diagnostics = flatten_metrics(latest)
        check_finite(iteration, diagnostics, trained)  # a NaN stops the run before it is logged or saved
        parts.warmup.active = frames < algo.warmup_steps  # for the next batch
        if remote:
            collector.update_policy_weights_()
        update_time = time.perf_counter() - update_start

        metrics = {"iteration": iteration, **episode_stats(batch), **diagnostics}
        metrics.update(
            gradient_steps=parts.updater.gradient_steps,
            buffer_size=len(buffer),
            collect_fps=batch.numel() / collect_time,
            update_seconds=update_time,
            fps=batch.numel() / (collect_time + update_time),
        )
        if eval_env is not None and cfg.eval.interval and iteration % cfg.eval.interval == 0:
            metrics.update({f"eval/{k}": v for k, v in evaluate(eval_env, parts.policy, eval_steps).items()})
            videos.after_evaluation(iteration, frames)
        logger.log(metrics, step=frames)
        # the last one is written here, before the final evaluation, so that a run resumed from it
        # continues exactly as this run would have (evaluation moves the eval env and random streams)
        if iteration == last_iteration or (checkpoint_every and iteration % checkpoint_every == 0):
            checkpoint()
        progress.update(batch.numel(), metrics)
        collect_start = time.perf_counter()

    if eval_env is not None:
        final_eval = evaluate(eval_env, parts.policy, eval_steps)
        metrics.update({f"eval/{k}": v for k, v in final_eval.items()})
        logger.log({f"eval/{k}": v for k, v in final_eval.items()}, step=frames)
        videos.after_evaluation(iteration, frames, final=True)
    if iterations_left == 0:
        checkpoint()
    collector.shutdown()
    logger.close()
    final = metrics.get("eval/return_mean") if eval_env is not None else None
    print(progress.close(final_eval=final, logs=logger.csv_path, checkpoint=checkpoint_path, videos=videos.written))
    return {"metrics": metrics, "frames": frames, "checkpoint": checkpoint_path, "log": logger.csv_path}

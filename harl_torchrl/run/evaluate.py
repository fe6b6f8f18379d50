"""Evaluate a trained checkpoint: rebuild env, networks and policy from the checkpoint alone, and play.

    harl-evaluate checkpoint=outputs/happo_vmas_balance/<run>/checkpoint.pt
    harl-evaluate checkpoint=<path> episodes=100 deterministic=false seed=3
    harl-evaluate checkpoint=<path> video=true video_episodes=2   # MP4 + GIF, headless

(``python recipes/evaluate.py`` takes the same settings.)

Everything is rebuilt from what the checkpoint records (its algorithm, env and model
config: see docs/checkpoints.rst), so no training override needs retyping. Each of
``episodes`` env copies plays one episode; printed: the team return and every agent's
(mean, std, min, max over episodes) and the episode length. With ``episodes`` unset (or
equal to the training run's ``eval.episodes``) and ``deterministic=true``, the training
run's saved evaluation env and random streams are restored, so the first figures
reproduce the run's final deterministic evaluation exactly.

With ``video=true`` the first ``video_episodes`` episodes are then played again, each on a
one-copy env (seeds ``seed``, ``seed + 1``, ...), drawn offscreen (VMAS, MPE, MaMuJoCo:
see :mod:`harl_torchrl.video`) and written as one MP4 and a GIF beside it, by default
``<checkpoint dir>/videos/eval_<frames>.mp4`` (the ``video`` extra).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harl_torchrl.config.run import MAX_SEED
from harl_torchrl.errors import ConfigError
from harl_torchrl.evaluation import episode_returns
from harl_torchrl.trained import load_trained, make_eval_env
from harl_torchrl.utils.checkpoint import CheckpointError
from harl_torchrl.utils.device import resolve_device
from harl_torchrl.video import record_episode, write_video


@dataclass
class EvaluateConfig:
    """``harl-evaluate`` settings (all ``key=value`` on the command line).

    Attributes:
        checkpoint: the ``checkpoint.pt`` to evaluate (required).
        episodes: env copies, one episode each; ``null``: the training run's ``eval.episodes``.
        deterministic: mode actions; ``false`` samples from the policy.
        seed: env seed when no saved evaluation state is restored.
        device: where the networks and env run.
        json_out: also write the figures to this JSON file.
        video: also record the first episodes as MP4 (and GIF).
        video_episodes: episodes in the video, one after another.
        video_path: ``null``: ``<checkpoint dir>/videos/eval_<frames>.mp4``.
        video_fps: frames per second of the video.
    """

    checkpoint: str = "???"  # the checkpoint.pt to evaluate (required)
    episodes: int | None = None  # env copies, one episode each; null: the training run's eval.episodes
    deterministic: bool = True  # mode actions; false samples from the policy
    seed: int = 1  # env seed when no saved evaluation state is restored
    device: str = "cpu"
    json_out: str | None = None  # also write the figures to this JSON file
    video: bool = False  # also record the first episodes as MP4 (and GIF)
    video_episodes: int = 1  # episodes in the video, one after another
    video_path: str | None = None  # null: <checkpoint dir>/videos/eval_<frames>.mp4
    video_fps: int = 20


def _stats(values) -> dict[str, float]:
    values = values.float()
    return {
        "mean": values.mean().item(),
        "std": values.std(correction=0).item(),
        "min": values.min().item(),
        "max": values.max().item(),
    }


def evaluate_checkpoint(cfg: EvaluateConfig | Any) -> dict[str, Any]:
    """Evaluates ``cfg.checkpoint`` and prints a table; returns the figures.

    Args:
        cfg: an :class:`EvaluateConfig` (or anything with its attributes).

    Returns:
        ``{"team": stats, <agent>: stats, "length": stats, "episodes": n, "restored_eval_state": bool}``,
        each ``stats`` the mean, std, min and max over episodes.

    Raises:
        ConfigError: a bad setting.
        CheckpointError: the checkpoint is missing, damaged or not a training checkpoint.
    """
    if cfg.episodes is not None and int(cfg.episodes) < 1:
        raise ConfigError(f"episodes={cfg.episodes}: must be >= 1 (or null for the training run's eval.episodes)")
    if cfg.video and (int(cfg.video_episodes) < 1 or int(cfg.video_fps) < 1):
        raise ConfigError(
            f"video_episodes={cfg.video_episodes}, video_fps={cfg.video_fps}: both must be >= 1. Fix: video_episodes=1"
        )
    highest = MAX_SEED - max(0, int(cfg.video_episodes) - 1)  # video episode i plays on seed + i
    if not 0 <= int(cfg.seed) <= highest:
        raise ConfigError(
            f"seed={cfg.seed}: must be an integer from 0 to {highest} (numpy and VMAS take seeds up to 2**32 - 1). "
            "Fix: seed=1"
        )
    device = resolve_device(cfg.device)
    try:
        trained = load_trained(cfg.checkpoint, device)
    except CheckpointError as err:  # its fix in this command's key: checkpoint=, not resume=
        raise err.for_key("checkpoint") from None
    env, restored = make_eval_env(
        trained, cfg.episodes, seed=int(cfg.seed), device=device, restore=bool(cfg.deterministic)
    )
    steps = trained.env_config.max_steps or 1000
    returns = episode_returns(env, trained.policy, steps, deterministic=bool(cfg.deterministic))
    env.close()
    figures = {name: _stats(values) for name, values in returns.items()}
    figures["episodes"] = int(returns["team"].numel())
    figures["restored_eval_state"] = restored
    env_name = f"{trained.env_config.family}/{trained.env_config.scenario}"
    print(f"{trained.algorithm} on {env_name}, {trained.meta.get('frames', 0):,} frames: {cfg.checkpoint}")
    mode = "deterministic" if cfg.deterministic else "stochastic"
    state = "the training run's saved evaluation state" if restored else f"fresh episodes (seed {cfg.seed})"
    print(f"{figures['episodes']} {mode} episodes from {state}")
    print(f"  {'':<12} {'mean':>10} {'std':>10} {'min':>10} {'max':>10}")
    for name in ["team", *trained.agents, "length", "won", "scored"]:  # SMAX's win / football's goal rate (0/1)
        if name in figures:
            s = figures[name]
            print(f"  {name:<12} {s['mean']:>10.3f} {s['std']:>10.3f} {s['min']:>10.3f} {s['max']:>10.3f}")
    if cfg.video:
        figures["video"] = [str(p) for p in _record(cfg, trained, steps, device)]
        print(f"  video: {', '.join(figures['video'])}")
    if cfg.json_out:
        Path(cfg.json_out).write_text(json.dumps(figures, indent=2))
    return figures


def _record(cfg: Any, trained: Any, steps: int, device: Any) -> list[Path]:
    """Plays ``cfg.video_episodes`` episodes on one-copy envs and writes them as one MP4 and a GIF."""
    frames = []
    for i in range(int(cfg.video_episodes)):
        env, _ = make_eval_env(trained, 1, seed=int(cfg.seed) + i, device=device, restore=False)
        frames += record_episode(env, trained.policy, steps, deterministic=bool(cfg.deterministic))
        env.close()
    frames_trained = int(trained.meta.get("frames", 0))
    path = Path(cfg.video_path or Path(cfg.checkpoint).parent / "videos" / f"eval_{frames_trained}.mp4")
    return write_video(frames, path, fps=int(cfg.video_fps))

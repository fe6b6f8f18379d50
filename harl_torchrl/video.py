"""Headless videos of a policy playing: frames from VMAS, MPE and MaMuJoCo, written as MP4 and GIF.

No display is needed. :func:`configure_headless` picks each renderer's offscreen backend
before its library opens a context: VMAS draws with pyglet through EGL
(``pyglet.options["headless"]``), MPE with pygame on SDL's ``dummy`` video driver, and
MaMuJoCo with MuJoCo's EGL context (``MUJOCO_GL=egl``; set ``MUJOCO_GL=osmesa`` where no
EGL driver is installed). EGL needs the system's ``libegl1`` (Debian: ``apt install
libegl1 libgl1``); OSMesa ``libosmesa6``. Writing the files takes the ``video`` extra
(``imageio`` with ``imageio-ffmpeg``'s bundled ffmpeg for MP4, Pillow for GIF).

Example:
    >>> from harl_torchrl.envs import make_vmas_env
    >>> env = make_vmas_env("balance", num_envs=1, n_agents=2, max_steps=3)
    >>> frames = record_episode(env, None, 3)
    >>> len(frames), frames[0].shape[-1], frames[0].dtype
    (4, 3, dtype('uint8'))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

from harl_torchrl.config import EnvConfig, EvalConfig
from harl_torchrl.errors import ConfigError, MissingDependencyError

__all__ = [
    "check_video_support",
    "configure_headless",
    "record_episode",
    "record_evaluation_video",
    "render_frame",
    "write_video",
]

#: The env families with a renderer here.
RENDERED_FAMILIES = ("vmas", "pettingzoo", "mamujoco")


def configure_headless() -> None:
    """Selects the offscreen backends (kept if the user set them): SDL dummy, MuJoCo EGL, pyglet headless.

    SDL's audio goes to its dummy driver too: moviepy 1.x (TensorBoard's video encoder) starts
    pygame, whose ALSA probe otherwise fills the log with errors on a machine without a sound card.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")
    if not os.environ.get("DISPLAY"):
        import pyglet

        pyglet.options["headless"] = True


def _base(env: EnvBase) -> EnvBase:
    while hasattr(env, "base_env"):  # TransformedEnv (recurrent policies add transforms)
        env = env.base_env
    return env


def render_frame(env: EnvBase) -> np.ndarray:
    """The first sub-environment's current picture, ``[H, W, 3]`` uint8.

    Raises:
        ConfigError: an env family without a renderer here (SMAX).
    """
    from harl_torchrl.envs import MaMuJoCoTeamEnv, MPETeamEnv, VmasTeamEnv

    base = _base(env)
    try:
        if isinstance(base, VmasTeamEnv):
            frame = base._env.render(mode="rgb_array", env_index=0, visualize_when_rgb=False)
        elif isinstance(base, MPETeamEnv):
            raw = base._raws[0]
            raw.render_mode = "rgb_array"  # built without one: training never draws
            frame = raw.render()
        elif isinstance(base, MaMuJoCoTeamEnv):
            frame = base._singles[0].unwrapped.mujoco_renderer.render("rgb_array")
        else:
            raise ConfigError(
                f"video: no renderer for {type(base).__name__}. Fix: video=false (videos exist for VMAS, MPE, MaMuJoCo)"
            )
    except (ImportError, OSError, RuntimeError, AttributeError) as err:  # no EGL/OSMesa library or driver
        raise MissingDependencyError(
            f"offscreen rendering failed for {type(base).__name__} ({type(err).__name__}: {err}). Fix: install the "
            "system's EGL library (Debian: apt-get install libegl1 libgl1), or for MaMuJoCo use OSMesa "
            "(apt-get install libosmesa6; MUJOCO_GL=osmesa)"
        ) from err
    return np.ascontiguousarray(frame, dtype=np.uint8)


@torch.no_grad()
def record_episode(
    env: EnvBase, policy: TensorDictModuleBase | None, max_steps: int, *, deterministic: bool = True
) -> list[np.ndarray]:
    """Plays until the first sub-environment's episode ends and returns its frames.

    One frame after the reset, then one after each step: an episode of ``T`` steps gives
    ``T + 1`` frames. Stops at the first ``done`` of any copy (give ``env`` one copy), or
    after ``max_steps``.

    Args:
        env: a batched env of one of the rendered families (VMAS, MPE, MaMuJoCo).
        policy: the joint policy (``None``: random actions).
        max_steps: step budget (the env's time limit, usually).
        deterministic: mode actions; ``False`` samples.

    Returns:
        ``[H, W, 3]`` uint8 frames.
    """
    configure_headless()
    td = env.reset()
    frames = [render_frame(env)]
    exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with set_exploration_type(exploration):
        for _ in range(max_steps):
            td = policy(td) if policy is not None else env.rand_action(td)
            td = env.step(td)
            frames.append(render_frame(env))  # before any reset: the episode's last picture too
            if td.get(("next", "done")).any():
                break
            td = step_mdp(td)
    return frames


def write_video(
    frames: Sequence[np.ndarray], path: str | Path, fps: int = 20, gif_width: int | None = 320
) -> list[Path]:
    """Writes ``path`` (MP4, H.264) and, with ``gif_width``, a GIF beside it scaled to that width.

    Returns:
        The files written.

    Raises:
        MissingDependencyError: ``imageio``/``imageio-ffmpeg`` are missing (the ``video`` extra).
    """
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio writes MP4 with)
    except ImportError as err:
        raise MissingDependencyError(
            f"writing videos needs imageio and imageio-ffmpeg ({err}). Fix: pip install 'harl-torchrl[video]'"
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stack = np.stack([_even(f) for f in frames])
    iio.imwrite(path, stack, fps=fps, codec="libx264", macro_block_size=1, plugin="FFMPEG")
    written = [path]
    if gif_width:
        from PIL import Image

        scale = gif_width / stack.shape[2]
        size = (gif_width, max(1, round(stack.shape[1] * scale)))
        small = [np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in stack]
        gif = path.with_suffix(".gif")
        iio.imwrite(gif, np.stack(small), duration=1000 / fps, loop=0, plugin="pillow")
        written.append(gif)
    return written


def _even(frame: np.ndarray) -> np.ndarray:
    """Crops to even height and width (H.264 with yuv420p needs both)."""
    return frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]


def check_video_support(family: str, backends: Sequence[str] = ()) -> None:
    """Raises before training when videos were asked for but cannot be made or logged.

    Args:
        family: the env family (``env.family``).
        backends: the run's ``logger.backends``: TensorBoard encodes its videos with
            moviepy 1.x (``torch.utils.tensorboard``'s ``add_video``), which the ``video``
            extra installs; without it TensorBoard would skip every video silently.

    Raises:
        ConfigError: ``family`` has no renderer here (SMAX).
        MissingDependencyError: the ``video`` extra is missing.
    """
    if family not in RENDERED_FAMILIES:
        raise ConfigError(
            f"eval.video_interval with env.family={family}: no renderer for it. Fix: eval.video_interval=0 "
            f"(videos exist for {', '.join(RENDERED_FAMILIES)})"
        )
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(
            f"eval.video_interval needs imageio and imageio-ffmpeg ({err}). Fix: pip install 'harl-torchrl[video]'"
        ) from None
    if "tensorboard" in backends:
        configure_headless()  # moviepy.editor starts pygame
        try:
            import moviepy.editor  # noqa: F401
        except ImportError as err:
            raise MissingDependencyError(
                f"eval.video_interval with logger.backends including tensorboard needs moviepy<2 ({err}): "
                "TensorBoard's add_video encodes with moviepy.editor, which moviepy 2 removed. "
                "Fix: pip install 'harl-torchrl[video]' (or drop tensorboard from logger.backends)"
            ) from None


def record_evaluation_video(
    env_cfg: EnvConfig,
    policy: TensorDictModuleBase,
    max_steps: int,
    path: str | Path,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    prepare_env: Callable[[EnvBase], EnvBase] | None = None,
    fps: int = 20,
) -> list[Path]:
    """One deterministic episode of ``policy`` on a fresh one-copy env of ``env_cfg``, written to ``path``.

    What a training run records every ``eval.video_interval`` evaluations. The global
    random streams (torch, numpy, Python) are restored afterwards: building and seeding the
    env draws from them, and a run with videos must train exactly as one without.

    Returns:
        The files written (MP4 and GIF).
    """
    from harl_torchrl.utils.rng import rng_state, set_rng_state

    saved = rng_state()
    try:
        env = env_cfg.make(num_envs=1, seed=seed, device=device)
        env = prepare_env(env) if prepare_env is not None else env
        frames = record_episode(env, policy, max_steps)
        env.close()
    finally:
        set_rng_state(saved)
    return write_video(frames, path, fps=fps)


class EvaluationVideos:
    """The training recipes' videos: one episode every ``eval.video_interval``-th evaluation, and at the end.

    Stateless in the count (evaluation ``k`` happens at iteration ``k * eval.interval``),
    so a resumed run records at the same iterations as an uninterrupted one. Files go to
    ``<run dir>/videos/eval_<frames>.mp4`` (and ``.gif``), and to the logger's video
    backends (:meth:`~harl_torchrl.utils.logging.MetricLogger.log_video`).

    Args:
        eval_cfg: the ``eval`` group (``interval``, ``video_interval``).
        env_cfg: the ``env`` group (a one-copy env of it is built per video).
        policy: the joint policy.
        max_steps: the episode's step budget.
        run_dir: the run directory.
        seed: the videos' env seed (the same episode start every time: progress shows).
        device: the env's device.
        prepare_env: the policy's env transforms (recurrent policies).
        logger: a :class:`~harl_torchrl.utils.logging.MetricLogger`, or ``None``.
    """

    def __init__(
        self,
        eval_cfg: EvalConfig,
        env_cfg: EnvConfig,
        policy: TensorDictModuleBase,
        max_steps: int,
        run_dir: str | Path,
        *,
        seed: int,
        device: str | torch.device = "cpu",
        prepare_env: Callable[[EnvBase], EnvBase] | None = None,
        logger: Any = None,
    ) -> None:
        self.every = int(eval_cfg.interval) * int(eval_cfg.video_interval)
        self.env_cfg, self.policy, self.max_steps = env_cfg, policy, max_steps
        self.run_dir, self.seed, self.device = Path(run_dir), seed, device
        self.prepare_env, self.logger = prepare_env, logger
        self.written: list[Path] = []

    def after_evaluation(self, iteration: int, frames: int, *, final: bool = False) -> Path | None:
        """Records if this evaluation is due (or ``final``); returns the MP4's path, else ``None``."""
        if not self.every or not (final or iteration % self.every == 0):
            return None
        path = self.run_dir / "videos" / f"eval_{frames}.mp4"
        if path.exists():  # the final evaluation at an iteration that was already recorded
            return path
        self.written += record_evaluation_video(
            self.env_cfg,
            self.policy,
            self.max_steps,
            path,
            seed=self.seed,
            device=self.device,
            prepare_env=self.prepare_env,
        )
        if self.logger is not None:
            self.logger.log_video(path, step=frames)
        return path

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

from harl_torchrl.errors import ConfigError, MissingDependencyError

__all__ = ["configure_headless", "record_episode", "render_frame", "write_video"]


def configure_headless() -> None:
    """Selects the offscreen backends (kept if the user set them): SDL dummy, MuJoCo EGL, pyglet headless."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
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

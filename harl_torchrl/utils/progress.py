"""What a training run prints: a start-up banner, a progress bar that says how it goes, a closing summary.

The run loop (:func:`harl_torchrl.run.run`) uses one
:class:`RunProgress`, so a user reads the same lines whatever the algorithm:

* the banner: algorithm, env (family, scenario, agents), frames per batch and in total,
  run directory, device and torch threads;
* the bar (tqdm, ``logger.progress_bar``): frames and frames/s, the latest finished
  training episodes' return (``no episode finished yet`` until one has: a 1000-step
  MaMuJoCo episode needs several batches) and the latest deterministic evaluation;
* the summary: frames, wall time, the best and the final evaluation, where the logs and
  the checkpoint are.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def format_banner(
    *,
    algorithm: str,
    env: Mapping[str, Any],
    agents: list[str],
    frames_per_batch: int,
    total_frames: int,
    run_dir: str | Path,
    device: str | torch.device,
    start_frames: int = 0,
) -> str:
    """The start-up lines of a run.

    Example:
        >>> print(format_banner(algorithm="happo", env={"family": "vmas", "scenario": "balance"},
        ...     agents=["agent_0", "agent_1"], frames_per_batch=6000, total_frames=60000,
        ...     run_dir="outputs/x", device="cpu").splitlines()[0])
        happo on vmas/balance: 2 agents (agent_0, agent_1)
    """
    shown = ", ".join(agents[:6]) + (f", ... ({len(agents) - 6} more)" if len(agents) > 6 else "")
    scenario = env.get("scenario", "")
    layout = f" {env['agent_conf']}" if env.get("agent_conf") else ""
    lines = [
        f"{algorithm} on {env.get('family', '?')}/{scenario}{layout}: {len(agents)} agents ({shown})",
        f"  frames: {total_frames:,} in batches of {frames_per_batch:,}"
        + (f", resuming at {start_frames:,}" if start_frames else ""),
        f"  device: {device}, torch threads: {torch.get_num_threads()}",
        f"  run dir: {run_dir}",
    ]
    warning = threads_warning(torch.get_num_threads(), device)
    if warning:
        lines.append(f"  {warning}")
    return "\n".join(lines)


def threads_warning(threads: int, device: str | torch.device = "cpu", load: float | None = None) -> str | None:
    """A warning when more torch threads are asked for than there are free cores, else ``None``.

    Free cores are the cores less the one-minute load average (other processes'
    runnable threads). Two intra-op threads on busy cores wait on each other at every
    small matmul: 3-10x slower on a 2-core machine with the other core busy.

    Args:
        threads: torch's intra-op threads.
        device: the run's device (CUDA runs are not warned).
        load: the load average to use (default: ``os.getloadavg()[0]``, where available).

    Example:
        >>> import os
        >>> threads_warning(1, load=0.0) is None
        True
        >>> print(threads_warning(os.cpu_count() or 1, load=float(os.cpu_count() or 1)))  # doctest: +ELLIPSIS
        warning: ... torch threads, but only about 0 of ... cores are free (load ...): threads=1 runs faster here
    """
    if torch.device(device).type != "cpu" or threads <= 1:
        return None
    cores = os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on this platform
            return None
    free = max(0, round(cores - load))
    if threads <= free:
        return None
    return (
        f"warning: {threads} torch threads, but only about {free} of {cores} cores are free (load {load:.1f}): "
        "threads=1 runs faster here"
    )


class RunProgress:
    """The progress bar and the closing summary of one run.

    Args:
        total_frames: the run's target ``total_frames``.
        start_frames: frames already done (a resumed run).
        enabled: show the bar (``logger.progress_bar``); the summary is printed either way.

    Example:
        >>> progress = RunProgress(total_frames=200, enabled=False)
        >>> progress.update(100, {"episode_return_mean": float("nan")})
        >>> progress.postfix()["return"]
        'no episode finished yet'
        >>> progress.update(100, {"episode_return_mean": -3.0, "eval/return_mean": -2.5})
        >>> progress.postfix()["eval"], progress.best_eval
        ('-2.500', -2.5)
    """

    def __init__(self, *, total_frames: int, start_frames: int = 0, enabled: bool = True) -> None:
        self.start = time.perf_counter()
        self.start_frames = int(start_frames)
        self.frames = int(start_frames)
        self.last_return: float | None = None
        self.last_eval: float | None = None
        self.best_eval: float | None = None
        self.bar = tqdm(total=total_frames, initial=start_frames, unit="frames", disable=not enabled)

    @classmethod
    def start(
        cls,
        cfg: Any,
        *,
        agents: list[str],
        frames_per_batch: int,
        iterations: int,
        start_frames: int,
        run_dir: str | Path,
        device: str | torch.device,
    ) -> RunProgress:
        """Prints the run's banner (:func:`format_banner`) and returns its progress bar.

        Both training loops start this way; ``iterations`` whole batches of
        ``frames_per_batch`` remain after ``start_frames``.
        """
        total = start_frames + iterations * frames_per_batch  # whole batches
        print(
            format_banner(
                algorithm=cfg.algo.name,
                env=cfg.env.to_dict(),
                agents=agents,
                frames_per_batch=frames_per_batch,
                total_frames=total,
                run_dir=run_dir,
                device=device,
                start_frames=start_frames,
            )
        )
        return cls(total_frames=total, start_frames=start_frames, enabled=cfg.logger.progress_bar)

    def record_eval(self, value: Any) -> None:
        """Notes a deterministic evaluation return (for the bar and the summary)."""
        value = _finite(value)
        if value is None:
            return
        self.last_eval = value
        self.best_eval = value if self.best_eval is None else max(self.best_eval, value)

    def update(self, frames: int, metrics: Mapping[str, Any]) -> None:
        """Advances by ``frames`` and shows the latest episode return and evaluation found in ``metrics``."""
        self.frames += int(frames)
        episode_return = _finite(metrics.get("episode_return_mean"))
        if episode_return is not None:
            self.last_return = episode_return
        if "eval/return_mean" in metrics:
            self.record_eval(metrics["eval/return_mean"])
        self.bar.update(int(frames))
        self.bar.set_postfix(self.postfix(), refresh=False)

    def postfix(self) -> dict[str, str]:
        """What the bar shows after the frame count and rate."""
        shown = {"return": "no episode finished yet" if self.last_return is None else f"{self.last_return:.3f}"}
        if self.last_eval is not None:
            shown["eval"] = f"{self.last_eval:.3f}"
        return shown

    def note(self, text: str) -> None:
        """Shows ``text`` after the bar's figures (e.g. "final evaluation" while the bar sits at 100%)."""
        self.bar.set_postfix({**self.postfix(), "now": text}, refresh=True)

    def close_quietly(self) -> None:
        """Closes the bar without a summary (a run stopped early prints its own line)."""
        self.bar.close()

    def close(
        self,
        *,
        final_eval: Any = None,
        logs: Path | None = None,
        checkpoint: Path | None = None,
        videos: Sequence[Path] = (),
    ) -> str:
        """Closes the bar and returns the summary (the caller prints it).

        The bar's last ``eval=`` becomes the final evaluation's, so that it and the
        summary's "final eval return" are the same figure.
        """
        final = _finite(final_eval)
        if final is not None:
            self.record_eval(final)
            self.bar.set_postfix(self.postfix(), refresh=True)
        self.bar.close()
        wall = time.perf_counter() - self.start
        done = self.frames - self.start_frames
        lines = [
            f"done: {self.frames:,} frames ({done:,} in this run) in {wall:.0f} s"
            + (f" ({done / wall:,.0f} frames/s)" if wall > 0 and done else ""),
            "  final eval return: " + (f"{final:.3f}" if final is not None else "n/a (eval.episodes=0)"),
            "  best eval return: " + (f"{self.best_eval:.3f}" if self.best_eval is not None else "n/a"),
        ]
        if logs is not None:
            lines.append(f"  logs: {logs}")
        if checkpoint is not None:
            lines.append(f"  checkpoint: {checkpoint}")
        mp4 = [str(v) for v in videos if str(v).endswith(".mp4")]
        if mp4:
            lines.append(f"  videos: {mp4[-1]}" + (f" (and {len(mp4) - 1} earlier)" if len(mp4) > 1 else ""))
        return "\n".join(lines)

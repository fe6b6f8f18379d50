"""Stopping cleanly on SIGINT and SIGTERM: finish the iteration in flight, checkpoint, exit 130 / 143.

SIGTERM is what SLURM and most schedulers send before preemption, SIGINT what Ctrl-C
sends. Inside :class:`StopSignals` the first of them only sets a flag; the run loop
looks at it after each iteration, writes a checkpoint and raises :class:`RunStopped`,
which the command-line entry points turn into one line (the checkpoint and the command
that resumes it) and the exit status ``128 + signal``. A second signal ends the process
at once: the last complete checkpoint stays (checkpoints are written atomically).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(Exception):
    """The run stopped on a signal after writing a checkpoint.

    Attributes:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        checkpoint: the checkpoint written on the way out.
        frames: frames collected at that checkpoint.
        exit_code: ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signal_name: str, checkpoint: Path, frames: int) -> None:
        self.signal_name = signal_name
        self.checkpoint = Path(checkpoint)
        self.frames = frames
        self.exit_code = 128 + int(getattr(signal, signal_name))
        super().__init__(f"stopped by {signal_name} at {frames} frames; checkpoint {self.checkpoint}")

    def resume_command(self, program: str = "harl-train") -> str:
        """The command that continues this run in the same run dir."""
        return f"{program} resume={_quoted(str(self.checkpoint.parent))}"


def _quoted(path: str) -> str:
    """A path as Hydra's command line takes it: quoted when it has spaces or special characters."""
    plain = all(c.isalnum() or c in "/._-~+" for c in path)
    return path if plain else "'\"" + path.replace('"', '\\"') + "\"'"


class StopSignals:
    """Within the block, SIGINT / SIGTERM ask the run to stop instead of killing it.

    Outside the main thread (where handlers cannot be installed) it does nothing.

    Attributes:
        requested: a stop signal arrived.
        signal_name: which one (``None`` before any).

    Example:
        >>> with StopSignals() as stop:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     stop.requested, stop.signal_name
        (True, 'SIGTERM')
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested:  # the second signal: stop now; the last complete checkpoint stays
            print(f"\n{name} again: stopping at once (the last complete checkpoint stays)", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.requested, self.signal_name = True, name
        print(
            f"\n{name}: stopping after this iteration with a checkpoint (send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

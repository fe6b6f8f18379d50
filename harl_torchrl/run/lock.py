"""One run owns a run dir: a lock file naming the owner's pid and host.

Two runs writing one run dir corrupt each other (one run's save removed the other's
temp file; both appended to ``metrics.csv``). :class:`RunDirLock` makes the second one
stop before anything is built, in one line naming the owner; a lock left by a process
that no longer exists on this host is taken over with a note.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import TracebackType

from harl_torchrl.errors import ConfigError

LOCK_NAME = ".harl_run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunDirLock:
    """Holds ``<run dir>/.harl_run.lock`` for the duration of a ``with`` block.

    Args:
        run_dir: the run dir (created if missing).

    Raises:
        ConfigError: another live process (on this host, or any process on another
            host) holds the lock.

    Example:
        >>> import tempfile
        >>> run_dir = Path(tempfile.mkdtemp())
        >>> with RunDirLock(run_dir):
        ...     try:
        ...         RunDirLock(run_dir).__enter__()
        ...     except ConfigError as err:
        ...         print(err)  # doctest: +ELLIPSIS
        run dir ... is in use by another run of this process
        >>> (run_dir / LOCK_NAME).exists()
        False
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}
        self._held = False

    def __enter__(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after removing a dead owner's lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_take_over()
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self.owner, handle)
            self._held = True
            return self
        raise ConfigError(f"run dir {self.path.parent}: could not take its lock {self.path}. Fix: remove that file")

    def _refuse_or_take_over(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, host = -1, "?"  # an empty or torn lock file: its writer died while writing it
        if host == self.owner["host"] and pid == self.owner["pid"]:
            raise ConfigError(f"run dir {self.path.parent} is in use by another run of this process")
        if (host == self.owner["host"] and not _alive(pid)) or pid < 0:
            print(f"note: run dir {self.path.parent}: taking over the lock of process {pid}, which no longer runs")
            self.path.unlink(missing_ok=True)
            return
        raise ConfigError(
            f"run dir {self.path.parent} is in use by another run: process {pid} on {host} holds {self.path}. "
            "Fix: wait for it to finish (or stop it: it checkpoints on SIGINT), or choose another hydra.run.dir; "
            f"if that process is gone (another host), remove {self.path}"
        )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

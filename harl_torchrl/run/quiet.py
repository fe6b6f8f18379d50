"""Libraries' INFO lines kept out of a run's terminal and progress bar.

TorchRL logs a storage's size in colour codes, PyOpenGL (imported by VMAS's renderer)
"No OpenGL_accelerate module loaded"; under Hydra's job logging both reach standard
output and cut into the progress bar. Within :func:`quiet_library_logs` those loggers
report warnings and errors only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

#: The loggers quieted during a run.
QUIET_LOGGERS = ("torchrl", "OpenGL")


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Within the block, the :data:`QUIET_LOGGERS` report warnings and errors only.

    Example:
        >>> with quiet_library_logs():
        ...     logging.getLogger("torchrl").isEnabledFor(logging.INFO)
        False
    """
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)

"""Device selection with an error that says what to do when CUDA is missing; the CPU thread count."""

from __future__ import annotations

import os

import torch

from harl_torchrl.errors import ConfigError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turns a user's device setting into a :class:`torch.device`.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA when available,
            else CPU) or ``None`` (same as ``"cpu"``).

    Returns:
        The device to use.

    Raises:
        ConfigError: CUDA was asked for and is not available, or the name is not a
            device.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"{device!r} is not a device; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device!r} was requested but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False). Use device=cpu, or device=auto to pick "
                "CUDA only when present."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif resolved.type != "cpu":
        raise ConfigError(f"device type {resolved.type!r} is not supported; use 'cpu' or 'cuda'")
    return resolved


def set_threads(threads: int | None) -> int:
    """Sets torch's intra-op CPU thread count (the run config's ``threads``) and returns the one in force.

    Called by the recipes before anything is built, so that every env, network and
    collector of the run uses it.

    Args:
        threads: threads to use (>= 1). ``None`` leaves the choice to the environment:
            ``OMP_NUM_THREADS`` when it is set (read now, so that a launcher's
            ``hydra.job.env_set`` applies even though torch was imported before it),
            else torch's current setting (one thread per core unless changed).

    Returns:
        ``torch.get_num_threads()`` afterwards.

    Example:
        >>> import os
        >>> from unittest import mock
        >>> before = torch.get_num_threads()
        >>> set_threads(1)
        1
        >>> with mock.patch.dict(os.environ, {"OMP_NUM_THREADS": "2"}):
        ...     set_threads(None)
        2
        >>> _ = set_threads(before)
    """
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads is not None and threads >= 1:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()

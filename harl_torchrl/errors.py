"""Exceptions raised for bad user input, before any training starts."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A setting that cannot work, with the reason and the fix in its message.

    Subclasses :class:`ValueError` so that callers catching the built-in keep working.
    """


class MissingDependencyError(ImportError):
    """An optional package is needed; the message names the extra that installs it."""


def unknown_choice(kind: str, value: object, valid: Iterable[str]) -> ConfigError:
    """Builds the error for a name that is not among the valid choices.

    Args:
        kind: what the name refers to, e.g. ``"VMAS scenario"``.
        value: the name that was given.
        valid: every accepted name.

    Returns:
        A :class:`ConfigError` listing the valid names and the closest matches.

    Example:
        >>> str(unknown_choice("algorithm", "hapo", ["happo", "hatrpo"]))
        "unknown algorithm 'hapo'. Did you mean 'happo'? Valid choices: happo, hatrpo"
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(str(value), valid, n=1)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown {kind} {value!r}.{hint} Valid choices: {', '.join(valid)}")


def require_positive(name: str, value: float) -> None:
    """Raises :class:`ConfigError` unless ``value`` is a finite number > 0.

    Example:
        >>> require_positive("lr", 5e-4)
        >>> require_positive("lr", -1)
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: lr must be > 0, got -1
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be > 0, got {value!r}")

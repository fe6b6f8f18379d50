"""Exceptions raised for bad user input, before any training starts."""

from __future__ import annotations

import difflib
import traceback
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


def failure_reason(err: BaseException) -> str:
    """The reason a dependency gave for refusing a setting, never an empty string.

    A bare ``assert`` in a dependency (VMAS's ``balance`` asserts ``self.n_agents > 1``)
    raises an :class:`AssertionError` without a message; the failing source line, with
    its file and line number, is then the only reason there is, so it is what we report.

    Args:
        err: the exception the dependency raised (with its traceback).

    Returns:
        ``str(err)`` when it says something, else the exception's type and the source
        line of the innermost frame that raised it.

    Example:
        >>> def build(n_agents):
        ...     assert n_agents > 1
        >>> try:
        ...     build(1)
        ... except AssertionError as err:
        ...     print(failure_reason(err).split(" (")[0])
        AssertionError at `assert n_agents > 1`
    """
    message = str(err).strip()
    if message:
        return message
    frames = traceback.extract_tb(err.__traceback__)
    if not frames or not frames[-1].line:
        return type(err).__name__
    frame = frames[-1]
    return f"{type(err).__name__} at `{frame.line.strip()}` ({frame.filename}, line {frame.lineno})"

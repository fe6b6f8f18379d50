"""Random-number-generator states as checkpoint-safe values, and seeding.

A resumed run draws the same random numbers as an uninterrupted one only if every
generator it uses is saved and restored: torch's, numpy's legacy global ``RandomState``
and Python's :mod:`random` (:func:`rng_state`, :func:`set_rng_state`), and the
generators that environments hold (:func:`numpy_legacy_state`,
:func:`python_random_state`, :func:`generator_state` for a numpy ``Generator``).
Every state is written as tensors, numbers, strings, lists and dicts, what
``torch.load(weights_only=True)`` reads back; the checkpoint file format itself lives in
:mod:`harl_torchrl.utils.checkpoint` and knows nothing of these.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The global torch, numpy and Python random states, as checkpoint-safe values.

    Example:
        >>> state = rng_state()
        >>> a = torch.rand(1); set_rng_state(state); bool(torch.rand(1) == a)
        True
    """
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": numpy_legacy_state(np_state),
        "python": python_random_state(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(numpy_legacy_state_from(state["numpy"]))
    random.setstate(python_random_state_from(state["python"]))


def numpy_legacy_state(np_state: tuple) -> dict[str, Any]:
    """``np.random.get_state()`` (or a ``RandomState``'s) as tensors and numbers.

    Example:
        >>> rs = np.random.RandomState(0)
        >>> saved = numpy_legacy_state(rs.get_state()); a = rs.rand()
        >>> rs.set_state(numpy_legacy_state_from(saved)); rs.rand() == a
        True
    """
    return {
        "keys": torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)),
        "pos": int(np_state[2]),
        "has_gauss": int(np_state[3]),
        "cached_gaussian": float(np_state[4]),
    }


def numpy_legacy_state_from(state: Mapping[str, Any]) -> tuple:
    """Inverse of :func:`numpy_legacy_state`."""
    keys = state["keys"].numpy().astype(np.uint32)
    return ("MT19937", keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"]))


def python_random_state(py_state: tuple) -> list[Any]:
    """``random.getstate()`` as a list of ints (checkpoint-safe).

    Example:
        >>> r = random.Random(0)
        >>> saved = python_random_state(r.getstate()); a = r.random()
        >>> r.setstate(python_random_state_from(saved)); r.random() == a
        True
    """
    return [list(py_state[1]), py_state[0], py_state[2]]


def python_random_state_from(state: list[Any]) -> tuple:
    """Inverse of :func:`python_random_state`."""
    internal, version = state[0], state[1]
    gauss = state[2] if len(state) > 2 else None
    return (version, tuple(internal), gauss)


def generator_state(generator: np.random.Generator) -> dict[str, Any]:
    """A numpy ``Generator``'s bit-generator state with its big integers as decimal strings.

    ``torch.load(weights_only=True)`` reads Python ints only up to 64 bits; PCG64's
    128-bit state is kept as text.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> saved = generator_state(rng); a = rng.random()
        >>> set_generator_state(rng, saved); rng.random() == a
        True
    """
    return _big_ints_to_text(generator.bit_generator.state)


def set_generator_state(generator: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Restores :func:`generator_state` into ``generator`` (same bit generator type)."""
    generator.bit_generator.state = _text_to_big_ints(state)


def _big_ints_to_text(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _big_ints_to_text(v) for k, v in obj.items()}
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, (int, np.integer)):
        return {"__int__": str(int(obj))}
    if isinstance(obj, np.ndarray):
        return {"__array__": torch.from_numpy(obj.copy()), "dtype": str(obj.dtype)}
    return obj


def _text_to_big_ints(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        if "__int__" in obj:
            return int(obj["__int__"])
        if "__array__" in obj:
            return obj["__array__"].numpy().astype(obj["dtype"])
        return {k: _text_to_big_ints(v) for k, v in obj.items()}
    return obj


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and torch (CPU and CUDA).

    Example:
        >>> seed_everything(0); a = (random.random(), np.random.rand(), torch.rand(1))
        >>> seed_everything(0); a == (random.random(), np.random.rand(), torch.rand(1))
        True
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

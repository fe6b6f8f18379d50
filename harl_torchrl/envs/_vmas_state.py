"""Batched partial resets for VMAS worlds.

VMAS resets one sub-environment at a time (``Environment.reset_at(i)``), and every
such call rewrites whole ``(num_envs, ...)`` tensors with ``torch.where``: resetting
``k`` finished sub-environments costs ``k`` passes over the full batch. On scenarios
whose episodes end early (``balance``) this dominates the step time.

Two batched alternatives live here. Both rely on VMAS's convention that
per-environment state is held in tensors whose first dimension is the number of
sub-environments, reachable from the scenario object:

* :class:`TwinResetter` keeps a small twin of the world (same scenario, a few
  sub-environments), resets the twin whole, and copies its fresh rows into the rows
  being reset. Its cost does not grow with the size of the main world.
* :func:`reset_where` resets the whole main world once and keeps the fresh values
  only in the rows being reset. No twin is needed, but it costs a full reset.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch

Path = tuple[Any, ...]  # attribute names, list indices and dict keys from the scenario


_TRAVERSABLE: dict[tuple[type, tuple[str, ...]], bool] = {}


def _is_traversable(obj: Any, modules: tuple[str, ...]) -> bool:
    cls = type(obj)
    known = _TRAVERSABLE.get((cls, modules))
    if known is not None:
        return known
    if isinstance(obj, (torch.Tensor, torch.nn.Module, type)) or not hasattr(obj, "__dict__"):
        result = False
    elif inspect.isroutine(obj) or inspect.ismodule(obj):
        result = False
    else:
        module = cls.__module__ or ""
        result = module == "vmas" or module.startswith("vmas.") or module in modules
    _TRAVERSABLE[(cls, modules)] = result
    return result


def _container(obj: Any) -> Any:
    """Where ``obj``'s children live: the object itself for lists, dicts and tuples, else its ``__dict__``."""
    return obj if isinstance(obj, (dict, list, tuple)) else vars(obj)


def _resolve(root: Any, path: Path) -> tuple[Any, Any] | None:
    """``(container, key)`` of ``path`` from ``root``, or None where the path no longer exists."""
    obj = root
    try:
        for key in path[:-1]:
            obj = _container(obj)[key]
        return _container(obj), path[-1]
    except (KeyError, IndexError, TypeError):
        return None


def _walk(root: Any) -> Iterator[tuple[Path, Any, list[tuple[Any, Any]], tuple[str, ...]]]:
    """Visits ``root`` and everything reachable from it once: yields ``(path, obj, items, modules)``.

    ``items`` are ``obj``'s ``(key, child)`` pairs (a dict's items, a list's or
    tuple's indices, an object's ``__dict__``). Only dicts, lists, tuples and objects
    whose class comes from VMAS or from the root's own module are entered, so that
    the walk never wanders into torch, numpy or the renderer. Two worlds built by
    the same scenario class are visited along the same paths, in the same order.
    """
    modules = (type(root).__module__ or "",)
    seen: set[int] = set()
    stack: list[tuple[Path, Any]] = [((), root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        container = _container(obj)
        items = list(container.items()) if isinstance(container, dict) else list(enumerate(container))
        yield path, obj, items, modules
        for key, value in items:
            if isinstance(value, (dict, list, tuple)) or _is_traversable(value, modules):
                stack.append(((*path, key), value))


def iter_batched_tensors(root: Any, batch_dim: int) -> Iterator[tuple[Path, Any, Any, torch.Tensor]]:
    """Yields ``(path, container, key, tensor)`` for every batched tensor reachable from ``root``.

    ``container[key]`` is where the tensor lives (an object's ``__dict__``, a list or
    a dict) and ``path`` the keys leading there from ``root``; two worlds built by
    the same scenario class yield the same paths, in the same order. A tensor is
    batched when its first dimension has size ``batch_dim``. Tensors inside tuples
    are skipped: they cannot be replaced.
    """
    for path, obj, items, _ in _walk(root):
        if isinstance(obj, tuple):
            continue
        container = _container(obj)
        for key, value in items:
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_dim:
                yield (*path, key), container, key, value


def global_state(root: Any, batch_dim: int) -> dict[Path, Any]:
    """The state a reset could change that is *not* per sub-environment.

    Returns ``{path: value}`` for every non-batched tensor (cloned), Python scalar,
    string or ``None``, and ``("ref", id(obj))`` for references to VMAS objects, reachable
    from ``root`` like :func:`iter_batched_tensors`'s walk.
    """
    found: dict[Path, Any] = {}
    for path, _, items, modules in _walk(root):
        for key, value in items:
            child = (*path, key)
            if isinstance(value, torch.Tensor):
                if value.dim() == 0 or value.shape[0] != batch_dim:
                    found[child] = value.detach().clone()
            elif value is None or isinstance(value, (bool, int, float, str)):
                found[child] = value
            elif not isinstance(value, (dict, list, tuple)) and _is_traversable(value, modules):
                found[child] = ("ref", id(value))
    return found


def _same_state(a: dict[Path, Any], b: dict[Path, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, torch.Tensor):
            if not isinstance(other, torch.Tensor) or value.shape != other.shape or not torch.equal(value, other):
                return False
        elif value != other:
            return False
    return True


def reset_draws_global_state(scenario: Any, reset: Callable[[], None], trials: int = 5) -> bool:
    """Whether full resets change state shared by all sub-environments (e.g. one goal for the batch).

    Such state cannot be given to a subset of sub-environments: VMAS's own per-index
    reset leaves it alone, while a full reset redraws it for everyone. Batched
    partial resets (twin or blend) are then not faithful.

    Args:
        scenario: a scenario whose world has been made (a small twin will do).
        reset: resets its whole world.
        trials: full resets compared with the first (random draws can coincide).
    """
    batch_dim = scenario.world.batch_dim
    reset()
    first = global_state(scenario, batch_dim)
    for _ in range(trials):
        reset()
        if not _same_state(first, global_state(scenario, batch_dim)):
            return True
    return False


def reset_where(scenario: Any, mask: torch.Tensor) -> None:
    """Resets the sub-environments selected by ``mask`` with one full reset, blended.

    Rows where ``mask`` is ``False`` keep every piece of batched state bit-identical;
    rows where it is ``True`` get a fresh initial state drawn by the scenario's own
    ``reset_world_at(None)``.

    Args:
        scenario: a VMAS ``BaseScenario`` whose world has been made.
        mask: boolean tensor of shape ``(num_envs,)``.
    """
    batch_dim = scenario.world.batch_dim
    before = {(id(c), k): (t, t._version, t.clone()) for _, c, k, t in iter_batched_tensors(scenario, batch_dim)}
    scenario.env_reset_world_at(None)
    # values hold the fresh tensor too, so that its id cannot be reused while cached
    merged: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    keep = mask.logical_not()
    for _, container, key, fresh in iter_batched_tensors(scenario, batch_dim):
        old = before.get((id(container), key))
        if old is None or old[2].shape != fresh.shape:
            continue  # state created by the reset itself: fresh everywhere
        original, version, snapshot = old
        if fresh is original and fresh._version == version:
            continue  # the reset did not touch it
        cache_key = (id(original), id(fresh))
        if cache_key not in merged:
            row_keep = keep.view(-1, *([1] * (fresh.dim() - 1)))
            merged[cache_key] = (fresh, torch.where(row_keep, snapshot.to(fresh.dtype), fresh))
        container[key] = merged[cache_key][1]


class TwinResetter:
    """Resets rows of a VMAS world by copying them from a small, freshly reset twin.

    Only the state that the twin's reset actually writes is copied (detected by
    tensor identity and version counters), so state a VMAS reset leaves alone (for
    example forces from the last step) keeps its values, as with VMAS's own
    per-index reset. Each twin row is handed out once, in order, and the twin is
    reset again only when its rows run out: resetting a few finished rows costs a
    copy, not a reset of a world. Rows of one twin reset are independent draws
    for scenarios whose reset draws per-environment state (the only ones this is
    used for: :func:`reset_draws_global_state` detects the others).

    Args:
        scenario: the main world's scenario.
        twin_scenario: a scenario of the same class and arguments whose world has
            a few sub-environments.
        reset_twin: resets the twin's whole world (runs in the caller's random
            stream).

    Raises:
        ValueError: the twin's entities differ from the main world's, or state
            batched in both has different shapes (it cannot stand in for the main
            world).
    """

    def __init__(self, scenario: Any, twin_scenario: Any, reset_twin: Callable[[], None]) -> None:
        self.scenario = scenario
        self.twin = twin_scenario
        self.size = twin_scenario.world.batch_dim
        self.reset_twin = reset_twin
        names = [[e.name for e in s.world.entities] for s in (scenario, twin_scenario)]
        if names[0] != names[1]:
            raise ValueError(f"the twin world's entities {names[1]} do not match the main world's {names[0]}")
        main = {p: t.shape[1:] for p, _, _, t in iter_batched_tensors(scenario, scenario.world.batch_dim)}
        twin = {p: t.shape[1:] for p, _, _, t in iter_batched_tensors(twin_scenario, self.size)}
        mismatched = [p for p in main.keys() & twin.keys() if main[p] != twin[p]]
        if mismatched:
            raise ValueError(f"the twin world's batched state does not match the main world's at {mismatched[:3]}")
        # The twin is never stepped and was reset when it was built, so where its
        # state lives does not change: only the tensors there do.
        self._twin_locations = [(p, c, k) for p, c, k, _ in iter_batched_tensors(twin_scenario, self.size)]
        self._fresh: list[tuple[Path, torch.Tensor]] = []
        self._cursor = self.size  # no fresh rows until the first reset

    def reset_rows(self, indices: torch.Tensor) -> None:
        """Gives the rows ``indices`` of the main world fresh initial states.

        Twin rows are used once each, in order; the twin is reset again only when
        they run out, so a reset of a few rows costs a copy, not a whole reset.
        """
        batch_dim = self.scenario.world.batch_dim
        remaining = indices
        while len(remaining):
            if self._cursor == self.size:
                self._refresh()
            count = min(len(remaining), self.size - self._cursor)
            chunk, remaining = remaining[:count], remaining[count:]
            rows = slice(self._cursor, self._cursor + count)
            self._cursor += count
            written: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            for path, source in self._fresh:
                # paths are resolved from the root each time: the main world is stepped
                # and may have replaced objects along the way
                location = _resolve(self.scenario, path)
                if location is None:
                    continue
                container, main_key = location
                tensor = container[main_key]
                if not isinstance(tensor, torch.Tensor) or tensor.shape != (batch_dim, *source.shape[1:]):
                    continue
                if id(tensor) not in written:  # tensors shared by several locations stay shared
                    fresh = source[rows].to(device=tensor.device, dtype=tensor.dtype)
                    written[id(tensor)] = (tensor, tensor.index_put((chunk,), fresh))  # holding `tensor` pins its id
                container[main_key] = written[id(tensor)][1]

    def _refresh(self) -> None:
        """Resets the twin and records which of its tensors the reset wrote."""
        # Keep the old tensors themselves (not their ids): a freed tensor's id can be
        # reused by the very tensor the reset allocates in its place.
        stamps = [(c[k], c[k]._version) for _, c, k in self._twin_locations]
        self.reset_twin()
        self._fresh = []
        for (path, container, key), (old, version) in zip(self._twin_locations, stamps, strict=True):
            source = container[key]
            if source is old and source._version == version:
                continue  # the reset does not write it
            self._fresh.append((path, source))
        self._cursor = 0

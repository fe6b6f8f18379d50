"""Batched partial resets for VMAS worlds.

VMAS resets one sub-environment at a time (``Environment.reset_at(i)``), and every
such call rewrites whole ``(num_envs, ...)`` tensors with ``torch.where``: resetting
``k`` finished sub-environments costs ``k`` passes over the full batch. On scenarios
whose episodes end early (``balance``) this dominates the step time.

This module resets any subset in **one** batched call instead:

1. record every batched tensor reachable from the scenario (entity states, actions,
   scenario buffers such as shaping terms), keyed by where it lives;
2. reset the whole world once with ``scenario.env_reset_world_at(None)``;
3. for every location, keep the fresh value in the rows being reset and the recorded
   value everywhere else (``torch.where``).

A tensor counts as batched when its first dimension equals the number of
sub-environments, which is VMAS's convention for per-environment state.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import torch

_Location = tuple[Any, Any]  # (container, key): an object's __dict__, a list or a dict


def _is_traversable(obj: Any, modules: tuple[str, ...]) -> bool:
    if isinstance(obj, (torch.Tensor, torch.nn.Module, type)) or not hasattr(obj, "__dict__"):
        return False
    if inspect.isroutine(obj) or inspect.ismodule(obj):
        return False
    module = type(obj).__module__ or ""
    return module == "vmas" or module.startswith("vmas.") or module in modules


def iter_batched_tensors(root: Any, batch_dim: int) -> Iterator[tuple[_Location, torch.Tensor]]:
    """Yields ``((container, key), tensor)`` for every batched tensor reachable from ``root``.

    Args:
        root: the object to start from (a VMAS scenario).
        batch_dim: the number of sub-environments; tensors whose first dimension has
            this size are yielded.

    Only objects whose class comes from VMAS or from the root's own module are
    entered, so that the walk never wanders into torch, numpy or the renderer.
    """
    modules = (type(root).__module__ or "",)
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            items = list(obj.items())
            container = obj
        elif isinstance(obj, list):
            items = list(enumerate(obj))
            container = obj
        elif isinstance(obj, tuple):
            # tuples are immutable: enter them but their tensors cannot be replaced
            stack.extend(v for v in obj if not isinstance(v, torch.Tensor))
            continue
        elif obj is root or _is_traversable(obj, modules):
            container = vars(obj)
            items = list(container.items())
        else:
            continue
        for key, value in items:
            if isinstance(value, torch.Tensor):
                if value.dim() > 0 and value.shape[0] == batch_dim:
                    yield (container, key), value
            elif isinstance(value, (dict, list, tuple)) or hasattr(value, "__dict__"):
                stack.append(value)


def reset_where(scenario: Any, mask: torch.Tensor) -> None:
    """Resets the sub-environments selected by ``mask`` in one batched call.

    Rows where ``mask`` is ``False`` keep every piece of batched state bit-identical;
    rows where it is ``True`` get a fresh initial state drawn by the scenario's own
    ``reset_world_at(None)``.

    Args:
        scenario: a VMAS ``BaseScenario`` whose world has been made.
        mask: boolean tensor of shape ``(num_envs,)``.

    Caveats:
        State that a scenario keeps outside tensors with a leading batch dimension
        (a Python counter, a tensor whose first dimension merely happens to equal
        ``num_envs``) is not blended; such a scenario should use per-index resets
        (``reset_mode="loop"`` in :func:`~harl_torchrl.envs.make_vmas_env`).
    """
    world = scenario.world
    batch_dim = world.batch_dim
    before = {(id(c), k): (t, t.clone()) for (c, k), t in iter_batched_tensors(scenario, batch_dim)}
    scenario.env_reset_world_at(None)
    merged: dict[tuple[int, int], torch.Tensor] = {}
    keep = mask.logical_not()
    for (container, key), fresh in iter_batched_tensors(scenario, batch_dim):
        old = before.get((id(container), key))
        if old is None or old[1].shape != fresh.shape:
            continue  # state created by the reset itself: fresh everywhere
        original, snapshot = old
        cache_key = (id(original), id(fresh))
        if cache_key not in merged:
            row_keep = keep.view(-1, *([1] * (fresh.dim() - 1)))
            merged[cache_key] = torch.where(row_keep, snapshot.to(fresh.dtype), fresh)
        container[key] = merged[cache_key]

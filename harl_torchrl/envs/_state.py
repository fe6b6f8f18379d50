"""Capture and restore the state of a simulator's Python objects as checkpoint-safe data.

Our env layers run simulators whose state lives in plain Python objects: VMAS worlds
(torch tensors on entities), mpe2 worlds (numpy arrays, numpy ``Generator``s, counters).
:func:`capture_object_state` walks such an object graph and records it as nested dicts
and lists of tensors, numbers and strings only (what ``torch.load(weights_only=True)``
reads; nothing is pickled), and :func:`restore_object_state` writes it back *in place*
into a freshly built simulator of the same configuration, so that references other code
holds to its objects stay valid.

The walk enters dicts, lists, tuples and objects whose class comes from one of the given
module prefixes (``"vmas"``, ``"mpe2"``, ...); it never wanders into torch, numpy, gym
spaces or renderers, which it leaves as they are (``"skip"``). Recorded leaves:

* torch tensors (identity kept: a tensor reachable from two places is restored as one
  tensor), numpy arrays (as tensors plus their dtype), numpy scalars (dtype and value);
* Python ``None``, bools, ints, floats and strings;
* numpy ``Generator`` and ``RandomState`` states (restored into the existing generator);
* references to objects seen elsewhere in the graph (by their shortest path, found
  breadth-first, so that e.g. ``agent.goal = world.landmarks[2]`` is restored as a
  reference to ``world.landmarks[2]`` of the new world).

:func:`restore_object_state` re-captures the restored graph and compares digests, so a
state that cannot be restored exactly raises instead of continuing quietly.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from harl_torchrl.utils.rng import (
    generator_state,
    numpy_legacy_state,
    numpy_legacy_state_from,
    set_generator_state,
)

Step = tuple[str, Any]  # ("a", attribute) | ("i", index) | ("k", dict key)
_KEY_TYPES = (str, int, bool)


class StateRestoreError(RuntimeError):
    """A captured state does not fit the object it is restored into."""


def _traversable(obj: Any, modules: Sequence[str]) -> bool:
    if isinstance(obj, (torch.Tensor, np.ndarray, np.generic, type, torch.nn.Module)) or not hasattr(obj, "__dict__"):
        return False
    if inspect.isroutine(obj) or inspect.ismodule(obj):
        return False
    module = type(obj).__module__ or ""
    return any(module == m or module.startswith(f"{m}.") for m in modules)


def _children(obj: Any) -> list[tuple[Step, Any]]:
    if isinstance(obj, dict):
        if not all(isinstance(k, _KEY_TYPES) for k in obj):
            return []  # dicts keyed by objects (e.g. caches): not recorded
        return [(("k", k), v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(("i", i), v) for i, v in enumerate(obj)]
    return [(("a", k), v) for k, v in vars(obj).items()]


def _canonical_paths(root: Any, modules: Sequence[str]) -> dict[int, list[Step]]:
    """Breadth-first: the shortest path to every traversable object (first found wins)."""
    paths: dict[int, list[Step]] = {id(root): []}
    queue = deque([(root, [])])
    while queue:
        obj, path = queue.popleft()
        for step, child in _children(obj):
            if _traversable(child, modules) and id(child) not in paths:
                paths[id(child)] = [*path, step]
                queue.append((child, [*path, step]))
            elif type(child) in (list, tuple) or isinstance(child, dict):
                queue.append((child, [*path, step]))
    return paths


def capture_object_state(root: Any, modules: Sequence[str]) -> dict[str, Any]:
    """Records ``root``'s object graph as checkpoint-safe data (see the module docstring).

    Args:
        root: the simulator object (a VMAS ``Environment``, an mpe2 env).
        modules: module prefixes whose objects are entered (e.g. ``("mpe2", "pettingzoo")``).

    Returns:
        ``{"tree": ..., "tensors": [...]}``: the nested record and the unique tensors.

    Example:
        >>> class Box:  # a toy simulator object (classes of this module are entered)
        ...     def __init__(self):
        ...         self.pos, self.rng, self.items = np.zeros(2), np.random.default_rng(0), []
        >>> box = Box(); box.items.append(box.pos)
        >>> saved = capture_object_state(box, [__name__])
        >>> box.pos += 1; _ = box.rng.random()
        >>> restore_object_state(box, saved, [__name__])
        >>> box.pos.tolist(), box.items[0] is box.pos
        ([0.0, 0.0], True)
    """
    paths = _canonical_paths(root, modules)
    tensors: list[torch.Tensor] = []
    tensor_index: dict[int, int] = {}

    def table(value: torch.Tensor | np.ndarray) -> int:
        key = id(value)
        if key not in tensor_index:
            tensor_index[key] = len(tensors)
            if isinstance(value, np.ndarray):
                tensors.append(torch.from_numpy(np.array(value, copy=True)))
            else:
                tensors.append(value.detach().clone())
        return tensor_index[key]

    def record(obj: Any, path: list[Step], on_stack: set[int]) -> dict[str, Any]:
        if isinstance(obj, torch.Tensor):
            return {"k": "tensor", "id": table(obj)}
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                return {"k": "skip"}
            return {"k": "ndarray", "id": table(obj), "dtype": str(obj.dtype)}
        if isinstance(obj, np.generic):
            return {"k": "npscalar", "dtype": str(obj.dtype), "v": obj.item()}
        if obj is None or isinstance(obj, (bool, str)):
            return {"k": "value", "v": obj}
        if isinstance(obj, int):
            return {"k": "value", "v": obj} if -(2**63) <= obj < 2**63 else {"k": "bigint", "v": str(obj)}
        if isinstance(obj, float):
            return {"k": "value", "v": obj}
        if isinstance(obj, np.random.Generator):
            return {"k": "generator", "bit_generator": type(obj.bit_generator).__name__, "state": generator_state(obj)}
        if isinstance(obj, np.random.RandomState):
            return {"k": "randomstate", "state": numpy_legacy_state(obj.get_state())}
        if _traversable(obj, modules):
            canonical = paths.get(id(obj))
            if canonical is not None and canonical != path:
                return {"k": "ref", "path": _encode_path(canonical)}
            if id(obj) in on_stack:  # pragma: no cover - a cycle without a canonical path
                return {"k": "skip"}
            attrs = {}
            for (_, name), child in _children(obj):
                attrs[name] = record(child, [*path, ("a", name)], on_stack | {id(obj)})
            return {"k": "obj", "cls": type(obj).__qualname__, "attrs": attrs}
        if isinstance(obj, (list, tuple)):
            items = [record(child, [*path, ("i", i)], on_stack) for i, child in enumerate(obj)]
            return {"k": type(obj).__name__ if type(obj) in (list, tuple) else "skip", "items": items}
        if isinstance(obj, dict):
            if not all(isinstance(k, _KEY_TYPES) for k in obj):
                return {"k": "skip"}
            keys = list(obj)
            values = [record(obj[k], [*path, ("k", k)], on_stack) for k in keys]
            return {"k": "dict", "keys": keys, "values": values}
        return {"k": "skip"}

    return {"tree": record(root, [], set()), "tensors": tensors}


def _encode_path(path: list[Step]) -> list[list[Any]]:
    return [[kind, key] for kind, key in path]


def _resolve(root: Any, path: list[list[Any]]) -> Any:
    obj = root
    for kind, key in path:
        obj = getattr(obj, key) if kind == "a" else obj[key]
    return obj


def restore_object_state(root: Any, state: dict[str, Any], modules: Sequence[str], *, verify: bool = True) -> None:
    """Writes a :func:`capture_object_state` record back into ``root``, in place.

    Objects keep their identity (attributes are assigned into them); tensors and arrays
    are copies of the saved ones; generators get their saved state.

    Args:
        root: a simulator object built with the same configuration as the captured one.
        state: the record.
        modules: the same module prefixes as at capture.
        verify: re-capture after restoring and raise unless it matches the record.

    Raises:
        StateRestoreError: the record does not fit ``root`` (another scenario or
            configuration), or the restored state differs from the record.
    """
    tensors = [t.clone() for t in state["tensors"]]
    arrays: dict[int, np.ndarray] = {}
    refs: list[tuple[Any, Any, list[list[Any]]]] = []

    def build(node: dict[str, Any], current: Any, where: str) -> Any:
        kind = node["k"]
        if kind == "skip":
            return current
        if kind == "tensor":
            return tensors[node["id"]]
        if kind == "ndarray":
            if node["id"] not in arrays:
                arrays[node["id"]] = tensors[node["id"]].numpy().astype(node["dtype"], copy=True)
            return arrays[node["id"]]
        if kind == "npscalar":
            return np.dtype(node["dtype"]).type(node["v"])
        if kind == "value":
            return node["v"]
        if kind == "bigint":
            return int(node["v"])
        if kind == "generator":
            generator = current if isinstance(current, np.random.Generator) else None
            if generator is None or type(generator.bit_generator).__name__ != node["bit_generator"]:
                generator = np.random.Generator(getattr(np.random, node["bit_generator"])())
            set_generator_state(generator, node["state"])
            return generator
        if kind == "randomstate":
            generator = current if isinstance(current, np.random.RandomState) else np.random.RandomState()
            generator.set_state(numpy_legacy_state_from(node["state"]))
            return generator
        if kind == "ref":
            return _Ref(node["path"])
        if kind == "obj":
            if current is None or type(current).__qualname__ != node["cls"]:
                found = "nothing" if current is None else type(current).__qualname__
                raise StateRestoreError(f"{where}: the saved state has a {node['cls']} where this env has {found}")
            attrs = vars(current)
            for name in [n for n in attrs if n not in node["attrs"]]:
                del attrs[name]  # state created after the capture (e.g. a cache) would make the run diverge
            for name, child in node["attrs"].items():
                _assign(attrs, name, build(child, attrs.get(name), f"{where}.{name}"))
            return current
        if kind in ("list", "tuple"):
            items = node["items"]
            existing = current if isinstance(current, (list, tuple)) and len(current) == len(items) else None
            if kind == "list" and isinstance(current, list):
                current[:] = existing if existing is not None else [None] * len(items)
                for i, child in enumerate(items):
                    _assign(current, i, build(child, current[i], f"{where}[{i}]"))
                return current
            built = [build(child, existing[i] if existing else None, f"{where}[{i}]") for i, child in enumerate(items)]
            if any(isinstance(b, _Ref) for b in built):
                raise StateRestoreError(f"{where}: a reference inside a tuple cannot be restored")
            return built if kind == "list" else tuple(built)
        if kind == "dict":
            target = current if isinstance(current, dict) else {}
            for key in [k for k in target if k not in node["keys"]]:
                del target[key]
            for key, child in zip(node["keys"], node["values"], strict=True):
                _assign(target, key, build(child, target.get(key), f"{where}[{key!r}]"))
            return target
        raise StateRestoreError(f"{where}: unknown saved entry kind {kind!r}")

    def _assign(container: Any, key: Any, value: Any) -> None:
        if isinstance(value, _Ref):
            refs.append((container, key, value.path))
            container[key] = None
        else:
            container[key] = value

    build(state["tree"], root, type(root).__name__)
    for container, key, path in refs:
        try:
            container[key] = _resolve(root, path)
        except (AttributeError, KeyError, IndexError) as err:
            raise StateRestoreError(f"a saved reference to {path} does not exist in this env ({err})") from None
    if verify:
        where = _first_difference(state, capture_object_state(root, modules))
        if where is not None:
            raise StateRestoreError(
                f"the restored simulator state differs from the saved one at {where} (the env was built with "
                "another configuration, or holds state this capture cannot reach)"
            )


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Where two records first differ, or None; entries left as they were (``"skip"``) match anything."""

    def walk(x: Any, y: Any, where: str) -> str | None:
        if isinstance(x, dict) and isinstance(y, dict):
            if "skip" in (x.get("k"), y.get("k")):
                return None
            if x.get("k") in ("tensor", "ndarray") and x.get("k") == y.get("k"):
                tx, ty = a["tensors"][x["id"]], b["tensors"][y["id"]]
                same = tx.shape == ty.shape and tx.dtype == ty.dtype and torch.equal(tx, ty)
                return None if same else where
            if set(x) != set(y):
                return where
            for key in x:
                found = walk(x[key], y[key], f"{where}.{key}" if key not in ("attrs", "items", "values") else where)
                if found:
                    return found
            return None
        if isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                return f"{where} (length {len(x)} vs {len(y)})"
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                found = walk(u, v, f"{where}[{i}]")
                if found:
                    return found
            return None
        return None if x == y else f"{where} ({x!r} vs {y!r})"

    return walk(a["tree"], b["tree"], "root")


class _Ref:
    __slots__ = ("path",)

    def __init__(self, path: list[list[Any]]) -> None:
        self.path = path

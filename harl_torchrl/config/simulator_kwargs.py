"""Free-form simulator keywords (``env.scenario_kwargs``, ``env.env_kwargs``) checked before a build.

The env schemas keep the scenario's own keywords as a free-form mapping, since their names
depend on the scenario. This module reads what each simulator expects from the simulator
itself, so that a misspelt name or a value of the wrong type is one line naming the key
before anything is built:

* VMAS scenarios read their keywords in ``make_world(self, batch_dim, device, **kwargs)``
  as ``kwargs.pop("name", default)`` / ``kwargs.get(...)``; :func:`vmas_scenario_defaults`
  reads those names and defaults from the scenario's source (``ast`` over
  :func:`inspect.getsource`), following ``self.<method>(**kwargs)`` calls.
* PettingZoo MPE (``mpe2``) and Multi-Agent MuJoCo (gymnasium's MuJoCo envs) expose theirs
  as constructor signatures (:func:`mpe_scenario_defaults`, :func:`mamujoco_env_defaults`).

:func:`check_simulator_kwargs` then refuses an unknown name and a value whose type does not
fit the default's. Where nothing readable is exposed, the check is skipped and the
simulator's own build error is reported naming the key (:func:`kwargs_named_in`). Every
simulator import here is lazy (inside the function).
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import inspect
import re
import textwrap
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harl_torchrl.errors import ConfigError

__all__ = [
    "UNREADABLE",
    "check_simulator_kwargs",
    "kwargs_named_in",
    "mamujoco_env_defaults",
    "mpe_scenario_defaults",
    "vmas_count_key",
    "vmas_scenario_defaults",
]


class _Unreadable:
    """The default of a keyword whose default is not a constant (any value type is accepted)."""

    def __repr__(self) -> str:
        return "<computed>"


#: The default recorded for a keyword whose default is computed (its type is not checked).
UNREADABLE: Any = _Unreadable()

_COUNT_KEY = re.compile(r"^(n|num)_|(^|_)agents(_|$)|_per_|^dim_|points|steps|rays|horizon|frame_skip")


def vmas_count_key(key: str) -> bool:
    """Whether a VMAS keyword with an integer default counts things (a float would break VMAS).

    Most integer defaults in VMAS are numbers written without a point (``package_mass=5``,
    ``pos_shaping_factor=1``) and take a float as well; counts (``n_agents``,
    ``n_lidar_rays``, ``agents_with_same_goal``) feed ``range`` and must stay integers.

    Example:
        >>> vmas_count_key("n_agents"), vmas_count_key("package_mass")
        (True, False)
    """
    return bool(_COUNT_KEY.search(key))


def _default_value(node: ast.expr | None, namespace: Mapping[str, Any]) -> Any:
    """The value of a default expression made of constants and module-level names, else UNREADABLE."""
    if node is None:
        return UNREADABLE
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    allowed = (ast.Constant, ast.Name, ast.Attribute, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.Load)
    if not all(isinstance(n, allowed) for n in ast.walk(node)):
        return UNREADABLE  # a call or an expression of other keywords: computed at build time
    if any(isinstance(n, ast.Name) and n.id == "self" for n in ast.walk(node)):
        return UNREADABLE
    try:
        return eval(compile(ast.Expression(node), "<default>", "eval"), dict(namespace), {})
    except Exception:  # a name bound only at build time
        return UNREADABLE


def _read_method(cls: type, method: Callable[..., Any], seen: set[str]) -> dict[str, Any] | None:
    """The ``kwargs.pop/get`` names and defaults of one method, or None where ``kwargs`` escapes."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    except (OSError, TypeError, SyntaxError):
        return None
    fn = tree.body[0]
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    if fn.args.kwarg is None:
        return {}
    kw = fn.args.kwarg.arg
    namespace = getattr(method, "__globals__", {})
    found: dict[str, Any] = {}
    handled: set[int] = set()
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant):
                handled.update(id(c) for c in node.comparators)  # "name" in kwargs
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == kw
            and func.attr in ("pop", "get")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found[node.args[0].value] = _default_value(node.args[1] if len(node.args) > 1 else None, namespace)
            handled.add(id(func.value))
        elif isinstance(func, ast.Attribute) and func.attr == "check_kwargs_consumed":
            handled.update(id(a) for a in node.args)
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "self"
            and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kw for k in node.keywords)
        ):
            if func.attr in seen or not callable(getattr(cls, func.attr, None)):
                return None
            inner = _read_method(cls, getattr(cls, func.attr), seen | {func.attr})
            if inner is None:
                return None
            found.update(inner)
            handled.update(id(k.value) for k in node.keywords)
    escapes = [n for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id == kw and id(n) not in handled]
    return None if escapes else found


@functools.lru_cache(maxsize=64)
def _vmas_defaults_cached(scenario: str) -> tuple[tuple[str, Any], ...] | None:
    try:
        loader = importlib.import_module("vmas.scenarios")  # ``vmas.scenarios`` the attribute is a list
        cls = loader.load(f"{scenario}.py").Scenario
    except Exception:  # no VMAS, an unknown name: the build reports it
        return None
    found = _read_method(cls, cls.make_world, {"make_world"})
    return None if found is None else tuple(sorted(found.items()))


def vmas_scenario_defaults(scenario: str) -> dict[str, Any] | None:
    """The keywords a VMAS scenario reads and their defaults, read from its ``make_world`` source.

    Args:
        scenario: a VMAS scenario name, e.g. ``"navigation"``.

    Returns:
        ``{name: default}`` (:data:`UNREADABLE` where the default is computed, e.g. from
        another keyword), or ``None`` when the scenario cannot be loaded or its keywords
        cannot be read (``kwargs`` handed on to code that is not followed).

    Example:
        >>> defaults = vmas_scenario_defaults("balance")
        >>> defaults["n_agents"], defaults["random_package_pos_on_line"]
        (3, True)
    """
    found = _vmas_defaults_cached(scenario) if isinstance(scenario, str) else None
    return None if found is None else dict(found)


def _signature_defaults(func: Callable[..., Any], skip: Sequence[str] = ()) -> tuple[dict[str, Any], bool]:
    """A callable's keyword parameters with their defaults, and whether it takes ``**kwargs``."""
    params = inspect.signature(func).parameters.values()
    defaults = {
        p.name: UNREADABLE if p.default is inspect.Parameter.empty else p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip
    }
    return defaults, any(p.kind is p.VAR_KEYWORD for p in params)


def mpe_scenario_defaults(scenario: str) -> dict[str, Any] | None:
    """The keywords of an ``mpe2`` scenario's ``raw_env`` (what its ``parallel_env`` forwards).

    Args:
        scenario: ``"simple_spread"`` or the versioned module name ``"simple_spread_v3"``.

    Returns:
        ``{name: default}``, or ``None`` when ``mpe2`` or the scenario is not there.

    Example:
        >>> mpe_scenario_defaults("simple_spread")["N"]
        3
    """
    try:
        import pkgutil

        import mpe2

        names = [m.name for m in pkgutil.iter_modules(mpe2.__path__)]
        match = [n for n in names if n == scenario or re.fullmatch(rf"{re.escape(scenario)}_v\d+", n)]
        module = importlib.import_module(f"mpe2.{match[0]}") if match else None
    except Exception:  # no mpe2: the build reports it with the extra to install
        return None
    raw_env = getattr(module, "raw_env", None)
    if raw_env is None:
        return None
    defaults, var_kwargs = _signature_defaults(raw_env)
    return None if var_kwargs else defaults


def mamujoco_env_defaults(scenario: str) -> dict[str, Any] | None:
    """The keywords ``env.env_kwargs`` may set for a MaMuJoCo scenario, with their defaults.

    ``mamujoco_v1.parallel_env`` forwards unknown keywords to ``gymnasium.make(f"{scenario}-v5")``,
    which hands them to the MuJoCo env class and from there to ``MujocoEnv``: the union of
    the three signatures (``gymnasium.make``'s own, the env class's, ``MujocoEnv``'s).

    Example:
        >>> mamujoco_env_defaults("HalfCheetah")["ctrl_cost_weight"]
        0.1
    """
    try:
        import gymnasium
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
        from gymnasium.envs.registration import load_env_creator

        entry_point = gymnasium.spec(f"{scenario}-v5").entry_point
        creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    except Exception:  # no gymnasium MuJoCo, a custom scenario: the build reports it
        return None
    defaults, var_kwargs = _signature_defaults(creator, skip=("self",))
    if var_kwargs:
        # model_path, frame_skip and observation_space are passed by the env class itself
        base, _ = _signature_defaults(MujocoEnv, skip=("self", "model_path", "frame_skip", "observation_space"))
        defaults = {**base, **defaults}
    make, _ = _signature_defaults(gymnasium.make, skip=("id",))
    try:
        from gymnasium_robotics.envs.multiagent_mujoco.mujoco_multi import MultiAgentMujocoEnv

        own, _ = _signature_defaults(MultiAgentMujocoEnv, skip=("scenario", "agent_conf"))
    except Exception:  # the build reports a missing gymnasium-robotics
        own = {}
    return {**make, **defaults, **own}


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "a bool"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, Mapping):
        return "a mapping"
    return "a list"


def _fits(value: Any, default: Any, *, int_only: bool) -> bool:
    """Whether ``value`` has a type the simulator can use where it defaults to ``default``."""
    if default is UNREADABLE or default is None:
        return True
    if value is None:
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return not (isinstance(default, int) and int_only and not isinstance(value, int))
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, Mapping):
        return isinstance(value, Mapping)
    if isinstance(default, Sequence):
        return isinstance(value, Sequence) and not isinstance(value, str)
    return True  # a tensor, an object: not checked


def _example(key: str, default: Any) -> str:
    if isinstance(default, bool):
        return f"{key}=true or {key}=false"
    if isinstance(default, str):
        return f"{key}={default}"
    if isinstance(default, int | float):
        return f"{key}={default!r}, for example"
    if isinstance(default, Mapping):
        return f"{key}={{...}} (a mapping, like the default)"
    return f"{key}=[{', '.join(repr(v) for v in default)}], for example"


def check_simulator_kwargs(
    kwargs: Mapping[str, Any],
    defaults: Mapping[str, Any] | None,
    *,
    key_prefix: str,
    owner: str,
    int_only: Callable[[str], bool] = lambda key: True,
    reserved: Mapping[str, str] | None = None,
) -> None:
    """Refuses an unknown keyword or a value whose type does not fit the simulator's default.

    Args:
        kwargs: the keywords given, e.g. ``env.scenario_kwargs``.
        defaults: what the simulator reads, ``{name: default}``; ``None`` (nothing readable)
            checks nothing.
        key_prefix: the config path of ``kwargs``, e.g. ``"env.scenario_kwargs"``.
        owner: the simulator in words, e.g. ``"VMAS scenario 'navigation'"``.
        int_only: for an integer default, whether a float is refused too.
        reserved: names set by the env itself, each with the config key to set instead.

    Raises:
        ConfigError: one line naming ``<key_prefix>.<name>``, the value, the expected type
            and default, and the fix.

    Example:
        >>> check_simulator_kwargs({"collisions": False}, {"collisions": True}, key_prefix="env.k", owner="x")
        >>> try:
        ...     check_simulator_kwargs({"collisions": "no"}, {"collisions": True}, key_prefix="env.k", owner="x")
        ... except ConfigError as err:
        ...     print(str(err).split(" (its")[0])
        env.k.collisions='no' is a str, but x expects a bool
    """
    for name, value in kwargs.items():
        key = f"{key_prefix}.{name}"
        if reserved and name in reserved:
            raise ConfigError(f"{key} is set by the env itself. Fix: drop it and set {reserved[name]} instead")
        if defaults is None:
            continue
        if name not in defaults:
            settable = sorted(set(defaults) - set(reserved or ()))
            close = difflib.get_close_matches(name, settable, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(settable) or "(none)"
            raise ConfigError(
                f"{key} is not a keyword of {owner}, which would not use it.{hint} "
                f"Fix: drop {key} or use one of its keywords: {valid}"
            )
        default = defaults[name]
        if not _fits(value, default, int_only=int_only(name)):
            raise ConfigError(
                f"{key}={value!r} is a {type(value).__name__}, but {owner} expects {_type_name(default)} "
                f"(its default: {name}={default!r}). Fix: set {_example(key, default)}"
            )


def kwargs_named_in(err: BaseException, kwargs: Mapping[str, Any]) -> list[str]:
    """The keywords a simulator's build error can be traced to: named in its message or failing line.

    Where a simulator exposes no readable defaults, its error at build time is the only
    check; this finds the given keywords that the message or the source lines of the
    traceback mention (``assert 1 <= self.agents_with_same_goal <= self.n_agents``).

    Example:
        >>> def build(**kwargs):
        ...     agents_with_same_goal = kwargs.pop("agents_with_same_goal", 1)
        ...     assert agents_with_same_goal <= 3
        >>> try:
        ...     build(agents_with_same_goal=5, collisions=False)
        ... except AssertionError as err:
        ...     print(kwargs_named_in(err, {"agents_with_same_goal": 5, "collisions": False}))
        ['agents_with_same_goal']
    """
    frames = traceback.extract_tb(err.__traceback__)[-1:]  # the line that failed
    text = " ".join([str(err), *(frame.line or "" for frame in frames)])
    return [name for name in kwargs if re.search(rf"\b{re.escape(str(name))}\b", text)]

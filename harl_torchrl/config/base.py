"""Base classes of the typed config schemas: one dataclass per config group.

A group schema is a :func:`~dataclasses.dataclass` deriving from :class:`GroupConfig`.
Its fields carry the types (plain types, ``float | None``, ``list[int]``,
``dict[str, Any]`` for free-form keyword dicts, :class:`StrChoice` enums for choices) and
the defaults: the one place a default is written (a recipe YAML sets only what differs
from it). Hydra/OmegaConf enforce the types when a recipe config is composed;
:meth:`GroupConfig.from_mapping` runs the same schema on a plain mapping, so a library
user's dict is checked exactly like a recipe override. Range checks live in each
schema's :meth:`GroupConfig.validate`, and nowhere else.
"""

import dataclasses
import difflib
import enum
import math
import sys
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from harl_torchrl.errors import ConfigError

if TYPE_CHECKING:
    from torchrl.envs import EnvBase

G = TypeVar("G", bound="GroupConfig")


class StrChoice(str, enum.Enum):
    """Base of the choice enums: each member's name is its value, lower case.

    OmegaConf accepts a member by name, so ``algo.order=fixed`` works on the command
    line and a wrong name fails at compose time listing every member. Members
    compare equal to their strings and print as them, so code that compares with
    ``"fixed"`` keeps working.

    Example:
        >>> Order = choices("Order", "random", "fixed")
        >>> Order("fixed") == "fixed", str(Order.fixed), f"{Order.random}"
        (True, 'fixed', 'random')
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> list[str]:
        """Every valid choice, in declaration order."""
        return [str(member.value) for member in cls]


def choices(name: str, *values: str, module: str | None = None) -> type[StrChoice]:
    """A :class:`StrChoice` enum with ``values`` as members (``global`` and other keywords allowed).

    Args:
        name: the enum's class name.
        values: the valid choices.
        module: the module the enum is importable from (for pickling, e.g. by
            collector worker processes); defaults to this module's caller.

    Example:
        >>> choices("TeamReward", "mean", "sum").values()
        ['mean', 'sum']
    """
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", __name__)  # the caller's module
    return typing.cast(type[StrChoice], StrChoice(name, [(v, v) for v in values], module=module))


#: The agent order of the sequential update, shared by every algorithm family:
#: ``random`` (a fresh permutation each iteration) or ``fixed``.
Order = choices("Order", "random", "fixed", module=__name__)


def config_to_dict(config: Any) -> Any:
    """Plain Python containers for a config: the library's one converter to plain dicts.

    Takes a typed group (or any dataclass instance), an OmegaConf ``DictConfig`` or
    ``ListConfig`` (interpolations resolved), mappings, sequences and scalars. Gives only
    ``dict`` (string keys), ``list``, ``str``, numbers, ``bool`` and ``None``: enums as
    their values, subclasses of the scalar types (e.g. numpy's ``float64``) as the plain
    type, anything else as its string. What checkpoints store and what the resume check
    compares; all loadable with ``torch.load(weights_only=True)``.

    Example:
        >>> from omegaconf import OmegaConf
        >>> from harl_torchrl.config import MLPModelConfig
        >>> config_to_dict(MLPModelConfig(hidden_sizes=[16]))["activation"]
        'relu'
        >>> config_to_dict(OmegaConf.create({"a": {"b": (1, 2)}, "c": "${a.b}"}))
        {'a': {'b': [1, 2]}, 'c': [1, 2]}
    """
    if isinstance(config, (DictConfig, ListConfig)):
        return config_to_dict(OmegaConf.to_container(config, resolve=True))
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): config_to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, enum.Enum):  # the choice fields of the schemas
        return config_to_dict(config.value)
    if config is None or type(config) in (bool, int, float, str):
        return config
    for base in (bool, int, float, str):  # subclasses (e.g. numpy float64): the plain value
        if isinstance(config, base):
            return base(config)
    return str(config)


def _show(value: Any) -> str:
    """A value as it is written on the command line (``true``, ``null``, ``[16, 16]``)."""
    value = config_to_dict(value)
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _type_name(annotation: Any) -> str:
    """``int`` -> "an integer", ``Optional[float]`` -> "a number or null", enums list their values."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], enum.Enum):
        return "a list of values, each " + _type_name(args[0])
    if origin is list:
        return f"a list of {_type_name(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        return "a mapping of keyword arguments"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation)
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, str(annotation)
    )


@dataclasses.dataclass
class GroupConfig:
    """Base of every config group schema.

    Subclasses are dataclasses; their field defaults are the settings' defaults (the
    recipe YAML that inherits a schema sets only what differs). Library code reads an
    instance by attribute (``cfg.epochs``); a plain mapping of settings is converted
    once, at the entry, by :meth:`from_mapping` (or :func:`~harl_torchrl.config.algo_config`
    and its siblings), and :meth:`to_dict` gives plain containers back.

    Attributes:
        group: the config group's key in the run config (``"algo"``, ``"env"``,
            ...), the prefix of every key named in an error; ``""`` for the root.
    """

    group: ClassVar[str] = ""

    # ----------------------------------------------------------------- checking
    def validate(self) -> None:
        """Range checks of this group alone; raise :class:`ConfigError` via :meth:`fail`.

        Subclasses extend it (call ``super().validate()``). Checks that need other
        groups belong to the run-level check
        (:func:`~harl_torchrl.config.validate_run_config`).
        """

    def key(self, name: str) -> str:
        """The full dotted key of field ``name`` (``"algo.epochs"``)."""
        return f"{self.group}.{name}" if self.group else name

    @classmethod
    def _default(cls, name: str) -> Any:
        f = cls.__dataclass_fields__[name]
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return dataclasses.MISSING

    def default(self, name: str) -> Any:
        """The schema's default for field ``name`` (``dataclasses.MISSING`` if none)."""
        return self._default(name)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default as a plain value (enums as strings); fields without one are left out.

        Where code outside the config (e.g. the env classes' keyword arguments) takes its
        defaults from, so that each default is written once: in its schema.

        Example:
            >>> from harl_torchrl.config import PettingZooEnvConfig
            >>> PettingZooEnvConfig.defaults()["max_steps"], PettingZooEnvConfig.defaults()["num_envs"]
            (25, 32)
        """
        fields = dataclasses.fields(cls)
        return {f.name: config_to_dict(cls._default(f.name)) for f in fields if _has_default(cls, f.name)}

    def fail(self, name: str, problem: str, fix: str | None = None) -> ConfigError:
        """The error for field ``name``: ``"<group>.<name> <problem>, got <value>. <fix>"``.

        ``fix`` defaults to suggesting the schema's default value. Returns the
        error; the caller raises it.

        Example:
            >>> from harl_torchrl.config import HAPPOConfig
            >>> print(HAPPOConfig(epochs=0).fail("epochs", "must be > 0"))
            algo.epochs must be > 0, got 0. Fix: set algo.epochs to a value that is > 0, e.g. algo.epochs=5
        """
        value = getattr(self, name)
        if fix is None:
            default = self.default(name)
            wanted = (
                f"a value that {problem.replace('must be', 'is', 1)}"
                if problem.startswith("must be")
                else "a valid value"
            )
            fix = f"set {self.key(name)} to {wanted}"
            if default is not dataclasses.MISSING and default is not MISSING:
                fix += f", e.g. {self.key(name)}={_show(default)}"
        return ConfigError(f"{self.key(name)} {problem}, got {config_to_dict(value)!r}. Fix: {fix}")

    def require_positive(self, *names: str) -> None:
        """Each named field is a finite number > 0."""
        for name in names:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise self.fail(name, "must be > 0")

    def require_positive_or_none(self, *names: str) -> None:
        """Each named field is ``None`` (disabled) or a finite number > 0."""
        for name in names:
            if getattr(self, name) is not None:
                value = getattr(self, name)
                if not (value > 0 and math.isfinite(value)):
                    raise self.fail(name, "must be > 0 (or null to disable it)")

    def require_non_negative(self, *names: str) -> None:
        """Each named field is a finite number >= 0."""
        for name in names:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise self.fail(name, "must be >= 0")

    def require_in(
        self, name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False
    ) -> None:
        """Field ``name`` lies in the interval from ``low`` to ``high`` (open ends as flagged)."""
        value = getattr(self, name)
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):
            interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise self.fail(name, f"must be in {interval}")

    # --------------------------------------------------------------- converting
    @classmethod
    def from_mapping(cls: type[G], mapping: Mapping[str, Any] | G, *, validate: bool = True) -> G:
        """The typed object for ``mapping`` (a dict or DictConfig), through this schema.

        Keys the mapping omits take the schema's defaults. An instance of ``cls`` is
        returned as is (validated again only if ``validate``).

        Args:
            mapping: the group's settings.
            validate: also run :meth:`validate`.

        Raises:
            ConfigError: an unknown key (with the closest valid one), a value of the
                wrong type (with the expected type or the valid choices), a missing
                required key, or (with ``validate``) a value out of range.

        Example:
            >>> from harl_torchrl.config import HAPPOConfig
            >>> HAPPOConfig.from_mapping({"epochs": 3}).epochs
            3
            >>> try:
            ...     HAPPOConfig.from_mapping({"epochs": 2.5})
            ... except ConfigError as err:
            ...     print(err)  # doctest: +NORMALIZE_WHITESPACE
            algo.epochs=2.5 has the wrong type: expected an integer.
            Fix: set algo.epochs to an integer, e.g. algo.epochs=5
        """
        if isinstance(mapping, cls):
            obj = mapping
        elif isinstance(mapping, GroupConfig):
            raise ConfigError(
                f"{cls.group or 'the run config'} got a {type(mapping).__name__}, expected a {cls.__name__} "
                "(or a plain mapping of its settings)"
            )
        else:
            if isinstance(mapping, DictConfig):
                mapping = OmegaConf.to_container(mapping, resolve=True)
            if not isinstance(mapping, Mapping):
                raise ConfigError(
                    f"{cls.group or 'the run config'} must be a mapping of settings, got {type(mapping).__name__}"
                )
            try:
                obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), dict(mapping)))
            except OmegaConfBaseException as err:
                raise cls.explain(err, mapping) from None
        if validate:
            obj.validate()
        return typing.cast(G, obj)

    @classmethod
    def explain(cls, err: OmegaConfBaseException, mapping: Mapping[str, Any], path: str | None = None) -> ConfigError:
        """Turns OmegaConf's error into one naming the full key, the value and the fix.

        Args:
            err: OmegaConf's error about this schema.
            mapping: the group's given settings (where the offending value is read).
            path: the offending key relative to the group (default: ``err.full_key``).
        """
        full_key = path if path is not None else str(getattr(err, "full_key", "") or "")
        top = full_key.split(".")[0].split("[")[0]
        key = f"{cls.group}.{full_key}" if cls.group else full_key
        names = [f.name for f in dataclasses.fields(cls)]
        if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and top not in names:
            close = difflib.get_close_matches(top, names, n=1)
            hint = f" Did you mean {cls.group + '.' if cls.group else ''}{close[0]}?" if close else ""
            return ConfigError(
                f"unknown setting {key}={config_to_dict(mapping.get(top))!r} for {cls.describe()}.{hint} "
                f"Fix: remove it or correct its name; valid keys: {', '.join(names)}"
            )
        if isinstance(err, MissingMandatoryValue):
            return ConfigError(f"{key} is required by {cls.describe()}. Fix: set {key}=<value>")
        if isinstance(err, ValidationError) and top in names:
            expected = _type_name(typing.get_type_hints(cls)[top])
            example = f", e.g. {cls.group + '.' if cls.group else ''}{top}={_show(cls._default(top))}"
            fix = f"Fix: set {cls.group + '.' if cls.group else ''}{top} to {expected}" + (
                example if _has_default(cls, top) else ""
            )
            if full_key != top:  # an element of a list field
                return ConfigError(f"{key}: {str(err.msg).splitlines()[0]}. {fix}")
            annotation = typing.get_type_hints(cls)[top]
            if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
                return ConfigError(
                    f"{key}={config_to_dict(mapping.get(top))!r} is not a valid choice: expected {expected}. {fix}"
                )
            return ConfigError(
                f"{key}={config_to_dict(mapping.get(top))!r} has the wrong type: expected {expected}. {fix}"
            )
        first = str(getattr(err, "msg", err)).splitlines()[0]
        return ConfigError(f"{key or cls.describe()}: {first}")

    @classmethod
    def describe(cls) -> str:
        """How errors name this schema, e.g. ``"algo=happo"``."""
        name = getattr(cls, "name", None)
        if isinstance(name, str) and cls.group:
            return f"{cls.group}={name}"
        return cls.group or "the run config"

    # ------------------------------------------------------------ reading it back
    def to_dict(self) -> dict[str, Any]:
        """The settings as plain Python containers (enums as strings), e.g. for checkpoints."""
        return config_to_dict(self)


def _has_default(cls: type, name: str) -> bool:
    f = cls.__dataclass_fields__[name]
    has = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    return has and f.default is not MISSING


@dataclasses.dataclass
class AlgoConfig(GroupConfig):
    """Base of every ``algo`` schema.

    Attributes:
        name: the algorithm (``algo.name``): the registry key, and what ``algo=<name>``
            selects on the command line.
        kind: which training loop runs it: ``"on_policy"`` or ``"off_policy"``.
    """

    group: ClassVar[str] = "algo"
    kind: ClassVar[str] = "on_policy"
    name: str = MISSING

    def validate_run(self, run: Any) -> None:
        """Cross-group checks this algorithm needs (batch sizes, model, env); none by default.

        Args:
            run: the whole :class:`~harl_torchrl.config.RunConfig`, already
                group-validated.
        """

    # ----------------------------------------------------- what the run loop asks
    def effective_num_envs(self, run: Any) -> int:
        """The training sub-environments: ``env.num_envs`` unless the algorithm sets its own."""
        return run.env.num_envs

    def rollout_steps(self, run: Any) -> int:
        """Vector steps collected per iteration: ``collector.rollout_steps`` unless the algorithm sets its own."""
        return run.collector.rollout_steps

    def checkpoint_iterations(self, frames_per_batch: int) -> int:
        """Iterations between checkpoints when ``checkpoint.interval`` is ``null``."""
        return 10

    def build(self, env: Any, model: Any, *, device: Any = "cpu", seed: int | None = None) -> Any:
        """Builds this algorithm's training components for ``env``: the registry's one entry.

        The run loop (:func:`harl_torchrl.run.run`) calls this and nothing else of
        the algorithm; the result follows :class:`harl_torchrl.run.Components`.
        A new algorithm registers its schema (:func:`~harl_torchrl.config.register_algo`)
        and overrides this method (importing its builder inside it, so that the
        config stays free of torch).

        Args:
            env: the training env (built by the run loop).
            model: the typed ``model`` group.
            device: where the networks live.
            seed: seed of the algorithm's own generators (agent order).
        """
        raise NotImplementedError(f"{type(self).__name__} does not build components (override build())")


@dataclasses.dataclass
class EnvConfig(GroupConfig):
    """Base of every ``env`` schema (one per env family).

    Attributes:
        family: the env family (``vmas``, ``pettingzoo``, ``mamujoco``): the registry key.
        scenario: the family's scenario or task name.
        num_envs: parallel sub-environments.
        max_steps: time limit, reported as truncation (``null``: none).

    A family also declares ``continuous_actions`` (a field, or a class constant when its
    envs have one action space only): the run-level checks read it.
    """

    group: ClassVar[str] = "env"
    family: str = MISSING
    scenario: str = MISSING
    num_envs: int = 32
    max_steps: int | None = 100

    def validate(self) -> None:
        """``num_envs`` > 0 and ``max_steps`` > 0 (or null)."""
        super().validate()
        self.require_positive("num_envs")
        self.require_positive_or_none("max_steps")

    @classmethod
    def describe(cls) -> str:
        """How errors name this schema, e.g. ``"env.family=vmas"``."""
        return f"env.family={cls.__dataclass_fields__['family'].default}"

    def make(self, *, num_envs: int | None = None, seed: int | None = None, device: Any = "cpu") -> "EnvBase":
        """Builds the env these settings describe: one group per agent, team signals at the root.

        Each family's schema implements it, importing its env module inside, so that the
        config stays light (no torch, no optional package until an env is built).

        Args:
            num_envs: parallel sub-environments; ``None``: :attr:`num_envs` (evaluation
                envs ask for their own number).
            seed: the env's seed; ``None``: not seeded.
            device: where the env runs.

        Raises:
            ConfigError: an unknown scenario or scenario keyword.
            MissingDependencyError: the family's optional packages are not installed.
        """
        raise NotImplementedError(f"{type(self).__name__} builds no env (override make())")


@dataclasses.dataclass
class ModelConfig(GroupConfig):
    """Base of every ``model`` schema.

    Attributes:
        name: the model (``mlp``, ``gru``): the registry key.
    """

    group: ClassVar[str] = "model"
    recurrent: ClassVar[bool] = False
    name: str = MISSING

    @property
    def sequence_length(self) -> int | None:
        """Training sequence length for recurrent models; ``None`` for feed-forward ones."""
        return None

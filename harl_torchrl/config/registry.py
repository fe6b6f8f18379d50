"""The registry of group schemas: what ``algo=<name>``, ``env.family`` and ``model.name`` resolve to.

Registering a schema maps its key to the class, which is how a plain mapping
(``{"name": "happo", ...}``) is converted and how the run-level check dispatches.
Hydra's ConfigStore gets every registered schema as ``schema/<group>/<key>`` (the node
a recipe YAML inherits through its ``defaults`` list) only when a Hydra entry point asks
for it with :func:`store_schemas`, so importing the library does not import Hydra. A new
algorithm registers its schema with :func:`register_algo` and needs no edit here.
"""

from collections.abc import Mapping
from typing import Any, TypeVar

from harl_torchrl.config.base import AlgoConfig, EnvConfig, GroupConfig, ModelConfig
from harl_torchrl.errors import ConfigError, unknown_choice

A = TypeVar("A", bound=AlgoConfig)
E = TypeVar("E", bound=EnvConfig)
M = TypeVar("M", bound=ModelConfig)

#: ``algo=<name>`` to its schema, filled by :func:`register_algo`.
ALGO_SCHEMAS: dict[str, type[AlgoConfig]] = {}
#: ``env.family`` to its schema, filled by :func:`register_env`.
ENV_SCHEMAS: dict[str, type[EnvConfig]] = {}
#: ``model.name`` to its schema, filled by :func:`register_model`.
MODEL_SCHEMAS: dict[str, type[ModelConfig]] = {}


#: Schemas outside the three registries (the root run config), ``(group, key)`` to the class.
_EXTRA_SCHEMAS: dict[tuple[str, str], type[GroupConfig]] = {}
#: Whether :func:`store_schemas` ran: schemas registered later go to Hydra's ConfigStore at once.
_STORED = False


def _store(group: str, key: str, schema: type[GroupConfig]) -> None:
    if _STORED:
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(group=f"schema/{group}", name=key, node=schema)


def _store_extra(group: str, key: str, schema: type[GroupConfig]) -> None:
    """Registers a schema that no registry holds (the root ``schema/run/root``) for :func:`store_schemas`."""
    _EXTRA_SCHEMAS[(group, key)] = schema
    _store(group, key, schema)


def store_schemas() -> None:
    """Gives Hydra's ConfigStore every registered schema, as ``schema/<group>/<key>``.

    What a Hydra entry point calls before Hydra composes a config of
    ``harl_torchrl/conf`` (whose YAMLs inherit ``/schema/algo/happo`` and the like):
    the recipes, the console scripts and
    :func:`~harl_torchrl.config.hydra_checks.compose_run_config` do. Idempotent; a
    schema registered afterwards is stored when it registers. Importing the library
    does not import Hydra; this function does.

    Example:
        >>> from hydra.core.config_store import ConfigStore
        >>> store_schemas()
        >>> "happo.yaml" in ConfigStore.instance().list("schema/algo")
        True
    """
    global _STORED
    _STORED = True
    for group, registry in (("algo", ALGO_SCHEMAS), ("env", ENV_SCHEMAS), ("model", MODEL_SCHEMAS)):
        for key, schema in registry.items():
            _store(group, key, schema)
    for (group, key), schema in _EXTRA_SCHEMAS.items():
        _store(group, key, schema)


def _key(schema: type[GroupConfig], field: str) -> str:
    key = schema.__dataclass_fields__[field].default
    if not isinstance(key, str) or key == "???":
        raise TypeError(f"{schema.__name__} needs a default {field!r} to be registered")
    return key


def register_algo(schema: type[A]) -> type[A]:
    """Registers an ``algo`` schema under its default ``name`` (a class decorator).

    After this, ``harl_torchrl/conf/algo/<name>.yaml`` can inherit it with
    ``defaults: [/schema/algo/<name>@_here_, _self_]``, and
    :func:`algo_config` converts ``{"name": "<name>", ...}`` through it.

    Example:
        >>> from dataclasses import dataclass
        >>> @register_algo
        ... @dataclass
        ... class ToyConfig(AlgoConfig):
        ...     name: str = "toy"
        ...     lr: float = 1e-3
        >>> algo_config({"name": "toy", "lr": 0.01}).lr
        0.01
        >>> del ALGO_SCHEMAS["toy"]
    """
    ALGO_SCHEMAS[_key(schema, "name")] = schema
    _store("algo", _key(schema, "name"), schema)
    return schema


def register_env(schema: type[E]) -> type[E]:
    """Registers an ``env`` schema under its default ``family`` (a class decorator)."""
    ENV_SCHEMAS[_key(schema, "family")] = schema
    _store("env", _key(schema, "family"), schema)
    return schema


def register_model(schema: type[M]) -> type[M]:
    """Registers a ``model`` schema under its default ``name`` (a class decorator)."""
    MODEL_SCHEMAS[_key(schema, "name")] = schema
    _store("model", _key(schema, "name"), schema)
    return schema


def _pick(registry: Mapping[str, type[GroupConfig]], kind: str, key: str, mapping: Any, default: str | None) -> Any:
    if isinstance(mapping, GroupConfig):
        return mapping
    if not isinstance(mapping, Mapping) and not hasattr(mapping, "get"):
        raise ConfigError(f"the {kind} config must be a mapping of settings, got {type(mapping).__name__}")
    value = mapping.get(key, default)
    if value is None:
        raise ConfigError(f"{kind}.{key} is required. Fix: set {kind}.{key} to one of {', '.join(sorted(registry))}")
    if str(value) not in registry:
        what = {"algo": "algorithm", "env": "env family"}.get(kind, kind)
        raise ConfigError(f"{unknown_choice(f'{kind}.{key}', value, registry)} (each a registered {what})")
    return registry[str(value)]


def algo_config(mapping: Mapping[str, Any] | AlgoConfig, *, validate: bool = True) -> AlgoConfig:
    """The typed ``algo`` group: a schema instance as is, or a mapping converted by its ``name``.

    Raises:
        ConfigError: unknown algorithm (with the closest name), unknown key, wrong
            type, or (with ``validate``) a value out of range.

    Example:
        >>> algo_config({"name": "hatrpo", "max_kl": 0.02}).max_kl
        0.02
        >>> try:
        ...     algo_config({"name": "hapo"})
        ... except ConfigError as err:
        ...     print(str(err).split(" Valid choices")[0])
        unknown algo.name 'hapo'. Did you mean 'happo'?
    """
    schema = _pick(ALGO_SCHEMAS, "algo", "name", mapping, None)
    if isinstance(schema, GroupConfig):
        if validate:
            schema.validate()
        return schema  # type: ignore[return-value]
    return schema.from_mapping(mapping, validate=validate)


def env_config(mapping: Mapping[str, Any] | EnvConfig, *, validate: bool = True) -> EnvConfig:
    """The typed ``env`` group, converted by its ``family`` (see :func:`algo_config`).

    Example:
        >>> env_config({"family": "vmas", "scenario": "navigation"}).num_envs
        32
    """
    schema = _pick(ENV_SCHEMAS, "env", "family", mapping, None)
    if isinstance(schema, GroupConfig):
        if validate:
            schema.validate()
        return schema  # type: ignore[return-value]
    return schema.from_mapping(mapping, validate=validate)


def model_config(mapping: Mapping[str, Any] | ModelConfig, *, validate: bool = True) -> ModelConfig:
    """The typed ``model`` group, converted by its ``name`` (``mlp`` when absent).

    Example:
        >>> model_config({"hidden_sizes": [32]}).name
        'mlp'
    """
    schema = _pick(MODEL_SCHEMAS, "model", "name", mapping, "mlp")
    if isinstance(schema, GroupConfig):
        if validate:
            schema.validate()
        return schema  # type: ignore[return-value]
    return schema.from_mapping(mapping, validate=validate)

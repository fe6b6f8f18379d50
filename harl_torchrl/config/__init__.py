"""Typed configuration: one dataclass schema per config group, the one source of every default.

Each recipe YAML inherits its group's schema through its ``defaults`` list
(``- /schema/algo/happo@_here_``) and sets only what differs from it (a scenario, a
preset), so Hydra and OmegaConf refuse a value of the wrong type or an invalid choice
when the config is composed. The recipe then builds the typed object once
(:func:`typed_run_config`, which also refuses keys the schema does not have, including
``+algo.new_key=...``), checks it (:func:`validate_run_config`) and passes it down;
library functions take the typed objects, and a user's plain mapping is converted once,
at the entry, through the same schemas (:func:`algo_config`, :func:`env_config`,
:func:`model_config`).

Importing this package registers every schema in its registry, without Hydra. Any
further module of this package (e.g. ``off_policy.py``) is imported too, so its
``@register_algo`` schemas are available to ``algo=<name>`` without editing this file.
A Hydra entry point calls :func:`store_schemas` before Hydra composes: it gives Hydra's
ConfigStore every registered schema.
"""

import importlib
import pkgutil

from harl_torchrl.config.base import (
    AlgoConfig,
    EnvConfig,
    GroupConfig,
    ModelConfig,
    StrChoice,
    choices,
    config_to_dict,
)
from harl_torchrl.config.env import MaMuJoCoEnvConfig, PettingZooEnvConfig, VmasEnvConfig
from harl_torchrl.config.model import GRUModelConfig, MLPModelConfig
from harl_torchrl.config.on_policy import (
    ClippedConfig,
    HAA2CConfig,
    HAPPOConfig,
    HATRPOConfig,
    IPPOConfig,
    MAPPOConfig,
    OnPolicyAlgoConfig,
    PolicyGradientConfig,
)
from harl_torchrl.config.registry import (
    ALGO_SCHEMAS,
    ENV_SCHEMAS,
    MODEL_SCHEMAS,
    _store_extra,
    algo_config,
    env_config,
    model_config,
    register_algo,
    register_env,
    register_model,
    store_schemas,
)
from harl_torchrl.config.run import (
    CheckpointConfig,
    CollectorConfig,
    EvalConfig,
    LoggerConfig,
    RunConfig,
    typed_run_config,
    validate_run_config,
)

_store_extra("run", "root", RunConfig)  # the root schema: ``- /schema/run/root@_here_`` in config.yaml

_OWN = {"base", "registry", "on_policy", "env", "model", "run", "hydra_checks"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _OWN:  # other algorithm families register their schemas on import
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ALGO_SCHEMAS",
    "ENV_SCHEMAS",
    "MODEL_SCHEMAS",
    "AlgoConfig",
    "CheckpointConfig",
    "ClippedConfig",
    "CollectorConfig",
    "EnvConfig",
    "EvalConfig",
    "GRUModelConfig",
    "GroupConfig",
    "HAA2CConfig",
    "HAPPOConfig",
    "HATRPOConfig",
    "IPPOConfig",
    "LoggerConfig",
    "MAPPOConfig",
    "MLPModelConfig",
    "MaMuJoCoEnvConfig",
    "ModelConfig",
    "OnPolicyAlgoConfig",
    "PettingZooEnvConfig",
    "PolicyGradientConfig",
    "RunConfig",
    "StrChoice",
    "VmasEnvConfig",
    "algo_config",
    "choices",
    "config_to_dict",
    "env_config",
    "model_config",
    "register_algo",
    "register_env",
    "register_model",
    "store_schemas",
    "typed_run_config",
    "validate_run_config",
]

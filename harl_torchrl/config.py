"""Checks a recipe's whole config before anything is built or trained."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harl_torchrl.algorithms import validate_algo_config
from harl_torchrl.collection import check_workers
from harl_torchrl.envs.factory import FAMILIES
from harl_torchrl.errors import ConfigError, require_positive, unknown_choice
from harl_torchrl.modules.mlp import activation_class
from harl_torchrl.utils.device import resolve_device
from harl_torchrl.utils.logging import BACKENDS


def validate_run_config(cfg: Mapping[str, Any]) -> None:
    """Raises :class:`~harl_torchrl.errors.ConfigError` for any setting that cannot work.

    Covers the algorithm group (see
    :func:`~harl_torchrl.algorithms.validate_algo_config`), the device (CUDA asked
    for but missing), the env family, the model, the budget and the logger. Scenario
    names are checked when the env is built, which also happens before training.
    """
    validate_algo_config(cfg["algo"])
    resolve_device(cfg.get("device", "cpu"))
    env = cfg["env"]
    if env.get("family") not in FAMILIES:
        raise unknown_choice("env.family", env.get("family"), FAMILIES)
    require_positive("env.num_envs", env.get("num_envs", 1))
    require_positive("total_frames", cfg["total_frames"])
    require_positive("collector.rollout_steps", cfg["collector"]["rollout_steps"])
    check_workers(cfg["collector"].get("workers", 1), env.get("num_envs", 1))
    model = cfg["model"]
    if model.get("name", "mlp") not in ("mlp", "gru"):
        raise unknown_choice("model", model.get("name"), ["mlp", "gru"])
    if model.get("name") == "gru":
        require_positive("model.chunk_length", model.get("chunk_length", 10))
        if cfg["collector"]["rollout_steps"] % model.get("chunk_length", 10):
            raise ConfigError(
                f"collector.rollout_steps={cfg['collector']['rollout_steps']} must be a multiple of "
                f"model.chunk_length={model.get('chunk_length', 10)}"
            )
    activation_class(model.get("activation", "relu"))
    if any(size <= 0 for size in model.get("hidden_sizes", [])):
        raise ConfigError(f"model.hidden_sizes must be positive, got {list(model['hidden_sizes'])}")
    for key in ("interval", "episodes"):
        if cfg["eval"][key] < 0:
            raise ConfigError(f"eval.{key} must be >= 0, got {cfg['eval'][key]}")
    if cfg["checkpoint"]["interval"] < 0:
        raise ConfigError(f"checkpoint.interval must be >= 0, got {cfg['checkpoint']['interval']}")
    for backend in cfg["logger"]["backends"]:
        if backend not in BACKENDS:
            raise unknown_choice("logger backend", backend, BACKENDS)

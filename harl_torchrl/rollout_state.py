"""The rollout state of a run: its environments and the collector's carried step.

A resumed run is the run that would have happened only if it continues the same
episodes from the same simulator states and random streams. At an iteration boundary
that state is:

* each env's own state (:meth:`~harl_torchrl.envs.VmasTeamEnv.capture_state`,
  :meth:`~harl_torchrl.envs.MPETeamEnv.capture_state`): simulator tensors/arrays, its
  random generators, step counters and running episode returns;
* the collector's *carrier*, the TensorDict TorchRL's :class:`~torchrl.collectors.Collector`
  keeps between rollouts (``Collector._carrier`` in TorchRL 0.14): the observations the
  next step starts from, done flags, recurrent hidden states and ``is_init`` markers.
  ``Collector.state_dict()`` does not hold it (it keeps only counters and the policy), and
  building a collector resets its env, so both are written back after it is built.

The global torch/numpy/Python random states are saved with the training state
(by the run loop, :func:`harl_torchrl.run.run`) and restored last.

Envs that cannot capture their simulator (MaMuJoCo: see ``docs/checkpoints.rst``) and
collectors over worker processes record ``None``: a resumed run then starts fresh
episodes, with everything else (parameters, optimisers, counters, random streams) exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensordict import TensorDictBase
from torchrl.envs import EnvBase, TransformedEnv

from harl_torchrl.errors import ConfigError


def _base_env(env: EnvBase) -> EnvBase:
    while isinstance(env, TransformedEnv):
        env = env.base_env
    return env


def capture_env_state(env: EnvBase) -> dict[str, Any] | None:
    """``env.capture_state()`` of the env under any transforms, or ``None`` where it has none.

    Transforms used by the recipes (``InitTracker``, ``TensorDictPrimer``) hold no state
    of their own between steps.
    """
    base = _base_env(env)
    capture = getattr(base, "capture_state", None)
    if capture is None:
        return None
    try:
        return capture()
    except NotImplementedError:
        return None


def capture_rollout_state(collector: Any, envs: Mapping[str, EnvBase | None]) -> dict[str, Any]:
    """Everything a collector and its envs carry from one iteration to the next.

    Args:
        collector: the run's collector (``None`` to capture the envs only).
        envs: ``{"train": env, "eval": eval_env}``; ``None`` entries are skipped.

    Returns:
        ``{"envs": {name: state or None}, "carrier": [[key, tensor], ...] or None}``, plus
        ``"traj_pool"`` (the collector's next trajectory id) with the carrier (tensors,
        numbers and strings only).

    Example:
        >>> from harl_torchrl.envs import make_env
        >>> from torchrl.collectors import Collector
        >>> cfg = {"family": "vmas", "scenario": "balance", "num_envs": 2, "max_steps": 5,
        ...        "scenario_kwargs": {"n_agents": 2}}
        >>> env = make_env(cfg, seed=0)
        >>> collector = Collector(env, None, frames_per_batch=4, total_frames=8)
        >>> _ = next(iter(collector))
        >>> state = capture_rollout_state(collector, {"train": env})
        >>> sorted(state), state["envs"]["train"]["family"]
        (['carrier', 'envs', 'traj_pool'], 'VmasTeamEnv')
    """
    states = {name: capture_env_state(env) for name, env in envs.items() if env is not None}
    carrier = getattr(collector, "_carrier", None)
    saved_carrier = None
    if isinstance(carrier, TensorDictBase) and states.get("train") is not None:
        saved_carrier = [
            [list(key) if isinstance(key, tuple) else [key], value.detach().clone()]
            for key, value in carrier.items(include_nested=True, leaves_only=True)
        ]
    pool = getattr(collector, "_traj_pool", None) if saved_carrier is not None else None
    saved = {"envs": states, "carrier": saved_carrier}
    if pool is not None and hasattr(pool, "state_dict"):
        saved["traj_pool"] = {k: v.clone() for k, v in pool.state_dict().items()}  # the next trajectory id
    return saved


def restore_rollout_state(
    collector: Any, envs: Mapping[str, EnvBase | None], state: Mapping[str, Any] | None
) -> list[str]:
    """Restores :func:`capture_rollout_state` after the collector has been built.

    Call it after building the collector (its constructor resets the env) and before
    the global random states are restored.

    Args:
        collector: the new run's collector.
        envs: the same names as at capture.
        state: the saved rollout state (``None``: nothing to restore, fresh episodes).

    Returns:
        The names restored exactly (``"train"``, ``"eval"``, ``"carrier"``); the others
        start fresh episodes.

    Raises:
        ConfigError: the saved state does not fit these envs (another scenario, number of
            copies, or carried keys): resume with the checkpoint's env config.
    """
    if not state:
        return []
    restored = []
    for name, env in envs.items():
        saved = state["envs"].get(name)
        if env is None or saved is None:
            continue
        try:
            _base_env(env).restore_state(saved)
        except (ValueError, RuntimeError, KeyError) as err:
            raise ConfigError(
                f"the checkpoint's {name} env state does not fit this run's env ({err}); resume with the "
                "checkpoint's env config, or allow fresh episodes with resume_override=[env]"
            ) from None
        restored.append(name)
    carrier = getattr(collector, "_carrier", None)
    if state.get("carrier") is not None and "train" in restored and isinstance(carrier, TensorDictBase):
        saved = {tuple(key): value for key, value in state["carrier"]}
        current = {k if isinstance(k, tuple) else (k,) for k in carrier.keys(include_nested=True, leaves_only=True)}
        # a fresh carrier holds the reset's keys; after a rollout it also holds the policy's last
        # outputs (overwritten at the next step, but restored too, so the carrier is the saved one)
        if not current <= set(saved):
            raise ConfigError(
                f"the checkpoint's collector state has keys {sorted(saved)} but this run's collector carries "
                f"{sorted(current)}; resume with the checkpoint's env and model config"
            )
        for key, value in saved.items():
            carrier.set(key, value.clone())
        pool = getattr(collector, "_traj_pool", None)
        if state.get("traj_pool") is not None and pool is not None:
            pool.load_state_dict(state["traj_pool"])  # new episodes get the ids they would have got
        restored.append("carrier")
    return restored

"""Rebuild a trained joint policy, and the env it was evaluated on, from a checkpoint alone.

A checkpoint written by a training loop records its algorithm, env and model config and
which loop wrote it (:func:`~harl_torchrl.utils.checkpoint.run_metadata`), so everything
needed to act again is in the file: :func:`load_trained` builds the env, the networks
and the joint policy from that record and loads the weights; :func:`make_eval_env`
builds an evaluation env and, where the checkpoint saved the training run's own
evaluation env (same number of episodes), restores its exact state and the random
streams, so that :func:`~harl_torchrl.evaluation.episode_returns` reproduces the run's
final deterministic evaluation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from harl_torchrl.config import algo_config, env_config, model_config
from harl_torchrl.config.base import EnvConfig
from harl_torchrl.envs import make_env
from harl_torchrl.rollout_state import restore_rollout_state
from harl_torchrl.utils.checkpoint import CheckpointError, load_checkpoint
from harl_torchrl.utils.rng import set_rng_state


@dataclass
class TrainedPolicy:
    """A joint policy rebuilt from a checkpoint.

    Attributes:
        path: the checkpoint.
        meta: its metadata (algorithm, kind, config, frames, versions).
        env_config: the typed env config it was trained on.
        policy: the joint policy (every agent's actor; off-policy: with its exploration
            modules, which act deterministically under ``ExplorationType.DETERMINISTIC``).
        agents: the agent names.
        state: the checkpoint's saved state (random streams, env states).
        prepare_env: applies the transforms the policy needs to an env (recurrent
            policies read episode-start markers and hidden states).
    """

    path: Path
    meta: dict[str, Any]
    env_config: EnvConfig
    policy: TensorDictModuleBase
    agents: list[str]
    state: dict[str, Any]
    prepare_env: Any

    @property
    def algorithm(self) -> str:
        """The algorithm's name (``"happo"``, ``"hatd3"``, ...)."""
        return str(self.meta.get("algorithm", ""))


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedPolicy:
    """Builds the joint policy a checkpoint holds and loads its weights.

    Args:
        path: a ``checkpoint.pt`` written by the run loop (``harl-train``, ``recipes/train.py``).
        device: where the networks live.

    Raises:
        CheckpointError: the file is missing, damaged, or records no run config (its message
            names no command-line key: :meth:`~harl_torchrl.utils.checkpoint.CheckpointError.for_key`).

    Example:
        >>> try:
        ...     load_trained("no/such/checkpoint.pt")
        ... except CheckpointError as err:
        ...     print(err)
        checkpoint no/such/checkpoint.pt: no such file
    """
    path = Path(path)
    state, meta = load_checkpoint(path, device, sidecars=False, return_metadata=True)
    config = meta.get("config")
    if not config or not config.get("algo"):
        raise CheckpointError(f"checkpoint {path}: it records no run config (not written by a training loop)")
    env_cfg = env_config(config["env"])
    env = make_env(replace(env_cfg, num_envs=1), seed=0, device=device)  # specs for building the networks
    try:
        # the registry builds what the checkpoint's algorithm trains; its state holds the weights
        components = algo_config(config["algo"]).build(env, model_config(config["model"]), device=device, seed=0)
        components.load_state_dict(state)
        components.start(frames=sys.maxsize, total_iterations=1)  # acts as after training: no random warm-up
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: its networks do not fit its own config ({first})") from None
    policy, agents, prepare = components.policy, list(components.actors), components.prepare_env
    env.close()
    return TrainedPolicy(path, dict(meta), env_cfg, policy, agents, state, prepare)


def make_eval_env(
    trained: TrainedPolicy,
    episodes: int | None = None,
    *,
    seed: int = 1,
    device: str | torch.device = "cpu",
    restore: bool = True,
) -> tuple[EnvBase, bool]:
    """An env of ``episodes`` copies for ``trained``, in the training run's evaluation state where possible.

    Args:
        trained: from :func:`load_trained`.
        episodes: copies (one episode each); ``None``: as many as the training run's
            evaluation env had (or 10 if it saved none).
        seed: the env seed when no saved state is restored (training used its seed + 1).
        device: the env's device.
        restore: restore the saved evaluation env state and the global random streams
            when they fit (same number of copies); then the first evaluation equals the
            training run's final one.

    Returns:
        ``(env, restored)``.
    """
    saved = ((trained.state.get("rollout") or {}).get("envs") or {}).get("eval")
    saved_copies = int(saved["num_envs"]) if isinstance(saved, dict) and "num_envs" in saved else None
    episodes = episodes or saved_copies or 10
    env = trained.prepare_env(make_env(replace(trained.env_config, num_envs=episodes), seed=seed, device=device))
    restored = False
    if restore and saved is not None and saved_copies == episodes:
        restored = "eval" in restore_rollout_state(None, {"eval": env}, trained.state["rollout"])
        if restored and "rng" in trained.state:
            set_rng_state(trained.state["rng"])
    return env, restored

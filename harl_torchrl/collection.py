"""Collectors for the recipes: in-process, or several worker processes for CPU-bound simulators.

VMAS is vectorised in torch, so one process stepping all sub-environments is the
fastest way to run it. MPE and MaMuJoCo step their copies one after another in
Python/C; on a machine with more cores, ``workers`` processes each step
``num_envs / workers`` copies with their own copy of the policy, through TorchRL's
:class:`~torchrl.collectors.MultiSyncCollector`, and the batch comes back with the
same ``[num_envs, rollout_steps]`` layout as in-process collection. With
``backend="ray"`` the workers are Ray actors (TorchRL's
:class:`~torchrl.collectors.distributed.RayCollector`, synchronous): on a local Ray
instance the collector starts, or on the cluster ``RAY_ADDRESS`` names, so collection
can leave the machine; the batch layout, seeds and weight updates are those of the
multi-process collector.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector, MultiSyncCollector
from torchrl.envs import EnvBase

from harl_torchrl.config import EnvConfig, env_config
from harl_torchrl.errors import ConfigError, MissingDependencyError, require_positive


def check_workers(workers: int, num_envs: int) -> None:
    """Raises :class:`~harl_torchrl.errors.ConfigError` unless ``workers`` can split ``num_envs``."""
    require_positive("collector.workers", workers)
    if num_envs % workers:
        raise ConfigError(
            f"env.num_envs={num_envs} must be a multiple of collector.workers={workers} "
            "(each worker steps the same number of copies)"
        )


def _worker_env(
    env_cfg: EnvConfig, num_envs: int, seed: int, device: str, prepare: Callable[[EnvBase], EnvBase]
) -> EnvBase:
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism
    return prepare(env_cfg.make(num_envs=num_envs, seed=seed, device=device))


def make_collector(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    frames_per_batch: int,
    total_frames: int,
    workers: int = 1,
    env_cfg: EnvConfig | Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    prepare_env: Callable[[EnvBase], EnvBase] | None = None,
    backend: str = "local",
) -> Collector | MultiSyncCollector | RayBatches:
    """A collector of ``[num_envs, steps]`` batches from ``env``, in-process or over worker processes.

    With ``workers > 1``, worker ``i`` builds its own env from ``env_cfg`` with
    ``num_envs / workers`` copies seeded from ``seed + i * num_envs / workers`` (so
    the copies get the seeds they get in one process) and runs a copy of
    ``policy``; after each update, call ``collector.update_policy_weights_()``
    (a no-op in-process). Sampling in the workers uses their own random streams,
    so runs with ``workers > 1`` are not bit-reproducible.

    Args:
        env: the training env (in-process collection uses it; otherwise it only
            gives the number of copies).
        policy: the joint policy.
        frames_per_batch: frames per batch, summed over copies.
        total_frames: frames to collect in all (``-1``: without end).
        workers: collecting processes (1: in-process).
        env_cfg: the ``env`` config group (typed, or a mapping converted through its
            schema), needed when ``workers > 1``.
        seed: the training env's seed.
        device: the device of the envs and the policy.
        prepare_env: applied to each worker's env (e.g. the recurrent transforms
            of :class:`~harl_torchrl.algorithms.OnPolicyComponents`).
        backend: ``"local"`` (worker processes of this machine) or ``"ray"`` (Ray actors,
            one CPU each; the ``ray`` extra).

    Raises:
        ConfigError: ``workers`` is not positive or does not divide the number of
            copies, or ``env_cfg`` is missing for ``workers > 1``.

    Example:
        >>> from harl_torchrl.envs import make_env
        >>> env = make_env({"family": "vmas", "scenario": "balance", "num_envs": 4, "max_steps": 5,
        ...                 "scenario_kwargs": {"n_agents": 2}})
        >>> collector = make_collector(env, None, frames_per_batch=20, total_frames=20)
        >>> next(iter(collector)).shape
        torch.Size([4, 5])
    """
    num_envs = env.batch_size.numel()
    check_workers(workers, num_envs)
    if workers == 1 and backend == "local":
        return Collector(
            env,
            policy,
            frames_per_batch=frames_per_batch,
            total_frames=total_frames,
            device=device,
            auto_register_policy_transforms=False,
        )
    if env_cfg is None:
        raise ConfigError("make_collector needs env_cfg to build the workers' envs (workers > 1 or backend='ray')")
    env_cfg = env_config(env_cfg)
    per_worker = num_envs // workers
    prepare = prepare_env if prepare_env is not None else _unchanged
    env_fns = [
        functools.partial(_worker_env, env_cfg, per_worker, seed + i * per_worker, str(device), prepare)
        for i in range(workers)
    ]
    if backend == "ray":
        return _ray_collector(env_fns, policy, frames_per_batch, total_frames, workers, device)
    return MultiSyncCollector(
        env_fns,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        device=device,
        use_buffers=True,
        cat_results=0,  # concatenate the workers' copies: [num_envs, steps], as in-process
        auto_register_policy_transforms=False,
    )


def _unchanged(env: EnvBase) -> EnvBase:  # a module-level function: workers must unpickle it
    return env


class RayBatches:
    """TorchRL's :class:`~torchrl.collectors.distributed.RayCollector` with the in-process batch layout.

    The Ray collector stacks its workers' ``[num_envs / workers, steps]`` batches into
    ``[workers, num_envs / workers, steps]``; this yields them as ``[num_envs, steps]``
    (worker ``i``'s copies at rows ``i * num_envs / workers ...``, as the multi-process
    collector concatenates them). Everything else is the Ray collector's.
    """

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def __iter__(self):
        for batch in self.collector:
            yield batch.reshape(-1, *batch.shape[2:])

    def update_policy_weights_(self, *args: Any, **kwargs: Any) -> None:
        """Sends the current policy weights to every Ray worker."""
        self.collector.update_policy_weights_(*args, **kwargs)

    def shutdown(self) -> None:
        """Stops the Ray actors (the Ray instance stays up for the process's other users)."""
        self.collector.shutdown()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collector, name)


def _ray_collector(
    env_fns: list[Callable[[], EnvBase]],
    policy: TensorDictModuleBase,
    frames_per_batch: int,
    total_frames: int,
    workers: int,
    device: str | torch.device,
) -> RayBatches:
    try:
        from torchrl.collectors import RayWeightUpdater
        from torchrl.collectors.distributed import RayCollector
    except ImportError as err:  # torchrl imports ray lazily; the class is there, ray may not be
        raise MissingDependencyError(
            f"collector.backend=ray needs ray ({err}). Fix: pip install 'harl-torchrl[ray]'"
        ) from None
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("collector.backend=ray needs ray. Fix: pip install 'harl-torchrl[ray]'") from None
    # a cluster named by RAY_ADDRESS, or one already started by the caller, is used as it is
    local = not ray.is_initialized() and not os.environ.get("RAY_ADDRESS")
    init = {"ray_init_config": {"include_dashboard": False, "log_to_driver": False}} if local else {}
    # Weights travel through Ray's object store (TorchRL's RayWeightUpdater), not the default
    # scheme's Gloo process group: that one must connect every actor within 60 s, which actors
    # still importing torch on a loaded machine miss. The updater learns the actors below.
    updater = RayWeightUpdater(policy_weights=TensorDict.from_module(policy), remote_collectors=[])
    collector = RayCollector(
        env_fns,
        policy,
        weight_updater=updater,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        collector_class=Collector,
        collector_kwargs={"device": device, "auto_register_policy_transforms": False},
        num_collectors=workers,
        sync=True,
        remote_configs={"num_cpus": 1, "num_gpus": 0},
        **init,
    )
    updater.remote_collectors = collector.remote_collectors
    updater._batches_since_weight_update = [0] * len(collector.remote_collectors)
    collector.update_policy_weights_()  # the workers start from the learner's weights
    return RayBatches(collector)

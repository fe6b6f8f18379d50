"""The root run config: its own groups (collector, eval, checkpoint, logger) and the run-level check.

:func:`typed_run_config` turns a composed recipe config (or a plain dict) into a
:class:`RunConfig` of schema instances, refusing unknown keys and wrong types;
:func:`validate_run_config` runs every group's range checks and then the checks
that span groups. Both run at the top of a recipe, before anything is built.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from harl_torchrl.config.base import AlgoConfig, EnvConfig, GroupConfig, ModelConfig, choices
from harl_torchrl.config.registry import algo_config, env_config, model_config
from harl_torchrl.errors import ConfigError

#: The largest seed numpy's legacy seeding (``np.random.seed``, which VMAS also calls) takes.
MAX_SEED = 2**32 - 1

LoggerBackend = choices("LoggerBackend", "csv", "tensorboard", "wandb", "mlflow")
CollectorBackend = choices("CollectorBackend", "local", "ray")


@dataclass
class CollectorConfig(GroupConfig):
    """The ``collector`` group.

    Attributes:
        rollout_steps: steps per sub-environment per iteration (> 0).
        workers: processes stepping ``env.num_envs / workers`` copies each (> 0, a
            divisor of ``env.num_envs``).
        backend: ``local`` (worker processes on this machine; in-process for one worker)
            or ``ray`` (``workers`` Ray actors of one CPU each, on a local Ray instance or
            the cluster ``RAY_ADDRESS`` names: TorchRL's ``RayCollector``; the ``ray``
            extra). Same batch layout, seeds and weight updates either way.
    """

    group: ClassVar[str] = "collector"
    rollout_steps: int = 100
    workers: int = 1
    backend: CollectorBackend = CollectorBackend.local  # type: ignore[valid-type]

    def validate(self) -> None:
        """``rollout_steps`` and ``workers`` > 0."""
        self.require_positive("rollout_steps", "workers")


@dataclass
class EvalConfig(GroupConfig):
    """The ``eval`` group.

    Attributes:
        interval: iterations between deterministic evaluations (0 disables).
        episodes: evaluation sub-environments, one episode each (0 disables).
        video_interval: every ``video_interval``-th evaluation, and the final one, also
            records one deterministic episode as ``<run dir>/videos/eval_<frames>.mp4``
            (and a GIF), logged to W&B when that backend is on (0, the default: never;
            the ``video`` extra; VMAS, MPE, MaMuJoCo).
    """

    group: ClassVar[str] = "eval"
    interval: int = 5
    episodes: int = 32
    video_interval: int = 0

    def validate(self) -> None:
        """All >= 0."""
        self.require_non_negative("interval", "episodes", "video_interval")


@dataclass
class CheckpointConfig(GroupConfig):
    """The ``checkpoint`` group.

    Attributes:
        interval: iterations between checkpoints (0: only the final one); ``None``
            (default): the algorithm's own cadence
            (:meth:`~harl_torchrl.config.AlgoConfig.checkpoint_iterations`): every 10
            iterations on-policy (40k frames with the default rollouts), every 100k frames
            off-policy (100 iterations of the reference's 1,000), where each checkpoint
            also writes the replay buffer (about 1 KB per MPE transition: 1 GB when full).
        replay_buffer: off-policy runs: save the replay buffer with each checkpoint (a
            sidecar file); ``false``: networks and counters only, a resumed run refills it.
        resume_without_replay: off-policy runs resumed with ``resume=``: do not load the
            checkpoint's replay buffer (e.g. its sidecar is missing or damaged); the networks,
            optimisers and counters resume, the buffer starts empty and a fresh random
            warm-up of ``algo.warmup_steps`` frames runs before training goes on. Applies to
            this resume only (a later ``resume=<run dir>`` does not inherit it).
    """

    group: ClassVar[str] = "checkpoint"
    interval: int | None = None
    replay_buffer: bool = True
    resume_without_replay: bool = False

    def validate(self) -> None:
        """``interval`` >= 0 (or ``None``)."""
        if self.interval is not None:
            self.require_non_negative("interval")

    def every(self, default: int) -> int:
        """Iterations between checkpoints (0: only the final one): ``interval``, else ``default``.

        Example:
            >>> CheckpointConfig().every(10), CheckpointConfig(interval=3).every(10)
            (10, 3)
        """
        return self.interval if self.interval is not None else default


@dataclass
class LoggerConfig(GroupConfig):
    """The ``logger`` group.

    Attributes:
        backends: any of ``csv``, ``tensorboard``, ``wandb`` (offline with
            ``WANDB_MODE=offline``), ``mlflow`` (``MLFLOW_TRACKING_URI``, else a file store in
            the run dir); at least one. See :class:`~harl_torchrl.utils.logging.MetricLogger`.
        progress_bar: show a progress bar.
    """

    group: ClassVar[str] = "logger"
    backends: list[LoggerBackend] = field(default_factory=lambda: [LoggerBackend.csv])  # type: ignore[valid-type]
    progress_bar: bool = True

    def validate(self) -> None:
        """At least one backend."""
        if not self.backends:
            raise self.fail("backends", "must name at least one backend", "set logger.backends=[csv]")


@dataclass
class RunConfig(GroupConfig):
    """The whole run (``harl_torchrl/conf/config.yaml``), each group a schema instance.

    Attributes:
        algo: an :class:`~harl_torchrl.config.AlgoConfig` (e.g.
            :class:`~harl_torchrl.config.HAPPOConfig`), chosen by ``algo.name``.
            Typed ``Any`` for OmegaConf: the group's own schema is merged in by the
            ``algo`` YAML.
        env: an :class:`~harl_torchrl.config.EnvConfig`, chosen by ``env.family``.
        model: a :class:`~harl_torchrl.config.ModelConfig`, chosen by ``model.name``.
        seed: the run's seed, an integer from 0 to ``2**32 - 1`` (numpy's range) less
            :meth:`seed_offset` (the run also seeds its evaluation env with ``seed + 1``).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        threads: torch's intra-op CPU threads for this process (``torch.set_num_threads``),
            set before anything is built. 1 (the default): one thread, the safe choice on a
            machine that does other work too (parallel seeds, a test suite, a shared node),
            where two intra-op threads on busy cores wait on each other at every small
            matmul (3-10x slower measured on 2 cores; on an idle 2-core machine a second
            thread gained about 5%: ``recipes/benchmarks/benchmark_threads.py``). ``null``
            keeps torch's own choice: ``OMP_NUM_THREADS`` when set, else one per core. The
            banner warns when the threads asked for exceed the cores that are free.
        total_frames: env steps summed over sub-environments (> 0).
        collector: :class:`CollectorConfig`.
        eval: :class:`EvalConfig`.
        checkpoint: :class:`CheckpointConfig`.
        resume: path of a checkpoint to continue from, or ``null``.
        resume_override: dotted keys allowed to differ from the checkpoint's config
            at resume (see the checkpoint docs).
        logger: :class:`LoggerConfig`.
    """

    group: ClassVar[str] = ""
    algo: Any = None
    env: Any = None
    model: Any = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = 1
    total_frames: int = 1_000_000
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    resume: str | None = None
    resume_override: list[str] = field(default_factory=list)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def validate(self) -> None:
        """``seed`` in numpy's range, ``threads`` >= 1 or null, ``total_frames`` > 0, a usable ``device``."""
        from harl_torchrl.utils.device import resolve_device  # torch-level helper, imported when checking

        highest = MAX_SEED - self.seed_offset()
        if not 0 <= self.seed <= highest:
            raise self.fail(
                "seed",
                f"must be an integer from 0 to {highest} (numpy and VMAS take seeds up to 2**32 - 1, and the run "
                f"also uses seed + {self.seed_offset()} for its evaluation env, videos or worker envs)",
                "set seed to an integer in that range, e.g. seed=0",
            )
        self.require_positive("total_frames")
        self.require_positive_or_none("threads")
        try:
            resolve_device(self.device)
        except ConfigError as err:
            reason = str(err).rstrip(".")
            fix = "" if "Fix:" in reason else ". Fix: set device=cpu, or device=auto (CUDA when available)"
            raise ConfigError(
                reason if reason.startswith("device=") else f"device={self.device!r}: {reason}{fix}"
            ) from None

    def seed_offset(self) -> int:
        """The most the run adds to its seed for the envs it builds.

        The evaluation env gets ``seed + 1``, the videos ``seed + 2``, worker ``i`` of the
        collector ``seed + i * num_envs / collector.workers``.

        Example:
            >>> RunConfig().seed_offset()
            2
        """
        if not isinstance(self.env, EnvConfig):
            return 2
        num_envs = self.algo.effective_num_envs(self) if isinstance(self.algo, AlgoConfig) else self.env.num_envs
        workers = max(1, self.collector.workers)
        return max(2, num_envs - max(1, num_envs // workers))

    def groups(self) -> list[GroupConfig]:
        """Every group instance, root first."""
        return [self, self.algo, self.env, self.model, self.collector, self.eval, self.checkpoint, self.logger]


_SELECTED = {"algo": algo_config, "env": env_config, "model": model_config}
_NESTED = {
    f.name: f.type
    for f in dataclasses.fields(RunConfig)
    if isinstance(f.type, type) and issubclass(f.type, GroupConfig)
}


def typed_run_config(cfg: Mapping[str, Any] | RunConfig) -> RunConfig:
    """The :class:`RunConfig` for a composed recipe config (or a plain nested dict).

    Each group goes through its own schema (``algo`` chosen by ``algo.name``,
    ``env`` by ``env.family``, ``model`` by ``model.name``), which refuses unknown
    keys (including ``+algo.new_key=...``, which Hydra itself lets through) and
    values of the wrong type. Range checks are :func:`validate_run_config`'s job.

    Raises:
        ConfigError: naming the full key, the value and the fix.

    Example:
        >>> run = typed_run_config({"algo": {"name": "happo"}, "env": {"family": "vmas", "scenario": "balance"},
        ...                         "model": {"name": "mlp"}})
        >>> type(run.algo).__name__, run.collector.rollout_steps
        ('HAPPOConfig', 100)
    """
    if isinstance(cfg, RunConfig):
        return cfg
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if not isinstance(data, dict):
        raise ConfigError(f"the run config must be a mapping, got {type(cfg).__name__}")
    data = dict(data)
    data.pop("hydra", None)
    selected: dict[str, GroupConfig] = {}
    for name, convert in _SELECTED.items():
        if data.get(name) is None:
            raise ConfigError(f"the run config has no {name} group. Fix: select one, e.g. {name}=<option>")
        selected[name] = convert(data.pop(name), validate=False)
    nested = {name: schema.from_mapping(data.pop(name, {}) or {}, validate=False) for name, schema in _NESTED.items()}
    run = RunConfig.from_mapping(data, validate=False)
    for name, value in {**selected, **nested}.items():
        setattr(run, name, value)
    return run


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def validate_run_config(cfg: Mapping[str, Any] | RunConfig) -> RunConfig:
    """Checks a whole run before anything is built, and returns it typed.

    Order: each group's own ``validate()`` (root, algo, env, model, collector,
    eval, checkpoint, logger); then the checks that span groups: ``collector.workers``
    divides ``env.num_envs``; for recurrent models ``collector.rollout_steps`` is a
    multiple of ``model.chunk_length``; last the algorithm's own
    ``validate_run(run)`` (on-policy: minibatches at most the samples per batch).

    Raises:
        ConfigError: the first setting that cannot work, naming the key, the value
            and the fix.

    Example:
        >>> cfg = {"algo": {"name": "happo", "num_minibatches": 500}, "model": {"name": "mlp"},
        ...        "env": {"family": "vmas", "scenario": "balance", "num_envs": 4}, "collector": {"rollout_steps": 100}}
        >>> try:
        ...     validate_run_config(cfg)
        ... except ConfigError as err:
        ...     print(str(err).split(" (")[0])
        algo.num_minibatches exceeds the 400 samples per batch
    """
    run = typed_run_config(cfg)
    for group in run.groups():
        group.validate()
    env: EnvConfig = run.env
    model: ModelConfig = run.model
    algo: AlgoConfig = run.algo
    workers, num_envs = run.collector.workers, env.num_envs
    if num_envs % workers:
        raise ConfigError(
            f"env.num_envs={num_envs} must be a multiple of collector.workers={workers} (each worker steps the "
            f"same number of copies). Fix: set collector.workers to a divisor of {num_envs} "
            f"({', '.join(map(str, _divisors(num_envs)[:8]))}), or env.num_envs to a multiple of {workers}"
        )
    remote = workers > 1 or run.collector.backend == "ray"
    if remote and env.family == "smax":
        raise ConfigError(
            f"collector.workers={workers}, collector.backend={run.collector.backend} with env.family=smax: "
            "SMAX steps all its copies in one jit+vmap call, and JAX does not run safely in forked worker "
            "processes. Fix: collector.workers=1 collector.backend=local (raise env.num_envs for more copies)"
        )
    chunk = model.sequence_length
    steps = run.collector.rollout_steps
    if chunk and steps % chunk:
        raise ConfigError(
            f"collector.rollout_steps={steps} must be a multiple of model.chunk_length={chunk} (training cuts each "
            f"rollout into whole chunks). Fix: set collector.rollout_steps={max(chunk, steps - steps % chunk)} or "
            f"model.chunk_length to a divisor of {steps}"
        )
    if run.checkpoint.resume_without_replay and (not run.resume or getattr(algo, "kind", "") != "off_policy"):
        why = (
            "only applies when resuming (resume=<checkpoint>)"
            if not run.resume
            else f"applies to off-policy runs, and algo={algo.name} keeps no replay buffer"
        )
        raise ConfigError(
            f"checkpoint.resume_without_replay=true {why}: it resumes a checkpoint's networks and counters with a "
            "fresh replay buffer. Fix: drop checkpoint.resume_without_replay"
        )
    algo.validate_run(run)
    return run

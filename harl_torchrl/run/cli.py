"""The console scripts ``harl-train`` and ``harl-evaluate``, and what the recipes share with them.

Both take Hydra overrides exactly as ``python recipes/train.py`` / ``recipes/evaluate.py``
do, with the configs shipped in the package (``pkg://harl_torchrl.conf``); run outputs
go under ``./outputs`` of the directory the command runs in. The command line is checked
(one line naming the key, the value and the fix) before Hydra creates a run dir and
before torch is imported; errors end the process with one line and status 1; a run
stopped by SIGINT / SIGTERM prints its checkpoint and the command that resumes it, and
exits 130 / 143.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from harl_torchrl.config import store_schemas
from harl_torchrl.config.hydra_checks import check_command_line, check_override_syntax, resume_run_dir
from harl_torchrl.errors import ConfigError, MissingDependencyError

#: The configs shipped in the package (``recipes/conf`` links here).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def checked_command_line(argv: Sequence[str], conf_dir: str | Path = CONF_DIR) -> list[str]:
    """The overrides to hand to Hydra, checked; exits with one line on a bad one.

    ``resume=<run dir>`` becomes that run's own overrides and run dir
    (:func:`~harl_torchrl.config.hydra_checks.resume_run_dir`); then the whole config is
    composed and checked (:func:`~harl_torchrl.config.hydra_checks.check_command_line`).
    """
    store_schemas()
    try:
        argv = resume_run_dir(list(argv))
        check_command_line(argv, conf_dir)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    return list(argv)


def train_in_hydra_dir(cfg: DictConfig, program: str = "harl-train") -> None:
    """The body of a training entry point: :func:`harl_torchrl.run.run` in Hydra's run dir.

    A known failure (bad config, missing dependency, NaN) ends the process with one
    line; a stop on a signal with the resume command and ``128 + signal``.
    """
    from harl_torchrl.run.quiet import quiet_library_logs

    with quiet_library_logs():  # importing VMAS's renderer already logs at INFO
        from harl_torchrl.run import RunStopped, run  # torch and the envs load here, after the command line
        from harl_torchrl.run_guard import NonFiniteError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with _TeeToLog(run_dir / "train.log") as log:
        try:
            run(cfg, run_dir)
        except (ConfigError, MissingDependencyError, NonFiniteError) as err:
            log.write(f"error: {err}\n")
            sys.exit(f"error: {err}")
        except RunStopped as stopped:
            print(f"stopped by {stopped.signal_name} at {stopped.frames:,} frames; checkpoint: {stopped.checkpoint}")
            print(f"resume with: {stopped.resume_command(program)}")
            sys.exit(stopped.exit_code)


class _TeeToLog:
    """Within the block, what the run prints (banner, notes, summary) also goes to ``<run dir>/train.log``.

    Only standard output: the progress bar (standard error) would fill the file with redraws.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stdout: Any = None
        self._file: Any = None

    def write(self, text: str) -> int:
        self._file.write(text)
        self._file.flush()
        return len(text)

    def __enter__(self) -> _TeeToLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        self._stdout = sys.stdout
        sys.stdout = _Tee(self._stdout, self._file)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._stdout
        self._file.close()


class _Tee:
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.streams[0], "isatty", lambda: False)())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.streams[0], name)


@hydra.main(config_path="pkg://harl_torchrl.conf", config_name="config", version_base="1.3")
def _train_main(cfg: DictConfig) -> None:
    train_in_hydra_dir(cfg)


def train() -> None:
    """``harl-train [overrides]``: train any algorithm (see ``recipes/train.py`` for examples)."""
    sys.argv[1:] = checked_command_line(sys.argv[1:])
    _train_main()


def evaluate_from_hydra(cfg: Any) -> dict[str, Any]:
    """The body of an evaluation entry point; exits with one line on a known failure."""
    from harl_torchrl.run.evaluate import evaluate_checkpoint
    from harl_torchrl.utils.checkpoint import CheckpointError

    if OmegaConf.is_missing(cfg, "checkpoint"):
        sys.exit("error: checkpoint=<path to checkpoint.pt> is required (the run dir's checkpoint.pt)")
    try:
        return evaluate_checkpoint(cfg)
    except (ConfigError, CheckpointError, MissingDependencyError) as err:
        sys.exit(f"error: {err}")


def _store_evaluate_config() -> None:
    from hydra.core.config_store import ConfigStore

    from harl_torchrl.run.evaluate import EvaluateConfig

    ConfigStore.instance().store(name="evaluate", node=EvaluateConfig)


#: evaluation writes nothing of Hydra's own (no run dir, no .hydra/ config copy)
EVALUATE_HYDRA_OVERRIDES = ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none"]
EVALUATE_HYDRA_OVERRIDES += ["hydra/hydra_logging=none"]


@hydra.main(config_path=None, config_name="evaluate", version_base="1.3")
def _evaluate_main(cfg: DictConfig) -> None:
    evaluate_from_hydra(cfg)


def evaluate() -> None:
    """``harl-evaluate checkpoint=<path> [episodes=N] [video=true] ...``: play a trained checkpoint."""
    _store_evaluate_config()
    arguments = sys.argv[1:]
    if not any(arg.startswith("-") for arg in arguments):  # a path Hydra cannot read: how to quote it
        try:
            check_override_syntax(arguments)
        except ConfigError as err:
            sys.exit(f"error: {err}")
    sys.argv += EVALUATE_HYDRA_OVERRIDES
    _evaluate_main()

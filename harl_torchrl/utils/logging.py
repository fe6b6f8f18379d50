"""Scalar logging to one CSV file and, optionally, TensorBoard, Weights & Biases and MLflow."""

from __future__ import annotations

import csv
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from harl_torchrl.errors import ConfigError, MissingDependencyError, unknown_choice

BACKENDS = ("csv", "tensorboard", "wandb", "mlflow")

#: The file in the run dir that keeps the W&B run id, so that a resumed run continues the same W&B run.
WANDB_ID_FILE = "wandb_run_id"


class MetricLogger:
    """Writes one row of scalars per call to ``metrics.csv`` (and TensorBoard, W&B, MLflow if asked).

    The CSV's header is the union of every key logged so far (a new key rewrites
    the file with the extended header); a row leaves the keys it lacks empty. A value
    that is NaN or infinite is written as ``nan`` / ``inf`` / ``-inf``, so an empty cell
    always means "not logged in this row" (``episode_return_mean`` is ``nan`` exactly
    when the row's ``episodes`` count is 0).

    Resuming keeps each step exactly once: with ``resume_step``, rows logged after
    that step (by the run that was interrupted after its last checkpoint) are dropped
    before new rows are appended; with ``previous_log`` (resuming into a new run dir),
    the old run's rows up to ``resume_step`` are copied over first, so the new dir holds
    the whole run's log. TensorBoard gets the same rule through ``SummaryWriter``'s
    ``purge_step``: events after ``resume_step`` in the run dir's event files are hidden.

    ``wandb`` and ``mlflow`` go through TorchRL's loggers
    (:class:`torchrl.record.loggers.WandbLogger`, :class:`~torchrl.record.loggers.MLFlowLogger`):
    W&B writes under ``<log_dir>/wandb`` (offline with ``WANDB_MODE=offline``), its run id kept in
    ``<log_dir>/wandb_run_id`` so that a resumed run (same dir, or ``previous_log``'s dir)
    continues the same W&B run; MLflow logs to ``MLFLOW_TRACKING_URI`` when set, else to a
    local file store ``<log_dir>/mlruns`` (MLflow 3's file store, opted into with
    ``MLFLOW_ALLOW_FILE_STORE=true``), in the experiment ``harl_torchrl``. Both get
    ``config`` as the run's hyperparameters.

    Args:
        log_dir: directory for ``metrics.csv`` and the TensorBoard event files.
        backends: any of ``"csv"``, ``"tensorboard"``, ``"wandb"``, ``"mlflow"``.
        resume: append to an existing ``metrics.csv`` instead of replacing it.
        resume_step: with ``resume``, the checkpoint's step: later rows are dropped.
        previous_log: with ``resume``, the interrupted run's ``metrics.csv`` when it lives
            in another directory: its rows up to ``resume_step`` start the new log.
        config: the run's config as a plain mapping, logged as hyperparameters by the W&B
            and MLflow backends.
        run_name: the W&B / MLflow run name (default: ``log_dir``'s name).

    Example:
        >>> import tempfile
        >>> logger = MetricLogger(tempfile.mkdtemp())
        >>> logger.log({"frames": 100, "train/return": -1.5}, step=100)
        >>> logger.close()
        >>> logger.csv_path.read_text().splitlines()[0]
        'step,frames,train/return'
    """

    def __init__(
        self,
        log_dir: str | Path,
        backends: Iterable[str] = ("csv",),
        resume: bool = False,
        resume_step: int | None = None,
        previous_log: str | Path | None = None,
        config: Mapping[str, object] | None = None,
        run_name: str | None = None,
    ) -> None:
        backends = list(backends)
        for backend in backends:
            if backend not in BACKENDS:
                raise unknown_choice("logger backend", backend, BACKENDS)
        if not backends:
            raise ConfigError(f"at least one logger backend is needed: any of {', '.join(BACKENDS)}")
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.log_dir / "metrics.csv"
        self._columns: list[str] | None = None
        self._csv = None
        self._writer: csv.DictWriter | None = None
        self._tensorboard = None
        if "csv" in backends:
            if resume:
                self._carry_over(resume_step, previous_log)
            if resume and self.csv_path.is_file():
                with self.csv_path.open(newline="") as handle:
                    self._columns = next(csv.reader(handle), None)
                self._csv = self.csv_path.open("a", newline="")
                if self._columns is not None:
                    self._writer = csv.DictWriter(self._csv, fieldnames=self._columns, extrasaction="ignore")
            else:
                self._csv = self.csv_path.open("w", newline="")
        if "tensorboard" in backends:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise MissingDependencyError(
                    "logger.backends includes 'tensorboard' but the tensorboard package is missing: "
                    "pip install 'harl-torchrl[tensorboard]'"
                ) from err
            # A resume in the same dir replays the steps after its checkpoint: purge_step makes
            # TensorBoard hide the interrupted run's events from there on, as the CSV drops its rows.
            purge_step = resume_step + 1 if (resume and resume_step is not None) else None
            self._tensorboard = SummaryWriter(str(self.log_dir / "tensorboard"), purge_step=purge_step)
        name = run_name or self.log_dir.name
        previous_dir = Path(previous_log).parent if (resume and previous_log is not None) else None
        self._torchrl = [
            _torchrl_logger(backend, self.log_dir, name, previous_dir if resume else None, resume)
            for backend in backends
            if backend in ("wandb", "mlflow")
        ]
        if config is not None:
            for logger in self._torchrl:
                logger.log_hparams(dict(_flatten(config)))

    def _carry_over(self, resume_step: int | None, previous_log: str | Path | None) -> None:
        """Leaves ``metrics.csv`` holding exactly the rows up to ``resume_step`` (see the class docs)."""
        source = self.csv_path
        if previous_log is not None and Path(previous_log).is_file():
            if not self.csv_path.is_file() or not Path(previous_log).samefile(self.csv_path):
                source = Path(previous_log)
        if not source.is_file():
            return
        with source.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = [r for r in reader if resume_step is None or not r.get("step") or int(r["step"]) <= resume_step]
        if source == self.csv_path and resume_step is None:
            return
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.csv_path)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Writes ``metrics`` at ``step`` (ints stay ints, NaN is written as ``nan``)."""
        row = {"step": step, **{k: v if isinstance(v, int) else float(v) for k, v in metrics.items()}}
        if self._csv is not None:
            new_columns = [k for k in row if k not in (self._columns or [])]
            if self._columns is None or new_columns:
                self._extend_columns(new_columns)
            self._writer.writerow(row)  # csv writes nan/inf as "nan"/"inf": never an empty cell
            self._csv.flush()
        if self._tensorboard is not None:
            for key, value in metrics.items():
                if not math.isnan(float(value)):
                    self._tensorboard.add_scalar(key, float(value), step)
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        for logger in self._torchrl:
            logger.log_metrics(finite, step=step)

    def log_video(self, path: str | Path, step: int, key: str = "eval/video", fps: int = 20) -> None:
        """Logs the MP4 at ``path`` to every backend that keeps videos; the file itself stays in the run dir.

        * W&B: a ``wandb.Video`` under ``key`` at ``step`` (played in the run's page);
        * TensorBoard: ``add_video`` (an animated GIF in the Images tab, encoded by moviepy 1.x:
          :func:`~harl_torchrl.video.check_video_support` makes sure it is there before training);
        * MLflow: the MP4 itself as an artifact under ``videos/`` of the run (what TorchRL's
          ``MLFlowLogger.log_video`` does after re-encoding; the file is already an MP4).

        The CSV gets nothing: a video is not a scalar.
        """
        path = Path(path)
        if self._tensorboard is not None:
            import imageio.v3 as iio

            frames = torch.from_numpy(iio.imread(path, index=None))  # [T, H, W, C] uint8
            self._tensorboard.add_video(key, frames.permute(0, 3, 1, 2)[None], step, fps=fps)
            self._tensorboard.flush()
        for logger in self._torchrl:
            if type(logger).__name__ == "WandbLogger":
                import wandb

                logger.experiment.log({key: wandb.Video(str(path), format="mp4")}, step=step)
            elif type(logger).__name__ == "MLFlowLogger":
                import mlflow

                mlflow.set_experiment(experiment_id=logger.id)
                mlflow.log_artifact(str(path), "videos")

    def _extend_columns(self, new_columns: list[str]) -> None:
        self._csv.close()
        rows = []
        if self._columns is not None and self.csv_path.is_file():
            with self.csv_path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        self._columns = [*(self._columns or []), *new_columns]
        self._csv = self.csv_path.open("w", newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=self._columns, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(rows)

    def close(self) -> None:
        """Flushes and closes the files."""
        if self._csv is not None:
            self._csv.close()
            self._csv = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        for logger in self._torchrl:
            _finish(logger)
        self._torchrl = []


def _flatten(config: Mapping[str, object], prefix: str = "") -> list[tuple[str, object]]:
    """``{"algo": {"lr": 1}}`` as ``[("algo.lr", 1)]``; lists and other values as their strings."""
    items: list[tuple[str, object]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items += _flatten(value, f"{name}.")
        else:
            items.append((name, value if isinstance(value, (int, float, str, bool)) or value is None else str(value)))
    return items


def _wandb_id(log_dir: Path, previous_dir: Path | None, resume: bool) -> str:
    """The W&B run id of this run dir: the resumed run's own (kept in its dir), else a new one, saved."""
    for directory in [log_dir, previous_dir] if resume else []:
        if directory is not None and (directory / WANDB_ID_FILE).is_file():
            run_id = (directory / WANDB_ID_FILE).read_text().strip()
            break
    else:
        run_id = uuid.uuid4().hex[:12]  # W&B ids: letters and digits
    (log_dir / WANDB_ID_FILE).write_text(run_id + "\n")
    return run_id


def _torchrl_logger(backend: str, log_dir: Path, name: str, previous_dir: Path | None, resume: bool):
    """TorchRL's logger for ``backend`` (``wandb`` or ``mlflow``); a missing package names its extra."""
    package = {"wandb": "wandb", "mlflow": "mlflow"}[backend]
    try:
        __import__(package)
    except ImportError as err:
        raise MissingDependencyError(
            f"logger.backends includes {backend!r} but the {package} package is missing: "
            f"pip install 'harl-torchrl[{backend}]'"
        ) from err
    if backend == "wandb":
        from torchrl.record.loggers import WandbLogger

        run_id = _wandb_id(log_dir, previous_dir, resume)
        # the project and mode come from WANDB_PROJECT / WANDB_MODE when set (wandb reads them)
        return WandbLogger(
            exp_name=name,
            save_dir=str(log_dir),
            id=run_id,
            project=os.environ.get("WANDB_PROJECT", "harl_torchrl"),
            log_env_packages=False,
        )
    from torchrl.record.loggers import MLFlowLogger

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        # MLflow 3 keeps its file store (no database needed) behind an opt-in; it is the local default here
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (log_dir / "mlruns").resolve().as_uri()
    logger = MLFlowLogger(exp_name="harl_torchrl", tracking_uri=uri)  # starts the MLflow run
    import mlflow

    mlflow.set_tag("mlflow.runName", name)
    return logger


def _finish(logger: object) -> None:
    """Ends the logger's run (W&B's ``finish``, MLflow's ``end_run``) so its files are complete."""
    experiment = getattr(logger, "experiment", None)
    if hasattr(experiment, "finish"):
        experiment.finish()
    else:
        import mlflow

        mlflow.end_run()

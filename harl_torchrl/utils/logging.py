"""Scalar logging to one CSV file and, optionally, TensorBoard."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from harl_torchrl.errors import ConfigError, MissingDependencyError, unknown_choice

BACKENDS = ("csv", "tensorboard")


class MetricLogger:
    """Writes one row of scalars per call to ``metrics.csv`` (and TensorBoard if asked).

    The CSV's header is the union of every key logged so far (a new key rewrites
    the file with the extended header); a row leaves the keys it lacks empty. A value
    that is NaN or infinite is written as ``nan`` / ``inf`` / ``-inf``, so an empty cell
    always means "not logged in this row" (``episode_return_mean`` is ``nan`` exactly
    when the row's ``episodes`` count is 0).

    Resuming keeps each step exactly once: with ``resume_step``, rows logged after
    that step (by the run that was interrupted after its last checkpoint) are dropped
    before new rows are appended; with ``previous_log`` (resuming into a new run dir),
    the old run's rows up to ``resume_step`` are copied over first, so the new dir holds
    the whole run's log.

    Args:
        log_dir: directory for ``metrics.csv`` and the TensorBoard event files.
        backends: any of ``"csv"``, ``"tensorboard"``.
        resume: append to an existing ``metrics.csv`` instead of replacing it.
        resume_step: with ``resume``, the checkpoint's step: later rows are dropped.
        previous_log: with ``resume``, the interrupted run's ``metrics.csv`` when it lives
            in another directory: its rows up to ``resume_step`` start the new log.

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
    ) -> None:
        backends = list(backends)
        for backend in backends:
            if backend not in BACKENDS:
                raise unknown_choice("logger backend", backend, BACKENDS)
        if not backends:
            raise ConfigError("at least one logger backend is needed: csv and/or tensorboard")
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
            self._tensorboard = SummaryWriter(str(self.log_dir / "tensorboard"))

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

"""Scalar logging to one CSV file and, optionally, TensorBoard."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from harl_torchrl.errors import ConfigError, MissingDependencyError, unknown_choice

BACKENDS = ("csv", "tensorboard")


class MetricLogger:
    """Writes one row of scalars per call to ``metrics.csv`` (and TensorBoard if asked).

    The CSV's header is the union of every key logged so far (a new key rewrites
    the file with the extended header); a row leaves the keys it lacks empty.

    Args:
        log_dir: directory for ``metrics.csv`` and the TensorBoard event files.
        backends: any of ``"csv"``, ``"tensorboard"``.
        resume: append to an existing ``metrics.csv`` instead of replacing it.

    Example:
        >>> import tempfile
        >>> logger = MetricLogger(tempfile.mkdtemp())
        >>> logger.log({"frames": 100, "train/return": -1.5}, step=100)
        >>> logger.close()
        >>> logger.csv_path.read_text().splitlines()[0]
        'step,frames,train/return'
    """

    def __init__(self, log_dir: str | Path, backends: Iterable[str] = ("csv",), resume: bool = False) -> None:
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

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Writes ``metrics`` at ``step`` (ints stay ints, NaN is written as empty)."""
        row = {"step": step, **{k: v if isinstance(v, int) else float(v) for k, v in metrics.items()}}
        if self._csv is not None:
            new_columns = [k for k in row if k not in (self._columns or [])]
            if self._columns is None or new_columns:
                self._extend_columns(new_columns)
            self._writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
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

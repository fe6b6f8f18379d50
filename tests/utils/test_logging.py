import csv

from harl_torchrl.utils.logging import MetricLogger


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _log(directory, steps, **kwargs):
    logger = MetricLogger(directory, **kwargs)
    for step in steps:
        logger.log({"iteration": step // 10, "loss": step / 100}, step=step)
    logger.close()
    return logger.csv_path


def test_nan_is_written_as_nan_and_missing_values_stay_empty(tmp_path):
    logger = MetricLogger(tmp_path)
    logger.log({"episode_return_mean": float("nan"), "episodes": 0.0, "loss": float("inf")}, step=10)
    logger.log({"eval/return_mean": 1.5}, step=10)
    logger.close()
    first, second = _rows(logger.csv_path)
    assert first["episode_return_mean"] == "nan" and first["loss"] == "inf" and first["eval/return_mean"] == ""
    assert second["episode_return_mean"] == "" and second["eval/return_mean"] == "1.5"


def test_resume_in_the_same_dir_keeps_each_step_once(tmp_path):
    _log(tmp_path, [10, 20, 30, 40])  # the run was killed after logging 30 and 40; its checkpoint is at 20
    path = _log(tmp_path, [30, 40, 50], resume=True, resume_step=20)
    assert [r["step"] for r in _rows(path)] == ["10", "20", "30", "40", "50"]


def test_resume_into_a_new_dir_carries_the_old_rows_over(tmp_path):
    old = _log(tmp_path / "old", [10, 20, 30])
    path = _log(tmp_path / "new", [30, 40], resume=True, resume_step=20, previous_log=old)
    assert [r["step"] for r in _rows(path)] == ["10", "20", "30", "40"]
    assert [r["step"] for r in _rows(old)] == ["10", "20", "30"], "the old run's log is left as it was"

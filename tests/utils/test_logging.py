import csv
import re

import pytest

from harl_torchrl.errors import ConfigError, MissingDependencyError
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


def test_wandb_offline_writes_the_run_and_a_resume_continues_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _log(tmp_path, [10, 20], backends=["csv", "wandb"], config={"algo": {"name": "happo"}, "seed": 3})
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), "an offline run file named after the run id"
    _log(tmp_path, [30], backends=["csv", "wandb"], resume=True, resume_step=20)
    assert (tmp_path / "wandb_run_id").read_text().strip() == run_id
    # every offline run dir carries the one id: offline-run-<time>-<id>, and a resume in the same second
    # as the first run gets W&B's collision suffix, offline-run-<time>-<id>-1; a new id would not match
    same_run = re.compile(rf"offline-run-\d{{8}}_\d{{6}}-{re.escape(run_id)}(-\d+)?")
    dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(dirs) in (1, 2) and all(same_run.fullmatch(d.name) for d in dirs), "the resumed run kept the id"
    # a resume into a new dir takes the id from the interrupted run's dir
    _log(tmp_path / "new", [30], backends=["wandb"], resume=True, resume_step=20, previous_log=tmp_path / "metrics.csv")
    assert (tmp_path / "new" / "wandb_run_id").read_text().strip() == run_id


def test_mlflow_local_file_store_holds_the_metrics_and_the_config(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _log(tmp_path, [10, 20], backends=["mlflow"], config={"algo": {"name": "happo"}, "seed": 3})
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("harl_torchrl").experiment_id])
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.1, 0.2]
    assert run.data.params["algo.name"] == "happo" and run.data.params["seed"] == "3"
    assert run.data.tags["mlflow.runName"] == tmp_path.name


def test_tensorboard_event_file_holds_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _log(tmp_path, [10, 20], backends=["tensorboard"])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("loss")] == [(10, 0.1), (20, 0.2)]


def test_tensorboard_resume_in_the_same_dir_keeps_each_step_once(tmp_path):
    # regression: the steps replayed after the checkpoint used to appear twice in TensorBoard
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _log(tmp_path, [10, 20, 30, 40], backends=["tensorboard"])  # killed after 40; checkpoint at 20
    logger = MetricLogger(tmp_path, backends=["tensorboard"], resume=True, resume_step=20)
    for step in (30, 40, 50):
        logger.log({"loss": -step / 100}, step=step)  # the resumed run logs other values
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("loss")] == [
        (10, 0.1),
        (20, 0.2),
        (30, -0.3),
        (40, -0.4),
        (50, -0.5),
    ]


@pytest.mark.parametrize("backend, package", [("wandb", "wandb"), ("mlflow", "mlflow"), ("tensorboard", "tensorboard")])
def test_a_missing_package_names_its_extra(tmp_path, monkeypatch, backend, package):
    import builtins

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == package or name.startswith(f"{package}.") or (package == "tensorboard" and "tensorboard" in name):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(MissingDependencyError, match=rf"harl-torchrl\[{backend}\]"):
        MetricLogger(tmp_path, backends=[backend])


def test_an_unknown_backend_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="mlflow"):
        MetricLogger(tmp_path, backends=["neptune"])


def test_wandb_offline_run_holds_the_logged_video(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    pytest.importorskip("imageio_ffmpeg", reason="the video extra")
    import numpy as np

    from harl_torchrl.utils.logging import MetricLogger
    from harl_torchrl.video import write_video

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    frames = [np.full((32, 48, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    (video, _) = write_video(frames, tmp_path / "videos" / "eval_100.mp4", fps=5)
    logger = MetricLogger(tmp_path, backends=["csv", "wandb"])
    logger.log_video(video, step=100)
    logger.close()
    media = list((tmp_path / "wandb").glob("offline-run-*/files/media/videos/eval/*.mp4"))
    assert len(media) == 1 and media[0].stat().st_size > 0


def _five_frame_video(tmp_path):
    import numpy as np

    from harl_torchrl.video import write_video

    frames = [np.full((32, 48, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    return write_video(frames, tmp_path / "videos" / "eval_100.mp4", fps=5)[0]


def test_tensorboard_holds_the_logged_video_as_an_animated_image(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("imageio_ffmpeg", reason="the video extra")
    pytest.importorskip("moviepy.editor", reason="the video extra (moviepy<2)")
    import imageio.v3 as iio
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricLogger(tmp_path, backends=["csv", "tensorboard"])
    logger.log_video(_five_frame_video(tmp_path), step=100)
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("eval/video")
    assert (image.step, image.width, image.height) == (100, 48, 32)
    frames = iio.imread(image.encoded_image_string, extension=".gif", index=None)
    assert frames.shape == (5, 32, 48, 3)
    assert frames[0].mean() < frames[-1].mean()  # the frames in order: 0, 40, ..., 160


def test_mlflow_run_holds_the_logged_video_as_an_artifact(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("imageio_ffmpeg", reason="the video extra")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    video = _five_frame_video(tmp_path)
    logger = MetricLogger(tmp_path, backends=["csv", "mlflow"])
    logger.log_video(video, step=100)
    logger.close()
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("harl_torchrl").experiment_id])
    (artifact,) = client.list_artifacts(run.info.run_id, "videos")
    assert artifact.path == "videos/eval_100.mp4" and artifact.file_size == video.stat().st_size

import csv
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from harl_torchrl.errors import ConfigError
from harl_torchrl.utils.checkpoint import load_checkpoint

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
VMAS_TINY = ["env.num_envs=8", "env.max_steps=10", "env.scenario_kwargs.n_agents=2"]
TINY = [
    "collector.rollout_steps=10",
    "total_frames=160",
    "eval.interval=1",
    "eval.episodes=2",
    "checkpoint.interval=1",
    "logger.progress_bar=false",
    "model.hidden_sizes=[16]",
]


def _recipe():
    import harl_torchrl.run  # the one run loop, which recipes/train.py and harl-train call

    return harl_torchrl.run


def _config(*overrides, vmas=True):
    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        return compose("config", overrides=[*TINY, *(VMAS_TINY if vmas else []), *overrides])


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_iterations_write_logs_and_a_checkpoint(tmp_path):
    result = _recipe().run(_config(), tmp_path)
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["iteration"]] == [80, 160]
    for row in rows:
        for key, value in row.items():
            if key.endswith(("loss_objective", "loss_critic")) and value:
                assert math.isfinite(float(value))
    assert any(r.get("eval/return_mean") for r in rows)
    state = load_checkpoint(result["checkpoint"])
    assert state["frames"] == 160 and state["iteration"] == 2
    assert set(state["actors"]) == {"agent_0", "agent_1"}


def test_wandb_and_mlflow_backends_log_the_run_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _recipe().run(_config("logger.backends=[csv,wandb,mlflow]"), tmp_path)
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}/*.wandb"))
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("harl_torchrl").experiment_id])
    assert [int(m.step) for m in client.get_metric_history(run.info.run_id, "iteration")] == [80, 160]
    assert run.data.params["algo.name"] == "happo"


@pytest.mark.parametrize("threads", [2, 1])
def test_threads_is_set_before_the_run_and_shown_in_the_banner(tmp_path, capsys, threads):
    before = torch.get_num_threads()
    try:
        _recipe().run(_config(f"threads={threads}", "total_frames=80"), tmp_path)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert f"torch threads: {threads}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "overrides",
    [
        ["algo=hatrpo"],
        ["algo=haa2c"],
        ["algo=mappo"],
        ["algo=mappo", "algo.share_params=true"],
        ["algo=ippo"],
        ["model=gru", "model.hidden_sizes=[16]", "model.rnn_hidden_size=16", "model.chunk_length=5"],
        ["algo=hatrpo", "model=gru", "model.hidden_sizes=[16]", "model.rnn_hidden_size=16", "model.chunk_length=5"],
        ["algo=ippo", "model=gru", "model.hidden_sizes=[16]", "model.rnn_hidden_size=16", "model.chunk_length=5"],
        ["env.continuous_actions=false"],
    ],
    ids=["hatrpo", "haa2c", "mappo", "mappo_shared", "ippo", "happo_gru", "hatrpo_gru", "ippo_gru", "discrete"],
)
def test_every_algorithm_and_model_runs(tmp_path, overrides):
    result = _recipe().run(_config(*overrides), tmp_path)
    rows = [r for r in _rows(tmp_path / "metrics.csv") if r["iteration"]]
    assert len(rows) == 2
    losses = [float(v) for r in rows for k, v in r.items() if "loss" in k and v]
    assert losses and all(math.isfinite(v) for v in losses)
    assert load_checkpoint(result["checkpoint"])["frames"] == 160


@pytest.mark.parametrize(
    "overrides",
    [
        ["env=pettingzoo/simple_spread", "env.num_envs=4", "env.max_steps=5"],
        ["env=pettingzoo/simple_speaker_listener", "env.num_envs=4", "env.max_steps=5", "algo=hatrpo"],
        ["env=mamujoco/halfcheetah_2x3", "env.num_envs=4", "env.max_steps=10"],
    ],
    ids=["mpe_spread", "mpe_speaker_listener_hatrpo", "mamujoco_halfcheetah"],
)
def test_other_env_families_run(tmp_path, overrides):
    pytest.importorskip("mpe2")
    pytest.importorskip("gymnasium_robotics")
    cfg = _config("total_frames=80", *overrides, vmas=False)
    _recipe().run(cfg, tmp_path)
    rows = [r for r in _rows(tmp_path / "metrics.csv") if r["iteration"]]
    assert len(rows) == 2
    assert all(math.isfinite(float(r["critic/loss_critic"])) for r in rows)


def test_command_line_entry_point(tmp_path):
    out = subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), *TINY, *VMAS_TINY, f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"checkpoint: {tmp_path}" in out.stdout
    assert (tmp_path / "metrics.csv").is_file()
    # the banner names what runs and where; the summary gives the final evaluation
    assert out.stdout.startswith("happo on vmas/balance: ")
    assert f"run dir: {tmp_path}" in out.stdout
    final = [line for line in out.stdout.splitlines() if "final eval return:" in line]
    assert len(final) == 1
    logged = _rows(tmp_path / "metrics.csv")[-1]["eval/return_mean"]  # the final evaluation's row
    assert float(final[0].split(":")[1]) == pytest.approx(float(logged), abs=1e-3)
    # the run dir's train.log holds what the terminal showed (banner and summary); no Hydra warning
    log = (tmp_path / "train.log").read_text()
    assert log.startswith("happo on vmas/balance: ") and "final eval return:" in log
    assert "Warning" not in out.stderr, out.stderr[-2000:]


def _final_parameters(tmp_path, seed):
    result = _recipe().run(_config(f"seed={seed}", "eval.interval=0"), tmp_path)
    state = load_checkpoint(result["checkpoint"])
    return {**state["actors"], "critic": state["critic"]}


def test_same_seed_bit_identical_other_seed_differs(tmp_path):
    a = _final_parameters(tmp_path / "a", 1)
    b = _final_parameters(tmp_path / "b", 1)
    c = _final_parameters(tmp_path / "c", 2)
    flat = [{(m, k): v for m, sd in p.items() for k, v in sd.items()} for p in (a, b, c)]
    assert flat[0].keys() == flat[1].keys()
    assert all(torch.equal(flat[0][k], flat[1][k]) for k in flat[0])
    assert not all(torch.equal(flat[0][k], flat[2][k]) for k in flat[0])


@pytest.mark.parametrize("algo", ["happo", "hatrpo", "ippo"])
def test_resume_continues_from_the_checkpoint(tmp_path, algo):
    recipe = _recipe()
    first = recipe.run(_config(f"algo={algo}"), tmp_path / "first")
    saved = load_checkpoint(first["checkpoint"])
    resumed = recipe.run(
        _config(f"algo={algo}", f"resume={first['checkpoint']}", "total_frames=240"), tmp_path / "second"
    )
    rows = [r for r in _rows(tmp_path / "second" / "metrics.csv") if r["iteration"]]
    # the new run dir holds the whole run's log: the first run's rows, then the resumed one's
    assert [int(r["step"]) for r in rows] == [80, 160, 240] and rows[-1]["iteration"] == "3"
    final = load_checkpoint(resumed["checkpoint"])
    assert final["frames"] == 240
    changed = [k for k in final["critic"] if not torch.equal(final["critic"][k], saved["critic"][k])]
    assert changed, "the resumed run trained the critic further"


@pytest.mark.parametrize(
    "override, match",
    [
        ("env.scenario=balanse", "unknown VMAS scenario"),
        ("algo.actor_lr=-0.001", "actor_lr must be > 0"),
        ("algo.critic_lr=0", "critic_lr must be > 0"),
        ("algo.clip_epsilon=0", "clip_epsilon must be > 0"),
        ("algo.name=hapo", "Did you mean 'happo'"),
        ("total_frames=0", "total_frames"),
        ("algo=happo algo.share_params=true", "share_params"),
        ("model=gru model.chunk_length=7", "multiple of model.chunk_length"),
        ("algo=hatrpo algo.max_kl=-1", "max_kl must be > 0"),
        ("+env.scenario_kwargs.n_agnts=3", "n_agnts"),
        ("collector.workers=3", "multiple of collector.workers"),
        ("algo=hatrpo algo.fisher_fraction=1.5", "fisher_fraction"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        _recipe().run(_config(*override.split()), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert not (tmp_path / "metrics.csv").exists()


def test_worker_processes_train_through_the_recipe(tmp_path):
    _recipe().run(_config("collector.workers=2"), tmp_path)
    rows = [r for r in _rows(tmp_path / "metrics.csv") if r["iteration"]]
    assert [int(r["step"]) for r in rows] == [80, 160]
    assert all(math.isfinite(float(r["agent_0/loss_objective"])) for r in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        _recipe().run(_config("device=cuda"), tmp_path)
    assert not (tmp_path / "metrics.csv").exists()


ENV_CONFIGS = sorted(
    str(p.relative_to(RECIPES / "conf" / "env").with_suffix("")) for p in (RECIPES / "conf" / "env").rglob("*.yaml")
)


@pytest.mark.parametrize("env_config", ENV_CONFIGS)
def test_every_env_config_builds_an_env_that_passes_torchrl_checks(env_config):
    from torchrl.envs.utils import check_env_specs

    from harl_torchrl.envs import make_env

    family = env_config.split("/")[0]
    module = {
        "vmas": "vmas",
        "pettingzoo": "mpe2",
        "mamujoco": "gymnasium_robotics",
        "smax": "jaxmarl",
        "football": "gfootball",
    }[family]
    if importlib.util.find_spec(module) is None:  # not importorskip: importing jaxmarl resets sys.stdout
        pytest.skip(f"needs {module}")
    env = make_env(_config(f"env={env_config}", vmas=False).env, num_envs=2, seed=0)
    check_env_specs(env, seed=0)
    assert env.group_map == {name: [name] for name in env.group_map}, "one group per agent"


def test_run_dir_is_named_after_the_env_group(tmp_path):
    out = subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), *TINY, *VMAS_TINY, "eval.episodes=0"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["happo_vmas_balance"]


def test_resume_from_a_run_dir_restores_its_own_overrides_and_continues_there(tmp_path):
    first = [*TINY, *VMAS_TINY, "algo=hatrpo", "seed=3", "eval.episodes=0"]
    run = subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), *first, f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    # nothing of the first command retyped but the new budget
    more = subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), f"resume={tmp_path}", "total_frames=320"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert more.returncode == 0, more.stderr[-2000:]
    assert "hatrpo on vmas/balance: 2 agents" in more.stdout  # the first run's algo=hatrpo, not retyped
    assert f"resumed from {tmp_path / 'checkpoint.pt'} at 160 frames" in more.stdout
    assert load_checkpoint(tmp_path / "checkpoint.pt")["frames"] == 320
    assert [int(r["step"]) for r in _rows(tmp_path / "metrics.csv") if r["iteration"]] == [80, 160, 240, 320]


def test_evaluation_videos_are_recorded_without_changing_the_run(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="the video extra")
    import imageio.v3 as iio

    overrides = ["total_frames=320", "eval.interval=1", "env.max_steps=6"]  # 4 iterations of 80 frames
    plain = _recipe().run(_config(*overrides), tmp_path / "plain")
    tensorboard = ["logger.backends=[csv,tensorboard]"] if importlib.util.find_spec("moviepy") else []
    filmed = _recipe().run(_config(*overrides, "eval.video_interval=2", *tensorboard), tmp_path / "filmed")
    videos = sorted((tmp_path / "filmed" / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["eval_160.mp4", "eval_320.mp4"]  # evaluations 2 and 4 (4 is also final)
    assert len(list(iio.imiter(videos[0], plugin="FFMPEG"))) == 7  # reset + 6 steps
    assert (tmp_path / "filmed" / "videos" / "eval_160.gif").is_file()
    assert not (tmp_path / "plain" / "videos").exists()
    if tensorboard:  # the same videos went to TensorBoard, at their steps
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "filmed" / "tensorboard"), size_guidance={"images": 0})
        events.Reload()
        assert [image.step for image in events.Images("eval/video")] == [160, 320]
    # drawing draws no random numbers from the run's streams: the two runs are the same run
    keys = ["step", "episode_return_mean", "eval/return_mean", "critic/loss_critic"]
    assert [[r.get(k) for k in keys] for r in _rows(plain["log"])] == [
        [r.get(k) for k in keys] for r in _rows(filmed["log"])
    ]


def test_ray_collection_trains_through_the_recipe(tmp_path):
    pytest.importorskip("ray", reason="the ray extra")
    pytest.importorskip("mpe2")
    overrides = ["env=pettingzoo/simple_spread", "env.num_envs=4", "env.max_steps=10", "collector.workers=2"]
    result = _recipe().run(_config(*overrides, "collector.backend=ray", vmas=False), tmp_path)
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["iteration"]] == [40, 80, 120, 160]
    assert math.isfinite(float(rows[-1]["eval/return_mean"]))
    assert load_checkpoint(result["checkpoint"])["frames"] == 160

"""Resume: refused mismatches, explicit overrides, the NaN stop, and exact continuation after a real SIGKILL."""

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from harl_torchrl.errors import ConfigError
from harl_torchrl.run_guard import NonFiniteError
from harl_torchrl.utils.checkpoint import CheckpointError, load_checkpoint, previous_checkpoint

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
COMMON = [
    "collector.rollout_steps=10",
    "eval.interval=2",
    "eval.episodes=2",
    "checkpoint.interval=2",
    "logger.progress_bar=false",
    "model.hidden_sizes=[16]",
]
#: tiny configs and their frames per iteration
FAMILIES = {
    "vmas": (["env.num_envs=8", "env.max_steps=7", "env.scenario_kwargs.n_agents=2"], 80),
    "mpe": (["env=pettingzoo/simple_spread", "env.num_envs=4", "env.max_steps=5"], 40),
    "mamujoco": (["env=mamujoco/halfcheetah_2x3", "env.num_envs=2", "env.max_steps=15"], 20),
}
TIMING = ("collect_fps", "update_seconds", "fps")  # wall-clock figures: the only columns allowed to differ


def _recipe():
    import harl_torchrl.run  # the one run loop, which recipes/train.py and harl-train call

    return harl_torchrl.run


def _config(*overrides, family="vmas", iterations=2):
    env, per_iteration = FAMILIES[family]
    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        return compose("config", overrides=[*COMMON, *env, f"total_frames={iterations * per_iteration}", *overrides])


def _rows(path):
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def _parameters(checkpoint):
    state = load_checkpoint(checkpoint)
    modules = {**state["actors"], "critic": state["critic"]}
    return {f"{m}.{k}": v for m, sd in modules.items() for k, v in sd.items()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A finished two-iteration HAPPO run on tiny VMAS (its checkpoint is resumed below)."""
    out = tmp_path_factory.mktemp("first")
    result = _recipe().run(_config(), out)
    return result["checkpoint"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo=hatrpo"], "algo.name: 'happo' (checkpoint) -> 'hatrpo' (this run)"),
        (["algo=mappo"], "The checkpoint was written by 'happo'"),
        (["env.scenario_kwargs.n_agents=3"], "env.scenario_kwargs.n_agents: 2 (checkpoint) -> 3 (this run)"),
        (["env.scenario=navigation"], "env.scenario: 'balance' (checkpoint) -> 'navigation'"),
        (["env.continuous_actions=false"], "env.continuous_actions: True (checkpoint) -> False"),
        (["model.hidden_sizes=[32]"], "model.hidden_sizes: [16] (checkpoint) -> [32]"),
        (["algo.actor_lr=0.001"], "resume_override=[algo.actor_lr]"),
        (["total_frames=160"], "total_frames=160 is not above the 160 frames"),
        (["resume_override=[algo.actor_lrr]"], "names no key"),
    ],
    ids=["hatrpo", "mappo", "n_agents", "scenario", "actions", "hidden", "lr", "frames", "override_typo"],
)
def test_mismatched_resume_is_refused_before_anything_runs(first_run, tmp_path, overrides, message):
    with pytest.raises(ConfigError) as info:
        _recipe().run(_config(f"resume={first_run}", "total_frames=240", *overrides), tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "metrics.csv").exists(), "refused before the logger (or anything else) started"


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "garbage"])
def test_a_damaged_checkpoint_is_refused_with_one_line(first_run, tmp_path, damage):
    data = bytearray(Path(first_run).read_bytes())
    if damage == "empty":
        data = bytearray()
    elif damage == "truncated":
        data = data[: len(data) // 3]
    elif damage == "flipped":  # one bit of a weight: the file still loads, its checksum does not match
        weight = load_checkpoint(first_run)["critic"]
        weight = max((t for t in weight.values() if t.is_floating_point()), key=torch.Tensor.numel)
        data[bytes(data).index(weight.numpy().tobytes()) + 5] ^= 0x04
    else:
        data = bytearray(b"not a checkpoint" * 100)
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        _recipe().run(_config(f"resume={bad}", "total_frames=240"), tmp_path / "run")
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_a_new_learning_rate_needs_the_override_and_then_takes_effect(first_run, tmp_path):
    before = load_checkpoint(first_run)
    result = _recipe().run(
        _config(f"resume={first_run}", "total_frames=240", "algo.actor_lr=0.001", "resume_override=[algo.actor_lr]"),
        tmp_path,
    )
    after = load_checkpoint(result["checkpoint"])
    for name, saved in after["actor_optimizers"].items():
        assert saved["param_groups"][0]["lr"] == 0.001
        assert before["actor_optimizers"][name]["param_groups"][0]["lr"] == 5e-4
        assert int(next(iter(saved["state"].values()))["step"]) > int(
            next(iter(before["actor_optimizers"][name]["state"].values()))["step"]
        ), "the saved Adam moments and step counts were carried on"
    assert all(s["param_groups"][0]["lr"] == 5e-4 for s in after["critic_optimizers"].values())


def test_a_new_budget_under_linear_lr_decay_needs_the_override_then_follows_the_new_schedule(tmp_path):
    # regression: resuming a 10M linear-decay run with total_frames=4M silently cut its rate from 0.70 to 0.25
    decayed = _recipe().run(_config("algo.lr_decay=linear"), tmp_path / "first")  # 2 of 2 iterations
    with pytest.raises(ConfigError, match=r"total_frames=240 differs from the 160.*from 0\.00 to 0\.33"):
        _recipe().run(_config(f"resume={decayed['checkpoint']}", "algo.lr_decay=linear", "total_frames=240"), tmp_path)
    assert not (tmp_path / "metrics.csv").exists()
    _recipe().run(
        _config(
            f"resume={decayed['checkpoint']}",
            "algo.lr_decay=linear",
            "total_frames=240",
            "resume_override=[total_frames]",
        ),
        tmp_path / "extended",
    )
    factors = [float(r["lr_factor"]) for r in _rows(tmp_path / "extended" / "metrics.csv") if r["iteration"]]
    assert factors[-1] == 0.0  # iteration 3 of 3 under the new schedule, 1 - 3/3
    assert load_checkpoint(tmp_path / "extended" / "checkpoint.pt", return_metadata=True)[1]["total_frames"] == 240


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(first_run, tmp_path):
    run_dir = tmp_path / "run"
    _recipe().run(_config(f"resume={first_run}", "total_frames=240"), run_dir)  # iteration 3: a good checkpoint
    good = _parameters(run_dir / "checkpoint.pt")
    with pytest.raises(NonFiniteError, match=r"iteration 4: agent_\d/loss_\w+ is nan"):
        _recipe().run(
            _config(
                f"resume={run_dir / 'checkpoint.pt'}",
                "total_frames=400",
                "algo.actor_lr=1e30",
                "algo.critic_lr=1e30",
                "resume_override=[algo.actor_lr,algo.critic_lr]",
                "checkpoint.interval=1",
            ),
            run_dir,
        )
    kept = _parameters(run_dir / "checkpoint.pt")
    assert load_checkpoint(run_dir / "checkpoint.pt")["iteration"] == 3
    assert all(torch.equal(kept[k], good[k]) for k in good)
    assert all(bool(torch.isfinite(v).all()) for v in kept.values() if v.is_floating_point())
    rows = _rows(run_dir / "metrics.csv")
    assert [r["iteration"] for r in rows if r["iteration"]] == ["1", "2", "3"], "the NaN iteration is not logged"


def test_nan_on_the_command_line_exits_nonzero_with_one_line(first_run, tmp_path):
    env, _ = FAMILIES["vmas"]
    out = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "train.py"),
            *COMMON,
            *env,
            f"resume={first_run}",
            "total_frames=400",
            "algo.actor_lr=1e30",
            "algo.critic_lr=1e30",
            "resume_override=[algo.actor_lr,algo.critic_lr]",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: iteration 3: ") and " is nan" in last
    assert "Traceback" not in out.stderr


def _metrics_iterations(path):
    try:
        with open(path, newline="") as handle:
            return [int(r["iteration"]) for r in csv.DictReader(handle) if r.get("iteration", "").isdigit()]
    except (OSError, ValueError, csv.Error):
        return []


def _command(family, run_dir, *overrides):
    env, per_iteration = FAMILIES[family]
    return [
        sys.executable,
        str(RECIPES / "train.py"),
        *COMMON,
        *env,
        f"total_frames={8 * per_iteration}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


@pytest.fixture
def one_thread():
    """Runs the test with one torch thread, as the ``OMP_NUM_THREADS=1`` subprocesses (same float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "family, same_dir",
    [("vmas", True), ("mpe", False), ("mamujoco", True)],
    ids=["vmas_same_dir", "mpe_new_dir", "mamujoco_same_dir"],
)
def test_sigkill_then_resume_ends_bit_identical(tmp_path, family, same_dir, one_thread, capsys):
    pytest.importorskip({"vmas": "vmas", "mpe": "mpe2", "mamujoco": "gymnasium_robotics"}[family])
    recipe = _recipe()
    whole = recipe.run(_config(family=family, iterations=8), tmp_path / "whole")

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(family, killed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 240
    # kill once iteration 3 is logged: the checkpoint is at iteration 2, and the run is somewhere past it
    while proc.poll() is None and time.monotonic() < deadline:
        if max(_metrics_iterations(killed / "metrics.csv"), default=0) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    at_kill = load_checkpoint(killed / "checkpoint.pt")["iteration"]
    assert at_kill in (2, 4, 6), "killed mid-run, after a periodic checkpoint (usually the one at iteration 2)"

    resumed_dir = killed if same_dir else tmp_path / "resumed"
    capsys.readouterr()
    resumed = recipe.run(_config(f"resume={killed / 'checkpoint.pt'}", family=family, iterations=8), resumed_dir)
    assert "same episodes" in capsys.readouterr().out

    whole, resumed = _parameters(whole["checkpoint"]), _parameters(resumed["checkpoint"])
    assert whole.keys() == resumed.keys()
    max_diff = max((whole[k].double() - resumed[k].double()).abs().max().item() for k in whole)
    with capsys.disabled():
        print(f"\n{family}: killed after checkpoint iteration {at_kill}; max abs parameter difference {max_diff}")
    assert max_diff == 0.0
    rows_whole, rows_resumed = _rows(tmp_path / "whole" / "metrics.csv"), _rows(resumed_dir / "metrics.csv")
    assert rows_resumed == rows_whole, "metrics rows differ from the uninterrupted run's"
    iterations = [int(r["iteration"]) for r in rows_resumed if r["iteration"]]
    assert iterations == list(range(1, 9)), "each iteration exactly once"
    for row in rows_resumed:  # never an empty cell for a value that was logged: nan exactly when no episode ended
        if row["iteration"]:
            assert (row["episode_return_mean"] == "nan") == (row["episodes"] == "0.0")
            assert row["episodes"] == "0.0" or math.isfinite(float(row["episode_return_mean"]))
    assert not list(resumed_dir.glob(".*.tmp")), "no temp files left behind"
    assert previous_checkpoint(resumed_dir / "checkpoint.pt").is_file()


@pytest.mark.parametrize("family", ["vmas", "mpe", "mamujoco"])
def test_one_env_copy_checkpoints_and_resumes_exactly(tmp_path, family, one_thread, capsys):
    """Regression (issue 27 item 1): with env.num_envs=1 every on-policy save failed in the digest.

    The collector's carried step of one env copy holds one-element views with a stride above 1
    ("self.stride(-1) must be 1 to view Float as Byte"): no checkpoint was ever written.
    """
    pytest.importorskip({"vmas": "vmas", "mpe": "mpe2", "mamujoco": "gymnasium_robotics"}[family])
    recipe = _recipe()
    one = ["env.num_envs=1", "checkpoint.interval=1", "eval.episodes=1"]  # 10 frames per iteration
    whole = recipe.run(_config(*one, "total_frames=40", family=family), tmp_path / "whole")
    part = recipe.run(_config(*one, "total_frames=20", family=family), tmp_path / "part")
    assert load_checkpoint(part["checkpoint"])["frames"] == 20
    assert load_checkpoint(previous_checkpoint(part["checkpoint"]))["frames"] == 10
    capsys.readouterr()
    resumed = recipe.run(
        _config(*one, "total_frames=40", f"resume={part['checkpoint']}", family=family), tmp_path / "part"
    )
    assert "same episodes" in capsys.readouterr().out
    a, b = _parameters(whole["checkpoint"]), _parameters(resumed["checkpoint"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mamujoco_resume_continues_exactly(tmp_path, one_thread):
    pytest.importorskip("gymnasium_robotics")
    env = ["env=mamujoco/halfcheetah_2x3", "env.num_envs=2", "env.max_steps=15", "eval.episodes=0"]
    recipe = _recipe()
    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        whole_cfg = compose("config", overrides=[*COMMON, *env, "total_frames=80"])
        part_cfg = compose("config", overrides=[*COMMON, *env, "total_frames=40"])
    whole = recipe.run(whole_cfg, tmp_path / "whole")
    part = recipe.run(part_cfg, tmp_path / "part")
    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        resume_cfg = compose("config", overrides=[*COMMON, *env, "total_frames=80", f"resume={part['checkpoint']}"])
    resumed = recipe.run(resume_cfg, tmp_path / "part")
    a, b = _parameters(whole["checkpoint"]), _parameters(resumed["checkpoint"])
    assert all(torch.equal(a[k], b[k]) for k in a), "MuJoCo's state (MjData arrays) and the episode were restored"
    assert _rows(tmp_path / "whole" / "metrics.csv") == _rows(tmp_path / "part" / "metrics.csv")


def test_an_overridden_env_setting_resumes_with_fresh_episodes(first_run, tmp_path, capsys):
    _recipe().run(
        _config(f"resume={first_run}", "total_frames=240", "env.num_envs=4", "resume_override=[env.num_envs]"), tmp_path
    )
    out = capsys.readouterr().out
    assert "fresh episodes" in out and "resume_override: these settings now differ" in out and "env.num_envs" in out


def test_an_overridden_model_that_does_not_fit_gives_one_line(first_run, tmp_path):
    with pytest.raises(CheckpointError, match="does not fit the networks built for this run") as info:
        _recipe().run(
            _config(f"resume={first_run}", "total_frames=240", "model.hidden_sizes=[32]", "resume_override=[model]"),
            tmp_path,
        )
    assert "\n" not in str(info.value)

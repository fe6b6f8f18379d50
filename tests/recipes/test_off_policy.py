import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from harl_torchrl.errors import ConfigError
from harl_torchrl.utils.checkpoint import load_checkpoint

pytest.importorskip("mpe2")

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# 4 MPE copies, 5 vector steps (20 transitions) per iteration, 2 warm-up iterations, then 5 gradient
# steps per iteration on batches of 16: 6 iterations in all, seconds per algorithm.
TINY = [
    "env=pettingzoo/simple_spread",
    "env.max_steps=10",
    "algo.num_envs=4",
    "algo.train_interval=5",
    "algo.warmup_steps=40",
    "algo.batch_size=16",
    "algo.buffer_size=1000",
    "total_frames=120",
    "eval.interval=2",
    "eval.episodes=2",
    "checkpoint.interval=2",
    "logger.progress_bar=false",
    "model.hidden_sizes=[16]",
]
DISCRETE = "env.continuous_actions=false"


def _recipe():
    import harl_torchrl.run  # the one run loop, which recipes/train.py and harl-train call

    return harl_torchrl.run


def _config(*overrides):
    with initialize_config_dir(config_dir=str(RECIPES / "conf"), version_base="1.3"):
        return compose("config", overrides=[*TINY, *overrides])


def _rows(path):
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["iteration"]]


@pytest.mark.parametrize(
    "overrides",
    [
        ["algo=hatd3"],
        ["algo=haddpg"],
        ["algo=maddpg"],
        ["algo=matd3"],
        ["algo=matd3", "algo.scheme=simultaneous"],
        ["algo=hasac", "algo.n_step=3"],
        ["algo=masac", "algo.n_step=3"],
        ["algo=hasac", "algo.n_step=3", DISCRETE],
        ["algo=had3qn", DISCRETE],
    ],
    ids=["hatd3", "haddpg", "maddpg", "matd3", "matd3_simultaneous", "hasac", "masac", "hasac_discrete", "had3qn"],
)
def test_every_off_policy_algorithm_trains_through_the_entry_point(tmp_path, overrides):
    result = _recipe().run(_config(*overrides), tmp_path)
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [20, 40, 60, 80, 100, 120]
    # warm-up (40 random transitions) first: no gradient step until a batch of policy data arrives
    assert [int(r["gradient_steps"]) for r in rows] == [0, 0, 5, 10, 15, 20]
    losses = [float(v) for r in rows[2:] for k, v in r.items() if "loss" in k and v]
    assert losses and all(math.isfinite(v) for v in losses)
    assert any(r["critic/loss_qvalue"] for r in rows[2:]) and not rows[0].get("critic/loss_qvalue")
    assert any(r.get("eval/return_mean") for r in rows)
    state, meta = load_checkpoint(result["checkpoint"], return_metadata=True)
    assert meta["kind"] == "off_policy" and meta["algorithm"] == overrides[0].split("=")[1]
    assert state["frames"] == 120 and state["iteration"] == 6
    assert state["replay"]["length"] == len(state["replay"]["data"]["next"]["reward"])


def test_other_env_families_run_hatd3(tmp_path):
    pytest.importorskip("vmas")
    pytest.importorskip("gymnasium_robotics")
    for family, extra in (
        ("vmas", ["env=vmas/balance", "env.scenario_kwargs.n_agents=2"]),
        ("mamujoco", ["env=mamujoco/halfcheetah_2x3"]),
    ):
        _recipe().run(_config("algo=hatd3", *extra, "env.max_steps=10", "total_frames=80"), tmp_path / family)
        rows = _rows(tmp_path / family / "metrics.csv")
        assert [int(r["gradient_steps"]) for r in rows] == [0, 0, 5, 10]
        assert all(math.isfinite(float(r["critic/loss_qvalue"])) for r in rows[2:])


def test_updates_per_step_sets_the_update_to_data_ratio(tmp_path):
    _recipe().run(_config("algo=hatd3", "algo.updates_per_step=0.5"), tmp_path)
    steps = [int(r["gradient_steps"]) for r in _rows(tmp_path / "metrics.csv")]
    assert steps == [0, 0, 2, 5, 7, 10]  # 2.5 per iteration of 5 vector steps, the fraction carried over


def _modules(path):
    return load_checkpoint(path)["components"]["updater"]["modules"]


@pytest.mark.parametrize("overrides", [["algo=hatd3"], ["algo=hasac", "algo.n_step=3"]], ids=["hatd3", "hasac"])
def test_resume_continues_bit_identically_including_the_buffer(tmp_path, overrides):
    recipe = _recipe()
    full = recipe.run(_config(*overrides, "total_frames=160", "checkpoint.interval=0"), tmp_path / "full")
    part = recipe.run(_config(*overrides, "total_frames=80", "checkpoint.interval=0"), tmp_path / "part")
    resumed = recipe.run(
        _config(*overrides, "total_frames=160", "checkpoint.interval=0", f"resume={part['checkpoint']}"),
        tmp_path / "resumed",
    )
    saved = load_checkpoint(part["checkpoint"])
    assert saved["replay"]["length"] > 0 and saved["replay"]["pending"] is not None
    a, b = _modules(full["checkpoint"]), _modules(resumed["checkpoint"])
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    changed = [k for k in a if not torch.equal(a[k], _modules(part["checkpoint"])[k])]
    assert changed, "the resumed run trained further"
    buffer_a = load_checkpoint(full["checkpoint"])["replay"]
    buffer_b = load_checkpoint(resumed["checkpoint"])["replay"]
    assert torch.equal(buffer_a["data"]["next"]["reward"], buffer_b["data"]["next"]["reward"])
    full_rows = {r["step"]: r for r in _rows(tmp_path / "full" / "metrics.csv")}
    for row in _rows(tmp_path / "resumed" / "metrics.csv"):
        assert row["critic/loss_qvalue"] == full_rows[row["step"]]["critic/loss_qvalue"]


def test_one_env_copy_checkpoints_and_resumes_exactly(tmp_path):
    """Issue 27 item 1 (the digest of one-element strided views): nothing is lost with one env copy."""
    recipe = _recipe()
    one = ["algo=hatd3", "algo.num_envs=1", "checkpoint.interval=4"]  # 5 frames per iteration
    full = recipe.run(_config(*one, "total_frames=80"), tmp_path / "full")
    part = recipe.run(_config(*one, "total_frames=60"), tmp_path / "part")
    resumed = recipe.run(_config(*one, "total_frames=80", f"resume={part['checkpoint']}"), tmp_path / "resumed")
    assert load_checkpoint(part["checkpoint"])["replay"]["length"] > 0
    a, b = _modules(full["checkpoint"]), _modules(resumed["checkpoint"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_without_the_buffer_resumes_with_an_empty_one(tmp_path):
    recipe = _recipe()
    part = recipe.run(_config("algo=hatd3", "total_frames=80", "checkpoint.replay_buffer=false"), tmp_path / "part")
    assert "replay" not in load_checkpoint(part["checkpoint"])
    recipe.run(_config("algo=hatd3", "total_frames=120", f"resume={part['checkpoint']}"), tmp_path / "resumed")
    rows = [r for r in _rows(tmp_path / "resumed" / "metrics.csv") if int(r["step"]) > 80]
    # the buffer starts empty (and without the held-back n-step frames): 16 transitions after the first
    # batch, just enough for a minibatch of 16, so training goes on at once
    assert [int(r["buffer_size"]) for r in rows] == [16, 36]
    assert [int(r["gradient_steps"]) for r in rows] == [15, 20]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_lost_replay_sidecar_is_named_and_resume_without_replay_goes_on(tmp_path, damage, capsys):
    """Regression (issue 27 item 13): a missing or truncated sidecar said "check the resume= path", did not
    name the intact checkpoint.prev.pt, and nothing resumed the networks without the buffer."""
    from harl_torchrl.utils.checkpoint import CheckpointError, previous_checkpoint

    recipe = _recipe()
    part = recipe.run(_config("algo=hatd3", "total_frames=80"), tmp_path)  # checkpoints at 40 and 80 frames
    checkpoint, prev = part["checkpoint"], previous_checkpoint(part["checkpoint"])
    sidecar = tmp_path / torch.load(checkpoint, weights_only=True)["sidecars"]["replay"]["file"]
    if damage == "missing":
        sidecar.unlink()
    else:
        sidecar.write_bytes(sidecar.read_bytes()[: sidecar.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        recipe.run(_config("algo=hatd3", "total_frames=160", f"resume={checkpoint}"), tmp_path)
    message = str(info.value)
    assert "\n" not in message and "check the" not in message
    assert message.startswith(f"checkpoint {checkpoint} verifies, but its replay sidecar {sidecar.name} is ")
    assert (
        f"the previous checkpoint {prev} (and its sidecar) is intact: resume={prev}, or resume its networks" in message
    )
    assert message.endswith("with a fresh replay buffer and a fresh warm-up: checkpoint.resume_without_replay=true")

    fresh = ["algo=hatd3", f"resume={checkpoint}", "checkpoint.resume_without_replay=true"]
    with pytest.raises(ConfigError, match="total_frames=120 ends within it: nothing would be trained"):
        recipe.run(_config(*fresh, "total_frames=120"), tmp_path)  # the 40-frame warm-up would take it all
    capsys.readouterr()
    recipe.run(_config(*fresh, "total_frames=160"), tmp_path)
    out = capsys.readouterr().out
    assert "a fresh buffer (resume_without_replay), random warm-up until 120 frames" in out
    rows = [r for r in _rows(tmp_path / "metrics.csv") if int(r["step"]) > 80]
    assert [int(r["iteration"]) for r in rows] == [5, 6, 7, 8]  # the counters go on
    assert [int(r["buffer_size"]) for r in rows] == [16, 36, 56, 76]  # a fresh buffer
    assert [int(r["gradient_steps"]) for r in rows] == [10, 10, 15, 20]  # 40 frames of warm-up, then training
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["frames"] == 160 and state["warmup_from"] == 80 and state["replay"]["length"] > 0


def test_command_line_entry_point(tmp_path):
    overrides = ["algo=hatd3", *TINY, "total_frames=60", f"hydra.run.dir={tmp_path}"]
    command = [sys.executable, str(RECIPES / "train.py"), *overrides]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"checkpoint: {tmp_path}" in out.stdout
    assert [int(r["gradient_steps"]) for r in _rows(tmp_path / "metrics.csv")] == [0, 0, 5]


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["algo=hatd3", DISCRETE], "supports continuous actions only.*algo=hasac"),
        (["algo=maddpg", DISCRETE], "supports continuous actions only.*algo=hasac"),
        (["algo=had3qn"], "supports discrete actions only.*algo=hatd3"),
        (["algo=hatd3", "model=gru"], "model=mlp"),
        (["algo=hatd3", "algo.batch_size=2000"], "algo.batch_size exceeds algo.buffer_size"),
        (["algo=hatd3", "algo.tau=0"], "algo.tau must be in"),
        (["algo=hasac", "algo.n_step=0"], "algo.n_step must be > 0"),
        (["algo=hatd3", "algo.policy_freq=0"], "algo.policy_freq must be > 0"),
        (["algo=had3qn", DISCRETE, "algo.epsilon=1.5"], "algo.epsilon must be in"),
        (["algo=hatd3", "algo.warmup_steps=-1"], "algo.warmup_steps must be >= 0"),
    ],
)
def test_bad_settings_fail_before_training(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        _recipe().run(_config(*overrides), tmp_path)
    assert not (tmp_path / "metrics.csv").exists()
    assert not (tmp_path / "checkpoint.pt").exists()

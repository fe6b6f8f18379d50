import errno
import os
import random

import pytest
import torch

from harl_torchrl.errors import ConfigError
from harl_torchrl.utils.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    previous_checkpoint,
    read_metadata,
    run_metadata,
    save_checkpoint,
)

CFG = {"algo": {"name": "happo", "actor_lr": 5e-4}, "env": {"family": "vmas", "scenario": "balance"}, "model": {}}


def _state(scale=1.0):
    return {"w": torch.arange(4096, dtype=torch.float32) * scale, "frames": 80, "nested": {"b": [1, 2.5, "x", None]}}


def _save(path, scale=1.0, **kwargs):
    return save_checkpoint(path, _state(scale), metadata=run_metadata(CFG, frames=80, iteration=1), **kwargs)


def test_round_trip_with_metadata(tmp_path):
    path = _save(tmp_path / "checkpoint.pt")
    state, meta = load_checkpoint(path, return_metadata=True)
    assert torch.equal(state["w"], _state()["w"]) and state["nested"] == {"b": [1, 2.5, "x", None]}
    assert meta["format_version"] == FORMAT_VERSION and meta["algorithm"] == "happo"
    assert meta["config"]["env"] == {"family": "vmas", "scenario": "balance"}
    assert read_metadata(path) == meta


def _error(path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_empty_truncated_garbage_and_foreign_files_are_refused(tmp_path):
    assert issubclass(CheckpointError, ConfigError)
    assert "no such file" in _error(tmp_path / "nothing.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "empty" in _error(empty)
    good = _save(tmp_path / "good.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    assert "unreadable" in _error(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(5000)))
    assert "unreadable" in _error(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"actors": {}, "frames": 3}, foreign)  # a plain torch.save, e.g. an older checkpoint
    assert "not a harl_torchrl checkpoint" in _error(foreign)
    wrong = tmp_path / "wrong.pt"
    torch.save({"harl_torchrl_checkpoint": FORMAT_VERSION, "state": {}}, wrong)
    assert "wrong structure" in _error(wrong)
    future = tmp_path / "future.pt"
    record = torch.load(tmp_path / "good.pt", weights_only=True)
    torch.save({**record, "harl_torchrl_checkpoint": FORMAT_VERSION + 1}, future)
    assert "format version" in _error(future)


def test_changed_tensor_bytes_fail_the_checksum(tmp_path):
    path = _save(tmp_path / "checkpoint.pt")
    data = bytearray(path.read_bytes())
    # the tensor's raw bytes are stored verbatim: flip one bit of element 1000
    offset = bytes(data).index(torch.tensor([1000.0, 1001.0]).numpy().tobytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    assert "checksum mismatch" in _error(path)


def test_changed_metadata_fails_the_checksum(tmp_path):
    path = _save(tmp_path / "checkpoint.pt")
    record = torch.load(path, weights_only=True)
    record["meta"]["algorithm"] = "hatrpo"  # someone edits the file by hand
    torch.save(record, path)
    assert "checksum mismatch" in _error(path)


def test_random_bit_flips_never_load_silently(tmp_path):
    path = _save(tmp_path / "checkpoint.pt")
    good = path.read_bytes()
    rng = random.Random(1)
    refused = 0
    for _ in range(60):
        data = bytearray(good)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            refused += 1
            continue
        # a flip the archive format ignores (e.g. zip padding or a name in its directory) may load,
        # but then it must load the exact state
        assert torch.equal(state["w"], _state()["w"]) and state["nested"] == _state()["nested"]
    assert refused > 30


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    good = torch.load(_save(path), weights_only=True)
    good["state"]["payload"] = _Evil(marker)
    torch.save(good, path)
    message = _error(path)
    assert "refused" in message and "system" in message
    assert not marker.exists()


def test_previous_checkpoint_kept_and_stale_temp_files_removed(tmp_path):
    path = tmp_path / "checkpoint.pt"
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"  # what a save killed mid-write leaves
    stale.write_bytes(b"x" * 1000)
    _save(path, scale=1.0)
    assert not stale.exists()
    _save(path, scale=2.0)
    assert torch.equal(load_checkpoint(path)["w"], _state(2.0)["w"])
    assert torch.equal(load_checkpoint(previous_checkpoint(path))["w"], _state(1.0)["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


def test_a_damaged_checkpoint_points_to_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path, scale=1.0)
    _save(path, scale=2.0)
    path.write_bytes(path.read_bytes()[:100])
    message = _error(path)
    assert message.endswith(f"the previous checkpoint {previous_checkpoint(path)} is intact")
    assert "=" not in message, "load_checkpoint names no command-line key: its caller does (issue 27 item 15)"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert info.value.use_instead == previous_checkpoint(path)
    assert str(info.value.for_key("resume")).endswith(f"is intact: resume={previous_checkpoint(path)}")
    assert str(info.value.for_key("checkpoint")).endswith(f"is intact: checkpoint={previous_checkpoint(path)}")
    previous_checkpoint(path).write_bytes(b"")
    assert _error(path).endswith(
        f"the previous checkpoint {previous_checkpoint(path)} does not verify either: "
        "use another one or start a new run"
    )


def test_directory_is_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    _save(tmp_path / "checkpoint.pt")
    assert synced[-1] is True and False in synced  # the file, then its directory


def test_sidecars_are_verified_and_follow_their_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path, sidecars={"replay": {"obs": torch.ones(100)}})
    _save(path, sidecars={"replay": {"obs": torch.full((100,), 2.0)}})
    assert torch.equal(load_checkpoint(path)["replay"]["obs"], torch.full((100,), 2.0))
    assert torch.equal(load_checkpoint(previous_checkpoint(path))["replay"]["obs"], torch.ones(100))
    assert "replay" not in load_checkpoint(path, sidecars=False)
    _save(path, sidecars={"replay": {"obs": torch.full((100,), 3.0)}})
    assert len(list(tmp_path.glob("checkpoint.replay.*.pt"))) == 2  # the current and the previous one's
    current = torch.load(path, weights_only=True)["sidecars"]["replay"]["file"]
    sidecar = tmp_path / current
    data = bytearray(sidecar.read_bytes())
    offset = bytes(data).index(torch.full((2,), 3.0).numpy().tobytes())
    data[offset + 1] ^= 0x10
    sidecar.write_bytes(bytes(data))
    assert "checksum mismatch" in _error(path)


@pytest.mark.parametrize("fresh_process", [False, True])
def test_sidecar_cleanup_keeps_the_previous_ones_without_rereading_checkpoints(tmp_path, monkeypatch, fresh_process):
    """Regression: each save unpickled both checkpoints (0.4 s each with an MPE env state) to find their sidecars."""
    from harl_torchrl.utils import checkpoint as module

    path = tmp_path / "checkpoint.pt"
    _save(path, sidecars={"replay": {"obs": torch.ones(10)}})
    _save(path, sidecars={"replay": {"obs": torch.full((10,), 2.0)}})
    if fresh_process:
        module._REFERENCES.clear()  # a resumed run: nothing cached, the previous checkpoint is read once
    reads = []
    real = module._read_record
    monkeypatch.setattr(module, "_read_record", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    _save(path, sidecars={"replay": {"obs": torch.full((10,), 3.0)}})
    _save(path, sidecars={"replay": {"obs": torch.full((10,), 4.0)}})
    assert len(reads) == (1 if fresh_process else 0)
    assert len(list(tmp_path.glob("checkpoint.replay.*.pt"))) == 2
    assert torch.equal(load_checkpoint(path)["replay"]["obs"], torch.full((10,), 4.0))
    assert torch.equal(load_checkpoint(previous_checkpoint(path))["replay"]["obs"], torch.full((10,), 3.0))


def test_unsupported_values_are_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="nested/obj"):
        save_checkpoint(tmp_path / "c.pt", {"nested": {"obj": object()}})
    assert not list(tmp_path.iterdir())


def test_a_replay_buffer_state_round_trips_as_a_sidecar(tmp_path):
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(16))
    buffer.extend(TensorDict({"obs": torch.arange(10.0).reshape(5, 2)}, [5]))
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"frames": 5}, sidecars={"replay": buffer.state_dict()})
    other = TensorDictReplayBuffer(storage=LazyTensorStorage(16))
    other.load_state_dict(load_checkpoint(path)["replay"])
    assert len(other) == 5 and torch.equal(other[:]["obs"], buffer[:]["obs"])


@pytest.mark.parametrize(
    "view",
    [
        torch.zeros(6)[::3][:1],  # one element, stride 3: .contiguous() leaves it as it is (issue 27 item 1)
        torch.zeros(4, 3)[:, 1:2][2:3],  # the collector's carried step of one env copy: [1, 1], strides (3, 1)
        torch.arange(12.0).reshape(3, 4)[:, 1],  # non-contiguous
        torch.ones(1).expand(5),  # stride 0
        torch.tensor(2.5),  # zero-dim
        torch.arange(4.0)[1:3],  # storage offset
    ],
    ids=["one_element_stride_3", "one_env_copy", "column", "expanded", "scalar", "offset"],
)
def test_any_tensor_layout_saves_and_verifies(tmp_path, view):
    """Regression: env.num_envs=1 runs never wrote a checkpoint ("self.stride(-1) must be 1 to view Float as Byte")."""
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"carried": {"obs": view}}, sidecars={"replay": {"x": view}})
    state = load_checkpoint(path)
    assert torch.equal(state["carried"]["obs"], view) and torch.equal(state["replay"]["x"], view)


def _disk_fills_up(monkeypatch, module, *, on, wrapped=False):
    """torch.save writes part of the file, then the disk is full (``on``: "sidecar" or "main" file)."""
    real = torch.save

    def save(obj, handle, *args, **kwargs):
        if ("sidecar" in obj) == (on == "sidecar"):
            handle.write(b"x" * 4096)  # the part that fitted
            err = OSError(errno.ENOSPC, "No space left on device")
            if wrapped:  # what torch's zip writer raises when the write under it fails
                try:
                    raise err
                except OSError:
                    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None
            raise err
        return real(obj, handle, *args, **kwargs)

    monkeypatch.setattr(module.torch, "save", save)


@pytest.mark.parametrize(
    "on, wrapped", [("sidecar", False), ("main", False), ("main", True)], ids=["sidecar", "main", "wrapped"]
)
def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays_intact(tmp_path, monkeypatch, on, wrapped):
    """Regression (issue 27 item 11): disk full while saving was an OSError traceback (three chained off-policy)."""
    from harl_torchrl.utils import checkpoint as module

    path = tmp_path / "checkpoint.pt"
    _save(path, scale=1.0, sidecars={"replay": {"obs": torch.ones(1000)}})
    _save(path, scale=2.0, sidecars={"replay": {"obs": torch.full((1000,), 2.0)}})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    _disk_fills_up(monkeypatch, module, on=on, wrapped=wrapped)
    with pytest.raises(CheckpointError) as info:
        _save(path, scale=3.0, sidecars={"replay": {"obs": torch.full((1000,), 3.0)}})
    message = str(info.value)
    assert "\n" not in message and "no space left" in message
    assert (
        f"of {tmp_path} (" in message and "this save needs about 21.4 kB" in message
    )  # 16 kB + 4 kB of tensors, 2 x 500 B
    sidecar = torch.load(path, weights_only=True)["sidecars"]["replay"]["file"]
    assert f"the previous checkpoint {path} (iteration 1, 80 frames) and its sidecar {sidecar} are intact" in message
    assert message.endswith(f"Fix: free space in {tmp_path}, then resume from it")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "nothing replaced, nothing left behind"
    state = load_checkpoint(path)
    assert torch.equal(state["w"], _state(2.0)["w"]) and torch.equal(state["replay"]["obs"], torch.full((1000,), 2.0))


def test_a_full_disk_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    from harl_torchrl.utils import checkpoint as module

    _disk_fills_up(monkeypatch, module, on="main")
    with pytest.raises(CheckpointError, match="no checkpoint had been written yet"):
        _save(tmp_path / "checkpoint.pt")
    assert not list(tmp_path.iterdir())


def test_a_save_killed_while_writing_a_sidecar_leaves_nothing_behind(tmp_path):
    """Regression (issue 27 item 16): the killed sidecar's temp (named after its digest) and old sidecars stayed."""
    path = tmp_path / "checkpoint.pt"
    _save(path, scale=1.0, sidecars={"replay": {"obs": torch.ones(100)}})
    _save(path, scale=2.0, sidecars={"replay": {"obs": torch.full((100,), 2.0)}})
    # what SIGKILL during the third save's sidecar leaves: its temp, and (a save before) an orphaned sidecar
    (tmp_path / ".checkpoint.replay.0123456789ab.pt.k1ll3d.tmp").write_bytes(b"x" * 4_000_000)
    (tmp_path / ".checkpoint.prev.pt.k1ll3d.tmp").write_bytes(b"x" * 1000)
    (tmp_path / "checkpoint.replay.ba9876543210.pt").write_bytes(b"an orphan")
    keep = {"notes.txt", "checkpoint.replay.txt", ".other.pt.abc.tmp"}  # not ours: never touched
    for name in keep:
        (tmp_path / name).write_text("mine")
    _save(path, scale=3.0, sidecars={"replay": {"obs": torch.full((100,), 3.0)}})  # another sidecar name
    sidecars = sorted(p.name for p in tmp_path.glob("checkpoint.replay.*.pt"))
    assert len(sidecars) == 2 and "checkpoint.replay.ba9876543210.pt" not in sidecars
    assert not list(tmp_path.glob(".checkpoint*.tmp"))
    assert keep <= {p.name for p in tmp_path.iterdir()}
    assert torch.equal(load_checkpoint(previous_checkpoint(path))["replay"]["obs"], torch.full((100,), 2.0))


def test_sidecars_go_once_no_checkpoint_references_them(tmp_path):
    """A resumed run with checkpoint.replay_buffer=false writes no sidecar: the old ones go after two saves."""
    path = tmp_path / "checkpoint.pt"
    _save(path, scale=1.0, sidecars={"replay": {"obs": torch.ones(100)}})
    _save(path, scale=2.0)  # the previous checkpoint still references its sidecar
    assert len(list(tmp_path.glob("checkpoint.replay.*.pt"))) == 1
    assert torch.equal(load_checkpoint(previous_checkpoint(path))["replay"]["obs"], torch.ones(100))
    _save(path, scale=3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


def _sidecar_error(path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_damaged_sidecar_is_named_with_the_intact_previous_checkpoint(tmp_path, damage):
    """Regression (issue 27 item 13): "check the resume= path" (the path is right), nothing of checkpoint.prev.pt."""
    path = tmp_path / "checkpoint.pt"
    _save(path, scale=1.0, sidecars={"replay": {"obs": torch.ones(1000)}})
    _save(path, scale=2.0, sidecars={"replay": {"obs": torch.full((1000,), 2.0)}})
    sidecar = tmp_path / torch.load(path, weights_only=True)["sidecars"]["replay"]["file"]
    if damage == "missing":
        sidecar.unlink()
    else:
        sidecar.write_bytes(sidecar.read_bytes()[:3000])
    err = _sidecar_error(path)
    problem = "is missing" if damage == "missing" else "is damaged: unreadable (truncated"
    assert str(err).startswith(f"checkpoint {path} verifies, but its replay sidecar {sidecar.name} {problem}")
    assert str(err).endswith(f"; the previous checkpoint {previous_checkpoint(path)} (and its sidecar) is intact")
    assert "resume=" not in str(err) and "check the" not in str(err)
    assert err.sidecar == "replay" and err.use_instead == previous_checkpoint(path)
    assert load_checkpoint(path, sidecars=False)["frames"] == 80  # the networks and counters are fine


def test_a_sidecar_passed_as_the_checkpoint_names_its_checkpoint(tmp_path):
    """Regression (issue 27 item 15): a replay sidecar given as the checkpoint got "wrong structure"."""
    path = tmp_path / "checkpoint.pt"
    _save(path, scale=1.0, sidecars={"replay": {"obs": torch.ones(10)}})
    _save(path, scale=2.0, sidecars={"replay": {"obs": torch.full((10,), 2.0)}})
    for owner in (path, previous_checkpoint(path)):
        sidecar = tmp_path / torch.load(owner, weights_only=True)["sidecars"]["replay"]["file"]
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(sidecar)
        assert str(info.value) == (
            f"{sidecar} is the 'replay' sidecar of a checkpoint, not a checkpoint: the checkpoint is {owner}, "
            "which loads it"
        )
        assert str(info.value.for_key("checkpoint")).endswith(f"; pass checkpoint={owner}")

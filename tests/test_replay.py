import pytest
import torch
from tensordict import TensorDict

from harl_torchrl.errors import ConfigError
from harl_torchrl.replay import STEPS_KEY, NStepReplayBuffer, make_replay_buffer, transition_keys


def _trajectory(rewards, terminated, truncated, *, agent_scale=10.0):
    """A [num_envs, T] batch whose observation at t is t (next observation t + 1)."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    envs, steps = rewards.shape
    obs = torch.arange(steps, dtype=torch.float32).expand(envs, steps).unsqueeze(-1).clone()
    term = torch.as_tensor(terminated).bool().unsqueeze(-1)
    trunc = torch.as_tensor(truncated).bool().unsqueeze(-1)
    return TensorDict(
        {
            "observation": obs,
            ("agent", "observation"): obs,
            ("next", "observation"): obs + 1,
            ("next", "agent", "observation"): obs + 1,
            ("next", "reward"): rewards.unsqueeze(-1),
            ("next", "agent", "reward"): agent_scale * rewards.unsqueeze(-1),
            ("next", "terminated"): term,
            ("next", "truncated"): trunc,
            ("next", "done"): term | trunc,
        },
        [envs, steps],
    )


def _buffer(n_steps, gamma):
    return NStepReplayBuffer(1000, n_steps=n_steps, gamma=gamma, reward_keys=["reward", ("agent", "reward")])


def _stored(buffer):
    data = buffer.buffer.storage.get(torch.arange(len(buffer)))
    order = torch.argsort(data["observation"].squeeze(-1), stable=True)
    return data[order]


def test_hand_computed_targets_with_a_termination_and_a_truncation():
    # one env, 10 steps: termination after step 2, time-limit truncation after step 5
    rewards = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]]
    terminated = [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]
    truncated = [[0, 0, 0, 0, 0, 1, 0, 0, 0, 0]]
    buffer = _buffer(3, 0.5)
    assert buffer.extend(_trajectory(rewards, terminated, truncated)) == 7  # the last 3 wait
    data = _stored(buffer)
    assert data["observation"].squeeze(-1).tolist() == [0, 1, 2, 3, 4, 5, 6]
    # by hand: t=0: 1 + .5*2 + .25*3 (stops at the termination after step 2); t=3: 4 + .5*5 + .25*6
    # (stops at the truncation after step 5); t=6: 7 + .5*8 + .25*9 (a full window)
    assert data["next", "reward"].squeeze(-1).tolist() == [2.75, 3.5, 3.0, 8.0, 8.0, 6.0, 13.25]
    assert data["next", "agent", "reward"].squeeze(-1).tolist() == [27.5, 35.0, 30.0, 80.0, 80.0, 60.0, 132.5]
    assert data[STEPS_KEY].tolist() == [3, 2, 1, 3, 2, 1, 3]
    # the bootstrap state: the observation after the window's last step
    assert data["next", "observation"].squeeze(-1).tolist() == [3, 3, 3, 6, 6, 6, 9]
    assert data["next", "agent", "observation"].squeeze(-1).tolist() == [3, 3, 3, 6, 6, 6, 9]
    # terminated is that of the bootstrap state: no bootstrap into the termination, bootstrap at truncation
    assert data["next", "terminated"].squeeze(-1).tolist() == [True, True, True, False, False, False, False]
    assert data["next", "truncated"].squeeze(-1).tolist() == [False, False, False, True, True, True, False]
    assert data["next", "done"].squeeze(-1).tolist() == [True, True, True, True, True, True, False]
    assert "nonterminal" not in data.keys() and ("next", "original_reward") not in data.keys(True)


def _naive(rewards, done, terminated, n, gamma):
    """Per-transition (R, k, terminated of the bootstrap state, next observation), one loop per window."""
    out = []
    for e in range(rewards.shape[0]):
        row = []
        for t in range(rewards.shape[1] - n):
            ret, k = 0.0, 0
            for j in range(n):
                ret += gamma**j * rewards[e, t + j].item()
                k = j + 1
                if done[e, t + j]:
                    break
            row.append((ret, k, bool(terminated[e, t + k - 1]), float(t + k)))
        out.append(row)
    return out


@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_windows_cross_batch_boundaries_as_within_one_batch(n_steps):
    generator = torch.Generator().manual_seed(0)
    envs, steps, gamma = 3, 40, 0.9
    rewards = torch.randn(envs, steps, generator=generator)
    terminated = torch.rand(envs, steps, generator=generator) < 0.08
    truncated = (torch.rand(envs, steps, generator=generator) < 0.08) & ~terminated
    batch = _trajectory(rewards, terminated, truncated)
    batch["env_id"] = torch.arange(envs).unsqueeze(-1).expand(envs, steps).clone()
    whole, chunked = _buffer(n_steps, gamma), _buffer(n_steps, gamma)
    whole.extend(batch)
    for start in range(0, steps, 7):  # uneven chunks, some shorter than n
        chunked.extend(batch[:, start : start + 7])
    assert len(whole) == len(chunked) == envs * (steps - n_steps)
    expected = _naive(rewards, terminated | truncated, terminated, n_steps, gamma)
    for buffer in (whole, chunked):
        data = buffer.buffer.storage.get(torch.arange(len(buffer)))
        for e in range(envs):
            mine = data[data["env_id"] == e]
            mine = mine[torch.argsort(mine["observation"].squeeze(-1))]
            assert mine["observation"].squeeze(-1).tolist() == list(range(steps - n_steps))
            want_return, want_k, want_term, want_next = map(list, zip(*expected[e], strict=True))
            assert mine[STEPS_KEY].tolist() == want_k
            assert mine["next", "terminated"].squeeze(-1).tolist() == want_term
            assert mine["next", "observation"].squeeze(-1).tolist() == want_next
            torch.testing.assert_close(mine["next", "reward"].squeeze(-1), torch.tensor(want_return))
            torch.testing.assert_close(mine["next", "agent", "reward"].squeeze(-1), 10 * torch.tensor(want_return))


def test_one_step_keeps_the_transitions():
    batch = _trajectory([[1.0, 2.0, 3.0, 4.0]], [[0, 0, 1, 0]], [[0, 0, 0, 0]])
    buffer = _buffer(1, 0.99)
    assert buffer.extend(batch) == 3
    data = _stored(buffer)
    assert torch.equal(data["next", "reward"], batch["next", "reward"][0, :3])
    assert torch.equal(data["next", "observation"], batch["next", "observation"][0, :3])
    assert torch.equal(data["next", "terminated"], batch["next", "terminated"][0, :3])
    assert data[STEPS_KEY].tolist() == [1, 1, 1]


def test_state_dict_round_trip_continues_exactly():
    batch = _trajectory(torch.arange(30.0).view(2, 15), torch.zeros(2, 15), torch.zeros(2, 15))
    buffer = NStepReplayBuffer(16, n_steps=2, gamma=0.9)  # small: the writer wraps around
    buffer.extend(batch[:, :10])
    buffer.extend(batch[:, 10:13])
    state = buffer.state_dict()
    restored = NStepReplayBuffer(16, n_steps=2, gamma=0.9)
    restored.load_state_dict(state)
    assert len(restored) == len(buffer) == 16
    for b in (buffer, restored):
        b.extend(batch[:, 13:])  # uses the held-back frames and the write position
    torch.manual_seed(3)
    a = buffer.sample(8)
    torch.manual_seed(3)
    b = restored.sample(8)
    for key in ("observation", ("next", "reward"), ("next", "observation"), STEPS_KEY):
        assert torch.equal(a[key], b[key])
    full = buffer.buffer.storage.get(torch.arange(16))
    assert torch.equal(full["observation"], restored.buffer.storage.get(torch.arange(16))["observation"])


def test_sample_draws_what_torchrls_sample_draws():
    """Our gather from the storage's tensors: the same random draw, rows, keys and dtypes as TorchRL's sample."""
    batch = _trajectory(torch.arange(30.0).view(2, 15), torch.zeros(2, 15), torch.zeros(2, 15))
    buffer = NStepReplayBuffer(16, n_steps=2, gamma=0.9)
    for part in (batch[:, :6], batch[:, 6:]):  # partly filled, then wrapped around
        buffer.extend(part)
        for seed in range(3):
            torch.manual_seed(seed)
            ours = buffer.sample(8)
            after = torch.get_rng_state()
            torch.manual_seed(seed)
            theirs = buffer.buffer.sample(8)
            assert torch.equal(after, torch.get_rng_state())
            assert ours.batch_size == theirs.batch_size and ours["next", "agent"].batch_size == theirs.batch_size
            assert sorted(ours.keys(True, True), key=str) == sorted(theirs.keys(True, True), key=str)
            for key in theirs.keys(True, True):
                assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    buffer.buffer.empty()
    with pytest.raises(RuntimeError, match="empty"):
        buffer.sample(2)


def test_empty_state_round_trip():
    restored = NStepReplayBuffer(8, n_steps=3)
    restored.load_state_dict(NStepReplayBuffer(8, n_steps=3).state_dict())
    assert len(restored) == 0


def test_env_keys_and_bad_settings():
    pytest.importorskip("vmas")
    from harl_torchrl.envs import make_vmas_env

    env = make_vmas_env("balance", num_envs=2, n_agents=2, max_steps=4)
    keys, reward_keys = transition_keys(env)
    assert ("agent_0", "action") in keys and ("next", "agent_1", "observation") in keys
    assert ("next", "terminated") in keys and ("next", "episode_reward") not in keys
    assert "reward" in reward_keys and ("agent_0", "reward") in reward_keys
    buffer = make_replay_buffer(env, 50, n_steps=2)
    buffer.extend(env.rollout(6, break_when_any_done=False))
    sample = buffer.sample(4)
    assert ("next", "episode_reward") not in sample.keys(True)
    with pytest.raises(ConfigError, match="n_steps"):
        NStepReplayBuffer(10, n_steps=0)
    with pytest.raises(ConfigError, match="capacity"):
        NStepReplayBuffer(0)

r"""Replay for the off-policy algorithms: TorchRL's buffer, with n-step returns written on the way in.

Collected batches ``[num_envs, T]`` go through TorchRL's
:class:`~torchrl.envs.transforms.MultiStepTransform` and are stored flat in a
:class:`~torchrl.data.TensorDictReplayBuffer` over a
:class:`~torchrl.data.LazyTensorStorage` on the training device, sampled uniformly
(:class:`~torchrl.data.RandomSampler`). There is no storage code of ours: this module
only chooses what to keep and configures the transform.

**n-step transitions.** For a transition at time t with window length
:math:`k = \min(n, \text{steps to the end of its episode})` (an episode ends by
termination *or* time-limit truncation) the stored entry holds

.. math::

    R_t^{(k)} = \sum_{j=0}^{k-1} \gamma^j r_{t+j}, \qquad
    y_t = R_t^{(k)} + \gamma^k (1 - \text{terminated}_{t+k-1})\, Q'(s_{t+k}, a'_{t+k}),

so that the loss computes :math:`y_t` from the entry alone: ``("next", "reward")`` is
:math:`R^{(k)}`, every other ``("next", ...)`` entry (observations, ``"state"``,
action masks *and* the ``done``/``terminated``/``truncated`` flags) is the one of the
window's last transition, i.e. describes the bootstrap state :math:`s_{t+k}`, and
``"steps_to_next_obs"`` is :math:`k` (TorchRL's key, which its TD(0) estimator and
``DQNLoss`` already read as the discount exponent). A truncated window therefore
bootstraps (``terminated`` false) and a terminated one does not.

TorchRL 0.14's transform with its default ``done_keys`` leaves the done flags at step
t's own values, so ``("next", "terminated")`` would say nothing about the bootstrap
state (a window that runs into a termination would bootstrap from a terminal state).
We pass ``done_keys=[]``, which makes the transform carry the flags along with the
other ``"next"`` entries; ``tests/test_replay.py`` checks the result against a hand
computation. Per-agent rewards ``("next", agent, "reward")`` are summed the same way.

The transform holds back the last ``n`` frames of each batch until the next batch
arrives (their windows may continue there), so windows are computed across batch
boundaries exactly as within one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import LazyTensorStorage, RandomSampler, TensorDictReplayBuffer
from torchrl.envs import EnvBase
from torchrl.envs.transforms import MultiStepTransform

from harl_torchrl.errors import ConfigError

#: The discount exponent k of each stored transition (TorchRL's name for it).
STEPS_KEY = "steps_to_next_obs"

# Entries the env reports that no loss reads (the running episode return is for logging).
_NOT_STORED = {"episode_reward", ("next", "episode_reward")}


def _as_tuple(key: NestedKey) -> tuple[str, ...]:
    return key if isinstance(key, tuple) else (key,)


def transition_keys(env: EnvBase) -> tuple[list[NestedKey], list[NestedKey]]:
    """What a replay transition keeps of an env's step, from its specs.

    Returns:
        ``(keys, reward_keys)``: ``keys`` are every observation entry (root and
        ``"next"``), every action, reward and done entry; ``reward_keys`` are the
        reward entries relative to ``"next"`` (the team ``"reward"`` and each
        ``(agent, "reward")``), which the n-step transform sums.
    """
    observations = [_as_tuple(k) for k in env.full_observation_spec.keys(True, True)]
    actions = [_as_tuple(k) for k in env.full_action_spec.keys(True, True)]
    rewards = [_as_tuple(k) for k in env.full_reward_spec.keys(True, True)]
    dones = [_as_tuple(k) for k in env.full_done_spec.keys(True, True)]
    keys: list[NestedKey] = [*observations, *actions]
    keys += [("next", *k) for k in (*observations, *rewards, *dones)]
    keys = [k for k in keys if k not in {_as_tuple(x) for x in _NOT_STORED}]
    reward_keys = [k[0] if len(k) == 1 else k for k in rewards]
    return keys, reward_keys


class NStepReplayBuffer:
    """Uniform replay of n-step transitions (see the module docstring for what an entry holds).

    Args:
        capacity: transitions kept (the oldest are overwritten).
        n_steps: the look-ahead n (1: one-step TD targets).
        gamma: discount used in the n-step sums.
        reward_keys: reward entries relative to ``"next"`` to sum (default: the
            team ``"reward"``).
        keys: the entries to store (default: every entry of the batch); see
            :func:`transition_keys`.
        device: where the storage lives (the training device).

    Example:
        >>> data = TensorDict({
        ...     "observation": torch.arange(6.0).view(1, 6, 1),
        ...     ("next", "observation"): torch.arange(1.0, 7.0).view(1, 6, 1),
        ...     ("next", "reward"): torch.ones(1, 6, 1),
        ...     ("next", "done"): torch.zeros(1, 6, 1, dtype=torch.bool),
        ...     ("next", "terminated"): torch.zeros(1, 6, 1, dtype=torch.bool),
        ...     ("next", "truncated"): torch.zeros(1, 6, 1, dtype=torch.bool),
        ... }, [1, 6])
        >>> buffer = NStepReplayBuffer(100, n_steps=2, gamma=0.5)
        >>> buffer.extend(data)  # the last 2 frames wait for the next batch
        4
        >>> buffer.sample(3)["next", "reward"].squeeze(-1)
        tensor([1.5000, 1.5000, 1.5000])
    """

    def __init__(
        self,
        capacity: int,
        *,
        n_steps: int = 1,
        gamma: float = 0.99,
        reward_keys: Sequence[NestedKey] | None = None,
        keys: Sequence[NestedKey] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if int(capacity) < 1:
            raise ConfigError(f"replay capacity must be >= 1, got {capacity}")
        if int(n_steps) < 1:
            raise ConfigError(f"n_steps must be >= 1, got {n_steps}")
        self.capacity = int(capacity)
        self.keys = list(keys) if keys is not None else None
        # done_keys=[]: the done flags travel with the window (see the module docstring)
        self.multi_step = MultiStepTransform(
            int(n_steps), gamma, reward_keys=list(reward_keys or ["reward"]), done_keys=[]
        )
        self.buffer = TensorDictReplayBuffer(
            storage=LazyTensorStorage(self.capacity, device=torch.device(device)), sampler=RandomSampler()
        )
        self._leaves: tuple[TensorDictBase, list[tuple[NestedKey, torch.Tensor]]] | None = None  # see sample()

    @property
    def n_steps(self) -> int:
        """The look-ahead n."""
        return self.multi_step.n_steps

    def __len__(self) -> int:
        return len(self.buffer)

    def extend(self, batch: TensorDictBase) -> int:
        """Stores the n-step transitions of a ``[num_envs, T]`` batch; returns how many were stored.

        The first call stores ``T - n`` frames per env, later ones ``T`` (the held-back
        frames of the previous batch plus the new ones, minus the last ``n``).
        """
        if batch.ndim != 2:
            raise ValueError(f"expected a [num_envs, T] batch, got batch size {tuple(batch.shape)}")
        data = batch.select(*self.keys, strict=False) if self.keys is not None else batch
        out = self.multi_step.inv(data)
        if out is None or out.shape[-1] == 0:
            return 0
        out = out.exclude("nonterminal", "gamma", ("next", "original_reward"))
        flat = out.reshape(-1)
        self.buffer.extend(flat)
        return flat.numel()

    def sample(self, batch_size: int) -> TensorDictBase:
        """``batch_size`` transitions drawn uniformly with replacement (torch's global generator).

        The same draw and the same rows as ``self.buffer.sample(batch_size)`` (its ``"index"``
        entry included): the indices come from the buffer's own
        :class:`~torchrl.data.RandomSampler`, then each tensor of the storage (one
        contiguous ``[capacity, ...]`` tensor per entry) is read once, with one
        ``index_select``. TorchRL's generic path slices the storage's TensorDict to its
        filled length and then indexes every nested TensorDict of it (about 1 ms more per
        1000-transition MPE batch).

        Raises:
            RuntimeError: the buffer is empty.
        """
        storage = self.buffer.storage
        index, _ = self.buffer.sampler.sample(storage, batch_size)  # raises on an empty storage
        data = storage._storage  # the storage's TensorDict of contiguous tensors, [capacity]
        if self._leaves is None or self._leaves[0] is not data:
            self._leaves = (data, [(k, data.get(k)) for k in data.keys(include_nested=True, leaves_only=True)])
        nested: dict[str, Any] = {}
        for key, tensor in self._leaves[1]:
            *groups, name = _as_tuple(key)
            level = nested
            for group in groups:
                level = level.setdefault(group, {})
            level[name] = tensor.index_select(0, index)
        nested["index"] = index
        # the leaves were validated (shape, device) when TensorDict wrote them into the storage:
        # build without validating them again (about 0.1 ms of a 20-entry batch)
        return TensorDict._new_unsafe(nested, batch_size=torch.Size([len(index)]), device=data.device)

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions, the write position and the held-back frames, as plain tensors.

        Only the filled part of the storage is saved (a checkpoint early in training is small).
        """
        length = len(self.buffer)
        storage = self.buffer.storage
        data = storage.get(torch.arange(length, device=storage.device)).exclude("index") if length else None
        pending = self.multi_step._buffer  # the frames waiting for their windows to complete
        return {
            "length": length,
            "data": data.to_dict() if data is not None else None,
            "writer": self.buffer._writer.state_dict(),
            "pending": pending.to_dict() if pending is not None else None,
            "pending_shape": list(pending.shape) if pending is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` exactly (same samples for the same random state)."""
        self.buffer.empty()
        if state["data"] is not None:
            data = TensorDict.from_dict(state["data"], batch_size=[state["length"]])
            self.buffer.extend(data)
        self.buffer._writer.load_state_dict(dict(state["writer"]))
        pending = state["pending"]
        self.multi_step._buffer = (
            TensorDict.from_dict(pending, batch_size=state["pending_shape"]) if pending is not None else None
        )


def make_replay_buffer(
    env: EnvBase,
    capacity: int,
    *,
    n_steps: int = 1,
    gamma: float = 0.99,
    device: torch.device | str = "cpu",
) -> NStepReplayBuffer:
    """An :class:`NStepReplayBuffer` keeping what the env's specs say a transition has.

    Example:
        >>> from harl_torchrl.envs import make_vmas_env
        >>> env = make_vmas_env("balance", num_envs=2, n_agents=2, max_steps=5)
        >>> buffer = make_replay_buffer(env, 100, n_steps=3)
        >>> buffer.extend(env.rollout(5, break_when_any_done=False))
        4
        >>> buffer.sample(2)[STEPS_KEY].tolist()  # 3-step windows inside 5-step episodes
        [3, 3]
        >>> ("next", "agent_0", "observation") in buffer.sample(1).keys(True)
        True
    """
    keys, reward_keys = transition_keys(env)
    return NStepReplayBuffer(capacity, n_steps=n_steps, gamma=gamma, reward_keys=reward_keys, keys=keys, device=device)

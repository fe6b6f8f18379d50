"""A batched TorchRL env over several copies of a (PettingZoo-style) parallel env.

:class:`BatchedParallelEnv` holds ``num_envs`` copies of a raw multi-agent env and
steps them in one Python loop in this process. It owns everything the families share:
the specs (one group per agent, team signals and the global ``"state"`` at the root),
the conversion of actions to numpy (continuous actions clipped to their bounds), the
time limit (reported as ``truncated``), the running episode return, partial resets
and per-copy seeding. A family subclass only steps and resets its raw copies.

The output of a step is built from numpy arrays allocated fresh for that step and
handed to torch with :func:`torch.from_numpy` (no copy); a raw buffer is never written
again once a tensor views it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, TensorSpec, Unbounded
from torchrl.envs import EnvBase

from harl_torchrl.errors import ConfigError
from harl_torchrl.utils.device import resolve_device


@dataclass(frozen=True)
class ActionSpace:
    """One agent's action space, as the raw env defines it.

    Args:
        low: lower bounds of a continuous (box) action, shape ``[act_dim]``; ``None``
            for a discrete action.
        high: upper bounds of a continuous action; ``None`` for a discrete action.
        n: number of discrete actions; ``None`` for a continuous action.

    Example:
        >>> import numpy as np
        >>> ActionSpace(low=np.zeros(2), high=np.ones(2)).shape
        (2,)
        >>> ActionSpace(n=5).shape
        ()
    """

    low: np.ndarray | None = None
    high: np.ndarray | None = None
    n: int | None = None

    @property
    def continuous(self) -> bool:
        """Whether the action is a continuous box."""
        return self.n is None

    @property
    def shape(self) -> tuple[int, ...]:
        """The action's shape without the batch dimension."""
        return () if self.n is not None else tuple(np.shape(self.low))


@dataclass
class StepResult:
    """What a family's :meth:`BatchedParallelEnv._step_copies` returns, one row per copy.

    Args:
        rewards: float ``[n_agents, B]``, each agent's own reward (agents in
            :attr:`BatchedParallelEnv.agent_names` order).
        team_reward: float ``[B]``, the team reward written at the root.
        terminated: bool ``[B]``, the raw env says the episode ended.
        truncated: bool ``[B]``, the raw env hit its own time limit.
        flags: bool ``[B]`` per root flag the family declared (``root_flags`` of
            :meth:`BatchedParallelEnv._init_batched`), e.g. football's ``"goal_scored"``:
            what happened on this step.

    Example:
        >>> rewards = np.array([[1.0, 2.0], [3.0, 4.0]])  # 2 agents, 2 copies
        >>> result = StepResult(rewards, rewards.sum(0), np.zeros(2, bool), np.zeros(2, bool))
        >>> result.team_reward
        array([4., 6.])
    """

    rewards: np.ndarray
    team_reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    flags: Mapping[str, np.ndarray] = field(default_factory=dict)


def set_team_specs(
    env: EnvBase,
    obs_specs: dict[str, Composite],
    action_specs: dict[str, Composite],
    reward_specs: dict[str, Composite],
    *,
    state_dim: int,
    **root_observations: TensorSpec,
) -> None:
    """Sets ``env``'s specs in the team layout every family here shares.

    One group per agent (``obs_specs``/``action_specs``/``reward_specs`` by agent), and at
    the root the global ``"state"`` ``[*B, state_dim]``, the running ``"episode_reward"``,
    the team ``"reward"`` and boolean ``"done"``/``"terminated"``/``"truncated"``
    ``[*B, 1]``, plus any further root observations given (e.g. SMAX's ``battle_won``).
    """
    batch, device = tuple(env.batch_size), env.device
    env.observation_spec = Composite(
        obs_specs,
        state=Unbounded(shape=(*batch, state_dim), dtype=torch.float32, device=device),
        episode_reward=Unbounded(shape=(*batch, 1), dtype=torch.float32, device=device),
        **root_observations,
        shape=batch,
        device=device,
    )
    env.action_spec = Composite(action_specs, shape=batch, device=device)
    env.reward_spec = Composite(
        reward_specs,
        reward=Unbounded(shape=(*batch, 1), dtype=torch.float32, device=device),
        shape=batch,
        device=device,
    )
    flag = done_flag_spec(batch, device)
    env.done_spec = Composite(
        done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=batch, device=device
    )


def done_flag_spec(batch: tuple[int, ...], device: torch.device | str | None) -> Categorical:
    """A boolean ``[*B, 1]`` flag spec (done, terminated, truncated, a win flag)."""
    return Categorical(n=2, shape=(*batch, 1), dtype=torch.bool, device=device)


class BatchedParallelEnv(EnvBase):
    """Base class: ``num_envs`` copies of a raw multi-agent env as one batched TorchRL env.

    Data layout (``B = num_envs``)::

        (agent, "observation")          float32 [B, obs_dim_agent]
        (agent, "action")               float32 [B, act_dim_agent]  (continuous, Bounded spec)
                                        int64   [B]                 (discrete, Categorical spec)
        "state"                         float32 [B, state_dim]      global state (centralised critic)
        ("next", agent, "reward")       float32 [B, 1]  the agent's own reward
        ("next", "reward")              float32 [B, 1]  team reward (the family says how)
        ("next", "terminated")          bool    [B, 1]  the raw env says the episode ended
        ("next", "truncated")           bool    [B, 1]  ``max_steps`` reached (and not terminated)
        ("next", "done")                bool    [B, 1]  terminated | truncated
        ("next", "episode_reward")      float32 [B, 1]  team return of the episode so far
        ("next", <root flag>)           bool    [B, 1]  a family's event flags (e.g. "goal_scored")

    ``_reset`` reads the ``"_reset"`` mask ``[B, 1]`` and resets only those copies; it
    returns the observations of every copy. Seeding gives copy ``i`` the seed
    ``seed + i`` at its next reset; later resets continue that copy's random stream.

    Subclasses call :meth:`_init_batched` once they know their agents and spaces, and
    implement :meth:`_reset_copies`, :meth:`_step_copies` and :meth:`_observe`; they
    keep their per-step arrays in ``self._buf`` (a plain namespace, cheap to assign).

    Args:
        num_envs: number of copies (the batch size).
        max_steps: time limit in steps, reported as ``truncated``.
        device: where the output tensors live (the raw envs always run on the CPU).

    Example:
        A one-agent env whose copies count their steps (observation = the count):

        >>> class Counter(BatchedParallelEnv):
        ...     def __init__(self, num_envs):
        ...         super().__init__(num_envs=num_envs, max_steps=3)
        ...         self._init_batched(["a"], {"a": 1}, {"a": ActionSpace(n=2)}, state_dim=1)
        ...         self._buf.count = np.zeros((num_envs, 1), dtype=np.float32)
        ...     def _reset_copies(self, indices, seeds):
        ...         self._buf.count = self._buf.count.copy()
        ...         self._buf.count[indices] = 0
        ...     def _step_copies(self, actions):
        ...         self._buf.count = self._buf.count + 1
        ...         rewards = actions["a"][None].astype(np.float64)  # reward = the action
        ...         no = np.zeros(self.num_envs, dtype=bool)
        ...         return StepResult(rewards, rewards.sum(0), no, no)
        ...     def _observe(self):
        ...         return {"a": self._buf.count}, self._buf.count.copy()
        >>> env = Counter(num_envs=2)
        >>> td = env.rollout(4, break_when_any_done=False)
        >>> td["next", "a", "observation"][0].flatten().tolist()
        [1.0, 2.0, 3.0, 1.0]
        >>> td["next", "truncated"][0].flatten().tolist()
        [False, False, True, False]
    """

    def __init__(self, *, num_envs: int, max_steps: int, device: str | torch.device = "cpu") -> None:
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs <= 0:
            raise ConfigError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps <= 0:
            raise ConfigError(f"max_steps must be a positive number of steps, got {max_steps!r}")
        device = resolve_device(device)
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.num_envs = num_envs
        self.max_steps = max_steps
        self._clip_actions = True  # families that can take out-of-box actions may turn it off
        self._on_cpu = self.device is None or torch.device(self.device).type == "cpu"
        self._cpu = torch.device("cpu")
        # Mutable per-step state lives in a plain namespace: setting an attribute of the
        # env itself goes through nn.Module's and EnvBase's __setattr__ (microseconds each).
        self._buf = SimpleNamespace(
            pending_seeds=[None] * num_envs,
            step_count=np.zeros(num_envs, dtype=np.int64),
            episode_reward=np.zeros(num_envs, dtype=np.float64),
        )

    # ------------------------------------------------------------------ setup
    def _init_batched(
        self,
        agent_names: Sequence[str],
        obs_dims: Mapping[str, int],
        action_spaces: Mapping[str, ActionSpace],
        state_dim: int,
        root_flags: Sequence[str] = (),
    ) -> None:
        """Records the agents and builds the specs; subclasses call it from ``__init__``.

        ``root_flags`` names boolean ``[B, 1]`` root entries the family reports on every step
        (through :attr:`StepResult.flags`; ``False`` after a reset), such as an event that a
        success rate counts.
        """
        self.agent_names = list(agent_names)
        self.group_map = {name: [name] for name in self.agent_names}
        self.action_spaces = dict(action_spaces)
        self.obs_dims = {name: int(obs_dims[name]) for name in self.agent_names}
        self.state_dim = int(state_dim)
        # float32 bounds, broadcast over the batch, for clipping in one numpy call
        self._action_bounds = {
            name: (space.low.astype(np.float32), space.high.astype(np.float32))
            for name, space in self.action_spaces.items()
            if space.continuous
        }
        batch = (self.num_envs,)
        device = self.device
        obs_specs, action_specs, reward_specs = {}, {}, {}
        for name in self.agent_names:
            obs_specs[name] = Composite(
                observation=Unbounded(shape=(*batch, self.obs_dims[name]), dtype=torch.float32, device=device),
                shape=batch,
            )
            space = self.action_spaces[name]
            if space.continuous:
                shape = (*batch, *space.shape)
                low = torch.as_tensor(space.low, dtype=torch.float32, device=device).expand(shape)
                high = torch.as_tensor(space.high, dtype=torch.float32, device=device).expand(shape)
                action = Bounded(low=low, high=high, shape=shape, dtype=torch.float32, device=device)
            else:
                action = Categorical(n=int(space.n), shape=batch, dtype=torch.int64, device=device)
            action_specs[name] = Composite(action=action, shape=batch)
            reward_specs[name] = Composite(
                reward=Unbounded(shape=(*batch, 1), dtype=torch.float32, device=device), shape=batch
            )
        self.root_flags = tuple(root_flags)
        self._buf.flags = {name: np.zeros((self.num_envs, 1), dtype=bool) for name in self.root_flags}
        set_team_specs(
            self,
            obs_specs,
            action_specs,
            reward_specs,
            state_dim=self.state_dim,
            **{name: done_flag_spec(batch, device) for name in self.root_flags},
        )
        self._batch_size_unsafe = torch.Size(batch)

    # -------------------------------------------------------- family hooks
    def _reset_copies(self, indices: Sequence[int], seeds: Sequence[int | None]) -> None:
        """Resets the raw copies ``indices`` (with ``seeds``, ``None`` to continue their streams)."""
        raise NotImplementedError

    def _step_copies(self, actions: Mapping[str, np.ndarray]) -> StepResult:
        """Steps every raw copy with ``actions`` (per agent, batch first) and returns the signals."""
        raise NotImplementedError

    def _observe(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The current per-agent observations ``{agent: [B, obs_dim]}`` and state ``[B, state_dim]`` (float32).

        The arrays must not be written to again by the family (tensors view them).
        """
        raise NotImplementedError

    # ------------------------------------------------------ run state (resume)
    def capture_state(self) -> dict[str, Any]:
        """The env's whole running state as checkpoint-safe data (tensors, numbers, strings).

        Holds the step counters, running episode returns, pending seeds and the family's
        raw copies (:meth:`_capture_copies`: their simulator state and random generators),
        so that :meth:`restore_state` on an env built with the same configuration continues
        exactly where this one is.

        Raises:
            NotImplementedError: the family cannot capture its simulator (see its docs).
        """
        return {
            "family": type(self).__name__,
            "num_envs": self.num_envs,
            "step_count": torch.from_numpy(self._buf.step_count.copy()),
            "episode_reward": torch.from_numpy(self._buf.episode_reward.copy()),
            "pending_seeds": list(self._buf.pending_seeds),
            "copies": self._capture_copies(),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`capture_state` (the env must have the same family, scenario and ``num_envs``).

        Raises:
            ValueError: the state was captured from another kind of env or batch size.
        """
        if state["family"] != type(self).__name__ or state["num_envs"] != self.num_envs:
            raise ValueError(
                f"env state of a {state['family']} with {state['num_envs']} copies cannot be restored into a "
                f"{type(self).__name__} with {self.num_envs}"
            )
        self._buf.step_count = state["step_count"].numpy().copy()
        self._buf.episode_reward = state["episode_reward"].numpy().copy()
        self._buf.pending_seeds = list(state["pending_seeds"])
        self._restore_copies(state["copies"])

    def _capture_copies(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot capture its simulators' state")

    def _restore_copies(self, state: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot restore its simulators' state")

    # ------------------------------------------------------------- TorchRL
    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._buf.pending_seeds = [None] * self.num_envs
        else:
            self._buf.pending_seeds = [int(seed) + i for i in range(self.num_envs)]

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        if mask is None:
            indices = list(range(self.num_envs))
        else:
            indices = mask.reshape(self.num_envs).nonzero().flatten().tolist()
        if indices:
            seeds = [self._buf.pending_seeds[i] for i in indices]
            for i in indices:
                self._buf.pending_seeds[i] = None
            self._reset_copies(indices, seeds)
            self._buf.step_count[indices] = 0
            self._buf.episode_reward[indices] = 0.0
        obs, state = self._observe()
        false = np.zeros((self.num_envs, 1), dtype=bool)
        self._buf.flags = {name: false.copy() for name in self.root_flags}
        out = self._output(obs, state, extra={"done": false, "terminated": false.copy(), "truncated": false.copy()})
        return out

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = {}
        for name in self.agent_names:
            action = tensordict.get((name, "action"))
            if not self._on_cpu:
                action = action.cpu()
            action = action.detach().numpy()
            bounds = self._action_bounds.get(name)
            if bounds is not None:
                if self._clip_actions:
                    # our Gaussian policies sample unbounded actions; the raw envs want their box
                    action = np.clip(action, bounds[0], bounds[1])
            elif action.size and (action.min() < 0 or action.max() >= self.action_spaces[name].n):
                raise ValueError(
                    f"{name}: discrete actions must lie in [0, {self.action_spaces[name].n}), got {action.tolist()}"
                )
            actions[name] = action
        result = self._step_copies(actions)
        self._buf.step_count += 1
        terminated = np.asarray(result.terminated, dtype=bool)
        truncated = (np.asarray(result.truncated, dtype=bool) | (self._buf.step_count >= self.max_steps)) & ~terminated
        self._buf.episode_reward += result.team_reward
        self._buf.flags = {
            name: np.asarray(result.flags[name], dtype=bool).reshape(self.num_envs, 1) for name in self.root_flags
        }
        obs, state = self._observe()
        rewards = np.asarray(result.rewards, dtype=np.float32)
        out = self._output(
            obs,
            state,
            extra={
                "reward": np.asarray(result.team_reward, dtype=np.float32).reshape(self.num_envs, 1),
                "terminated": terminated.reshape(self.num_envs, 1),
                "truncated": truncated.reshape(self.num_envs, 1),
                "done": (terminated | truncated).reshape(self.num_envs, 1),
            },
            agent_rewards=rewards,
        )
        return out

    def _output(
        self,
        obs: Mapping[str, np.ndarray],
        state: np.ndarray,
        extra: Mapping[str, np.ndarray],
        agent_rewards: np.ndarray | None = None,
    ) -> TensorDictBase:
        """Builds the output TensorDict from fresh numpy arrays without copying them."""
        batch = self._batch_size_unsafe
        source = {}
        for k, name in enumerate(self.agent_names):
            entries = {"observation": torch.from_numpy(obs[name])}
            if agent_rewards is not None:
                entries["reward"] = torch.from_numpy(agent_rewards[k].reshape(self.num_envs, 1))
            source[name] = TensorDict._new_unsafe(entries, batch_size=batch, device=self._cpu)
        source["state"] = torch.from_numpy(state)
        source["episode_reward"] = torch.from_numpy(
            self._buf.episode_reward.astype(np.float32).reshape(self.num_envs, 1)
        )
        for key, value in extra.items():
            source[key] = torch.from_numpy(value)
        for key, value in self._buf.flags.items():
            source[key] = torch.from_numpy(value)
        # the TensorDicts carry the env's device: EnvBase.step would otherwise copy them to it
        out = TensorDict._new_unsafe(source, batch_size=batch, device=self._cpu)
        if not self._on_cpu:
            out = out.to(self.device, non_blocking=True)
        return out

"""Multi-Agent MuJoCo (``gymnasium_robotics.mamujoco_v1``) as a batched TorchRL env.

One group per agent (HalfCheetah 6x1 or Hopper 3x1 agents have different observation
sizes and need no padding), the env's shared reward at the root, the time limit
reported as ``truncated`` and the robot falling as ``terminated``, and the global
``"state"`` at the root for the centralised critic. Two observation modes: the env's
own local observations, or the reference HARL implementation's standardised global
state with a one-hot agent id.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from harl_torchrl.config.env import MaMuJoCoEnvConfig
from harl_torchrl.envs._batched import ActionSpace, BatchedParallelEnv, StepResult
from harl_torchrl.envs._state import capture_object_state, restore_object_state
from harl_torchrl.errors import ConfigError, MissingDependencyError, unknown_choice

ObsMode = Literal["local", "global"]
#: The keyword defaults, from the ``env`` schema (:class:`~harl_torchrl.config.env.MaMuJoCoEnvConfig`):
#: each default is written once, there.
_DEFAULTS = MaMuJoCoEnvConfig.defaults()
OBS_MODES = ("local", "global")

#: Every scenario and agent configuration (``agent_conf``) supported: those MaMuJoCo v1
#: factorises itself, plus :data:`ONE_AGENT_PER_JOINT` (built by :func:`mamujoco_factorization`).
MAMUJOCO_TASKS: dict[str, tuple[str, ...]] = {
    "Ant": ("2x4", "2x4d", "4x2"),
    "HalfCheetah": ("2x3", "6x1"),
    "Hopper": ("3x1",),
    "Humanoid": ("9|8", "17x1"),
    "HumanoidStandup": ("9|8", "17x1"),
    "Pusher": ("3p",),
    "Reacher": ("2x1",),
    "Swimmer": ("2x1",),
    "Walker2d": ("2x3",),
}

#: Scenarios whose Gymnasium observation (the state) holds MaMuJoCo's local items unaltered,
#: so that local observations can be gathered from it by index. Hopper and Walker2d clip
#: velocities to [-10, 10] and Ant clips contact forces in the state, while MaMuJoCo's
#: local observations are unclipped: those are built by MaMuJoCo, one copy at a time.
GATHER_FROM_STATE = frozenset({"HalfCheetah", "Humanoid", "HumanoidStandup", "Swimmer"})

#: Agent configurations that MaMuJoCo v1 does not define, built as custom factorizations with
#: one agent per actuated joint: ``{(scenario, agent_conf): number of actuators}``. The
#: reference HARL implementation's Humanoid 17x1 (its headline many-agent task) is one.
ONE_AGENT_PER_JOINT: dict[tuple[str, str], int] = {("Humanoid", "17x1"): 17, ("HumanoidStandup", "17x1"): 17}

MUJOCO_EXTRA_HINT = "pip install 'harl-torchrl[mujoco]'"


def mamujoco_task_names() -> list[str]:
    """Every supported task as ``"<scenario> <agent_conf>"``.

    Example:
        >>> "HalfCheetah 2x3" in mamujoco_task_names()
        True
    """
    return [f"{scenario} {conf}" for scenario, confs in sorted(MAMUJOCO_TASKS.items()) for conf in confs]


def mamujoco_factorization(scenario: str, agent_conf: str) -> dict[str, Any] | None:
    """The custom ``agent_factorization`` of a task MaMuJoCo does not define, else ``None``.

    For the tasks in :data:`ONE_AGENT_PER_JOINT`, MaMuJoCo's own body graph of the
    scenario (``get_parts_and_edges(scenario, None)``: every joint in one part, the
    hyper-edges between joints and the global torso node) is split into one agent per
    joint, agent ``i`` driving actuator ``i`` (``Node.act_ids``): the reference HARL
    implementation's mapping, which concatenates the agents' actions in agent order.
    Edges and globals are MaMuJoCo's, so local observations (``agent_obsk``) follow
    its graph as for the built-in configurations.

    Args:
        scenario: e.g. ``"Humanoid"``.
        agent_conf: e.g. ``"17x1"``.

    Returns:
        ``{"partition": [(node,), ...], "edges": [...], "globals": [...]}`` to pass as
        ``mamujoco_v1.parallel_env(..., agent_factorization=...)``, or ``None`` for a
        configuration MaMuJoCo builds itself.

    Raises:
        MissingDependencyError: ``gymnasium-robotics`` or ``mujoco`` is not installed.

    Example:
        >>> parts = mamujoco_factorization("Humanoid", "17x1")["partition"]
        >>> len(parts), [node.act_ids for (node,) in parts[:3]], parts[0][0].label
        (17, [0, 1, 2], 'abdomen_y')
        >>> mamujoco_factorization("HalfCheetah", "2x3") is None
        True
    """
    size = ONE_AGENT_PER_JOINT.get((scenario, agent_conf))
    if size is None:
        return None
    mamujoco_v1 = _import_mamujoco()
    (joints,), edges, globals_ = mamujoco_v1.get_parts_and_edges(scenario, None)
    joints = sorted(joints, key=lambda node: node.act_ids)
    if [node.act_ids for node in joints] != list(range(size)):  # pragma: no cover - a changed MaMuJoCo graph
        raise ConfigError(
            f"MaMuJoCo's {scenario} graph no longer has one joint per actuator 0..{size - 1}: {agent_conf} "
            "cannot be built from it. Fix: use a built-in agent_conf, or pin gymnasium-robotics 1.4"
        )
    return {"partition": [(node,) for node in joints], "edges": edges, "globals": globals_}


def make_raw_mamujoco_env(scenario: str, agent_conf: str, **kwargs: Any) -> Any:
    """``mamujoco_v1.parallel_env(scenario, agent_conf, ...)``, custom factorizations included.

    Builds the tasks of :data:`ONE_AGENT_PER_JOINT` through
    :func:`mamujoco_factorization`; MaMuJoCo's C-level warnings are routed as in
    :func:`mujoco_warnings_as_python_warnings`. This is the raw PettingZoo env that
    :class:`MaMuJoCoTeamEnv` batches.

    Args:
        scenario: e.g. ``"Humanoid"``.
        agent_conf: e.g. ``"17x1"`` or ``"9|8"``.
        **kwargs: forwarded to ``mamujoco_v1.parallel_env`` (``agent_obsk``,
            ``max_episode_steps``, Gymnasium keyword arguments).

    Example:
        >>> raw = make_raw_mamujoco_env("Humanoid", "17x1")
        >>> len(raw.possible_agents), raw.action_space("agent_16").shape
        (17, (1,))
    """
    mamujoco_v1 = _import_mamujoco()
    factorization = mamujoco_factorization(scenario, agent_conf)
    if factorization is not None:
        kwargs = {**kwargs, "agent_factorization": factorization}
    with mujoco_warnings_as_python_warnings():
        return mamujoco_v1.parallel_env(scenario, agent_conf, **kwargs)


def _import_mamujoco() -> Any:
    try:
        import mujoco  # noqa: F401  (gymnasium's MuJoCo envs need it; fail here with the fix)
        from gymnasium_robotics import mamujoco_v1
    except ImportError as err:
        raise MissingDependencyError(
            f"Multi-Agent MuJoCo needs the 'gymnasium-robotics' and 'mujoco' packages ({err}); install them with "
            f"{MUJOCO_EXTRA_HINT}"
        ) from err
    return mamujoco_v1


@contextlib.contextmanager
def mujoco_warnings_as_python_warnings() -> Iterator[None]:
    """Routes MuJoCo's C-level warnings to :mod:`warnings` while models are compiled.

    MuJoCo's default handler appends every warning to ``MUJOCO_LOG.TXT`` in the
    working directory; Gymnasium's HalfCheetah asset triggers one per model
    (``settotalmass`` is deprecated in MuJoCo 4), which would litter the user's
    directory. That known one is dropped; any other becomes a Python warning.
    :class:`MaMuJoCoTeamEnv` builds its copies inside it; use it to build raw
    MaMuJoCo envs the same way.

    Example:
        >>> from gymnasium_robotics import mamujoco_v1
        >>> with mujoco_warnings_as_python_warnings():
        ...     raw = mamujoco_v1.parallel_env("HalfCheetah", "2x3")
        >>> raw.possible_agents
        ['agent_0', 'agent_1']
    """
    import mujoco

    previous = mujoco.get_mju_user_warning()
    messages: list[str] = []
    mujoco.set_mju_user_warning(messages.append)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
        for message in dict.fromkeys(messages):
            if "settotalmass" not in message:
                warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=4)


def reference_standardize(x: np.ndarray) -> np.ndarray:
    """Standardises each row of ``x`` over its own features, as the reference HARL code does.

    ``(x - mean(x)) / std(x)`` with the mean and the (population, ``ddof=0``) standard
    deviation of each row's entries: fixed, per-sample statistics, no running state.
    A row whose entries are all equal maps to zeros.

    Args:
        x: ``[..., features]`` array.

    Returns:
        A float64 array of the same shape.

    Example:
        >>> reference_standardize(np.array([[1.0, 2.0, 3.0]])).round(4)
        array([[-1.2247,  0.    ,  1.2247]])
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / np.where(std > 0, std, 1.0)


class MaMuJoCoTeamEnv(BatchedParallelEnv):
    """``num_envs`` copies of a Multi-Agent MuJoCo task as one batched TorchRL env.

    The copies are ``gymnasium_robotics.mamujoco_v1.parallel_env(scenario, agent_conf)``
    instances stepped in one Python loop in this process.

    Data layout (``B = num_envs``, ``S`` = the state size, ``n`` = the number of agents)::

        (agent, "observation")          float32 [B, obs_dim_agent]   local mode
                                        float32 [B, S + n]           global mode
        (agent, "action")               float32 [B, act_dim_agent]   Bounded by the env's box
        "state"                         float32 [B, S]   the env's state() (standardised in global mode)
        ("next", agent, "reward")       float32 [B, 1]   the shared reward (equal for all agents)
        ("next", "reward")              float32 [B, 1]   team reward: the shared reward itself
        ("next", "terminated")          bool    [B, 1]   the robot fell (the env says so)
        ("next", "truncated")           bool    [B, 1]   ``max_steps`` reached and not terminated
        ("next", "done")                bool    [B, 1]   terminated | truncated
        ("next", "episode_reward")      float32 [B, 1]   team return of the episode so far

    MaMuJoCo gives every agent the single-agent env's reward, so the team reward is
    that reward (not a sum, which would scale it by the number of agents).

    Observation modes (``obs_mode``):

    * ``"local"`` (default): MaMuJoCo's own observation of each agent: its joints and
      those within ``agent_obsk`` hops in the body graph, plus the task's global items.
      Sizes differ between agents (e.g. 9 and 8 for HalfCheetah 6x1).
    * ``"global"``: the reference HARL implementation's observation: every agent
      observes ``concat(state, one_hot(agent_index))`` (``S + n`` features), then
      *standardised per vector*: ``(x - mean(x)) / std(x)`` over that vector's own
      ``S + n`` entries (population std), with no running statistics (see
      :func:`reference_standardize`). The one-hot entries are standardised with the
      rest, so the agent's id is the unique largest of the last ``n`` entries. As in
      the reference, the critic's ``"state"`` is then standardised the same way
      (``standardize_state``).

    ``"state"`` is the single-agent env's observation (``state()`` of the parallel env:
    e.g. 17 numbers for HalfCheetah). Steps go straight to the single-agent MuJoCo env
    (the agents' actions are scattered into its action vector by precomputed indices).
    Local observations are MaMuJoCo's own (``parallel_env``'s, built per copy), except
    for the scenarios in :data:`GATHER_FROM_STATE`, whose state holds the same numbers:
    there they are gathered from the state with MaMuJoCo's observation index map, which
    is checked against ``parallel_env`` when the env is built.

    Args:
        scenario: a MuJoCo scenario, e.g. ``"HalfCheetah"`` (see :data:`MAMUJOCO_TASKS`).
        agent_conf: the agent factorisation, e.g. ``"2x3"``; those of
            :data:`ONE_AGENT_PER_JOINT` (Humanoid ``"17x1"``) are built by
            :func:`mamujoco_factorization`.
        num_envs: number of copies.
        max_steps: episode length, reported as truncation (1000 in MuJoCo).
        obs_mode: ``"local"`` or ``"global"`` (see above).
        agent_obsk: graph distance of the joints an agent observes in local mode.
        standardize_state: standardise ``"state"`` per vector as the reference does;
            ``None`` (default) does it in global mode only.
        clip_actions: clip actions to the env's box before stepping (default).
            ``False`` passes them unclipped, as the reference implementation does:
            MuJoCo still clamps the controls, but the control cost is charged on
            the unclipped action, so returns are comparable with its published ones.
        normalize_actions: the agents act in ``[-1, 1]`` and each action entry is
            mapped affinely onto its actuator's range before stepping,
            :math:`u = low + (a + 1)(high - low) / 2`, as the reference's
            ``NormalizedActions`` wrapper does. The identity for robots whose range
            is ``[-1, 1]`` (HalfCheetah, Hopper, Walker2d, Ant); for Humanoid
            (``[-0.4, 0.4]``) :math:`u = 0.4 a`, so the policy's noise and the control
            cost are those of the reference. With ``clip_actions`` the action is
            clipped to ``[-1, 1]`` first; without, the mapped action is unclipped.
            ``False`` (default): the action specs are the env's own box.
        zero_contact_forces: set the state's contact forces (``cfrc_ext``: 78 numbers
            for Humanoid, in the state and so in every global observation) to 0, as the
            reference's gym ``-v2`` robots reported them under mujoco-py 2.x. Gymnasium
            ``-v5`` computes them; on impacts they reach thousands and, through the
            per-vector standardisation, shrink every other feature of that step (the
            vector's standard deviation goes from about 8 to over 100). Global mode only.
            The reward's contact cost is Gymnasium's own keyword, ``contact_cost_weight``.
        seed: copy ``i`` is seeded with ``seed + i`` at its next reset.
        device: where the output tensors live (MuJoCo runs on the CPU).
        **env_kwargs: forwarded to the Gymnasium MuJoCo env (e.g. ``ctrl_cost_weight``);
            arguments that change its observation are not supported.

    Raises:
        ConfigError: unknown scenario, agent configuration or observation mode;
            ``zero_contact_forces`` in local mode or for a robot without contact forces.
        MissingDependencyError: ``gymnasium-robotics`` or ``mujoco`` is not installed.

    Example:
        >>> env = MaMuJoCoTeamEnv("HalfCheetah", "6x1", num_envs=2, seed=0)
        >>> td = env.rollout(3)
        >>> td["agent_0", "observation"].shape, td["agent_2", "observation"].shape
        (torch.Size([2, 3, 9]), torch.Size([2, 3, 8]))
        >>> td["agent_0", "action"].shape, td["state"].shape
        (torch.Size([2, 3, 1]), torch.Size([2, 3, 17]))
    """

    def __init__(
        self,
        scenario: str,
        agent_conf: str,
        *,
        num_envs: int = _DEFAULTS["num_envs"],
        max_steps: int = _DEFAULTS["max_steps"],
        obs_mode: ObsMode = _DEFAULTS["obs_mode"],
        agent_obsk: int = _DEFAULTS["agent_obsk"],
        standardize_state: bool | None = None,
        clip_actions: bool = _DEFAULTS["clip_actions"],
        normalize_actions: bool = _DEFAULTS["normalize_actions"],
        zero_contact_forces: bool = _DEFAULTS["zero_contact_forces"],
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **env_kwargs: Any,
    ) -> None:
        if scenario not in MAMUJOCO_TASKS:
            raise unknown_choice("MaMuJoCo scenario", scenario, MAMUJOCO_TASKS)
        if agent_conf not in MAMUJOCO_TASKS[scenario]:
            raise unknown_choice(f"agent_conf for MaMuJoCo {scenario}", agent_conf, MAMUJOCO_TASKS[scenario])
        if obs_mode not in OBS_MODES:
            raise unknown_choice("obs_mode", obs_mode, OBS_MODES)
        if not isinstance(agent_obsk, int) or isinstance(agent_obsk, bool) or agent_obsk < 0:
            raise ConfigError(f"agent_obsk must be an integer >= 0, got {agent_obsk!r}")
        if zero_contact_forces and obs_mode != "global":
            raise ConfigError(
                "zero_contact_forces acts on the state, which only obs_mode=global observes whole (local "
                "observations are MaMuJoCo's own). Fix: set obs_mode=global, or zero_contact_forces=false"
            )
        mamujoco_v1 = _import_mamujoco()
        super().__init__(num_envs=num_envs, max_steps=max_steps, device=device)
        self._clip_actions = bool(clip_actions)
        self.normalize_actions = bool(normalize_actions)
        self.scenario_name = scenario
        self.agent_conf = agent_conf
        self.obs_mode = obs_mode
        self.agent_obsk = agent_obsk
        self.standardize_state = obs_mode == "global" if standardize_state is None else bool(standardize_state)
        self.zero_contact_forces = bool(zero_contact_forces)

        factorization = mamujoco_factorization(scenario, agent_conf)  # e.g. Humanoid 17x1; None: MaMuJoCo's own

        def make_env() -> Any:
            return mamujoco_v1.parallel_env(
                scenario,
                agent_conf,
                agent_obsk=agent_obsk,
                agent_factorization=factorization,
                max_episode_steps=max_steps,
                **env_kwargs,
            )

        try:
            with mujoco_warnings_as_python_warnings():
                self._envs = [make_env() for _ in range(num_envs)]
                gather = obs_mode == "local" and scenario in GATHER_FROM_STATE
                probe_env = make_env() if gather else None
        except TypeError as err:
            raise ConfigError(f"MaMuJoCo could not build {scenario} {agent_conf} with {env_kwargs}: {err}") from err
        self._singles = [env.single_agent_env for env in self._envs]
        first = self._envs[0]
        agents = list(first.possible_agents)
        self.state_dim = int(first.single_agent_env.observation_space.shape[0])
        self._action_dim = int(first.single_agent_env.action_space.shape[0])
        action_spaces = {
            name: ActionSpace(
                low=np.asarray(first.action_space(name).low), high=np.asarray(first.action_space(name).high)
            )
            for name in agents
        }
        # every actuator's range, for normalize_actions' affine map of the joint action vector
        joint_space = first.single_agent_env.action_space
        self._joint_low = np.asarray(joint_space.low, dtype=np.float64)
        self._joint_half_range = (np.asarray(joint_space.high, dtype=np.float64) - self._joint_low) / 2.0
        if self.normalize_actions:
            action_spaces = {
                name: ActionSpace(low=-np.ones_like(space.low), high=np.ones_like(space.high))
                for name, space in action_spaces.items()
            }
        self._contact_slice = self._contact_force_slice(first) if self.zero_contact_forces else None
        if obs_mode == "global":
            obs_dims = {name: self.state_dim + len(agents) for name in agents}
        else:
            obs_dims = {name: int(first.observation_space(name).shape[0]) for name in agents}
        self._init_batched(agents, obs_dims, action_spaces, state_dim=self.state_dim)
        # where each agent's action entries go in the single-agent action vector
        self._action_slots = [
            np.asarray([node.act_ids for node in partition], dtype=np.int64)
            for partition in first.agent_action_partitions
        ]
        slots = np.concatenate(self._action_slots)
        if sorted(slots.tolist()) != list(range(self._action_dim)):  # pragma: no cover - MaMuJoCo guarantees it
            raise ConfigError(f"MaMuJoCo {scenario} {agent_conf}: the agents' actions do not cover the robot's")
        self._obs_index = None if probe_env is None else self._local_obs_index(probe_env)
        self._buf.state = np.zeros((num_envs, self.state_dim), dtype=np.float64)
        self._buf.local_obs = None  # {agent: [B, obs_dim]} where MaMuJoCo builds them
        self._set_seed(seed)

    def _contact_force_slice(self, env: Any) -> slice:
        """Where the state holds the contact forces (``cfrc_ext``), from Gymnasium's ``observation_structure``."""
        single = env.single_agent_env.unwrapped
        structure = dict(getattr(single, "observation_structure", {}) or {})
        structure.pop("skipped_qpos", None)  # positions left out of the observation, not in it
        start = 0
        for name, size in structure.items():
            if name == "cfrc_ext" and size:
                if start + size > self.state_dim:  # pragma: no cover - a Gymnasium layout we do not know
                    break
                return slice(start, start + size)
            start += int(size)
        raise ConfigError(
            f"zero_contact_forces: MaMuJoCo {self.scenario_name}'s state holds no contact forces (cfrc_ext); "
            "Humanoid, HumanoidStandup and Ant have them. Fix: set zero_contact_forces=false"
        )

    def _local_obs_index(self, probe: Any) -> dict[str, np.ndarray] | None:
        """MaMuJoCo's map from the state to each agent's local observation, if it reproduces ``parallel_env``.

        ``probe`` is a spare copy: probing must not touch the copies' random streams.
        """
        index = probe.observation_factorization
        if index is None:
            return None
        probe.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(20):  # bang-bang actions: large velocities and forces
            actions = {}
            for name in self.agent_names:
                space = probe.action_space(name)  # the env's own box (our specs may be normalised)
                actions[name] = np.where(rng.random(space.shape) < 0.5, space.low, space.high).astype(np.float64)
            obs, *_ = probe.step(actions)
            state = probe.state()
            if not all(np.array_equal(obs[name], state[index[name]]) for name in self.agent_names):
                probe.close()
                return None
        probe.close()
        return {name: np.asarray(index[name], dtype=np.int64) for name in self.agent_names}

    @property
    def _needs_local_obs(self) -> bool:
        """Local observations that cannot be gathered from the state (MaMuJoCo builds them per copy)."""
        return self.obs_mode == "local" and self._obs_index is None

    # ------------------------------------------------------------ raw copies
    def _reset_copies(self, indices: Sequence[int], seeds: Sequence[int | None]) -> None:
        state = self._buf.state.copy()  # tensors may view the old arrays
        local = None
        if self._needs_local_obs:
            local = {name: np.zeros((self.num_envs, self.obs_dims[name])) for name in self.agent_names}
            if self._buf.local_obs is not None:
                local = {name: value.copy() for name, value in self._buf.local_obs.items()}
        for i, seed in zip(indices, seeds, strict=True):
            env = self._envs[i]
            obs, _ = env.reset(seed=seed)
            state[i] = env.state()
            if local is not None:
                for name in self.agent_names:
                    local[name][i] = obs[name]
        self._buf.state = state
        self._buf.local_obs = local

    def _step_copies(self, actions: Mapping[str, np.ndarray]) -> StepResult:
        n = self.num_envs
        joint = np.empty((n, self._action_dim), dtype=np.float64)
        for name, slots in zip(self.agent_names, self._action_slots, strict=True):
            joint[:, slots] = actions[name]
        if self.normalize_actions:  # [-1, 1] -> each actuator's range, as the reference's NormalizedActions
            joint = self._joint_low + (joint + 1.0) * self._joint_half_range
        state = np.empty((n, self.state_dim), dtype=np.float64)
        reward = np.empty(n, dtype=np.float64)
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        for i, single in enumerate(self._singles):
            state[i], reward[i], terminated[i], truncated[i], _ = single.step(joint[i])
        self._buf.state = state
        if self._needs_local_obs:
            # MaMuJoCo's own observation builder, one copy at a time
            local = {name: np.empty((n, self.obs_dims[name])) for name in self.agent_names}
            for i, env in enumerate(self._envs):
                obs = env._get_obs()
                for name in self.agent_names:
                    local[name][i] = obs[name]
            self._buf.local_obs = local
        rewards = np.repeat(reward[None], len(self.agent_names), axis=0)
        return StepResult(rewards=rewards, team_reward=reward, terminated=terminated, truncated=truncated)

    # ------------------------------------------------------ run state (resume)
    def _capture_copies(self) -> dict[str, Any]:
        # The Python side of each copy (wrappers' counters, gymnasium's numpy Generator) through the
        # generic walk, and MuJoCo's MjData: every array whose size the model fixes (state, controls,
        # warm start, and the derived quantities a step reads before simulating, such as body
        # positions) plus the time. Arrays sized by the current contacts/constraints are recomputed by
        # the next mj_step before use and are not needed.
        return {
            "state": torch.from_numpy(self._buf.state.copy()),
            "local_obs": None
            if self._buf.local_obs is None
            else {name: torch.from_numpy(value.copy()) for name, value in self._buf.local_obs.items()},
            "envs": [capture_object_state(env, _MAMUJOCO_MODULES) for env in self._envs],
            "mjdata": [_mjdata_state(single.unwrapped) for single in self._singles],
        }

    def _restore_copies(self, state: Mapping[str, Any]) -> None:
        self._buf.state = state["state"].numpy().copy()
        local = state["local_obs"]
        self._buf.local_obs = None if local is None else {name: value.numpy().copy() for name, value in local.items()}
        for env, saved in zip(self._envs, state["envs"], strict=True):
            restore_object_state(env, saved, _MAMUJOCO_MODULES)
        for single, saved in zip(self._singles, state["mjdata"], strict=True):
            _set_mjdata_state(single.unwrapped, saved)

    def _observe(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        state = self._buf.state
        if self._contact_slice is not None:  # as gym's v2 robots reported them under mujoco-py 2.x: zeros
            state = state.copy()
            state[:, self._contact_slice] = 0.0
        if self.obs_mode == "global":
            obs = self._global_observations(state)
        elif self._obs_index is not None:
            obs = {name: state[:, index].astype(np.float32) for name, index in self._obs_index.items()}
        else:
            obs = {name: value.astype(np.float32) for name, value in self._buf.local_obs.items()}
        out_state = reference_standardize(state) if self.standardize_state else state
        return obs, out_state.astype(np.float32)

    def _global_observations(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """``reference_standardize(concat(state, one_hot(k)))`` for every agent ``k``, computed once for all.

        Every agent's vector holds the same entries up to where its single 1 sits, so all
        share one mean and one standard deviation (computed two-pass, as numpy does).
        """
        n_agents, size = len(self.agent_names), self.state_dim
        width = size + n_agents
        mean = (state.sum(axis=1) + 1.0) / width
        deviation = state - mean[:, None]
        variance = ((deviation**2).sum(axis=1) + (n_agents - 1) * mean**2 + (1.0 - mean) ** 2) / width
        std = np.sqrt(variance)
        std = np.where(std > 0, std, 1.0)
        template = np.empty((self.num_envs, width), dtype=np.float32)
        template[:, :size] = deviation / std[:, None]
        template[:, size:] = (-mean / std)[:, None]
        one = ((1.0 - mean) / std).astype(np.float32)
        obs = {}
        for k, name in enumerate(self.agent_names):
            agent_obs = template.copy()
            agent_obs[:, size + k] = one
            obs[name] = agent_obs
        return obs

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self._envs:
            env.close()
        super().close(raise_if_closed=raise_if_closed)


#: Module prefixes whose objects make up a MaMuJoCo copy's Python-side state.
_MAMUJOCO_MODULES = ("gymnasium_robotics", "gymnasium")


def _mjdata_arrays(data: Any) -> dict[str, np.ndarray]:
    """Every public ndarray field of a ``mujoco.MjData`` (views into its buffers)."""
    arrays = {}
    for name in dir(data):
        if name.startswith("_"):
            continue
        value = getattr(data, name, None)
        if isinstance(value, np.ndarray):
            arrays[name] = value
    return arrays


def _mjdata_state(env: Any) -> dict[str, Any]:
    """The arrays of ``env.data`` whose shape the model fixes, and its time (checkpoint-safe)."""
    data = env.data
    sizes = _fixed_size_fields(env)
    arrays = {name: torch.from_numpy(value.copy()) for name, value in _mjdata_arrays(data).items() if name in sizes}
    return {"arrays": arrays, "time": float(data.time)}


def _fixed_size_fields(env: Any) -> set[str]:
    """MjData fields whose shape does not depend on the current contacts/constraints.

    Found by comparing the data with a fresh ``MjData`` of the same model: the
    arena-backed fields (``efc_*``, contacts) are empty there.
    """
    cached = getattr(env, "_harl_fixed_fields", None)
    if cached is None:
        import mujoco

        fresh = _mjdata_arrays(mujoco.MjData(env.model))
        current = _mjdata_arrays(env.data)
        cached = {n for n, v in current.items() if n in fresh and fresh[n].shape == v.shape and v.size}
        cached -= {n for n, v in fresh.items() if v.size == 0}
        env._harl_fixed_fields = cached
    return cached


def _set_mjdata_state(env: Any, state: Mapping[str, Any]) -> None:
    data = env.data
    arrays = _mjdata_arrays(data)
    for name, value in state["arrays"].items():
        target = arrays.get(name)
        if target is None or tuple(target.shape) != tuple(value.shape):
            raise ValueError(f"MuJoCo field {name!r} has shape {getattr(target, 'shape', None)}, saved {value.shape}")
        target[...] = value.numpy()
    data.time = state["time"]


def make_mamujoco_env(
    scenario: str,
    agent_conf: str,
    *,
    num_envs: int,
    max_steps: int = _DEFAULTS["max_steps"],
    obs_mode: ObsMode = _DEFAULTS["obs_mode"],
    agent_obsk: int = _DEFAULTS["agent_obsk"],
    clip_actions: bool = _DEFAULTS["clip_actions"],
    normalize_actions: bool = _DEFAULTS["normalize_actions"],
    zero_contact_forces: bool = _DEFAULTS["zero_contact_forces"],
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **env_kwargs: Any,
) -> MaMuJoCoTeamEnv:
    """Builds a :class:`MaMuJoCoTeamEnv` (keyword-only arguments, the library's defaults).

    Args:
        scenario: e.g. ``"HalfCheetah"``, ``"Ant"``, ``"Walker2d"`` (see :data:`MAMUJOCO_TASKS`).
        agent_conf: e.g. ``"2x3"``, ``"6x1"``, ``"9|8"``.
        num_envs: number of copies stepped together.
        max_steps: episode length, reported as ``truncated``.
        obs_mode: ``"local"`` (the env's per-agent observations) or ``"global"`` (the
            reference's standardised state plus one-hot id).
        agent_obsk: graph distance of observed joints in local mode.
        clip_actions: clip actions to the env's box before stepping (default). With
            ``False`` the raw action reaches the env, as in the reference
            implementation: MuJoCo still clamps the controls, but the control cost
            is charged on the unclipped action.
        normalize_actions: act in ``[-1, 1]``, mapped onto each actuator's range
            (the reference's ``NormalizedActions``; see :class:`MaMuJoCoTeamEnv`).
        zero_contact_forces: global mode: the state's contact forces set to 0, as the
            reference's ``-v2`` robots reported them (see :class:`MaMuJoCoTeamEnv`).
        seed: copy ``i`` gets ``seed + i``.
        device: where the output tensors live.
        **env_kwargs: forwarded to the Gymnasium MuJoCo env (see :class:`MaMuJoCoTeamEnv`).

    Example:
        >>> env = make_mamujoco_env("HalfCheetah", "2x3", num_envs=2, obs_mode="global", seed=0)
        >>> td = env.rollout(2)
        >>> td["agent_1", "observation"].shape, td["next", "episode_reward"].shape
        (torch.Size([2, 2, 19]), torch.Size([2, 2, 1]))
    """
    return MaMuJoCoTeamEnv(
        scenario,
        agent_conf,
        num_envs=num_envs,
        max_steps=max_steps,
        obs_mode=obs_mode,
        agent_obsk=agent_obsk,
        clip_actions=clip_actions,
        normalize_actions=normalize_actions,
        zero_contact_forces=zero_contact_forces,
        seed=seed,
        device=device,
        **env_kwargs,
    )

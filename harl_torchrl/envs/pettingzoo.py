"""PettingZoo MPE (the ``mpe2`` package) as a batched TorchRL env with heterogeneous-agent conventions.

One group per agent (speaker and listener have different observation and action
sizes, and need no padding), the team reward at the root (the sum over agents), the
time limit reported as ``truncated``, and the global ``"state"`` (the raw env's
``state()``) at the root for the centralised critic.

Return scale: the reference implementation's published MPE returns come from pettingzoo
1.22.3's ``simple_spread_v2``, which charges each agent for colliding with itself; mpe2's
``simple_spread_v3`` (used here) does not, so for 3 agents and 25 steps the reference's
team return is ours minus exactly 37.5 for the same behaviour (see the conventions page).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from harl_torchrl.config.env import PettingZooEnvConfig
from harl_torchrl.envs._batched import ActionSpace, BatchedParallelEnv, StepResult
from harl_torchrl.envs._state import capture_object_state, restore_object_state
from harl_torchrl.errors import ConfigError, MissingDependencyError, failure_reason, unknown_choice

#: The cooperative MPE scenarios this env builds, and the ``mpe2`` module of each.
#: Competitive ones (simple_tag, simple_adversary, ...) are left out: their agents'
#: rewards oppose each other, so a summed team reward would be meaningless.
MPE_SCENARIOS: dict[str, str] = {
    "simple": "simple_v3",
    "simple_spread": "simple_spread_v3",
    "simple_speaker_listener": "simple_speaker_listener_v4",
    "simple_reference": "simple_reference_v3",
    "simple_formation": "simple_formation_v1",
    "simple_line": "simple_line_v1",
}

#: Module prefixes whose objects make up an MPE copy's state (wrappers, env, world, entities).
_MPE_MODULES = ("mpe2", "pettingzoo")

PETTINGZOO_EXTRA_HINT = "pip install 'harl-torchrl[pettingzoo]'"


def mpe_scenario_names() -> list[str]:
    """The MPE scenario names :class:`MPETeamEnv` accepts.

    Example:
        >>> "simple_spread" in mpe_scenario_names()
        True
    """
    return sorted(MPE_SCENARIOS)


def _scenario_module(scenario: str) -> Any:
    """Imports the ``mpe2`` module of ``scenario``; the error names the extra when ``mpe2`` is missing."""
    name = scenario
    if scenario not in MPE_SCENARIOS:
        # accept the versioned names too ("simple_spread_v3")
        by_module = {module: short for short, module in MPE_SCENARIOS.items()}
        if scenario not in by_module:
            raise unknown_choice("MPE scenario", scenario, mpe_scenario_names())
        name = by_module[scenario]
    try:
        return importlib.import_module(f"mpe2.{MPE_SCENARIOS[name]}")
    except ImportError as err:
        raise MissingDependencyError(
            f"PettingZoo MPE needs the 'mpe2' and 'pettingzoo' packages ({err}); install them with "
            f"{PETTINGZOO_EXTRA_HINT}"
        ) from err


StepMode = Literal["auto", "direct", "parallel"]
#: The keyword defaults, from the ``env`` schema (:class:`~harl_torchrl.config.env.PettingZooEnvConfig`):
#: each default is written once, there.
_DEFAULTS = PettingZooEnvConfig.defaults()
STEP_MODES = ("auto", "direct", "parallel")


def _step_parallel(
    envs: Sequence[Any],
    names: Sequence[str],
    actions: Sequence[np.ndarray],
    obs: Mapping[str, np.ndarray],
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
) -> None:
    """Steps each copy through PettingZoo's parallel API, writing row ``i`` of the outputs."""
    for i, env in enumerate(envs):
        raw_obs, raw_rew, raw_term, raw_trunc, _ = env.step(
            {name: action[i] for name, action in zip(names, actions, strict=True)}
        )
        for k, name in enumerate(names):
            obs[name][i] = raw_obs[name]
            rewards[k, i] = raw_rew[name]
        terminated[i] = any(raw_term.values())
        truncated[i] = any(raw_trunc.values())


def _step_direct(
    raws: Sequence[Any],
    names: Sequence[str],
    actions: Sequence[np.ndarray],
    obs: Mapping[str, np.ndarray],
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
) -> None:
    """Steps each copy's ``mpe2`` ``SimpleEnv`` world directly, writing row ``i`` of the outputs.

    Does what one cycle of the parallel API does (set every agent's action, one world
    step, rewards, the step count and its time limit, the scenario's terminal check,
    observations) without the AEC round trip, its wrappers and its extra ``observe``
    calls. :class:`MPETeamEnv` checks it against the parallel API when it is built.
    """
    for i, raw in enumerate(raws):
        raw.current_actions = [action[i] for action in actions]
        raw._execute_world_step()
        raw.steps += 1
        agent_rewards = raw.rewards
        world = raw.world
        observation = raw.scenario.observation
        for k, (name, agent) in enumerate(zip(names, world.agents, strict=True)):
            obs[name][i] = observation(agent, world)
            rewards[k, i] = agent_rewards[name]
        if raw.steps >= raw.max_cycles:
            truncated[i] = True
        elif raw.scenario.is_terminal(world):
            terminated[i] = True


class MPETeamEnv(BatchedParallelEnv):
    """``num_envs`` copies of a PettingZoo MPE scenario (``mpe2``) as one batched TorchRL env.

    The copies are ``mpe2.<scenario>.parallel_env(...)`` instances stepped in one
    Python loop in this process (no TorchRL ``PettingZooWrapper``, no sub-processes).

    Data layout (``B = num_envs``)::

        (agent, "observation")          float32 [B, obs_dim_agent]
        (agent, "action")               float32 [B, act_dim_agent]  continuous, bounds [0, 1]
                                        int64   [B]                 discrete
        "state"                         float32 [B, sum of obs dims]  the raw env's state()
        ("next", agent, "reward")       float32 [B, 1]  the agent's own reward
        ("next", "reward")              float32 [B, 1]  team reward: the SUM over agents
        ("next", "terminated")          bool    [B, 1]  the scenario ended the episode (rare in MPE)
        ("next", "truncated")           bool    [B, 1]  ``max_steps`` reached
        ("next", "done")                bool    [B, 1]  terminated | truncated
        ("next", "episode_reward")      float32 [B, 1]  team return of the episode so far

    The team reward is the sum of the agents' rewards, the reference HARL convention
    (its published MPE returns, e.g. about -65 on simple_spread, are sums). In
    simple_spread each agent's own reward already mixes the shared and the local term
    (``local_ratio``, default 0.5).

    Continuous MPE actions live in ``[0, 1]`` boxes (movement is ``a[2] - a[1]``,
    ``a[4] - a[3]``): the action spec is that box and actions are clipped to it before
    each step, since Gaussian policies sample unbounded actions. ``"state"`` is the
    concatenation of every agent's observation in agent order, which is exactly what
    ``mpe2``'s ``state()`` returns; it is built from the observations already at hand
    rather than recomputed.

    Args:
        scenario: an MPE scenario name (see :func:`mpe_scenario_names`), with or
            without its version suffix (``"simple_spread"`` or ``"simple_spread_v3"``).
        num_envs: number of copies.
        max_steps: episode length (``max_cycles`` of ``mpe2``), reported as truncation.
        continuous_actions: continuous (default) or discrete actions.
        seed: copy ``i`` is seeded with ``seed + i`` at its next reset; ``None`` for
            unseeded copies.
        device: where the output tensors live (MPE itself runs on the CPU).
        step_mode: how the copies are stepped. ``"direct"`` runs one cycle of each
            copy's ``mpe2`` world directly (set every agent's action, one world step,
            rewards, time limit, terminal check, observations), skipping the AEC round
            trip of PettingZoo's parallel API and its wrappers (about twice as fast);
            ``"parallel"`` calls ``parallel_env.step``. ``"auto"`` (default) steps two
            spare copies both ways at construction and takes ``"direct"`` if they agree
            exactly, else warns and takes ``"parallel"`` (an ``mpe2`` whose internals
            changed).
        **scenario_kwargs: forwarded to ``parallel_env`` (e.g. ``N=4``, ``local_ratio=0.5``).

    Raises:
        ConfigError: unknown scenario or step mode, an argument the scenario does
            not take, or ``step_mode="direct"`` on an ``mpe2`` it does not reproduce.
        MissingDependencyError: ``mpe2`` is not installed.

    Example:
        >>> env = MPETeamEnv("simple_speaker_listener", num_envs=4, seed=0)
        >>> env.group_map
        {'speaker_0': ['speaker_0'], 'listener_0': ['listener_0']}
        >>> td = env.rollout(3)
        >>> td["listener_0", "observation"].shape, td["speaker_0", "action"].shape
        (torch.Size([4, 3, 11]), torch.Size([4, 3, 3]))
        >>> td["state"].shape, td["next", "reward"].shape
        (torch.Size([4, 3, 14]), torch.Size([4, 3, 1]))
    """

    def __init__(
        self,
        scenario: str,
        *,
        num_envs: int = _DEFAULTS["num_envs"],
        max_steps: int = _DEFAULTS["max_steps"],
        continuous_actions: bool = _DEFAULTS["continuous_actions"],
        seed: int | None = None,
        device: str | torch.device = "cpu",
        step_mode: StepMode = "auto",
        **scenario_kwargs: Any,
    ) -> None:
        module = _scenario_module(scenario)
        if step_mode not in STEP_MODES:
            raise unknown_choice("step_mode", step_mode, STEP_MODES)
        super().__init__(num_envs=num_envs, max_steps=max_steps, device=device)
        self.scenario_name = scenario
        self.continuous_actions = bool(continuous_actions)
        self.scenario_kwargs = dict(scenario_kwargs)
        try:
            self._envs = [
                module.parallel_env(max_cycles=max_steps, continuous_actions=self.continuous_actions, **scenario_kwargs)
                for _ in range(num_envs)
            ]
        except (TypeError, AssertionError, ValueError) as err:
            raise ConfigError(
                f"mpe2 could not build scenario {scenario!r} with {scenario_kwargs}: {failure_reason(err)}. "
                "Fix: set env.scenario_kwargs to values the scenario accepts"
            ) from err
        first = self._envs[0]
        agents = list(first.possible_agents)
        action_spaces = {}
        for name in agents:
            space = first.action_space(name)
            if self.continuous_actions:
                action_spaces[name] = ActionSpace(low=np.asarray(space.low), high=np.asarray(space.high))
            else:
                action_spaces[name] = ActionSpace(n=int(space.n))
        obs_dims = {name: int(np.prod(first.observation_space(name).shape)) for name in agents}
        self._init_batched(agents, obs_dims, action_spaces, state_dim=sum(obs_dims.values()))
        self._buf.obs = {name: np.zeros((num_envs, obs_dims[name]), dtype=np.float32) for name in agents}
        self._raws = [env.unwrapped for env in self._envs]
        self.step_mode = self._choose_step_mode(step_mode, module)
        self._set_seed(seed)

    def _choose_step_mode(self, requested: StepMode, module: Any) -> str:
        if requested == "parallel":
            return "parallel"
        if self._direct_step_matches(module):
            return "direct"
        if requested == "direct":
            raise ConfigError(
                f"step_mode='direct' does not reproduce mpe2's parallel API on {self.scenario_name!r} "
                "(this mpe2 version differs); use step_mode='auto' or 'parallel'"
            )
        warnings.warn(
            f"mpe2 scenario {self.scenario_name!r}: stepping the world directly does not match the parallel API "
            "with this mpe2 version; using the parallel API (slower). Pass step_mode='parallel' to silence this.",
            stacklevel=3,
        )
        return "parallel"

    def _direct_step_matches(self, module: Any, steps: int = 3) -> bool:
        """Steps two fresh copies, one per path, with the same seed and actions; True if they agree exactly."""
        try:
            kwargs = {"max_cycles": steps, "continuous_actions": self.continuous_actions, **self.scenario_kwargs}
            parallel, direct = module.parallel_env(**kwargs), module.parallel_env(**kwargs)
            raw = direct.unwrapped
            if [agent.name for agent in raw.world.agents] != self.agent_names:
                return False
            parallel.reset(seed=0)
            direct.reset(seed=0)
            rng = np.random.default_rng(0)
            for _ in range(steps):
                actions = []
                for name in self.agent_names:
                    space = self.action_spaces[name]
                    if space.continuous:
                        actions.append(rng.uniform(space.low, space.high, size=(1, *space.shape)).astype(np.float32))
                    else:
                        actions.append(rng.integers(0, space.n, size=1))
                results = []
                for step, env in ((_step_parallel, parallel), (_step_direct, raw)):
                    out = (
                        {name: np.zeros((1, self.obs_dims[name]), dtype=np.float32) for name in self.agent_names},
                        np.zeros((len(self.agent_names), 1)),
                        np.zeros(1, dtype=bool),
                        np.zeros(1, dtype=bool),
                    )
                    step([env], self.agent_names, actions, *out)
                    results.append(out)
                (obs_p, rew_p, term_p, trunc_p), (obs_d, rew_d, term_d, trunc_d) = results
                if not all(np.array_equal(obs_p[name], obs_d[name]) for name in self.agent_names):
                    return False
                if not (np.array_equal(rew_p, rew_d) and term_p == term_d and trunc_p == trunc_d):
                    return False
            return bool(trunc_p[0])  # both hit the time limit on the last step
        except Exception:  # any mismatch in mpe2's internals means: use the parallel API
            return False

    # ------------------------------------------------------------ raw copies
    def _reset_copies(self, indices: Sequence[int], seeds: Sequence[int | None]) -> None:
        obs = {name: buffer.copy() for name, buffer in self._buf.obs.items()}  # tensors view the old arrays
        for i, seed in zip(indices, seeds, strict=True):
            raw_obs, _ = self._envs[i].reset(seed=seed)
            for name in self.agent_names:
                obs[name][i] = raw_obs[name]
        self._buf.obs = obs

    def _step_copies(self, actions: Mapping[str, np.ndarray]) -> StepResult:
        names = self.agent_names
        n = self.num_envs
        obs = {name: np.empty((n, self.obs_dims[name]), dtype=np.float32) for name in names}
        rewards = np.empty((len(names), n), dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        per_agent = [actions[name] for name in names]
        if self.step_mode == "direct":
            _step_direct(self._raws, names, per_agent, obs, rewards, terminated, truncated)
        else:
            _step_parallel(self._envs, names, per_agent, obs, rewards, terminated, truncated)
        self._buf.obs = obs
        return StepResult(rewards=rewards, team_reward=rewards.sum(0), terminated=terminated, truncated=truncated)

    def _capture_copies(self) -> dict[str, Any]:
        # every copy's whole mpe2 object graph: world entities, counters, its numpy Generator
        return {
            "obs": {name: torch.from_numpy(buffer.copy()) for name, buffer in self._buf.obs.items()},
            "envs": [capture_object_state(env, _MPE_MODULES) for env in self._envs],
        }

    def _restore_copies(self, state: Mapping[str, Any]) -> None:
        self._buf.obs = {name: state["obs"][name].numpy().copy() for name in self.agent_names}
        for env, saved in zip(self._envs, state["envs"], strict=True):
            restore_object_state(env, saved, _MPE_MODULES)

    def _observe(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        state = np.concatenate([self._buf.obs[name] for name in self.agent_names], axis=1)
        return self._buf.obs, state

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self._envs:
            env.close()
        super().close(raise_if_closed=raise_if_closed)


def make_pettingzoo_env(
    scenario: str,
    *,
    num_envs: int,
    max_steps: int = _DEFAULTS["max_steps"],
    continuous_actions: bool = _DEFAULTS["continuous_actions"],
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **scenario_kwargs: Any,
) -> MPETeamEnv:
    """Builds an :class:`MPETeamEnv` (keyword-only arguments, the library's defaults).

    The env writes ``("next", "episode_reward")``, the running sum of the team reward
    (the sum over agents) since the last reset, so that its value at a ``done`` step
    is the episode's return.

    Args:
        scenario: MPE scenario name, e.g. ``"simple_spread"`` (see :func:`mpe_scenario_names`).
        num_envs: number of copies stepped together.
        max_steps: episode length, reported as ``truncated`` (MPE's default is 25).
        continuous_actions: continuous (default, ``[0, 1]`` boxes) or discrete actions.
        seed: copy ``i`` gets ``seed + i``.
        device: where the output tensors live.
        **scenario_kwargs: scenario arguments, e.g. ``N=4`` for simple_spread.

    Example:
        >>> env = make_pettingzoo_env("simple_spread", num_envs=2, continuous_actions=False, seed=0)
        >>> td = env.rollout(25)
        >>> td["agent_0", "action"].shape, bool(td["next", "truncated"][:, -1].all())
        (torch.Size([2, 25]), True)
    """
    return MPETeamEnv(
        scenario,
        num_envs=num_envs,
        max_steps=max_steps,
        continuous_actions=continuous_actions,
        seed=seed,
        device=device,
        **scenario_kwargs,
    )

"""Google Research Football (``gfootball``) academy scenarios as a batched TorchRL env.

Each copy is gfootball's own ``FootballEnv`` built from a ``Config`` (the engine itself,
without the ``gym`` wrapper layer of ``create_environment``, whose gym-0.21 step API
breaks under the gym 0.26 that VMAS installs). Our conventions: one group per controlled
player, the simple115v2 observation per agent, a global ``"state"`` for the critic, the
team reward at the root, a goal (or any other end of play) as termination, the
scenario's time limit as truncation, and ``"goal_scored"`` at the root for goal rates.

Install it with ``bash recipes/benchmarks/install_football.sh`` (Debian packages, then a source build
of gfootball 2.10.2: about 11 minutes the first time).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from harl_torchrl.config.env import FootballEnvConfig
from harl_torchrl.envs._batched import ActionSpace, BatchedParallelEnv, StepResult
from harl_torchrl.errors import ConfigError, MissingDependencyError, unknown_choice

#: The academy scenarios this env builds, with the number of left players the agents control
#: (the reference HARL's table; the rest of each team is the built-in AI).
FOOTBALL_SCENARIOS: dict[str, int] = {
    "academy_3_vs_1_with_keeper": 3,
    "academy_counterattack_easy": 4,
    "academy_counterattack_hard": 4,
    "academy_pass_and_shoot_with_keeper": 2,
    "academy_run_pass_and_shoot_with_keeper": 2,
    "academy_corner": 11,
    "academy_single_goal_versus_lazy": 11,
}

FOOTBALL_INSTALL_HINT = (
    "bash recipes/benchmarks/install_football.sh (Debian packages, then pip builds gfootball==2.10.2)"
)

#: Slices of the simple115v2 vector: everything but the active player's one-hot is global.
_ACTIVE = slice(97, 108)
_GLOBAL = np.r_[0:97, 108:115]

TeamReward = Literal["mean", "sum", "first"]
#: The keyword defaults, from the ``env`` schema (:class:`~harl_torchrl.config.env.FootballEnvConfig`):
#: each default is written once, there.
_DEFAULTS = FootballEnvConfig.defaults()
TEAM_REWARDS = ("mean", "sum", "first")


def football_scenario_names() -> list[str]:
    """The scenario names :class:`FootballTeamEnv` accepts.

    Example:
        >>> "academy_3_vs_1_with_keeper" in football_scenario_names()
        True
    """
    return sorted(FOOTBALL_SCENARIOS)


def import_gfootball() -> tuple[Any, Any, Any]:
    """Imports gfootball's engine modules, or names the install command when it is missing.

    Returns:
        The ``gfootball.env`` submodules ``(config, football_env, wrappers)``: what
        :class:`FootballTeamEnv` builds its copies from, and what a benchmark of the raw
        engine needs.

    Raises:
        MissingDependencyError: ``gfootball`` is not installed (the message gives the install
            command).
    """
    try:
        names = ("config", "football_env", "wrappers")
        return tuple(importlib.import_module(f"gfootball.env.{name}") for name in names)
    except ImportError as err:
        raise MissingDependencyError(
            f"Google Research Football needs the 'gfootball' package ({err}); install it with {FOOTBALL_INSTALL_HINT}"
        ) from err


class FootballTeamEnv(BatchedParallelEnv):
    """``num_envs`` copies of a gfootball academy scenario as one batched TorchRL env.

    The agents control the left team's players (``player_0``, ...; how many depends on
    the scenario, see :data:`FOOTBALL_SCENARIOS`); each has 19 discrete actions
    (gfootball's default action set), all always available. The copies step one after
    another in this process; spread them over processes with ``collector.workers``.

    Data layout (``B = num_envs``, ``n`` agents)::

        (agent, "observation")          float32 [B, 115]         simple115v2 (fixed player slots)
        (agent, "action")               int64   [B]              0..18
        "state"                         float32 [B, 104 + 11 n]  the global features once, then
                                                                 every agent's active-player one-hot
        ("next", agent, "reward")       float32 [B, 1]  the agent's gfootball reward
        ("next", "reward")              float32 [B, 1]  team reward (``team_reward``)
        ("next", "goal_scored")         bool    [B, 1]  the agents' team scored on this step
        ("next", "terminated")          bool    [B, 1]  play ended: goal, ball lost or out of play
        ("next", "truncated")           bool    [B, 1]  the scenario's time limit (or ``max_steps``)
        ("next", "done")                bool    [B, 1]  terminated | truncated
        ("next", "episode_reward")      float32 [B, 1]  team return of the episode so far

    Rewards: +1 when the agents score and -1 when they concede (gfootball's ``scoring``);
    ``checkpoint_reward=True`` (default, the reference's ``scoring,checkpoints``) adds
    gfootball's ``CheckpointRewardWrapper`` shaping: 0.1 for each of ten distance rings towards the
    goal the agent's ball carrier reaches first in an episode, the rest paid on a goal. The
    checkpoints are per agent (only the agent whose player holds the ball collects), so the
    team reward is a choice: ``"mean"`` (default; a goal is worth 1 plus the mean of the
    unpaid rings), ``"sum"``, or ``"first"``, agent 0's reward, which is what the reference
    HARL trains on (its ``rewards = [[rew[0]]] * n_agents``).

    Time: an academy episode lasts at most the scenario's ``game_duration`` (400) + 1 steps
    and ends early when the attack is over (goal, the defenders win the ball, ball out of
    play); the early ends are terminations, the limit a truncation. ``"state"`` follows the
    reference's layout: simple115v2 without the active one-hot (104 features), then each
    agent's active one-hot (11 each).

    Seeding: copy ``i``'s episodes draw their engine seeds from ``numpy.random.default_rng(seed
    + i)``, one per reset (gfootball's ``game_engine_random_seed``; team processing order from
    its parity, as gfootball does by default), so a seeded env replays the same episodes for
    the same actions. The engine's state is not captured: a resumed run starts fresh
    episodes (:meth:`capture_state` raises ``NotImplementedError``), with its parameters,
    optimisers and counters exact.

    Args:
        scenario: an academy scenario (see :func:`football_scenario_names`).
        num_envs: number of copies (about 330 MB of memory each).
        max_steps: time limit in steps (``None``: the scenario's, ``game_duration + 1``); at
            most the scenario's.
        checkpoint_reward: add gfootball's checkpoint shaping to the scoring reward.
        team_reward: ``"mean"``, ``"sum"`` or ``"first"`` of the agents' rewards.
        seed: copy ``i`` draws its episodes from ``seed + i``; ``None`` for unseeded copies.
        device: where the output tensors live (the engine runs on the CPU).

    Raises:
        ConfigError: unknown scenario or team reward, or ``max_steps`` beyond the
            scenario's limit.
        MissingDependencyError: gfootball is not installed (the error gives the command).

    Example:
        >>> env = FootballTeamEnv("academy_3_vs_1_with_keeper", num_envs=2, seed=0)  # doctest: +SKIP
        >>> td = env.rollout(5)  # doctest: +SKIP
        >>> td["player_0", "observation"].shape, td["state"].shape  # doctest: +SKIP
        (torch.Size([2, 5, 115]), torch.Size([2, 5, 137]))
    """

    def __init__(
        self,
        scenario: str,
        *,
        num_envs: int = _DEFAULTS["num_envs"],
        max_steps: int | None = None,
        checkpoint_reward: bool = _DEFAULTS["checkpoint_reward"],
        team_reward: TeamReward = _DEFAULTS["team_reward"],
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if scenario not in FOOTBALL_SCENARIOS:
            raise unknown_choice("football scenario", scenario, football_scenario_names())
        if team_reward not in TEAM_REWARDS:
            raise unknown_choice("football team_reward", team_reward, TEAM_REWARDS)
        config, football_env, wrappers = import_gfootball()
        # gfootball logs a line through absl at INFO for every finished episode (thousands per run)
        absl_logger = logging.getLogger("absl")
        if absl_logger.getEffectiveLevel() < logging.WARNING:
            absl_logger.setLevel(logging.WARNING)
        self._convert = wrappers.Simple115StateWrapper.convert_observation
        n_agents = FOOTBALL_SCENARIOS[scenario]
        self._configs, self._envs, self._checkpoints = [], [], []
        for _ in range(num_envs):
            cfg = config.Config(
                {
                    "level": scenario,
                    "players": [f"agent:left_players={n_agents}"],
                    "action_set": "default",
                    "real_time": False,
                    "game_engine_random_seed": 0,  # set per episode at each reset
                }
            )
            env = football_env.FootballEnv(cfg)
            self._configs.append(cfg)
            self._envs.append(env)
            # the wrapper's reward() reads the engine's observation and its own ring counts;
            # we call it on the raw env's reward instead of stepping through gym's wrapper API
            self._checkpoints.append(wrappers.CheckpointRewardWrapper(env) if checkpoint_reward else None)
        limit = int(self._configs[0].ScenarioConfig().game_duration) + 1 if num_envs else 1
        if max_steps is None:
            max_steps = limit
        elif isinstance(max_steps, int) and max_steps > limit:
            self.close_engines()
            raise ConfigError(
                f"max_steps={max_steps} is beyond {scenario}'s own limit of {limit} steps (game_duration + 1). "
                f"Fix: env.max_steps={limit}, or fewer"
            )
        super().__init__(num_envs=num_envs, max_steps=max_steps, device=device)
        self.scenario_name = scenario
        self.checkpoint_reward = bool(checkpoint_reward)
        self.team_reward = team_reward
        self.scenario_limit = limit
        agents = [f"player_{k}" for k in range(n_agents)]
        n_actions = int(self._envs[0].action_space.nvec[0])
        self._init_batched(
            agents,
            dict.fromkeys(agents, 115),
            {name: ActionSpace(n=n_actions) for name in agents},
            state_dim=len(_GLOBAL) + 11 * n_agents,
            root_flags=("goal_scored",),
        )
        self._buf.obs = np.zeros((n_agents, num_envs, 115), dtype=np.float32)
        self._rngs = [np.random.default_rng() for _ in range(num_envs)]
        self._needs_reset = np.ones(num_envs, dtype=bool)
        self._set_seed(seed)

    # ------------------------------------------------------------ raw copies
    def _reset_copies(self, indices: Sequence[int], seeds: Sequence[int | None]) -> None:
        obs = self._buf.obs.copy()  # tensors view the old array
        for i, seed in zip(indices, seeds, strict=True):
            if seed is not None:
                self._rngs[i] = np.random.default_rng(seed)
            engine_seed = int(self._rngs[i].integers(2**31 - 1))
            # gfootball reads both when it builds the next episode's scenario
            self._configs[i]["game_engine_random_seed"] = engine_seed
            self._configs[i]["reverse_team_processing"] = bool(engine_seed % 2)
            raw = self._checkpoints[i].reset() if self._checkpoints[i] is not None else self._envs[i].reset()
            obs[:, i] = self._convert(raw, True)
        self._needs_reset[list(indices)] = False
        self._buf.obs = obs

    def _step_copies(self, actions: Mapping[str, np.ndarray]) -> StepResult:
        n = self.num_envs
        names = self.agent_names
        joint = np.stack([actions[name] for name in names], axis=1)  # [B, n_agents]
        obs = np.empty_like(self._buf.obs)
        rewards = np.zeros((len(names), n), dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        scored = np.zeros(n, dtype=bool)
        for i, env in enumerate(self._envs):
            if self._needs_reset[i]:
                # a copy whose episode ended without the collector resetting it (it only
                # resets the rows that report done): keep it frozen on its last observation
                obs[:, i] = self._buf.obs[:, i]
                continue
            raw_obs, raw_reward, done, info = env.step(joint[i].tolist())
            raw_reward = np.asarray(raw_reward, dtype=np.float64)
            if self._checkpoints[i] is not None:
                raw_reward = self._checkpoints[i].reward(raw_reward)
            rewards[:, i] = raw_reward
            obs[:, i] = self._convert(raw_obs, True)
            scored[i] = info["score_reward"] > 0
            if done:
                self._needs_reset[i] = True
                ended_by_clock = raw_obs[0]["steps_left"] <= 0 and info["score_reward"] == 0
                truncated[i] = ended_by_clock
                terminated[i] = not ended_by_clock
        self._buf.obs = obs
        if self.team_reward == "mean":
            team = rewards.mean(0)
        elif self.team_reward == "sum":
            team = rewards.sum(0)
        else:
            team = rewards[0].copy()
        return StepResult(rewards, team, terminated, truncated, flags={"goal_scored": scored})

    def _observe(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        obs = self._buf.obs
        state = np.concatenate([obs[0][:, _GLOBAL], *(obs[k][:, _ACTIVE] for k in range(len(obs)))], axis=1)
        return {name: obs[k] for k, name in enumerate(self.agent_names)}, state

    def close_engines(self) -> None:
        """Releases every copy's game engine (gfootball keeps released engines for reuse)."""
        for env in getattr(self, "_envs", []):
            env.close()

    def close(self, *, raise_if_closed: bool = True) -> None:
        self.close_engines()
        super().close(raise_if_closed=raise_if_closed)


def make_football_env(
    scenario: str,
    *,
    num_envs: int,
    max_steps: int | None = None,
    checkpoint_reward: bool = _DEFAULTS["checkpoint_reward"],
    team_reward: TeamReward = _DEFAULTS["team_reward"],
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> FootballTeamEnv:
    """Builds a :class:`FootballTeamEnv` (keyword-only arguments, the library's defaults).

    Args:
        scenario: an academy scenario, e.g. ``"academy_3_vs_1_with_keeper"``.
        num_envs: copies stepped together in this process.
        max_steps: time limit (``None``: the scenario's, 401 steps for the academies).
        checkpoint_reward: add gfootball's checkpoint shaping to the scoring reward.
        team_reward: ``"mean"``, ``"sum"`` or ``"first"`` (agent 0's, the reference's).
        seed: copy ``i`` gets ``seed + i``.
        device: where the output tensors live.

    Example:
        >>> env = make_football_env("academy_pass_and_shoot_with_keeper", num_envs=1, seed=0)  # doctest: +SKIP
        >>> env.agent_names  # doctest: +SKIP
        ['player_0', 'player_1']
    """
    return FootballTeamEnv(
        scenario,
        num_envs=num_envs,
        max_steps=max_steps,
        checkpoint_reward=checkpoint_reward,
        team_reward=team_reward,
        seed=seed,
        device=device,
    )

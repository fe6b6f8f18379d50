"""VMAS as a TorchRL environment with heterogeneous-agent conventions.

One group per agent, a team reward at the root, truncation reported as truncation,
and finished sub-environments reset in one batched call.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, MultiCategorical, Unbounded
from torchrl.envs import EnvBase

from harl_torchrl.config.env import VmasEnvConfig
from harl_torchrl.config.simulator_kwargs import kwargs_named_in
from harl_torchrl.envs._state import capture_object_state, restore_object_state
from harl_torchrl.envs._vmas_state import TwinResetter, reset_draws_global_state, reset_where
from harl_torchrl.errors import ConfigError, MissingDependencyError, failure_reason, unknown_choice
from harl_torchrl.utils.device import resolve_device
from harl_torchrl.utils.rng import (
    numpy_legacy_state,
    numpy_legacy_state_from,
    python_random_state,
    python_random_state_from,
)

TeamReward = Literal["mean", "sum"]
ResetMode = Literal["auto", "twin", "blend", "loop"]
#: The keyword defaults, from the ``env`` schema (:class:`~harl_torchrl.config.env.VmasEnvConfig`):
#: each default is written once, there.
_DEFAULTS = VmasEnvConfig.defaults()
RESET_MODES = ("auto", "twin", "blend", "loop")


def vmas_scenario_names() -> list[str]:
    """Every scenario name VMAS can build (its main, MPE and debug scenarios)."""
    import vmas

    return sorted({*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios})


def _import_vmas():
    try:
        import vmas
        from vmas.simulator.environment.environment import Environment, local_seed
    except ImportError as err:  # pragma: no cover - vmas is a core dependency
        raise MissingDependencyError("VMAS is required: pip install harl-torchrl (it depends on vmas)") from err
    return vmas, Environment, local_seed


class VmasTeamEnv(EnvBase):
    """A batched VMAS scenario as a TorchRL env: one group per agent, team signals at the root.

    Data layout (``B = num_envs``)::

        (agent, "observation")          float  [B, obs_dim_agent]
        (agent, "action")               float  [B, act_dim_agent]   (continuous)
                                        int64  [B]                  (discrete)
                                        int64  [B, n_heads]         (multi-discrete)
        ("next", agent, "reward")       float  [B, 1]   the agent's own reward
        ("next", "reward")              float  [B, 1]   team reward: mean or sum over agents
        ("next", "terminated")          bool   [B, 1]   the scenario says the episode ended
        ("next", "truncated")           bool   [B, 1]   ``max_steps`` reached
        ("next", "done")                bool   [B, 1]   terminated | truncated
        ("next", "episode_reward")      float  [B, 1]   team return of the episode so far

    Each agent is its own group, so agents of different observation or action sizes
    need no padding. VMAS is built with ``max_steps=None`` and the time limit is
    counted here, so that a time limit is ``truncated`` (bootstrapped by GAE) and
    never ``terminated``.

    Args:
        scenario: a VMAS scenario name (see :func:`vmas_scenario_names`) or a
            ``BaseScenario`` instance.
        num_envs: number of vectorised sub-environments.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        max_steps: episode length limit; ``None`` for none.
        continuous_actions: continuous (default) or discrete actions.
        multidiscrete_actions: with ``continuous_actions=False``, one categorical
            head per action dimension instead of one flat categorical.
        team_reward: ``"mean"`` (default; equals each agent's reward in
            shared-reward scenarios such as ``balance``) or ``"sum"`` over agents.
        reset_mode: how finished sub-environments are reset (see
            :mod:`harl_torchrl.envs._vmas_state`): ``"twin"`` copies fresh states
            from a small twin world, ``"blend"`` resets the whole world once and
            keeps the fresh rows, ``"loop"`` uses VMAS's per-index reset. ``"auto"``
            (default) probes the scenario at construction and takes the first of
            twin, blend, loop that resets exactly the finished rows (a fallback to
            ``"loop"`` warns).
        seed: seed of VMAS's random stream.
        **scenario_kwargs: forwarded to the scenario (e.g. ``n_agents=4``).

    Example:
        >>> env = VmasTeamEnv("balance", num_envs=8, max_steps=100, n_agents=3)
        >>> td = env.rollout(5)
        >>> td["agent_0", "observation"].shape
        torch.Size([8, 5, 16])
        >>> td["next", "reward"].shape
        torch.Size([8, 5, 1])
    """

    def __init__(
        self,
        scenario: Any,
        *,
        num_envs: int = _DEFAULTS["num_envs"],
        device: str | torch.device = "cpu",
        max_steps: int | None = _DEFAULTS["max_steps"],
        continuous_actions: bool = _DEFAULTS["continuous_actions"],
        multidiscrete_actions: bool = False,
        team_reward: TeamReward = _DEFAULTS["team_reward"],
        reset_mode: ResetMode = _DEFAULTS["reset_mode"],
        seed: int | None = None,
        **scenario_kwargs: Any,
    ) -> None:
        vmas, environment_cls, self._local_seed = _import_vmas()
        if isinstance(scenario, str) and scenario not in vmas_scenario_names():
            raise unknown_choice("VMAS scenario", scenario, vmas_scenario_names())
        if team_reward not in ("mean", "sum"):
            raise unknown_choice("team_reward", team_reward, ["mean", "sum"])
        if reset_mode not in RESET_MODES:
            raise unknown_choice("reset_mode", reset_mode, RESET_MODES)
        if max_steps is not None and max_steps <= 0:
            raise ConfigError(f"max_steps must be a positive number of steps or None, got {max_steps}")
        if num_envs <= 0:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        if multidiscrete_actions and continuous_actions:
            raise ConfigError("multidiscrete_actions=True needs continuous_actions=False")
        device = resolve_device(device)
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._env = vmas.make_env(
                    scenario,
                    num_envs=num_envs,
                    device=device,
                    continuous_actions=continuous_actions,
                    multidiscrete_actions=multidiscrete_actions,
                    max_steps=None,
                    clamp_actions=True,
                    seed=seed,
                    **scenario_kwargs,
                )
        except (TypeError, AssertionError, ValueError) as err:
            # traced to the keywords its message or failing source line names, where it can be
            named = ", ".join(
                f"env.scenario_kwargs.{k}={scenario_kwargs[k]!r}" for k in kwargs_named_in(err, scenario_kwargs)
            )
            raise ConfigError(
                f"VMAS could not build scenario {scenario!r} with {named or scenario_kwargs}: {failure_reason(err)}. "
                f"Fix: set {named.split('=')[0] if named else 'env.scenario_kwargs'} to a value the scenario accepts"
            ) from err
        for warning in caught:
            if "passed but not used by the scenario" in str(warning.message):
                # VMAS only warns; a misspelt argument would silently train the wrong task
                raise ConfigError(f"VMAS scenario {scenario!r}: {warning.message}")
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        # VMAS keeps one random stream for every Environment in the process; each of
        # our envs swaps its own stream in, so that e.g. evaluation rollouts do not
        # change the training env's randomness.
        self._shared_rng = environment_cls.vmas_random_state
        self._rng = list(self._shared_rng)
        self.scenario_name = scenario if isinstance(scenario, str) else type(scenario).__name__
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.continuous_actions = continuous_actions
        self.multidiscrete_actions = multidiscrete_actions
        self.team_reward = team_reward
        self.agent_names = [agent.name for agent in self._env.agents]
        self.group_map = {name: [name] for name in self.agent_names}
        self._step_count = torch.zeros(num_envs, dtype=torch.long, device=device)
        self._episode_reward = torch.zeros(num_envs, 1, device=device)
        self._twin: TwinResetter | None = None
        self._twin_source = (scenario, continuous_actions, multidiscrete_actions, scenario_kwargs)
        with self._own_rng():
            self._make_specs()
            self.reset_mode = self._choose_reset_mode(reset_mode)

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        saved = list(self._shared_rng)
        self._shared_rng[:] = self._rng
        try:
            yield
        finally:
            self._rng = list(self._shared_rng)
            self._shared_rng[:] = saved

    # ------------------------------------------------------------------ specs
    def _agent_action_spec(self, agent) -> Any:
        space = self._env.get_agent_action_space(agent)
        shape = (self.num_envs, *space.shape)
        if self.continuous_actions:
            low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device).expand(shape)
            high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device).expand(shape)
            return Bounded(low=low, high=high, shape=shape, device=self.device)
        if self.multidiscrete_actions:
            nvec = torch.as_tensor(space.nvec, dtype=torch.long)
            return MultiCategorical(nvec=nvec, shape=(self.num_envs, len(nvec)), device=self.device)
        return Categorical(n=int(space.n), shape=(self.num_envs,), device=self.device)

    def _make_specs(self) -> None:
        observations = self._env.get_from_scenario(
            get_observations=True, get_rewards=False, get_infos=False, get_dones=False
        )[0]
        obs_specs, action_specs, reward_specs = {}, {}, {}
        for agent, obs in zip(self._env.agents, observations, strict=True):
            if not isinstance(obs, torch.Tensor):
                raise ConfigError(
                    f"VMAS scenario {self.scenario_name!r} returns {type(obs).__name__} observations for "
                    f"{agent.name}; only tensor observations are supported"
                )
            obs_specs[agent.name] = Composite(
                observation=Unbounded(shape=obs.shape, device=self.device), shape=(self.num_envs,)
            )
            action_specs[agent.name] = Composite(action=self._agent_action_spec(agent), shape=(self.num_envs,))
            reward_specs[agent.name] = Composite(
                reward=Unbounded(shape=(self.num_envs, 1), device=self.device), shape=(self.num_envs,)
            )
        batch = (self.num_envs,)
        self.observation_spec = Composite(
            obs_specs, episode_reward=Unbounded(shape=(*batch, 1), device=self.device), shape=batch, device=self.device
        )
        self.action_spec = Composite(action_specs, shape=batch, device=self.device)
        self.reward_spec = Composite(
            reward_specs, reward=Unbounded(shape=(*batch, 1), device=self.device), shape=batch, device=self.device
        )
        flag = Categorical(n=2, shape=(*batch, 1), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=batch, device=self.device
        )

    # ------------------------------------------------------------------ reset
    def _choose_reset_mode(self, requested: ResetMode) -> str:
        if requested == "loop" or (requested == "auto" and self.num_envs < 2):
            return "loop"
        candidates = ["twin", "blend"] if requested == "auto" else [requested]
        twin = self._make_twin()
        if twin is not None and reset_draws_global_state(twin.twin, twin.reset_twin):
            candidates = []  # state shared by the whole batch: only VMAS's per-index reset is faithful
        for mode in candidates:
            if mode == "twin":
                self._twin = twin
                if self._twin is None:
                    continue
            try:
                exact = self._probe_partial_reset(mode)
            except Exception:  # a scenario the probe cannot even run: not a candidate
                exact = False
            if exact:
                return mode
            self._twin = None
        if requested != "auto":
            raise ConfigError(
                f"reset_mode={requested!r} does not reset VMAS scenario {self.scenario_name!r} exactly "
                "(other sub-environments moved, or the reset draws state shared by the whole batch); "
                "use reset_mode='auto' or 'loop'"
            )
        warnings.warn(
            f"VMAS scenario {self.scenario_name!r} keeps state that batched resets cannot handle (state outside "
            "per-environment tensors, or drawn once for the whole batch); falling back to VMAS's per-index reset "
            "(slower when episodes end at different times). Pass reset_mode='loop' to silence this.",
            stacklevel=3,
        )
        return "loop"

    def _make_twin(self) -> TwinResetter | None:
        """A few-environment copy of the world to draw fresh states from, or None if it cannot be built."""
        import vmas

        scenario, continuous, multidiscrete, kwargs = self._twin_source
        try:
            source = scenario if isinstance(scenario, str) else type(scenario)()
            twin = vmas.make_env(
                source,
                num_envs=min(self.num_envs, max(16, self.num_envs // 8)),
                device=self.device,
                continuous_actions=continuous,
                multidiscrete_actions=multidiscrete,
                max_steps=None,
                clamp_actions=True,
                **kwargs,
            )
            return TwinResetter(self._env.scenario, twin.scenario, lambda: twin.scenario.env_reset_world_at(None))
        except Exception:
            return None

    def _probe_partial_reset(self, mode: str) -> bool:
        """Resets every other sub-environment of a perturbed world; checks exactly those changed."""
        # (VMAS's own methods seed themselves; nesting its seed context would replay numbers.)
        dtype = torch.float32 if self.continuous_actions else torch.long
        actions = [
            torch.zeros(self.num_envs, self._env.get_agent_action_size(a), device=self.device, dtype=dtype)
            for a in self._env.agents
        ]
        self._env.scenario.env_reset_world_at(None)
        for _ in range(2):
            self._env.step(actions)
        before = self._observations()
        mask = torch.arange(self.num_envs, device=self.device) % 2 == 0
        self._partial_reset(mask, mode)
        after = self._observations()
        if not all(torch.equal(before[n][~mask], after[n][~mask]) for n in self.agent_names):
            return False
        if mode == "twin":
            # the reset rows must hold the twin's fresh states
            twin_obs = [self._twin.twin.observation(agent) for agent in self._twin.twin.world.policy_agents]
            rows = int(mask.sum()) - (int(mask.sum()) - 1) // self._twin.size * self._twin.size
            last = mask.nonzero().flatten()[-rows:]
            return all(torch.equal(after[n][last], o[:rows]) for n, o in zip(self.agent_names, twin_obs, strict=True))
        return True

    def _partial_reset(self, mask: torch.Tensor, mode: str) -> None:
        with self._local_seed(self._env.vmas_random_state):
            if mode == "twin":
                self._twin.reset_rows(mask.nonzero().flatten())
            elif mode == "blend":
                reset_where(self._env.scenario, mask)
            else:
                for index in mask.nonzero().flatten().tolist():
                    self._env.scenario.env_reset_world_at(index)

    def _observations(self) -> dict[str, torch.Tensor]:
        obs = self._env.get_from_scenario(get_observations=True, get_rewards=False, get_infos=False, get_dones=False)[0]
        return dict(zip(self.agent_names, obs, strict=True))

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        with self._own_rng():
            return self._reset_impl(tensordict)

    def _reset_impl(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        if mask is None or mask.all():
            with self._local_seed(self._env.vmas_random_state):
                self._env.scenario.env_reset_world_at(None)
            self._step_count.zero_()
            self._episode_reward.zero_()
        else:
            mask = mask.reshape(self.num_envs)
            self._partial_reset(mask, self.reset_mode)
            self._step_count.masked_fill_(mask, 0)
            self._episode_reward.masked_fill_(mask.unsqueeze(-1), 0.0)
        out = TensorDict({}, batch_size=self.batch_size, device=self.device)
        for name, obs in self._observations().items():
            out.set((name, "observation"), obs)
        out.set("episode_reward", self._episode_reward.clone())
        false = torch.zeros((self.num_envs, 1), dtype=torch.bool, device=self.device)
        out.set("done", false)
        out.set("terminated", false.clone())
        out.set("truncated", false.clone())
        return out

    # ------------------------------------------------------------------- step
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        with self._own_rng():
            return self._step_impl(tensordict)

    def _step_impl(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = []
        for name in self.agent_names:
            action = tensordict.get((name, "action"))
            actions.append(action.unsqueeze(-1) if action.dim() == 1 else action)
        obs, rewards, terminated, _ = self._env.step(actions)
        self._step_count += 1
        out = TensorDict({}, batch_size=self.batch_size, device=self.device)
        for name, agent_obs, reward in zip(self.agent_names, obs, rewards, strict=True):
            out.set((name, "observation"), agent_obs)
            out.set((name, "reward"), reward.unsqueeze(-1))
        stacked = torch.stack(rewards, dim=-1)
        team = (stacked.mean(-1) if self.team_reward == "mean" else stacked.sum(-1)).unsqueeze(-1)
        out.set("reward", team)
        self._episode_reward += team
        out.set("episode_reward", self._episode_reward.clone())
        terminated = terminated.reshape(self.num_envs, 1)
        if self.max_steps is None:
            truncated = torch.zeros_like(terminated)
        else:
            truncated = (self._step_count >= self.max_steps).reshape(self.num_envs, 1)
        out.set("terminated", terminated)
        out.set("truncated", truncated)
        out.set("done", terminated | truncated)
        return out

    # ------------------------------------------------------ run state (resume)
    def _state_modules(self) -> tuple[str, ...]:
        # VMAS loads its scenario files without a package: their classes' module may be ""
        return ("vmas", type(self._env.scenario).__module__ or "")

    def capture_state(self) -> dict[str, Any]:
        """The env's whole running state as checkpoint-safe data (tensors, numbers, strings).

        Holds VMAS's world (every tensor and counter reachable from its ``Environment``,
        see :mod:`harl_torchrl.envs._state`), this env's own VMAS random stream, the step
        counters, the running episode returns and the twin resetter's world and cursor,
        so that :meth:`restore_state` on an env built with the same configuration
        continues bit-identically.

        Example:
            >>> def steps(env, n):  # n steps with zero actions: the observations
            ...     action = env.full_action_spec.zero()
            ...     return torch.stack([env.step(action.clone())["next", "agent_0", "observation"] for _ in range(n)])
            >>> env = VmasTeamEnv("balance", num_envs=4, max_steps=20, n_agents=2, seed=0)
            >>> _ = env.rollout(3)
            >>> saved = env.capture_state()
            >>> expected = steps(env, 5)
            >>> other = VmasTeamEnv("balance", num_envs=4, max_steps=20, n_agents=2, seed=1)
            >>> other.restore_state(saved)
            >>> torch.equal(steps(other, 5), expected)
            True
        """
        twin = None
        if self._twin is not None:
            locations = [path for path, _, _ in self._twin._twin_locations]
            twin = {
                "world": capture_object_state(self._twin.twin, self._state_modules()),
                "cursor": int(self._twin._cursor),
                "fresh": [locations.index(path) for path, _ in self._twin._fresh],
            }
        return {
            "family": type(self).__name__,
            "scenario": self.scenario_name,
            "num_envs": self.num_envs,
            "reset_mode": self.reset_mode,
            "world": capture_object_state(self._env, self._state_modules()),
            "rng": {
                "torch": self._rng[0].clone(),
                "numpy": numpy_legacy_state(self._rng[1]),
                "python": python_random_state(self._rng[2]),
            },
            "step_count": self._step_count.clone(),
            "episode_reward": self._episode_reward.clone(),
            "twin": twin,
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`capture_state` into an env built with the same configuration.

        Raises:
            ValueError: the state comes from another scenario, batch size or reset mode.
        """
        mine = (type(self).__name__, self.scenario_name, self.num_envs, self.reset_mode)
        saved = (state["family"], state["scenario"], state["num_envs"], state["reset_mode"])
        if mine != saved:
            raise ValueError(f"env state of {saved} cannot be restored into {mine} (family, scenario, num_envs, reset)")
        restore_object_state(self._env, state["world"], self._state_modules())
        self._rng = [
            state["rng"]["torch"].clone(),
            numpy_legacy_state_from(state["rng"]["numpy"]),
            python_random_state_from(state["rng"]["python"]),
        ]
        self._step_count = state["step_count"].to(self._step_count.device).clone()
        self._episode_reward = state["episode_reward"].to(self._episode_reward.device).clone()
        if (state["twin"] is None) != (self._twin is None):
            raise ValueError("env state: the saved env and this one differ in having a twin resetter")
        if self._twin is not None:
            restore_object_state(self._twin.twin, state["twin"]["world"], self._state_modules())
            locations = self._twin._twin_locations
            self._twin._fresh = [(locations[i][0], locations[i][1][locations[i][2]]) for i in state["twin"]["fresh"]]
            self._twin._cursor = int(state["twin"]["cursor"])

    def _set_seed(self, seed: int | None) -> None:
        with self._own_rng():
            self._env.seed(seed)

    def close(self, *, raise_if_closed: bool = True) -> None:
        viewer = getattr(self._env, "viewer", None)
        if viewer is not None:
            viewer.close()
        super().close(raise_if_closed=raise_if_closed)


def make_vmas_env(
    scenario: Any,
    *,
    num_envs: int = _DEFAULTS["num_envs"],
    device: str | torch.device = "cpu",
    max_steps: int | None = _DEFAULTS["max_steps"],
    continuous_actions: bool = _DEFAULTS["continuous_actions"],
    team_reward: TeamReward = _DEFAULTS["team_reward"],
    reset_mode: ResetMode = _DEFAULTS["reset_mode"],
    seed: int | None = None,
    **scenario_kwargs: Any,
) -> VmasTeamEnv:
    """Builds a :class:`VmasTeamEnv` (keyword-only arguments, the library's defaults).

    The env writes ``("next", "episode_reward")``, the running sum of the team
    reward since the last reset, so that its value at a ``done`` step is the
    episode's return.

    Args:
        scenario: VMAS scenario name or instance.
        num_envs: number of vectorised sub-environments.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        max_steps: time limit, reported as ``truncated``.
        continuous_actions: continuous (default) or discrete actions.
        team_reward: ``"mean"`` or ``"sum"`` of the agents' rewards.
        reset_mode: see :class:`VmasTeamEnv`.
        seed: seed of VMAS's random stream.
        **scenario_kwargs: scenario arguments, e.g. ``n_agents=4``.

    Example:
        >>> env = make_vmas_env("balance", num_envs=4, max_steps=50, n_agents=2)
        >>> env.rollout(3)["next", "episode_reward"].shape
        torch.Size([4, 3, 1])
    """
    return VmasTeamEnv(
        scenario,
        num_envs=num_envs,
        device=device,
        max_steps=max_steps,
        continuous_actions=continuous_actions,
        team_reward=team_reward,
        reset_mode=reset_mode,
        seed=seed,
        **scenario_kwargs,
    )

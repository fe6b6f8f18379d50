"""JaxMARL SMAX (StarCraft-like battles in JAX) as a batched TorchRL env with heterogeneous-agent conventions.

SMAX is JaxMARL's re-implementation of SMAC-style unit micromanagement (``jaxmarl``
0.2, ``pip install 'harl-torchrl[smax]'``): the allies are our agents, the enemies
follow JaxMARL's built-in heuristic (``HeuristicEnemySMAX``). It is **not** SMAC:
unit dynamics, ranges and the enemy AI differ from StarCraft II, so win rates on
SMAC maps are indicative only.

All copies live in one JAX state (a pytree with a leading batch dimension) and are
stepped by one ``jax.jit(jax.vmap(...))`` call per step (which also prepares the reset
of the copies it finished); the outputs reach torch through DLPack without a copy. One
group per agent, the team reward at the root, the global ``"state"`` (SMAX's world
state) at the root for the centralised critic, each agent's ``action_mask``, battle end
as ``terminated`` and the time limit as ``truncated``; ``"battle_won"`` marks the step on
which the allies won.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from harl_torchrl.config.env import SMAXEnvConfig
from harl_torchrl.envs._batched import done_flag_spec, set_team_specs
from harl_torchrl.errors import ConfigError, MissingDependencyError, failure_reason, unknown_choice
from harl_torchrl.utils.device import resolve_device

SMAX_EXTRA_HINT = "pip install 'harl-torchrl[smax]'"

#: Keyword arguments the env sets itself (``max_steps`` from this env's own, the map from ``scenario``).
_RESERVED_KWARGS = ("max_steps", "scenario", "num_allies", "num_enemies")
#: The keyword defaults, from the ``env`` schema (:class:`~harl_torchrl.config.env.SMAXEnvConfig`):
#: each default is written once, there.
_DEFAULTS = SMAXEnvConfig.defaults()


def import_jaxmarl() -> tuple[Any, Any, Any]:
    """Imports JAX and JaxMARL's SMAX entry points, without JaxMARL's import-time side effects.

    Returns:
        ``(jax, jaxmarl.make, MAP_NAME_TO_SCENARIO)``: the ``jax`` module, JaxMARL's env
        factory and its table of SMAX maps (what :class:`SMAXTeamEnv` builds from, and what
        a benchmark of the raw env needs).

    Raises:
        MissingDependencyError: ``jaxmarl`` (or ``jax``) is not installed (the message names
            the extra to install).
    """
    try:
        with _quiet_jaxmarl_import():
            import jax
            from jaxmarl import make
            from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO
    except ImportError as err:
        raise MissingDependencyError(
            f"SMAX needs the 'jaxmarl' package ({err}); install it with {SMAX_EXTRA_HINT}"
        ) from err
    return jax, make, MAP_NAME_TO_SCENARIO


@contextlib.contextmanager
def _quiet_jaxmarl_import() -> Iterator[None]:
    """Imports JaxMARL without its side effects on the process's output streams.

    On import, jaxmarl 0.2.0 sets ``sys.stdout`` and ``sys.stderr`` back to
    ``sys.__stdout__`` / ``sys.__stderr__`` (around its optional ``brax`` import), which
    would undo any redirection in place (a logger, a notebook, a test's capture), and then
    prints two lines about optional submodules. Both streams are restored afterwards and
    the lines are dropped.
    """
    saved = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    sink = io.StringIO()
    sys.stdout = sys.__stdout__ = sink
    try:
        yield
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved


def smax_map_names() -> list[str]:
    """The SMAX map names :class:`SMAXTeamEnv` accepts (JaxMARL's registered scenarios).

    Raises:
        MissingDependencyError: ``jaxmarl`` is not installed.
    """
    return sorted(import_jaxmarl()[2])


class _Functions:
    """The raw JaxMARL env of one configuration and its jitted, vmapped batch functions.

    Built once per (map, settings) and shared by every env of that configuration, so
    that e.g. the training and the evaluation env compile each function once per batch
    size. Every function takes and returns whole batches: per-copy PRNG keys ``[B, 2]``
    (uint32), the batched SMAX state, and returns ``floats [B, F]`` (every ally's
    observation, then the world state, then every ally's reward), ``masks [B, n, A]``
    (bool) and ``flags [B, 4]`` (done, terminated, truncated, won). ``step`` also returns
    what ``reset_where`` would give for its done copies (keys, state and outputs), so that
    the usual step-then-reset-the-finished-copies costs one call.
    """

    def __init__(self, scenario: str, max_steps: int, kwargs: Mapping[str, Any]) -> None:
        jax, make, maps = import_jaxmarl()
        if scenario not in maps:
            raise unknown_choice("SMAX map", scenario, sorted(maps))
        import jax.numpy as jnp
        from jax import lax

        try:
            # SMAX checks its limit before its step counter moves: max_steps=m gives episodes of m + 1 steps
            raw = make("HeuristicEnemySMAX", scenario=maps[scenario], max_steps=max_steps - 1, **kwargs)
        except (TypeError, ValueError) as err:
            reason = failure_reason(err)
            raise ConfigError(f"JaxMARL could not build SMAX map {scenario!r} with {dict(kwargs)}: {reason}") from err
        if raw.action_type != "discrete":
            raise ConfigError(
                f"SMAX action_type={raw.action_type!r} is not supported: this env takes the discrete actions"
            )
        self.raw = raw
        self.agents = list(raw.agents)
        self.num_allies = int(raw.num_allies)
        self.obs_dim = int(raw.observation_spaces[self.agents[0]].shape[0])
        self.num_actions = int(raw.action_spaces[self.agents[0]].n)
        self.state_dim = int(raw.state_size)
        n_allies, agents = self.num_allies, self.agents

        def strong(tree: Any) -> Any:
            # the state out of reset and out of step differ in weak types: one signature compiles once
            return jax.tree.map(lambda x: lax.convert_element_type(x, x.dtype), tree)

        def split(keys: Any) -> tuple[Any, Any]:
            pairs = jax.vmap(jax.random.split)(keys)
            return pairs[:, 0], pairs[:, 1]

        def outputs(obs: Mapping[str, Any], state: Any, rewards: Mapping[str, Any] | None, done: Any) -> tuple:
            batch = done.shape[0]
            masks = jax.vmap(raw.get_avail_actions)(state)
            alive = state.state.unit_alive
            allies_out = ~alive[:, :n_allies].any(-1)
            enemies_out = ~alive[:, n_allies:].any(-1)
            over = allies_out | enemies_out
            reward = [rewards[a][:, None] if rewards is not None else jnp.zeros((batch, 1)) for a in agents]
            floats = jnp.concatenate([obs[a] for a in agents] + [obs["world_state"], *reward], axis=-1)
            flags = jnp.stack([done, over & done, done & ~over, done & enemies_out & ~allies_out], axis=-1)
            return floats.astype(jnp.float32), jnp.stack([masks[a] for a in agents], axis=1).astype(bool), flags

        def reset(keys: Any, state: Any, mask: Any) -> tuple:
            rest, reset_keys = split(keys)
            obs, fresh = jax.vmap(raw.reset)(reset_keys)
            fresh = strong(fresh)
            if state is not None:  # only the masked copies start anew (and draw from their streams)

                def where(new: Any, old: Any) -> Any:
                    return jnp.where(mask.reshape(-1, *([1] * (new.ndim - 1))), new, old)

                fresh = jax.tree.map(where, fresh, state)
                rest = jnp.where(mask[:, None], rest, keys)
                obs = jax.vmap(raw.get_obs)(fresh)
                obs["world_state"] = jax.vmap(raw.get_world_state)(fresh)
            return (rest, fresh, *outputs(obs, fresh, None, jnp.zeros(mask.shape, dtype=bool)))

        def step(keys: Any, state: Any, actions: Any) -> tuple:
            rest, step_keys = split(keys)
            per_agent = {a: actions[:, i] for i, a in enumerate(agents)}
            obs, state, rewards, dones, _ = jax.vmap(raw.step_env)(step_keys, state, per_agent)
            state = strong(state)
            done = dones["__all__"]
            # and, in the same call, the reset of the finished copies that TorchRL asks for next
            return (rest, state, *outputs(obs, state, rewards, done), *reset(rest, state, done))

        self.reset_all = jax.jit(lambda keys: reset(keys, None, jnp.zeros(keys.shape[:1], dtype=bool)))
        self.reset_where = jax.jit(reset)
        self.step = jax.jit(step)
        self.seed_keys = jax.jit(jax.vmap(jax.random.PRNGKey))
        self.state_structure = jax.eval_shape(lambda key: strong(raw.reset(key)[1]), jax.random.PRNGKey(0))


@functools.lru_cache(maxsize=16)
def _cached_functions(scenario: str, max_steps: int, kwargs: tuple[tuple[str, Any], ...]) -> _Functions:
    return _Functions(scenario, max_steps, dict(kwargs))


def _functions(scenario: str, max_steps: int, kwargs: Mapping[str, Any]) -> _Functions:
    simple = all(isinstance(v, bool | int | float | str | type(None)) for v in kwargs.values())
    if simple:  # the common case: settings such as won_battle_bonus, enemy_shoots
        return _cached_functions(scenario, max_steps, tuple(sorted(kwargs.items())))
    return _Functions(scenario, max_steps, kwargs)


def _to_torch(array: Any) -> torch.Tensor:
    """A JAX array as a torch tensor on the CPU, sharing its memory (DLPack)."""
    return torch.from_dlpack(array)


class SMAXTeamEnv(EnvBase):
    """``num_envs`` copies of a JaxMARL SMAX map as one batched TorchRL env (one jitted, vmapped call per step).

    Data layout (``B = num_envs``, ``A`` = ally actions = 5 moves/stop + one attack per enemy)::

        (agent, "observation")          float32 [B, obs_dim]    SMAX's unit-list observation
        (agent, "action_mask")          bool    [B, A]          the actions available now
        (agent, "action")               int64   [B]             0-3 move, 4 stop, 5 + j attack enemy j
        "state"                         float32 [B, state_dim]  SMAX's world state (centralised critic)
        "battle_won"                    bool    [B, 1]          the allies won on this step
        ("next", agent, "reward")       float32 [B, 1]  SMAX's reward for the agent (the team's)
        ("next", "reward")              float32 [B, 1]  team reward (every ally gets the same)
        ("next", "terminated")          bool    [B, 1]  the battle is over (a team is wiped out)
        ("next", "truncated")           bool    [B, 1]  time limit reached, battle not over
        ("next", "done")                bool    [B, 1]  terminated | truncated
        ("next", "episode_reward")      float32 [B, 1]  team return of the episode so far

    Agents are JaxMARL's allies ``ally_0 ... ally_{n-1}``, each its own group (same sizes
    on every map, so parameters can be shared). The team reward per step is the enemy
    health lost divided by the number of enemies, plus ``won_battle_bonus`` (1) on a
    win: an episode's return is at most about 2. Dead allies stay in the batch and can
    only stop (their mask says so). Unavailable actions are not refused: SMAX ignores
    an attack it cannot make, and ``rand_action`` samples any action; our actors read
    ``action_mask`` and never sample one.

    Time limit: ``max_steps`` is the episode length in steps. SMAX's own ``max_steps=m``
    ends episodes after ``m + 1`` steps (it checks the limit before its counter moves),
    so this env builds SMAX with ``max_steps - 1``; the default 101 is SMAX's default.
    A battle decided on the last step is ``terminated``, not ``truncated``.

    Seeding: copy ``i`` draws from its own JAX key stream, ``PRNGKey(seed + i)`` after
    :meth:`set_seed` (or the constructor's ``seed``); resets and steps of one copy never
    move another copy's stream, so a copy plays the same episodes whatever the batch.

    Args:
        scenario: an SMAX map name (see :func:`smax_map_names`), e.g. ``"3m"``,
            ``"3s5z"``, ``"smacv2_5_units"``.
        num_envs: number of copies.
        max_steps: episode length in steps, reported as truncation.
        seed: copy ``i`` gets ``seed + i``; ``None`` draws a seed from torch's generator.
        device: where the output tensors live (SMAX itself runs on JAX's CPU device).
        **env_kwargs: forwarded to ``jaxmarl.make("HeuristicEnemySMAX", ...)``, e.g.
            ``won_battle_bonus``, ``enemy_shoots``, ``attack_mode``, ``observation_type``,
            ``walls_cause_death``, ``see_enemy_actions``.

    Raises:
        ConfigError: unknown map, a keyword SMAX does not take or that this env sets
            itself, continuous actions, or a bad ``num_envs`` / ``max_steps``.
        MissingDependencyError: ``jaxmarl`` is not installed.

    Example:
        >>> import importlib.util, pytest
        >>> _ = importlib.util.find_spec("jaxmarl") or pytest.skip("needs jaxmarl")
        >>> env = SMAXTeamEnv("3m", num_envs=2, seed=0)
        >>> td = env.rollout(2)
        >>> td["ally_0", "observation"].shape, td["ally_0", "action_mask"].shape, td["state"].shape
        (torch.Size([2, 2, 75]), torch.Size([2, 2, 8]), torch.Size([2, 2, 72]))
    """

    def __init__(
        self,
        scenario: str = "3m",
        *,
        num_envs: int = _DEFAULTS["num_envs"],
        max_steps: int = _DEFAULTS["max_steps"],
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **env_kwargs: Any,
    ) -> None:
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs <= 0:
            raise ConfigError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 2:
            raise ConfigError(f"max_steps must be an integer >= 2 (SMAX's episodes last >= 2 steps), got {max_steps!r}")
        reserved = sorted(set(env_kwargs) & set(_RESERVED_KWARGS))
        if reserved:
            raise ConfigError(
                f"SMAX env_kwargs {reserved} are set by the env itself; use env.scenario for the map and "
                "env.max_steps for the episode length"
            )
        fns = _functions(scenario, max_steps, env_kwargs)
        import jax.numpy as jnp

        device = resolve_device(device)
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self._fns = fns
        self._jnp = jnp
        self.scenario_name = scenario
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.env_kwargs = dict(env_kwargs)
        self.agent_names = list(self._fns.agents)
        self.group_map = {name: [name] for name in self.agent_names}
        self._on_cpu = torch.device(self.device).type == "cpu"
        self._keys: Any = None
        self._state: Any = None  # the batched SMAX state; None until the first reset
        self._pending: tuple | None = None  # the last step's reset of its done copies, and their mask
        self._episode_reward = torch.zeros(num_envs, 1)
        self._make_specs()
        self._set_seed(seed)

    # ------------------------------------------------------------------ specs
    def _make_specs(self) -> None:
        batch = (self.num_envs,)
        device = self.device
        fns = self._fns
        obs_specs, action_specs, reward_specs = {}, {}, {}
        for name in self.agent_names:
            obs_specs[name] = Composite(
                observation=Unbounded(shape=(*batch, fns.obs_dim), dtype=torch.float32, device=device),
                action_mask=Binary(n=fns.num_actions, shape=(*batch, fns.num_actions), dtype=torch.bool, device=device),
                shape=batch,
            )
            action_specs[name] = Composite(
                action=Categorical(n=fns.num_actions, shape=batch, dtype=torch.int64, device=device), shape=batch
            )
            reward_specs[name] = Composite(
                reward=Unbounded(shape=(*batch, 1), dtype=torch.float32, device=device), shape=batch
            )
        set_team_specs(
            self,
            obs_specs,
            action_specs,
            reward_specs,
            state_dim=fns.state_dim,
            battle_won=done_flag_spec(batch, device),
        )

    @property
    def obs_dim(self) -> int:
        """Each ally's observation size."""
        return self._fns.obs_dim

    @property
    def num_actions(self) -> int:
        """Each ally's number of discrete actions (5 + number of enemies)."""
        return self._fns.num_actions

    @property
    def raw_env(self) -> Any:
        """The JaxMARL ``HeuristicEnemySMAX`` env (one copy; this env vmaps it)."""
        return self._fns.raw

    # ------------------------------------------------------------- TorchRL
    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        seeds = self._jnp.arange(self.num_envs, dtype=self._jnp.uint32) + np.uint32(int(seed) % 2**32)
        self._keys = self._fns.seed_keys(seeds)
        self._pending = None  # computed from the old streams

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        pending, self._pending = self._pending, None
        if pending is not None and mask is not None and torch.equal(mask.reshape(-1).cpu(), pending[-1]):
            # the finished copies of the last step, reset inside that step's call
            self._keys, self._state, floats, masks, flags = pending[:-1]
            rows = pending[-1]
            self._episode_reward = self._episode_reward.masked_fill(rows.unsqueeze(-1), 0.0)
        elif mask is None or self._state is None or bool(mask.all()):
            self._keys, self._state, floats, masks, flags = self._fns.reset_all(self._keys)
            self._episode_reward = torch.zeros(self.num_envs, 1)
        else:
            rows = mask.reshape(self.num_envs).cpu()
            self._keys, self._state, floats, masks, flags = self._fns.reset_where(self._keys, self._state, rows.numpy())
            self._episode_reward = self._episode_reward.masked_fill(rows.unsqueeze(-1), 0.0)
        return self._output(floats, masks, flags, rewards=False)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = torch.stack([tensordict.get((name, "action")) for name in self.agent_names], dim=-1)
        actions = actions.reshape(self.num_envs, len(self.agent_names))
        if not self._on_cpu:
            actions = actions.cpu()
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.num_actions):
            raise ValueError(f"SMAX actions must lie in [0, {self.num_actions}), got {actions.tolist()}")
        self._keys, self._state, floats, masks, flags, *after = self._fns.step(
            self._keys, self._state, actions.numpy().astype(np.int32)
        )
        out = self._output(floats, masks, flags, rewards=True)
        self._pending = (*after, out.get("done").reshape(-1))
        return out

    def _output(self, floats: Any, masks: Any, flags: Any, *, rewards: bool) -> TensorDictBase:
        """The step's TensorDict from the three JAX output arrays (torch views of them, no copy)."""
        floats, masks, flags = _to_torch(floats), _to_torch(masks), _to_torch(flags)
        n, dim = len(self.agent_names), self.obs_dim
        batch = self.batch_size
        cpu = torch.device("cpu")
        state_end = n * dim + self._fns.state_dim
        source: dict[str, Any] = {}
        for k, name in enumerate(self.agent_names):
            entries = {"observation": floats[:, k * dim : (k + 1) * dim], "action_mask": masks[:, k]}
            if rewards:
                entries["reward"] = floats[:, state_end + k : state_end + k + 1]
            source[name] = TensorDict._new_unsafe(entries, batch_size=batch, device=cpu)
        source["state"] = floats[:, n * dim : state_end]
        if rewards:
            team = floats[:, state_end : state_end + 1]  # every ally's reward is the team's
            source["reward"] = team
            self._episode_reward = self._episode_reward + team
        source["episode_reward"] = self._episode_reward.clone()  # TorchRL may write into what it is given
        source["done"] = flags[:, 0:1]
        source["terminated"] = flags[:, 1:2]
        source["truncated"] = flags[:, 2:3]
        source["battle_won"] = flags[:, 3:4]
        out = TensorDict._new_unsafe(source, batch_size=batch, device=cpu)
        if not self._on_cpu:
            out = out.to(self.device, non_blocking=True)
        return out

    # ------------------------------------------------------ run state (resume)
    def capture_state(self) -> dict[str, Any]:
        """The env's whole running state as checkpoint-safe tensors: every copy's SMAX state and key stream.

        The JAX state is a pytree of arrays; its leaves are copied to torch tensors (in
        the pytree's flattening order), with the per-copy PRNG keys and the running
        episode returns, so that :meth:`restore_state` on an env built with the same
        configuration continues bit-identically.
        """
        import jax

        leaves = None
        if self._state is not None:
            leaves = [torch.from_numpy(np.array(leaf)) for leaf in jax.tree.leaves(self._state)]
        return {
            "family": type(self).__name__,
            "scenario": self.scenario_name,
            "num_envs": self.num_envs,
            "max_steps": self.max_steps,
            "keys": torch.from_numpy(np.array(self._keys).astype(np.int64)),
            "state": leaves,
            "episode_reward": self._episode_reward.clone(),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`capture_state` into an env built with the same configuration.

        Raises:
            ValueError: the state comes from another map, batch size or episode length,
                or its arrays do not fit this env's SMAX state.
        """
        import jax

        mine = (type(self).__name__, self.scenario_name, self.num_envs, self.max_steps)
        saved = (state["family"], state["scenario"], state["num_envs"], state["max_steps"])
        if mine != saved:
            raise ValueError(f"env state of {saved} cannot be restored into {mine} (family, map, num_envs, max_steps)")
        jnp = self._jnp
        if state["state"] is None:
            self._state = None
        else:
            structure = self._fns.state_structure
            expected = jax.tree.leaves(structure)
            if len(expected) != len(state["state"]):
                raise ValueError(f"env state has {len(state['state'])} arrays, this SMAX state has {len(expected)}")
            leaves = []
            for spec, saved_leaf in zip(expected, state["state"], strict=True):
                array = saved_leaf.numpy()
                if array.shape != (self.num_envs, *spec.shape) or array.dtype != spec.dtype:
                    raise ValueError(
                        f"env state array {array.dtype}{list(array.shape)} does not fit {spec.dtype}{list(spec.shape)}"
                    )
                leaves.append(jnp.asarray(array))
            self._state = jax.tree.unflatten(jax.tree.structure(structure), leaves)
        self._keys = jnp.asarray(state["keys"].numpy().astype(np.uint32))
        self._episode_reward = state["episode_reward"].clone()
        self._pending = None


def make_smax_env(
    scenario: str,
    *,
    num_envs: int = _DEFAULTS["num_envs"],
    max_steps: int = _DEFAULTS["max_steps"],
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **env_kwargs: Any,
) -> SMAXTeamEnv:
    """Builds an :class:`SMAXTeamEnv` (keyword-only arguments, the library's defaults).

    Args:
        scenario: SMAX map name, e.g. ``"3m"``, ``"2s3z"``, ``"smacv2_5_units"``.
        num_envs: number of copies, stepped in one jitted, vmapped call.
        max_steps: episode length in steps (101: SMAX's default), reported as ``truncated``.
        seed: copy ``i`` gets ``seed + i``.
        device: where the output tensors live.
        **env_kwargs: SMAX settings, e.g. ``won_battle_bonus=1.0``.
    """
    return SMAXTeamEnv(scenario, num_envs=num_envs, max_steps=max_steps, seed=seed, device=device, **env_kwargs)

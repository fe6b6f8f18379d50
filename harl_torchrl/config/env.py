"""Schemas of the ``env`` group, one per env family (VMAS, PettingZoo MPE, Multi-Agent MuJoCo, SMAX, football).

Each schema holds its family's defaults (the one place they are written: the recipe
YAMLs under ``harl_torchrl/conf/env/`` set only the scenario and what differs, and the
env classes take their keyword defaults from here) and builds its env
(:meth:`~harl_torchrl.config.EnvConfig.make`, importing the env module only then). The
scenario's own keyword arguments (``scenario_kwargs``, ``env_kwargs``) stay a free-form
mapping: their names depend on the scenario, so they are checked in ``validate`` against what
the simulator itself reads (:mod:`harl_torchrl.config.simulator_kwargs`: a VMAS scenario's
``make_world`` defaults, the MPE and Gymnasium MuJoCo constructors' signatures).
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import MISSING

from harl_torchrl.config.base import EnvConfig, choices
from harl_torchrl.config.registry import register_env
from harl_torchrl.config.simulator_kwargs import (
    check_simulator_kwargs,
    mamujoco_env_defaults,
    mpe_scenario_defaults,
    vmas_count_key,
    vmas_scenario_defaults,
)
from harl_torchrl.errors import ConfigError

if TYPE_CHECKING:
    from torchrl.envs import EnvBase

TeamReward = choices("TeamReward", "mean", "sum")
FootballTeamReward = choices("FootballTeamReward", "mean", "sum", "first")
ResetMode = choices("ResetMode", "auto", "twin", "blend", "loop")
ObsMode = choices("ObsMode", "local", "global")


def _check_agent_count(kwargs: dict[str, Any], kwargs_name: str, count_key: str) -> None:
    """A scenario keyword that counts agents must be an integer >= 1."""
    if count_key not in kwargs:
        return
    value = kwargs[count_key]
    key = f"env.{kwargs_name}.{count_key}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{key} must be an integer (the number of agents), got {value!r}. Fix: set {key}=3, for example"
        )
    if value < 1:
        raise ConfigError(
            f"{key} must be >= 1, got {value}: a multi-agent scenario needs agents to act (most need 2 or more). "
            f"Fix: set {key} to the number of agents, e.g. {key}=3"
        )


@register_env
@dataclass
class VmasEnvConfig(EnvConfig):
    """VMAS (``harl_torchrl/conf/env/vmas/*.yaml``): any VMAS scenario, vectorised in torch.

    Attributes:
        continuous_actions: continuous (boxes) or discrete actions.
        team_reward: the root team reward, ``mean`` or ``sum`` of the agents' rewards.
        reset_mode: how finished sub-environments are reset: ``auto``, ``twin``,
            ``blend`` or ``loop`` (see :mod:`harl_torchrl.envs.vmas`).
        scenario_kwargs: the scenario's own keyword arguments, e.g. ``n_agents``.
    """

    family: str = "vmas"
    continuous_actions: bool = True
    team_reward: TeamReward = TeamReward.mean  # type: ignore[valid-type]
    reset_mode: ResetMode = ResetMode.auto  # type: ignore[valid-type]
    scenario_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Also ``scenario_kwargs.n_agents`` >= 1, and each keyword against the scenario's own defaults."""
        super().validate()
        _check_agent_count(self.scenario_kwargs, "scenario_kwargs", "n_agents")
        if self.scenario_kwargs:  # VMAS is imported only when there is something to check
            check_simulator_kwargs(
                self.scenario_kwargs,
                vmas_scenario_defaults(str(self.scenario)),
                key_prefix="env.scenario_kwargs",
                owner=f"VMAS scenario {self.scenario!r}",
                int_only=vmas_count_key,
            )

    def make(self, *, num_envs: int | None = None, seed: int | None = None, device: Any = "cpu") -> "EnvBase":
        """:func:`~harl_torchrl.envs.make_vmas_env` with these settings (see :meth:`EnvConfig.make`).

        Example:
            >>> env = VmasEnvConfig(scenario="balance", num_envs=2, scenario_kwargs={"n_agents": 2}).make(seed=0)
            >>> env.batch_size, sorted(env.group_map)
            (torch.Size([2]), ['agent_0', 'agent_1'])
        """
        from harl_torchrl.envs.vmas import make_vmas_env

        return make_vmas_env(
            self.scenario,
            num_envs=self.num_envs if num_envs is None else num_envs,
            device=device,
            max_steps=self.max_steps,
            continuous_actions=self.continuous_actions,
            team_reward=self.team_reward,
            reset_mode=self.reset_mode,
            seed=seed,
            **dict(self.scenario_kwargs),
        )


@register_env
@dataclass
class PettingZooEnvConfig(EnvConfig):
    """PettingZoo MPE through ``mpe2`` (``harl_torchrl/conf/env/pettingzoo/*.yaml``).

    Attributes:
        max_steps: episode length (MPE's ``max_cycles``), reported as truncation.
        continuous_actions: ``[0, 1]`` boxes (actions are clipped to them), or
            ``Discrete(5)`` moves.
        scenario_kwargs: the scenario's own keyword arguments, e.g. ``N``, ``local_ratio``.
    """

    family: str = "pettingzoo"
    max_steps: int | None = 25
    continuous_actions: bool = True
    scenario_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Also ``scenario_kwargs.N`` >= 1, and each keyword against the scenario's ``raw_env`` signature."""
        super().validate()
        _check_agent_count(self.scenario_kwargs, "scenario_kwargs", "N")
        if self.scenario_kwargs:
            check_simulator_kwargs(
                self.scenario_kwargs,
                mpe_scenario_defaults(str(self.scenario)),
                key_prefix="env.scenario_kwargs",
                owner=f"MPE scenario {self.scenario!r}",
                reserved={"max_cycles": "env.max_steps", "continuous_actions": "env.continuous_actions"},
            )

    def make(self, *, num_envs: int | None = None, seed: int | None = None, device: Any = "cpu") -> "EnvBase":
        """:func:`~harl_torchrl.envs.make_pettingzoo_env` with these settings (see :meth:`EnvConfig.make`).

        Example:
            >>> env = PettingZooEnvConfig(scenario="simple_spread", scenario_kwargs={"N": 2}).make(num_envs=2)
            >>> env.batch_size, env.max_steps
            (torch.Size([2]), 25)
        """
        from harl_torchrl.envs.pettingzoo import make_pettingzoo_env

        return make_pettingzoo_env(
            self.scenario,
            num_envs=self.num_envs if num_envs is None else num_envs,
            max_steps=self.max_steps,
            continuous_actions=self.continuous_actions,
            seed=seed,
            device=device,
            **dict(self.scenario_kwargs),
        )


@register_env
@dataclass
class MaMuJoCoEnvConfig(EnvConfig):
    """Multi-Agent MuJoCo (``harl_torchrl/conf/env/mamujoco/*.yaml``).

    Attributes:
        agent_conf: how joints are split among agents, e.g. ``"2x3"`` (required).
        obs_mode: ``local`` (MaMuJoCo's per-agent observations) or ``global`` (the
            reference HARL setting of its published returns: the standardised state and a
            one-hot agent id).
        agent_obsk: local mode: joints observed up to this graph distance (>= 0).
        clip_actions: clip actions to the box (``false``: raw actions reach the env, as
            the reference's do, and the control cost is charged on them).
        normalize_actions: act in ``[-1, 1]``, mapped onto each actuator's range
            (the reference's ``NormalizedActions``; Humanoid's range is ``[-0.4, 0.4]``).
        zero_contact_forces: global mode: the state's contact forces set to 0, as the
            reference's ``-v2`` robots reported them (Humanoid, Ant).
        env_kwargs: forwarded to the Gymnasium MuJoCo env, e.g. ``ctrl_cost_weight``.
        continuous_actions: class constant ``True``: MuJoCo's actuators take boxes (what
            run-level checks, e.g. of discrete-only algorithms, read).
    """

    continuous_actions: ClassVar[bool] = True
    family: str = "mamujoco"
    num_envs: int = 8
    max_steps: int | None = 1000
    agent_conf: str = MISSING
    obs_mode: ObsMode = ObsMode.local  # type: ignore[valid-type]
    agent_obsk: int = 1
    clip_actions: bool = True
    normalize_actions: bool = False
    zero_contact_forces: bool = False
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Also ``agent_obsk`` >= 0, and ``env_kwargs`` against the Gymnasium MuJoCo env's signature."""
        super().validate()
        self.require_non_negative("agent_obsk")
        if self.env_kwargs:
            check_simulator_kwargs(
                self.env_kwargs,
                mamujoco_env_defaults(str(self.scenario)),
                key_prefix="env.env_kwargs",
                owner=f"Gymnasium's {self.scenario}-v5 (through MaMuJoCo)",
                reserved={
                    "agent_obsk": "env.agent_obsk",
                    "agent_factorization": "env.agent_conf",
                    "agent_conf": "env.agent_conf",
                    "max_episode_steps": "env.max_steps",
                },
            )

    def make(self, *, num_envs: int | None = None, seed: int | None = None, device: Any = "cpu") -> "EnvBase":
        """:func:`~harl_torchrl.envs.make_mamujoco_env` with these settings (see :meth:`EnvConfig.make`).

        Example:
            >>> env = MaMuJoCoEnvConfig(scenario="HalfCheetah", agent_conf="2x3").make(num_envs=1)
            >>> env.batch_size, sorted(env.group_map)
            (torch.Size([1]), ['agent_0', 'agent_1'])
        """
        from harl_torchrl.envs.mamujoco import make_mamujoco_env

        return make_mamujoco_env(
            self.scenario,
            str(self.agent_conf),
            num_envs=self.num_envs if num_envs is None else num_envs,
            max_steps=self.max_steps,
            obs_mode=self.obs_mode,
            agent_obsk=self.agent_obsk,
            clip_actions=self.clip_actions,
            normalize_actions=self.normalize_actions,
            zero_contact_forces=self.zero_contact_forces,
            seed=seed,
            device=device,
            **dict(self.env_kwargs),
        )


@register_env
@dataclass
class SMAXEnvConfig(EnvConfig):
    """JaxMARL SMAX battles (``harl_torchrl/conf/env/smax/*.yaml``), all copies in one jitted, vmapped call.

    Attributes:
        num_envs: copies, all stepped in one jitted, vmapped JAX call (64, with
            ``collector.rollout_steps=100``: 6,400 frames per batch).
        max_steps: episode length in steps, reported as truncation (101: SMAX's default,
            its ``max_steps=100``).
        continuous_actions: always ``false``: the env takes SMAX's discrete actions (the key
            exists so that run-level checks, e.g. of discrete-only algorithms, read it).
        env_kwargs: forwarded to ``jaxmarl.make("HeuristicEnemySMAX", ...)``, e.g.
            ``won_battle_bonus``, ``enemy_shoots``, ``attack_mode``.
    """

    family: str = "smax"
    num_envs: int = 64
    max_steps: int | None = 101
    continuous_actions: bool = False
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Also ``max_steps`` >= 2 (SMAX episodes always have a time limit); no env setting in ``env_kwargs``."""
        super().validate()
        if self.max_steps is None or self.max_steps < 2:
            raise self.fail("max_steps", "must be >= 2 (SMAX episodes always have a time limit)")
        if self.continuous_actions:
            raise self.fail("continuous_actions", "must be false (the env takes SMAX's discrete actions)")
        reserved = sorted({"max_steps", "scenario", "num_allies", "num_enemies"} & set(self.env_kwargs))
        if reserved:
            raise ConfigError(
                f"env.env_kwargs {reserved} are set by the env itself. Fix: use env.scenario for the map and "
                "env.max_steps for the episode length"
            )

    def make(self, *, num_envs: int | None = None, seed: int | None = None, device: Any = "cpu") -> "EnvBase":
        """:func:`~harl_torchrl.envs.make_smax_env` with these settings (see :meth:`EnvConfig.make`).

        Example:
            >>> SMAXEnvConfig(scenario="3m").make(num_envs=4, seed=0).batch_size  # doctest: +SKIP
            torch.Size([4])
        """
        from harl_torchrl.envs.smax import make_smax_env

        return make_smax_env(
            self.scenario,
            num_envs=self.num_envs if num_envs is None else num_envs,
            max_steps=self.max_steps,
            seed=seed,
            device=device,
            **dict(self.env_kwargs),
        )


@register_env
@dataclass
class FootballEnvConfig(EnvConfig):
    """Google Research Football academy scenarios (``harl_torchrl/conf/env/football/*.yaml``).

    Attributes:
        num_envs: copies in each collecting process (about 330 MB each); with
            ``collector.workers=W`` each of the W processes steps ``num_envs / W`` of them.
        max_steps: time limit in steps, at most the scenario's (``null``: the scenario's,
            401 for the academies: ``game_duration`` 400 + 1).
        continuous_actions: always ``false`` (19 discrete actions per player).
        checkpoint_reward: gfootball's distance-to-goal shaping on top of the +1 / -1 per
            goal (its ``scoring,checkpoints`` rewards, the reference's choice); ``false``:
            ``scoring`` only.
        team_reward: the root team reward from the agents' rewards: ``mean``, ``sum``, or
            ``first`` (agent 0's, what the reference HARL trains on).
    """

    family: str = "football"
    num_envs: int = 4
    max_steps: int | None = 401
    continuous_actions: bool = False
    checkpoint_reward: bool = True
    team_reward: FootballTeamReward = FootballTeamReward.mean  # type: ignore[valid-type]

    def validate(self) -> None:
        """Also discrete actions only."""
        super().validate()
        if self.continuous_actions:
            raise self.fail("continuous_actions", "must be false (gfootball's players take 19 discrete actions)")

    def make(self, *, num_envs: int | None = None, seed: int | None = None, device: Any = "cpu") -> "EnvBase":
        """:func:`~harl_torchrl.envs.make_football_env` with these settings (see :meth:`EnvConfig.make`).

        Example:
            >>> FootballEnvConfig(scenario="academy_3_vs_1_with_keeper").make(num_envs=1)  # doctest: +SKIP
            FootballTeamEnv(...)
        """
        from harl_torchrl.envs.football import make_football_env

        return make_football_env(
            self.scenario,
            num_envs=self.num_envs if num_envs is None else num_envs,
            max_steps=self.max_steps,
            checkpoint_reward=self.checkpoint_reward,
            team_reward=self.team_reward,
            seed=seed,
            device=device,
        )

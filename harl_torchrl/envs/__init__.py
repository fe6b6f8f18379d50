"""Environment factories with the library's conventions (one group per agent, team signals at the root)."""

from harl_torchrl.envs.factory import make_env
from harl_torchrl.envs.vmas import VmasTeamEnv, make_vmas_env, vmas_scenario_names

__all__ = ["VmasTeamEnv", "make_env", "make_vmas_env", "vmas_scenario_names"]

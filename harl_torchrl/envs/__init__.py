"""Environment factories with the library's conventions (one group per agent, team signals at the root).

The PettingZoo MPE, Multi-Agent MuJoCo, SMAX and football families need optional packages
(``pip install 'harl-torchrl[pettingzoo]'`` / ``'harl-torchrl[mujoco]'`` /
``'harl-torchrl[smax]'``; ``bash recipes/benchmarks/install_football.sh`` for gfootball); their
classes import those packages only when an env is built.
"""

from harl_torchrl.envs.factory import make_env
from harl_torchrl.envs.football import FootballTeamEnv, football_scenario_names, make_football_env
from harl_torchrl.envs.mamujoco import MAMUJOCO_TASKS, MaMuJoCoTeamEnv, make_mamujoco_env, mamujoco_task_names
from harl_torchrl.envs.pettingzoo import MPETeamEnv, make_pettingzoo_env, mpe_scenario_names
from harl_torchrl.envs.smax import SMAXTeamEnv, make_smax_env, smax_map_names
from harl_torchrl.envs.vmas import VmasTeamEnv, make_vmas_env, vmas_scenario_names

__all__ = [
    "MAMUJOCO_TASKS",
    "FootballTeamEnv",
    "MPETeamEnv",
    "MaMuJoCoTeamEnv",
    "SMAXTeamEnv",
    "VmasTeamEnv",
    "football_scenario_names",
    "make_env",
    "make_football_env",
    "make_mamujoco_env",
    "make_pettingzoo_env",
    "make_smax_env",
    "make_vmas_env",
    "mamujoco_task_names",
    "mpe_scenario_names",
    "smax_map_names",
    "vmas_scenario_names",
]

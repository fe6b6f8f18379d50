"""Environment factories with the library's conventions (one group per agent, team signals at the root).

The PettingZoo MPE and Multi-Agent MuJoCo families need optional packages
(``pip install 'harl-torchrl[pettingzoo]'`` / ``'harl-torchrl[mujoco]'``); their
classes import those packages only when an env is built.
"""

from harl_torchrl.envs.factory import make_env
from harl_torchrl.envs.mamujoco import MAMUJOCO_TASKS, MaMuJoCoTeamEnv, make_mamujoco_env, mamujoco_task_names
from harl_torchrl.envs.pettingzoo import MPETeamEnv, make_pettingzoo_env, mpe_scenario_names
from harl_torchrl.envs.vmas import VmasTeamEnv, make_vmas_env, vmas_scenario_names

__all__ = [
    "MAMUJOCO_TASKS",
    "MPETeamEnv",
    "MaMuJoCoTeamEnv",
    "VmasTeamEnv",
    "make_env",
    "make_mamujoco_env",
    "make_pettingzoo_env",
    "make_vmas_env",
    "mamujoco_task_names",
    "mpe_scenario_names",
    "vmas_scenario_names",
]

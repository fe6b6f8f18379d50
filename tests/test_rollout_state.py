"""The collector's carried state survives a resume, trajectory ids included."""

import pytest
import torch
from torchrl.collectors import Collector

from harl_torchrl.envs import make_env
from harl_torchrl.rollout_state import capture_rollout_state, restore_rollout_state

# navigation ends episodes at the time limit only (a random policy does not reach every goal in 3
# steps): the trajectory ids then depend on the step count alone, not on the actions
CFG = {"family": "vmas", "scenario": "navigation", "num_envs": 4, "max_steps": 3, "scenario_kwargs": {"n_agents": 2}}


def _collector(env):
    return Collector(env, None, frames_per_batch=16, total_frames=-1, auto_register_policy_transforms=False)


def test_new_episodes_after_a_resume_get_the_ids_an_uninterrupted_run_gives():
    torch.manual_seed(0)
    env = make_env(CFG, seed=0)
    collector = _collector(env)
    batches = iter(collector)
    next(batches)
    next(batches)
    state = capture_rollout_state(collector, {"train": env})
    expected = next(batches).get(("collector", "traj_ids"))

    other_env = make_env(CFG, seed=0)
    other = _collector(other_env)
    assert restore_rollout_state(other, {"train": other_env}, state) == ["train", "carrier"]
    resumed = next(iter(other)).get(("collector", "traj_ids"))
    assert int(state["traj_pool"]["traj_id"]) > 4  # ids were drawn past the first reset's
    assert torch.equal(resumed, expected)


def test_a_checkpoint_without_the_pool_still_restores():
    env = make_env(CFG, seed=0)
    collector = _collector(env)
    next(iter(collector))
    state = capture_rollout_state(collector, {"train": env})
    state.pop("traj_pool")
    assert restore_rollout_state(_collector(env), {"train": env}, state) == ["train", "carrier"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

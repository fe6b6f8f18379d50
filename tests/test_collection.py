from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensordict import TensorDict

from harl_torchrl.algorithms import make_on_policy_components
from harl_torchrl.collection import check_workers, make_collector
from harl_torchrl.envs import make_env
from harl_torchrl.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "recipes" / "conf"
VMAS_CFG = {"family": "vmas", "scenario": "balance", "num_envs": 4, "max_steps": 5, "scenario_kwargs": {"n_agents": 2}}


def _parts(env):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["model.hidden_sizes=[8]"])
    return make_on_policy_components(cfg.algo, cfg.model, env, seed=0)


def _locs(policy, batch, agents):
    observations = TensorDict(
        {(a, "observation"): batch[a, "observation"] for a in agents}, batch_size=batch.batch_size
    )
    with torch.no_grad():
        out = policy(observations)
    return [out[a, "loc"] for a in agents]


def test_worker_processes_collect_the_in_process_layout_with_the_current_policy():
    env = make_env(VMAS_CFG, seed=0)
    parts = _parts(env)
    agents = ["agent_0", "agent_1"]
    collector = make_collector(
        env, parts.policy, frames_per_batch=20, total_frames=-1, workers=2, env_cfg=VMAS_CFG, seed=0
    )
    try:
        batches = iter(collector)
        first = next(batches)
        assert first.shape == (4, 5)
        with torch.no_grad():  # stands in for an update
            for actor in parts.actors.values():
                for p in actor.parameters():
                    p.add_(torch.randn_like(p))
        collector.update_policy_weights_()
        second = next(batches)
        recomputed = _locs(parts.policy, second, agents)
        for agent, expected in zip(agents, recomputed, strict=True):
            torch.testing.assert_close(second[agent, "loc"], expected)  # collected with the new weights
        stale = [first[a, "loc"] for a in agents]
        fresh = _locs(parts.policy, first, agents)
        assert not all(torch.allclose(s, f) for s, f in zip(stale, fresh, strict=True)), "the test can fail"
    finally:
        collector.shutdown()


def test_worker_copies_get_the_seeds_they_get_in_one_process():
    pytest.importorskip("mpe2")
    env_cfg = {"family": "pettingzoo", "scenario": "simple_spread", "num_envs": 4, "max_steps": 25}
    env = make_env(env_cfg, seed=3)
    in_process = env.reset()
    collector = make_collector(env, None, frames_per_batch=8, total_frames=8, workers=2, env_cfg=env_cfg, seed=3)
    try:
        batch = next(iter(collector))
    finally:
        collector.shutdown()
    for agent in env.group_map:
        torch.testing.assert_close(batch[agent, "observation"][:, 0], in_process[agent, "observation"])


def test_in_process_collection_is_the_default():
    env = make_env(VMAS_CFG, seed=0)
    collector = make_collector(env, None, frames_per_batch=20, total_frames=20)
    assert next(iter(collector)).shape == (4, 5)


@pytest.mark.parametrize(("workers", "num_envs", "message"), [(0, 4, "must be > 0"), (3, 4, "multiple")])
def test_bad_worker_counts_are_refused(workers, num_envs, message):
    with pytest.raises(ConfigError, match=message):
        check_workers(workers, num_envs)

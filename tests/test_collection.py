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


MPE_CFG = {"family": "pettingzoo", "scenario": "simple_spread", "num_envs": 4, "max_steps": 25}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for this module's tests, stopped after them."""
    ray = pytest.importorskip("ray", reason="the ray extra")
    pytest.importorskip("mpe2")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_workers_collect_the_worker_processes_layout_seeds_and_weights(local_ray):
    env = make_env(MPE_CFG, seed=3)
    start = env.reset()  # the seeded first states, as one process has them
    parts = _parts(env)
    agents = list(env.group_map)

    def flip_weights():  # stands in for an update, the same one for both collectors
        with torch.no_grad():
            for actor in parts.actors.values():
                for p in actor.parameters():
                    p.mul_(-1.0)

    def two_batches(backend):
        collector = make_collector(
            env, parts.policy, frames_per_batch=16, total_frames=32, workers=2, env_cfg=MPE_CFG, seed=3, backend=backend
        )
        try:
            batches = iter(collector)
            first = next(batches)
            flip_weights()
            collector.update_policy_weights_()
            second = next(batches)
            # checked under the weights each batch was collected with: the actions' means are the policy's
            assert all(
                torch.allclose(second[a, "loc"], loc, atol=1e-6)
                for a, loc in zip(agents, _locs(parts.policy, second, agents), strict=True)
            ), f"{backend}: the second batch was not collected with the new weights"
            flip_weights()
            assert all(
                torch.allclose(first[a, "loc"], loc, atol=1e-6)
                for a, loc in zip(agents, _locs(parts.policy, first, agents), strict=True)
            )
            return first
        finally:
            collector.shutdown()

    ours, theirs = two_batches("ray"), two_batches("local")
    assert ours.shape == theirs.shape == (4, 4)
    assert {k: ours[k].shape for k in ours.keys(True, True)} == {k: theirs[k].shape for k in theirs.keys(True, True)}
    for agent in agents:  # worker i's copies at rows 2i, 2i+1, seeded as in one process: the same first states
        torch.testing.assert_close(ours[agent, "observation"][:, 0], theirs[agent, "observation"][:, 0])
        torch.testing.assert_close(ours[agent, "observation"][:, 0], start[agent, "observation"])
    assert not torch.allclose(ours[agents[0], "loc"], -ours[agents[0], "loc"]), "the test can fail"

import pytest
import torch
from games import CueMemoryEnv
from torchrl.collectors import Collector
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.algorithms import make_on_policy_components

HAPPO = {
    "name": "happo",
    "actor_lr": 3e-3,
    "critic_lr": 3e-3,
    "clip_epsilon": 0.2,
    "entropy_coeff": 0.01,
    "epochs": 5,
    "num_minibatches": 1,
    "max_grad_norm": 10.0,
}


def _train_memory_probe(model_name, iterations=15):
    torch.manual_seed(0)
    env = CueMemoryEnv(num_envs=32, delay=3)
    model = {"name": model_name, "hidden_sizes": [32]}
    if model_name == "gru":  # recurrent-only settings: the mlp schema refuses them
        model.update(rnn_hidden_size=32, chunk_length=4)
    parts = make_on_policy_components(HAPPO, model, env, seed=0)
    env = parts.prepare_env(env)
    frames = 32 * 16
    collector = Collector(
        env,
        parts.policy,
        frames_per_batch=frames,
        total_frames=frames * iterations,
        auto_register_policy_transforms=False,
    )
    for batch in collector:
        parts.compute_advantage(batch)
        parts.updater.update(batch)
    collector.shutdown()
    # evaluate the greedy policy on many fresh episodes
    eval_env = parts.prepare_env(CueMemoryEnv(num_envs=1024, delay=3))
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = eval_env.rollout(4, parts.policy)
    return rollout["next", "reward"].sum(-2).mean().item()


@pytest.mark.slow
def test_gru_policy_remembers_what_mlp_cannot():
    assert _train_memory_probe("gru") >= 0.9
    assert _train_memory_probe("mlp") <= 0.6

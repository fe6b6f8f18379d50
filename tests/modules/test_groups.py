"""TorchRL's own VmasEnv with the per-agent modules: grouped agents and unclipped actions are refused."""

import pytest
import torch
from torchrl.envs import ClipTransform, MarlGroupMapType, TransformedEnv, VmasEnv

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import joint_policy, make_actors, observation_critic_inputs

N_AGENTS = 4  # dispersion: 16 observation features per agent


def _vmas(**kwargs):
    return VmasEnv("dispersion", num_envs=2, n_agents=N_AGENTS, seed=0, **kwargs)


def test_a_group_of_several_agents_is_refused():
    env = _vmas(clamp_actions=True)  # TorchRL's default: one group "agents" of four
    with pytest.raises(ConfigError, match=r"'agents' of the env holds 4 agents.*ONE_GROUP_PER_AGENT"):
        make_actors(env)
    with pytest.raises(ConfigError, match="ONE_GROUP_PER_AGENT"):
        observation_critic_inputs(env)


def test_one_group_per_agent_builds_one_actor_each_and_the_whole_critic_input():
    env = _vmas(clamp_actions=True, group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT)
    actors = make_actors(env)
    assert sorted(actors) == [f"agent_{i}" for i in range(N_AGENTS)]
    assert observation_critic_inputs(env)[1] == 16 * N_AGENTS
    # large means: samples far outside the box, which the env clips
    for actor in actors.values():
        torch.nn.init.constant_(actor.module[0].module.head.mean.bias, 5.0)
    env.rollout(2, joint_policy(actors))


def test_unclipped_vmas_env_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"clamp_actions=True"):
        make_actors(_vmas(group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT))


def test_an_env_that_clips_by_transform_is_accepted():
    base = _vmas(group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT)
    keys = [(f"agent_{i}", "action") for i in range(N_AGENTS)]
    env = TransformedEnv(base, ClipTransform(in_keys_inv=keys, low=-1.0, high=1.0))
    assert len(make_actors(env)) == N_AGENTS


@pytest.mark.parametrize(
    "builder", ["make_deterministic_actors", "make_soft_actors", "make_dueling_agent_qnets", "make_joint_q_critic"]
)
def test_off_policy_builders_refuse_a_group_of_several_agents(builder):
    """Regression: the off-policy actor and Q builders built one shared network for a group of agents."""
    import harl_torchrl.modules as modules

    env = (
        _vmas(categorical_actions=True, continuous_actions=False) if "dueling" in builder else _vmas(clamp_actions=True)
    )
    with pytest.raises(ConfigError, match="ONE_GROUP_PER_AGENT"):
        getattr(modules, builder)(env)

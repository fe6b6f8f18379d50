"""Learning tests on one-step matrix games (small nets, fixed seeds, wide margins)."""

import pytest
import torch
from games import MatrixGameEnv, action_probabilities, expected_return, trap_payoff
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.algorithms import build_on_policy_updater
from harl_torchrl.modules import joint_policy, make_actors, make_central_critic, observation_critic_inputs
from harl_torchrl.objectives import CentralValueLoss, HAPPOLoss, SharedPolicyLoss
from harl_torchrl.sequential import PolicyTrainer, SequentialUpdater

HAPPO = {
    "name": "happo",
    "actor_lr": 1e-2,
    "critic_lr": 1e-2,
    "clip_epsilon": 0.2,
    "entropy_coeff": 0.0,
    "epochs": 5,
    "num_minibatches": 1,
    "max_grad_norm": 10.0,
}


def _critic_loss(env):
    critic = make_central_critic(*observation_critic_inputs(env), hidden_sizes=[16])
    loss = CentralValueLoss(critic, clip_value=None)
    loss.make_value_estimator(gamma=0.99, lmbda=0.95)
    return loss


def _train(env, actors, updater, critic_loss, iterations):
    policy = joint_policy(actors)
    for _ in range(iterations):
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            batch = env.rollout(1, policy)
        critic_loss.compute_advantage(batch)
        updater.update(batch)
    return expected_return(action_probabilities(actors, env), env.payoff)


@pytest.mark.slow
@pytest.mark.parametrize("n_agents, iterations", [(2, 40), (4, 40)])
def test_happo_escapes_the_trap_of_homogeneity(n_agents, iterations):
    torch.manual_seed(0)
    env = MatrixGameEnv(trap_payoff(n_agents), num_envs=256)
    actors = make_actors(env, hidden_sizes=[16])
    critic_loss = _critic_loss(env)
    updater = build_on_policy_updater(HAPPO, actors, critic_loss, seed=0)
    assert expected_return(action_probabilities(actors, env), env.payoff) < 0.6
    assert _train(env, actors, updater, critic_loss, iterations) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("n_agents", [2, 4])
def test_parameter_shared_policy_stays_trapped(n_agents):
    torch.manual_seed(0)
    env = MatrixGameEnv(trap_payoff(n_agents), num_envs=256)
    actors = make_actors(env, hidden_sizes=[16], share_params=True)
    critic_loss = _critic_loss(env)
    shared = SharedPolicyLoss({a: HAPPOLoss(actor, entropy_coeff=0.0) for a, actor in actors.items()})
    trainer = PolicyTrainer(shared, torch.optim.Adam(shared.parameters(), lr=1e-2), epochs=5)
    updater = SequentialUpdater({"shared": trainer}, None, use_factor=False, order="fixed", seed=0)
    policy = joint_policy(actors)
    for _ in range(40):
        with torch.no_grad():
            batch = env.rollout(1, policy)
        critic_loss.compute_advantage(batch)
        updater.update(batch)
    assert expected_return(action_probabilities(actors, env), env.payoff) <= 2 / 2**n_agents + 0.02

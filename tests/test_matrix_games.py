"""Learning tests on one-step matrix games (small nets, fixed seeds, wide margins)."""

import itertools

import pytest
import torch
from games import MatrixGameEnv, action_probabilities, expected_return, trap_payoff
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.algorithms import build_on_policy_updater
from harl_torchrl.modules import joint_policy, make_actors, make_central_critic, observation_critic_inputs
from harl_torchrl.objectives import CentralValueLoss, HATRPOLoss
from harl_torchrl.sequential import SequentialUpdater, TrustRegionTrainer

COMMON = {"critic_lr": 1e-2, "epochs": 5, "num_minibatches": 1, "max_grad_norm": 10.0, "entropy_coeff": 0.0}
ALGOS = {
    "happo": {"name": "happo", "actor_lr": 1e-2, "clip_epsilon": 0.2, **COMMON},
    "haa2c": {"name": "haa2c", "actor_lr": 1e-2, **COMMON},
    # HATRPO has no actor epochs or minibatches: the critic's are its own keys (same values)
    "hatrpo": {
        "name": "hatrpo",
        "max_kl": 0.1,
        "critic_lr": 1e-2,
        "critic_epochs": 5,
        "critic_num_minibatches": 1,
        "max_grad_norm": 10.0,
        "entropy_coeff": 0.0,
    },
    "mappo_shared": {"name": "mappo", "share_params": True, "actor_lr": 1e-2, "clip_epsilon": 0.2, **COMMON},
}


def _critic_loss(env):
    critic = make_central_critic(*observation_critic_inputs(env), hidden_sizes=[16])
    loss = CentralValueLoss(critic, clip_value=None)
    loss.make_value_estimator(gamma=0.99, lmbda=0.95)
    return loss


def _train(env, algo, iterations, seed=0):
    torch.manual_seed(seed)
    cfg = ALGOS[algo]
    actors = make_actors(env, hidden_sizes=[16], share_params=cfg.get("share_params", False))
    critic_loss = _critic_loss(env)
    updater = build_on_policy_updater(cfg, actors, critic_loss, seed=seed)
    policy = joint_policy(actors)
    returns = [expected_return(action_probabilities(actors, env), env.payoff)]
    for _ in range(iterations):
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            batch = env.rollout(1, policy)
        critic_loss.compute_advantage(batch)
        updater.update(batch)
        returns.append(expected_return(action_probabilities(actors, env), env.payoff))
    return returns


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["happo", "haa2c", "hatrpo"])
@pytest.mark.parametrize("n_agents", [2, 4])
def test_heterogeneous_agents_escape_the_trap_of_homogeneity(algo, n_agents):
    returns = _train(MatrixGameEnv(trap_payoff(n_agents), num_envs=256), algo, iterations=40)
    assert returns[0] < 0.6
    assert returns[-1] >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("n_agents", [2, 4])
def test_parameter_shared_policy_stays_trapped(n_agents):
    returns = _train(MatrixGameEnv(trap_payoff(n_agents), num_envs=256), "mappo_shared", iterations=40)
    assert max(returns) <= 2 / 2**n_agents + 0.02


def _sequential_vs_simultaneous(use_factor, iterations=6, max_kl=1.0, seed=0):
    torch.manual_seed(seed)
    env = MatrixGameEnv(torch.tensor([[0.0, 2.0], [2.0, -1.0]]), num_envs=4096)
    actors = make_actors(env, hidden_sizes=[16])
    with torch.no_grad():
        for actor in actors.values():  # both agents start at P(action 0) = 0.7
            head = actor.module[0].module.head
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.7, 0.3]).log())
    trainers = {name: TrustRegionTrainer(HATRPOLoss(actor), max_kl=max_kl) for name, actor in actors.items()}
    updater = SequentialUpdater(trainers, None, use_factor=use_factor, order="random", seed=seed)
    critic_loss = _critic_loss(env)
    policy = joint_policy(actors)
    returns = [expected_return(action_probabilities(actors, env), env.payoff)]
    for _ in range(iterations):
        with torch.no_grad():
            batch = env.rollout(1, policy)
        critic_loss.compute_advantage(batch)
        updater.update(batch)
        returns.append(expected_return(action_probabilities(actors, env), env.payoff))
    return returns


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequential_updates_never_decrease_the_joint_return(seed):
    sequential = _sequential_vs_simultaneous(use_factor=True, seed=seed)
    simultaneous = _sequential_vs_simultaneous(use_factor=False, seed=seed)
    assert sequential[0] == pytest.approx(0.75, abs=1e-4)
    assert all(later >= earlier - 1e-3 for earlier, later in itertools.pairwise(sequential)), sequential
    assert sequential[-1] > 1.5
    assert min(simultaneous) < 0, simultaneous

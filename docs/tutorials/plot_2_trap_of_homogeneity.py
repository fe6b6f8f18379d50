r"""
The trap of homogeneity
=======================

Sharing one policy network between agents is the usual shortcut in cooperative
MARL. HARL's paper (Zhong, Kuba et al., 2024) shows a game where it is
arbitrarily bad: :math:`n` agents (here :math:`n = 4`) each pick 0 or 1, and the
team is rewarded 1 only for the joint actions :math:`(0, 0, 1, 1)` and
:math:`(1, 1, 0, 0)`. Agents that share a policy act identically in distribution
(every agent sees the same observation), so with :math:`p = P(a = 0)` the expected
return is :math:`2 p^2 (1 - p)^2 \le 2 / 2^n = 0.125`, whatever :math:`p`.
Heterogeneous agents, one policy each, can reach 1.

We train both on the one-step game with the library's builders:
``share_params=True`` gives one network for every agent (the MAPPO baseline with
:class:`~harl_torchrl.objectives.SharedPolicyLoss`), and HAPPO gives each agent its
own.
"""

# %%
# The game, as a TorchRL environment with one group per agent
# -----------------------------------------------------------
# Every agent observes the constant ``[1.0]``; the episode ends after one step.
import itertools

import matplotlib.pyplot as plt
import torch
from tensordict import TensorDict
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.algorithms import build_on_policy_updater
from harl_torchrl.modules import (
    joint_policy,
    make_actors,
    make_central_critic,
    observation_critic_inputs,
)
from harl_torchrl.objectives import CentralValueLoss


class MatrixGame(EnvBase):
    def __init__(self, payoff, num_envs=256):
        super().__init__(batch_size=torch.Size([num_envs]))
        self.payoff = payoff
        self.agents = [f"agent_{i}" for i in range(payoff.dim())]
        self.group_map = {a: [a] for a in self.agents}  # one group per agent
        b = (num_envs,)
        self.observation_spec = Composite(
            {
                a: Composite(observation=Unbounded(shape=(*b, 1)), shape=b)
                for a in self.agents
            },
            shape=b,
        )
        self.action_spec = Composite(
            {
                a: Composite(action=Categorical(n=payoff.shape[i], shape=b), shape=b)
                for i, a in enumerate(self.agents)
            },
            shape=b,
        )
        self.reward_spec = Composite(reward=Unbounded(shape=(*b, 1)), shape=b)
        flag = Categorical(n=2, shape=(*b, 1), dtype=torch.bool)
        self.done_spec = Composite(
            done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=b
        )

    def _flags(self, done):
        flag = torch.full((*self.batch_size, 1), done)
        return {
            "done": flag,
            "terminated": flag.clone(),
            "truncated": torch.zeros_like(flag),
        }

    def _reset(self, tensordict=None, **kwargs):
        obs = {(a, "observation"): torch.ones(*self.batch_size, 1) for a in self.agents}
        return TensorDict({**obs, **self._flags(False)}, self.batch_size)

    def _step(self, tensordict):
        actions = tuple(tensordict[a, "action"].long() for a in self.agents)
        out = self._reset()
        out.update({"reward": self.payoff[actions].unsqueeze(-1), **self._flags(True)})
        return out

    def _set_seed(self, seed):
        pass


def expected_return(actors, env):
    """J = sum over joint actions a of prod_i pi_i(a_i) * payoff(a), exactly."""
    td = env.reset()[:1]
    with torch.no_grad():
        probs = [actor.get_dist(td.copy()).probs[0] for actor in actors.values()]
    total = 0.0
    for joint in itertools.product(*(range(len(p)) for p in probs)):
        weight = torch.stack([p[a] for p, a in zip(probs, joint, strict=True)]).prod()
        total += float(weight * env.payoff[joint])
    return total


n = 4
payoff = torch.zeros([2] * n)
payoff[0, 0, 1, 1] = payoff[1, 1, 0, 0] = 1.0
env = MatrixGame(payoff)

# %%
# Training: same data, same critic, only the parameter sharing differs
# --------------------------------------------------------------------
# 256 one-step episodes per iteration, 25 iterations. Omitted config keys take the
# defaults of the algorithm's schema (:mod:`harl_torchrl.config`); the learning
# rates are raised for this tiny budget.
settings = {"actor_lr": 1e-2, "critic_lr": 1e-2, "entropy_coeff": 0.0}


def train(algo, share_params, seed, iterations=25):
    torch.manual_seed(seed)
    actors = make_actors(env, hidden_sizes=[16], share_params=share_params)
    critic = make_central_critic(*observation_critic_inputs(env), hidden_sizes=[16])
    value_loss = CentralValueLoss(critic, clip_value=None)
    value_loss.make_value_estimator(gamma=0.99, lmbda=0.95)
    updater = build_on_policy_updater(
        {"name": algo, "share_params": share_params, **settings},
        actors,
        value_loss,
        seed=seed,
    )
    policy = joint_policy(actors)
    curve = [expected_return(actors, env)]
    for _ in range(iterations):
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            batch = env.rollout(1, policy)
        value_loss.compute_advantage(batch)
        updater.update(batch)
        curve.append(expected_return(actors, env))
    return curve


curves = {
    "HAPPO (one policy per agent)": [train("happo", False, seed) for seed in range(3)],
    "MAPPO, shared parameters": [train("mappo", True, seed) for seed in range(3)],
}
for label, runs in curves.items():
    print(f"{label:30s} final J per seed: {[round(run[-1], 3) for run in runs]}")

# %%
# The result
# ----------
# The shared policy cannot pass :math:`2/2^n` (dashed); every heterogeneous run
# finds one of the two rewarded joint actions.
fig, ax = plt.subplots(figsize=(6, 3.5))
for (label, runs), color in zip(curves.items(), ["tab:blue", "tab:red"], strict=True):
    for i, run in enumerate(runs):
        ax.plot(run, color=color, alpha=0.8, label=label if i == 0 else None)
ax.axhline(
    2 / 2**n,
    color="k",
    linestyle="--",
    linewidth=1,
    label=r"shared-policy bound $2/2^n$",
)
ax.set_xlabel("iteration")
ax.set_ylabel("expected team return $J$")
ax.set_ylim(-0.05, 1.05)
ax.legend(loc="center right", fontsize=8)
ax.set_title(f"Trap of homogeneity, n = {n} agents, 3 seeds")
fig.tight_layout()

# %%
# ``tests/test_matrix_games.py`` asserts both facts for :math:`n = 2` and
# :math:`n = 4` with HAPPO, HAA2C and HATRPO.

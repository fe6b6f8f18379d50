r"""
Sequential versus simultaneous updates
======================================

Why update agents one after another? Each agent's improvement is computed with the
others' policies fixed. When all agents move at once, their improvements can
cancel, or worse. The sequential scheme hands each agent the factor

.. math::

   M^{i_{1:m}} = \prod_{j<m}
   \frac{\pi^{i_j}_{\text{new}}(a^{i_j})}{\pi^{i_j}_{\text{old}}(a^{i_j})},

which reweights the advantage by what the earlier agents already changed; with
exact advantages this gives HARL's monotonic improvement guarantee: the joint
return never decreases.

The game: two agents, actions 0 and 1, team reward

========  =========  =========
reward    b = 0      b = 1
========  =========  =========
a = 0     0          2
a = 1     2          -1
========  =========  =========

Both start at :math:`P(a = 0) = 0.7` (expected return 0.75). Against the other's
current policy, action 1 looks better for each agent. If both switch at once they
land on :math:`(1, 1)`, worth -1. We take large trust-region steps
(:class:`~harl_torchrl.sequential.TrustRegionTrainer` with
:math:`\delta = 1`) so that every update moves a lot, and run the same
:class:`~harl_torchrl.sequential.SequentialUpdater` with the factor
(``use_factor=True``, sequential) and without it (``use_factor=False``: every agent
is trained against the old policies, i.e. a simultaneous update).
"""

# %%
# The game
# --------
import itertools

import matplotlib.pyplot as plt
import torch
from tensordict import TensorDict
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from harl_torchrl.modules import (
    joint_policy,
    make_actors,
    make_central_critic,
    observation_critic_inputs,
)
from harl_torchrl.objectives import CentralValueLoss, HATRPOLoss
from harl_torchrl.sequential import SequentialUpdater, TrustRegionTrainer


class MatrixGame(EnvBase):
    def __init__(self, payoff, num_envs=4096):
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


def action_probs(actors, env):
    td = env.reset()[:1]
    with torch.no_grad():
        return [actor.get_dist(td.copy()).probs[0] for actor in actors.values()]


def expected_return(actors, env):
    probs = action_probs(actors, env)
    total = 0.0
    for joint in itertools.product(*(range(len(p)) for p in probs)):
        weight = torch.stack([p[a] for p, a in zip(probs, joint, strict=True)]).prod()
        total += float(weight * env.payoff[joint])
    return total


env = MatrixGame(torch.tensor([[0.0, 2.0], [2.0, -1.0]]))

# %%
# One run
# -------
# The actors' last layer is set so that both start at :math:`P(a = 0) = 0.7`; the
# critic only supplies the advantage (its own training is not needed here, so the
# updater gets ``critic=None``).


def run(use_factor, seed, iterations=6):
    torch.manual_seed(seed)
    actors = make_actors(env, hidden_sizes=[16])
    with torch.no_grad():
        for actor in actors.values():
            head = actor.module[0].module.head  # the logits layer of the actor's MLP
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.7, 0.3]).log())
    trainers = {
        name: TrustRegionTrainer(HATRPOLoss(actor), max_kl=1.0)
        for name, actor in actors.items()
    }
    updater = SequentialUpdater(trainers, None, use_factor=use_factor, seed=seed)
    value_loss = CentralValueLoss(
        make_central_critic(*observation_critic_inputs(env), hidden_sizes=[16])
    )
    value_loss.make_value_estimator(gamma=0.99, lmbda=0.95)
    policy = joint_policy(actors)
    curve, path = (
        [expected_return(actors, env)],
        [[float(p[0]) for p in action_probs(actors, env)]],
    )
    for _ in range(iterations):
        with torch.no_grad():
            batch = env.rollout(1, policy)
        value_loss.compute_advantage(batch)
        updater.update(batch)
        curve.append(expected_return(actors, env))
        path.append([float(p[0]) for p in action_probs(actors, env)])
    return curve, path


results = {
    label: [run(flag, seed) for seed in range(3)]
    for label, flag in [("sequential", True), ("simultaneous", False)]
}
for label, runs in results.items():
    for seed, (curve, _) in enumerate(runs):
        print(f"{label:12s} seed {seed}: J = {[round(j, 2) for j in curve]}")

# %%
# Joint-return curves and the policies' paths
# -------------------------------------------
# Left: the expected joint return after each iteration. Right: each run's path in
# the space of the two agents' :math:`P(a = 0)`; the rewarded corners are
# :math:`(1, 0)` and :math:`(0, 1)`, and :math:`(0, 0)` is the -1 trap.
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
for (label, runs), color in zip(results.items(), ["tab:blue", "tab:red"], strict=True):
    for i, (curve, path) in enumerate(runs):
        left.plot(
            curve, marker="o", color=color, alpha=0.8, label=label if i == 0 else None
        )
        xs, ys = zip(*path, strict=True)
        right.plot(
            xs, ys, marker=".", color=color, alpha=0.8, label=label if i == 0 else None
        )
left.set_xlabel("iteration")
left.set_ylabel("expected joint return")
left.axhline(0.75, color="k", linewidth=0.8, linestyle=":")
left.legend(fontsize=8)
right.set_xlabel("agent_0: P(a = 0)")
right.set_ylabel("agent_1: P(a = 0)")
right.set_xlim(-0.05, 1.05)
right.set_ylim(-0.05, 1.05)
right.scatter([0.7], [0.7], color="k", zorder=3, label="start")
right.legend(fontsize=8)
fig.tight_layout()

# %%
# With the factor, the second agent sees that the first has already moved towards
# action 1 and the advantage of its own switch is reweighted accordingly: the joint
# return never drops. Without it, both agents move towards action 1 together, the
# joint return falls below zero, and the pair oscillates between the start and the
# trap. ``tests/test_matrix_games.py`` asserts both on
# three seeds.

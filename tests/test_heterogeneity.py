r"""Where heterogeneity pays, provably: a one-step ``het_mass`` game with a bound on every shared policy.

VMAS's ``het_mass`` (HetGPPO, Bettini et al. 2023) has two agents of different mass and no
agent id in the observation; the team is paid the fastest agent's speed minus the energy
both spend, so the optimum drives the light agent at full force and keeps the heavy one
still. :class:`HeavyLightEnv` keeps that structure in one step, with nothing to learn but
the split of roles:

* agent ``heavy`` (mass 4) and agent ``light`` (mass 1) each observe their own position,
  drawn i.i.d. uniform in ``[-1, 1]^2`` (as ``het_mass`` places its agents; at rest, so no
  velocity): the observations carry no agent id and have the same law for both agents;
* each applies a force :math:`a_i \in [0, 1]` (the env clips the Gaussian sample) and
  reaches the speed :math:`a_i / m_i`;
* the team reward is :math:`r = \max(a_h / 4,\ a_l) - \tfrac12 (a_h + a_l)`.

**Best pair of separate policies: 1/2.** If :math:`a_l \ge a_h/4`, then
:math:`r = \tfrac12 a_l - \tfrac12 a_h \le \tfrac12`; otherwise :math:`r = -\tfrac14 a_h - \tfrac12 a_l
\le 0`. ``heavy`` at 0 and ``light`` at 1 give exactly 1/2.

**Any shared, id-less policy: at most 1/4.** One policy :math:`\pi(a \mid o)` for both
agents, i.i.d. observations and independent sampling make the pairs :math:`(o_h, a_h)` and
:math:`(o_l, a_l)` i.i.d., so :math:`a_h` and :math:`a_l` have the same law on ``[0, 1]``, with
mean :math:`\mu`. Since :math:`\max(x, y) \le x + y` for :math:`x, y \ge 0`,

.. math::

    J = E[\max(a_h/4, a_l)] - \tfrac12 E[a_h + a_l] \le \tfrac{\mu}{4} + \mu - \mu = \tfrac{\mu}{4} \le \tfrac14 .

This holds for stochastic and deterministic policies alike (a deterministic one is
:math:`a = f(o)`), and for a policy that reads its observation: its position is no id.
(Sharper, not used below: :math:`J = E[(a_h/4 - a_l)^+] \le \tfrac14 E[a_h]\, P(a_l < \tfrac14)
\le \tfrac{s}{4}(1 - \tfrac34 s) \le \tfrac1{12}` with :math:`s = P(a < \tfrac14)`.)

The tests train HAPPO (one actor and one Adam per agent, the sequential scheme of
:class:`~harl_torchrl.sequential.SequentialUpdater`) and parameter-shared MAPPO (one actor
through ``make_actors(..., share_params=True)``, the agents' PPO-clip losses averaged by
:class:`~harl_torchrl.objectives.SharedPolicyLoss`, simultaneous updates without the factor)
from the same seeds, and check that HAPPO ends far above the bound and shared MAPPO stays
far under it (``HAPPOLoss`` with the factor fixed at 1 is PPO's clip loss). Were HAPPO's
agents to share parameters, its return would fall under the bound; were an agent id to leak
into the shared policy's input, the shared side could pass it: either way the test fails.
The bound is a theorem about shared, id-less policies, not about this code. Measured (seeds 0, 1, 2, 10
iterations of 512 one-step episodes, a few CPU seconds per seed): HAPPO 0.50 with the
Gaussians' means and 0.49-0.50 sampled; shared MAPPO 0.00-0.02 with the means and
0.02-0.03 sampled (trained 40 iterations it reaches 0.06, i.e. the two-point law that uses
its position as a coin, still far under 1/4); the broken scheme, HAPPO's sequential updates
on one shared network, 0.00-0.01 and 0.02, which fails the test.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.modules import joint_policy, make_actors, make_central_critic, observation_critic_inputs
from harl_torchrl.objectives import CentralValueLoss, HAPPOLoss, SharedPolicyLoss
from harl_torchrl.sequential import CriticTrainer, PolicyTrainer, SequentialUpdater, agent_parameters_by_name

MASSES = {"heavy": 4.0, "light": 1.0}
ENERGY_COEFF = 0.5
SEPARATE_OPTIMUM = 0.5
SHARED_BOUND = 0.25  # proven in the module docstring
MARGIN = 0.15  # both sides must clear the bound by this much


class HeavyLightEnv(EnvBase):
    """One step of ``het_mass``: two agents of masses 4 and 1, no agent id, speed minus energy.

    Each agent observes its own position (i.i.d. uniform in ``[-1, 1]^2``) and applies a
    force in ``[0, 1]`` (clipped here); the team reward is
    ``max(a_heavy / 4, a_light) - 0.5 * (a_heavy + a_light)``; the episode then ends.
    """

    def __init__(self, num_envs: int = 512, seed: int = 0) -> None:
        super().__init__(batch_size=torch.Size([num_envs]))
        self.agent_names = list(MASSES)
        self.group_map = {name: [name] for name in self.agent_names}
        self.generator = torch.Generator().manual_seed(seed)
        batch = (num_envs,)
        self.observation_spec = Composite(
            {n: Composite(observation=Unbounded(shape=(*batch, 2)), shape=batch) for n in self.agent_names},
            shape=batch,
        )
        self.action_spec = Composite(
            {n: Composite(action=Bounded(0.0, 1.0, shape=(*batch, 1)), shape=batch) for n in self.agent_names},
            shape=batch,
        )
        self.reward_spec = Composite(reward=Unbounded(shape=(*batch, 1)), shape=batch)
        flag = Categorical(n=2, shape=(*batch, 1), dtype=torch.bool)
        self.done_spec = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=batch)

    def _positions(self) -> TensorDict:
        out = TensorDict({}, batch_size=self.batch_size)
        for name in self.agent_names:
            out.set((name, "observation"), torch.rand(*self.batch_size, 2, generator=self.generator) * 2 - 1)
        return out

    def _reset(self, tensordict=None, **kwargs):
        out = self._positions()
        false = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        out.update({"done": false, "terminated": false.clone(), "truncated": false.clone()})
        return out

    def _step(self, tensordict):
        forces = {n: tensordict.get((n, "action")).clamp(0.0, 1.0) for n in self.agent_names}
        out = self._positions()
        out.set("reward", team_reward(forces["heavy"], forces["light"]))
        true = torch.ones(*self.batch_size, 1, dtype=torch.bool)
        out.update({"done": true, "terminated": true.clone(), "truncated": torch.zeros_like(true)})
        return out

    def _set_seed(self, seed):
        if seed is not None:
            self.generator.manual_seed(seed)


def team_reward(heavy: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Fastest speed minus energy, for forces already in ``[0, 1]``."""
    speed = torch.maximum(heavy / MASSES["heavy"], light / MASSES["light"])
    return speed - ENERGY_COEFF * (heavy + light)


def _train(shared: bool, seed: int, iterations: int = 10):
    """HAPPO (``shared=False``) or parameter-shared MAPPO, assembled from the library's public pieces."""
    torch.manual_seed(seed)
    env = HeavyLightEnv(num_envs=512, seed=seed)
    actors = make_actors(env, hidden_sizes=[16], share_params=shared)
    losses = {name: HAPPOLoss(actor, clip_epsilon=0.2, entropy_coeff=0.0) for name, actor in actors.items()}
    critic = make_central_critic(*observation_critic_inputs(env), hidden_sizes=[16])
    critic_loss = CentralValueLoss(critic, clip_value=None)
    critic_loss.make_value_estimator(gamma=0.99, lmbda=0.95)
    critic_trainer = CriticTrainer(critic_loss, torch.optim.Adam(critic.parameters(), lr=1e-2), epochs=5)

    def trainer(loss):
        return PolicyTrainer(loss, torch.optim.Adam(loss.parameters(), lr=1e-2, eps=1e-5), epochs=5)

    if shared:  # MAPPO with shared weights: one objective over both agents' samples, no factor
        updater = SequentialUpdater(
            {"shared": trainer(SharedPolicyLoss(losses))}, critic_trainer, order="fixed", use_factor=False, seed=seed
        )
    else:  # HAPPO: each agent its own parameters and optimiser, random order, the factor M
        agent_parameters_by_name(actors)  # refuses parameters shared between agents
        updater = SequentialUpdater(
            {name: trainer(loss) for name, loss in losses.items()}, critic_trainer, order="random", seed=seed
        )
    policy = joint_policy(actors)
    for _ in range(iterations):
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            batch = env.rollout(1, policy)
        critic_loss.compute_advantage(batch)
        updater.update(batch)
    return env, policy


def _evaluate(env: HeavyLightEnv, policy, exploration: ExplorationType, num_envs: int = 8192) -> float:
    """Mean team reward of ``policy`` on fresh positions (deterministic: the Gaussians' means)."""
    test_env = HeavyLightEnv(num_envs=num_envs, seed=12345)
    with torch.no_grad(), set_exploration_type(exploration):
        batch = test_env.rollout(1, policy)
    return float(batch["next", "reward"].mean())


def test_env_rewards_match_the_derivation():
    ones, zeros = torch.ones(3, 1), torch.zeros(3, 1)
    assert torch.allclose(team_reward(zeros, ones), torch.full((3, 1), SEPARATE_OPTIMUM))
    assert torch.allclose(team_reward(ones, ones), torch.zeros(3, 1))  # both at full force
    # a grid of deterministic pairs: none beats the separate optimum
    grid = torch.linspace(0, 1, 101)
    heavy, light = torch.meshgrid(grid, grid, indexing="ij")
    assert float(team_reward(heavy, light).max()) == pytest.approx(SEPARATE_OPTIMUM)
    # two-point shared laws a in {0, 1} (P(1) = q), the best i.i.d. family we know: q(1-q)/4 <= 1/16
    for q in torch.linspace(0, 1, 21).tolist():
        exact = sum(
            (q if h else 1 - q) * (q if li else 1 - q) * float(team_reward(torch.tensor(h), torch.tensor(li)))
            for h in (0.0, 1.0)
            for li in (0.0, 1.0)
        )
        assert exact == pytest.approx(q * (1 - q) / 4, abs=1e-6)
        assert exact <= SHARED_BOUND


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_happo_beats_the_bound_of_every_shared_policy_and_shared_mappo_does_not(seed):
    env, happo = _train(shared=False, seed=seed)
    env_shared, shared = _train(shared=True, seed=seed)
    results = {
        (name, mode): _evaluate(e, policy, exploration)
        for name, e, policy in (("happo", env, happo), ("shared", env_shared, shared))
        for mode, exploration in (("mean", ExplorationType.DETERMINISTIC), ("sampled", ExplorationType.RANDOM))
    }
    assert results["happo", "mean"] > SHARED_BOUND + MARGIN, results
    assert results["happo", "sampled"] > SHARED_BOUND + MARGIN, results
    assert results["shared", "mean"] < SHARED_BOUND - MARGIN, results
    assert results["shared", "sampled"] < SHARED_BOUND - MARGIN, results

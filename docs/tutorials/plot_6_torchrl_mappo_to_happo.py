"""
From TorchRL's MAPPO example to HAPPO
=====================================

TorchRL teaches multi-agent PPO with one layout (its
``sota-implementations/multiagent/mappo_ippo.py``): ``VmasEnv``'s default grouping (one
group ``"agents"``, entries ``[*B, n_agents, ...]``), a policy whose agents each have
their own weights, stacked on a leading dimension by
``MultiAgentMLP(share_params=False)`` inside a ``ProbabilisticActor``, a centralised
``MultiAgentMLP`` critic, TorchRL's ``Collector`` and one ``ClipPPOLoss`` stepped by one
Adam over everything.

This tutorial runs that script, then turns it into HAPPO by replacing only the loss and
the optimiser step: the environment, the policy, the critic and the collector stay as
they are. :class:`~harl_torchrl.sequential.AgentStack` makes each agent of the stack its
own heterogeneous agent (its own parameter views into the stacked weights, its own Adam,
its own :class:`~harl_torchrl.objectives.HAPPOLoss`), and the
:class:`~harl_torchrl.sequential.SequentialUpdater` trains them one after another in a
random order with the factor :math:`M`, then the critic.

The budget is tiny (16 iterations of 1,200 frames each, one CPU thread, about 20
seconds per run): the curves only start to rise.
"""

# %%
# What both runs share: TorchRL's environment, networks and collector
# -------------------------------------------------------------------
# Taken from the MAPPO example (smaller networks and batches). VMAS ``balance``: three
# agents carry a package to a goal; the reward is shared.
import difflib
import inspect
import logging

import matplotlib.pyplot as plt
import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage
from torchrl.envs import RewardSum, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.modules.models.multiagent import MultiAgentMLP
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from harl_torchrl.objectives import CentralValueLoss, HAPPOLoss
from harl_torchrl.sequential import (
    AgentStack,
    CriticTrainer,
    PolicyTrainer,
    SequentialUpdater,
)

logging.getLogger("torchrl").setLevel(logging.WARNING)
FRAMES, ITERATIONS, EPOCHS, MINIBATCH = 1200, 16, 4, 400
LR, MAX_GRAD_NORM = 3e-3, 1.0


def make_env():
    env = VmasEnv(
        scenario="balance",
        num_envs=FRAMES // 50,
        continuous_actions=True,
        max_steps=50,
        seed=0,
        n_agents=3,
    )
    return TransformedEnv(
        env,
        RewardSum(in_keys=[env.reward_key], out_keys=[("agents", "episode_reward")]),
    )


def make_networks(env):
    torch.manual_seed(0)  # both runs start from the same weights
    observation = env.observation_spec["agents", "observation"].shape[-1]
    action_spec = env.full_action_spec_unbatched[env.action_key]
    actor_net = nn.Sequential(
        MultiAgentMLP(
            n_agent_inputs=observation,
            n_agent_outputs=2 * action_spec.shape[-1],
            n_agents=env.n_agents,
            centralised=False,
            share_params=False,  # each agent its own weights, stacked
            depth=2,
            num_cells=64,
            activation_class=nn.Tanh,
        ),
        NormalParamExtractor(),
    )
    policy = ProbabilisticActor(
        module=TensorDictModule(
            actor_net,
            in_keys=[("agents", "observation")],
            out_keys=[("agents", "loc"), ("agents", "scale")],
        ),
        spec=env.full_action_spec_unbatched,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=TanhNormal,
        distribution_kwargs={
            "low": action_spec.space.low,
            "high": action_spec.space.high,
        },
        return_log_prob=True,
    )
    critic = ValueOperator(
        module=MultiAgentMLP(
            n_agent_inputs=observation,
            n_agent_outputs=1,
            n_agents=env.n_agents,
            centralised=True,  # V(s) from every agent's observation
            share_params=True,
            depth=2,
            num_cells=64,
            activation_class=nn.Tanh,
        ),
        in_keys=[("agents", "observation")],
    )
    return policy, critic


def team_return(data):
    """Mean return of the episodes that ended in this batch (the reward is shared)."""
    episode_reward = data["next", "agents", "episode_reward"].mean(-2)
    return episode_reward[data["next", "done"]].mean().item()


env = make_env()
print("group map:", env.group_map)
print("stacked action:", env.full_action_spec_unbatched[env.action_key].shape)


# %%
# MAPPO as TorchRL's example trains it
# ------------------------------------
# One ``ClipPPOLoss`` over the whole stack (every agent's ratio at once), TorchRL's
# ``MultiAgentGAE`` (``ValueEstimators.MAGAE``: the team ``done`` is broadcast along
# the agents), and one Adam over the stacked policy and the critic, stepped on
# shuffled minibatches from a replay buffer.
def train_mappo(env, policy, critic):
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=critic,
        clip_epsilon=0.2,
        entropy_coeff=1e-4,
        normalize_advantage=False,
    )
    loss_module.set_keys(reward=env.reward_key, action=env.action_key)
    loss_module.make_value_estimator(ValueEstimators.MAGAE, gamma=0.99, lmbda=0.9)
    optim = torch.optim.Adam(loss_module.parameters(), LR)
    replay_buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(FRAMES),
        sampler=SamplerWithoutReplacement(),
        batch_size=MINIBATCH,
    )
    collector = Collector(
        env,
        policy,
        frames_per_batch=FRAMES,
        total_frames=FRAMES * ITERATIONS,
        auto_register_policy_transforms=False,
    )
    returns = []
    for data in collector:
        with torch.no_grad():
            loss_module.value_estimator(
                data,
                params=loss_module.critic_network_params,
                target_params=loss_module.target_critic_network_params,
            )
        replay_buffer.extend(data.reshape(-1))
        for _ in range(EPOCHS):
            for _ in range(FRAMES // MINIBATCH):
                loss_vals = loss_module(replay_buffer.sample())
                loss_value = (
                    loss_vals["loss_objective"]
                    + loss_vals["loss_critic"]
                    + loss_vals["loss_entropy"]
                )
                loss_value.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), MAX_GRAD_NORM)
                optim.step()
                optim.zero_grad()
        returns.append(team_return(data))
    collector.shutdown()
    return returns


env = make_env()  # a fresh env per run: both see the same episodes at first
mappo_returns = train_mappo(env, *make_networks(env))
print("MAPPO team return per iteration:", [round(r, 3) for r in mappo_returns])


# %%
# HAPPO: the same script with our loss and optimiser step
# -------------------------------------------------------
# ``AgentStack(policy)`` gives each agent of the stack leaf parameters that alias its
# slice of the stacked weights, so an ordinary Adam per agent has its own moments and
# step count, and stepping agent :math:`k` moves nothing else (one Adam over the
# stacked tensor would move every agent with its momentum). ``stack.actors[name]`` is
# agent :math:`k`'s actor: it reads the group's stacked keys (``("agents",
# "action")``, ``("agents", "action_log_prob")``, the per-agent advantage column)
# and computes only agent :math:`k`'s network. The critic is trained once, after the
# agents, by :class:`~harl_torchrl.objectives.CentralValueLoss` on TorchRL's
# ``MultiAgentGAE`` targets.
def train_happo(env, policy, critic):
    stack = AgentStack(policy, env.group_map["agents"])
    value_loss = CentralValueLoss(critic, clip_value=None)
    value_loss.set_keys(reward=env.reward_key)
    value_loss.make_value_estimator(ValueEstimators.MAGAE, gamma=0.99, lmbda=0.9)
    steps = dict(epochs=EPOCHS, num_minibatches=FRAMES // MINIBATCH)
    updater = SequentialUpdater(
        {
            name: PolicyTrainer(
                HAPPOLoss(actor, clip_epsilon=0.2, entropy_coeff=1e-4),
                torch.optim.Adam(actor.parameters(), LR),
                max_grad_norm=MAX_GRAD_NORM,
                **steps,
            )
            for name, actor in stack.actors.items()
        },
        CriticTrainer(value_loss, torch.optim.Adam(critic.parameters(), LR), **steps),
        seed=0,  # the order's own generator (left out: drawn from torch's)
    )
    collector = Collector(
        env,
        policy,
        frames_per_batch=FRAMES,
        total_frames=FRAMES * ITERATIONS,
        auto_register_policy_transforms=False,
    )
    returns = []
    for data in collector:
        value_loss.compute_advantage(data)
        updater.update(data)  # agents one by one in a random order, then the critic
        returns.append(team_return(data))
    collector.shutdown()
    return returns


env = make_env()
happo_returns = train_happo(env, *make_networks(env))
print("HAPPO team return per iteration:", [round(r, 3) for r in happo_returns])

# %%
# The diff
# --------
# Everything outside these two functions is shared. Inside, the loss and the
# optimiser step change; the collector and the loop stay:
diff = list(
    difflib.unified_diff(
        inspect.getsource(train_mappo).splitlines(),
        inspect.getsource(train_happo).splitlines(),
        "train_mappo",
        "train_happo",
        n=0,
        lineterm="",
    )
)
print("\n".join(diff))
added = sum(line.startswith("+") and not line.startswith("+++") for line in diff)
removed = sum(line.startswith("-") and not line.startswith("---") for line in diff)
print(f"\n{removed} lines out, {added} lines in")

# %%
# What changed, and why
# ---------------------
# * **One loss and one optimiser per agent of the stack**, stepped in a fresh random
#   order, each agent's objective weighted by the factor :math:`M` of the agents
#   updated before it (the sequential scheme), instead of one loss stepped for every
#   agent at once. With :math:`M = 1` the mean over the stack of the agents'
#   ``HAPPOLoss`` objectives is exactly ``ClipPPOLoss``'s (a test checks it).
# * The **advantage is normalised once** over the batch by the updater (HAPPO's
#   choice; the example does not normalise), never per agent: that would undo
#   :math:`M`. With a shared reward and a centralised critic the three advantage
#   columns ``MultiAgentGAE`` writes are equal: each agent reads the joint advantage.
# * The **critic** is trained after the agents by its own loss (Huber, the HARL
#   reference's), not summed into the policy's. The reference also clips the value's
#   change to 0.2 *normalised* units (``clip_value``); this critic predicts raw
#   returns, so the clip is left out here.
# * What stays: the env, the stacked policy (collection still evaluates all agents
#   in one vmapped call, from the same stacked weights the agents' optimisers move),
#   the centralised critic, the collector and ``MultiAgentGAE``.
#
# On ``balance`` the agents are alike and share their reward, and one seed of 19k
# frames tells nothing about which method learns faster: the curves show that the
# HAPPO script trains, from the same weights and the same first batch. Where the
# sequential scheme matters, see
# :doc:`/generated/tutorials/plot_2_trap_of_homogeneity` and
# :doc:`/generated/tutorials/plot_3_sequential_vs_simultaneous`.
#
# ``VmasEnv(max_steps=...)`` reports the time limit as termination, so both runs stop
# bootstrapping there (as TorchRL's example does); the library's own
# :func:`~harl_torchrl.envs.make_vmas_env` reports it as truncation.
fig, ax = plt.subplots(figsize=(6, 3))
iterations = range(1, ITERATIONS + 1)
ax.plot(iterations, mappo_returns, marker="o", label="MAPPO (ClipPPOLoss)")
ax.plot(iterations, happo_returns, marker="s", label="HAPPO (same networks)")
ax.set_xlabel(f"iteration ({FRAMES} frames each)")
ax.set_ylabel("mean episode team return")
ax.set_title("VMAS balance, TorchRL's stacked layout")
ax.legend()
fig.tight_layout()

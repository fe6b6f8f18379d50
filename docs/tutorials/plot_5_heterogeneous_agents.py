"""
Heterogeneous agents without padding
====================================

In MPE's ``simple_speaker_listener`` the two agents have nothing in common: the
*speaker* sees only the colour of the goal landmark (3 numbers) and says one of 3
words; the *listener* sees its velocity, the landmarks' positions and the word
(11 numbers) and moves (5 discrete actions). Libraries that stack agents into one
tensor pad both to the larger size (the reference HARL pads observation and action
spaces to a common size). Here every agent is its own TensorDict group, so each
actor has exactly its agent's input and output sizes, and nothing needs padding
or masking.
"""

# %%
# One group per agent, each with its own spaces
# ---------------------------------------------
import matplotlib.pyplot as plt
import torch
from torchrl.collectors import Collector

from harl_torchrl.algorithms import build_on_policy_updater
from harl_torchrl.envs import make_pettingzoo_env
from harl_torchrl.modules import (
    ValueNorm,
    joint_policy,
    make_actors,
    make_central_critic,
    observation_critic_inputs,
)
from harl_torchrl.objectives import CentralValueLoss

torch.manual_seed(0)
env = make_pettingzoo_env(
    "simple_speaker_listener",
    num_envs=32,
    max_steps=25,
    continuous_actions=False,
    seed=0,
)
for group in env.group_map:
    obs = env.observation_spec[group, "observation"].shape[-1]
    n_actions = env.action_spec[group, "action"].space.n
    print(f"{group:11s} observation size {obs:2d}   actions {n_actions}")

# %%
# The actors follow the spaces: the speaker's first layer takes 3 inputs and its
# head has 3 logits; the listener's takes 11 and has 5. The centralised critic reads
# MPE's global state (the two observations side by side).
actors = make_actors(env, hidden_sizes=[64, 64])
for name, actor in actors.items():
    net = actor.module[0].module
    print(f"{name:11s} first layer {net.trunk[1]}   head {net.head}")
critic_keys, critic_features = observation_critic_inputs(env)
print("critic reads", critic_keys, "with", critic_features, "features")

# %%
# HAPPO, sequential updates over two unlike agents
# ------------------------------------------------
critic = make_central_critic(
    critic_keys, critic_features, value_norm=ValueNorm(), hidden_sizes=[64, 64]
)
value_loss = CentralValueLoss(critic)
value_loss.make_value_estimator(gamma=0.99, lmbda=0.95)
updater = build_on_policy_updater(
    {"name": "happo", "actor_lr": 1e-3, "critic_lr": 1e-3}, actors, value_loss, seed=0
)
collector = Collector(
    env,
    joint_policy(actors),
    frames_per_batch=800,
    total_frames=800 * 15,
    auto_register_policy_transforms=False,
)
returns, entropies = [], {name: [] for name in actors}
for i, batch in enumerate(collector):
    value_loss.compute_advantage(batch)
    diagnostics = updater.update(batch)
    done = batch["next", "done"].squeeze(-1)
    returns.append(batch["next", "episode_reward"][done].mean().item())
    for name in actors:
        entropies[name].append(diagnostics[name, "entropy"].item())
    if i % 5 == 0:
        print(
            f"iter {i:2d}  team return {returns[-1]:8.2f}  order {updater.last_order}"
        )
collector.shutdown()

fig, (ax_ret, ax_ent) = plt.subplots(1, 2, figsize=(9, 3.2))
ax_ret.plot(range(1, len(returns) + 1), returns, marker="o")
ax_ret.set_xlabel("iteration (800 env steps each)")
ax_ret.set_ylabel("mean episode team return")
for name, values in entropies.items():
    ax_ent.plot(range(1, len(values) + 1), values, marker=".", label=name)
ax_ent.set_xlabel("iteration")
ax_ent.set_ylabel("policy entropy")
ax_ent.legend()
fig.suptitle("HAPPO on MPE simple_speaker_listener (tiny budget)")
fig.tight_layout()

# %%
# The speaker's entropy is that of a 3-way choice (at most :math:`\log 3`), the
# listener's of a 5-way one (at most :math:`\log 5`): each policy lives in its own
# space. The recipe runs the same with (see :doc:`/quickstart`)
# ``python recipes/train.py env=pettingzoo/simple_speaker_listener``.

"""
HAPPO in your own TorchRL loop
==============================

The library's losses and its :class:`~harl_torchrl.sequential.SequentialUpdater` are
TorchRL components: this tutorial trains HAPPO on VMAS ``balance`` with a loop written
from TorchRL pieces only:

* TorchRL's :class:`~torchrl.collectors.Collector` gathers the rollouts;
* TorchRL's :class:`~torchrl.objectives.value.GAE` computes the advantage from the
  library's centralised critic;
* a TorchRL :class:`~torchrl.data.ReplayBuffer` with a
  :class:`~torchrl.data.SamplerWithoutReplacement` cuts each batch into shuffled
  minibatches, inside an agent trainer of our own;
* the :class:`~harl_torchrl.sequential.SequentialUpdater` runs the sequential scheme
  (a random agent order, the factor :math:`M` passed from agent to agent).

The budget here is tiny (about half a minute of one CPU core): the curve only
starts to rise.
"""

# %%
# The environment, the actors and the critic
# ------------------------------------------
# :func:`~harl_torchrl.envs.make_vmas_env` builds VMAS with one TensorDict group per
# agent, the team reward at the root and the time limit reported as truncation.
# Each agent gets its own actor (its own parameters); the critic reads every agent's
# observation and predicts normalised values, with the
# :class:`~harl_torchrl.modules.ValueNorm` given once, here.
import logging

import matplotlib.pyplot as plt
import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from torchrl.objectives.value import GAE

from harl_torchrl.envs import make_vmas_env
from harl_torchrl.modules import (
    ValueNorm,
    joint_policy,
    make_actors,
    make_central_critic,
    observation_critic_inputs,
)
from harl_torchrl.objectives import CentralValueLoss, HAPPOLoss
from harl_torchrl.sequential import SequentialUpdater

logging.getLogger("torchrl").setLevel(logging.WARNING)  # no INFO line per buffer
torch.manual_seed(0)
env = make_vmas_env("balance", num_envs=16, max_steps=50, n_agents=3, seed=0)
actors = make_actors(env, hidden_sizes=[64, 64])
critic = make_central_critic(
    *observation_critic_inputs(env), value_norm=ValueNorm(), hidden_sizes=[64, 64]
)
print("agents:", list(actors))
print("critic reads:", observation_critic_inputs(env)[0])

# %%
# TorchRL's GAE on the library's critic
# -------------------------------------
# The critic writes ``"state_value"`` (in return units) and
# ``"state_value_normalized"``; GAE reads the former. Giving the estimator to the
# value loss makes ``value_loss.value_estimator`` the same object.
value_loss = CentralValueLoss(critic)
gae = GAE(gamma=0.99, lmbda=0.95, value_network=critic)
value_loss.make_value_estimator(gae)
assert value_loss.value_estimator is gae


# %%
# An agent trainer with a replay-buffer minibatcher
# -------------------------------------------------
# The updater needs, per agent, an object with a ``loss`` and a
# ``train(batch, generator)`` method (the
# :class:`~harl_torchrl.sequential.AgentTrainer` protocol). Ours puts the batch in
# a TorchRL replay buffer and samples it without replacement: one pass over the
# buffer is one epoch of shuffled minibatches. The critic's trainer first moves the
# value normaliser to the new targets
# (:meth:`~harl_torchrl.objectives.CentralValueLoss.update_value_norm`).
class ReplayBufferTrainer:
    def __init__(self, loss, lr, *, epochs=5, minibatch_size=200, max_grad_norm=10.0):
        # the batch's steps are the buffer's samples; the factor and the normalised
        # advantage travel with them, as the updater wrote them
        self.loss = loss
        self.optimizer = torch.optim.Adam(loss.parameters(), lr=lr, eps=1e-5)
        self.epochs = epochs
        self.max_grad_norm = max_grad_norm
        self.buffer = ReplayBuffer(
            storage=LazyTensorStorage(800),  # one batch
            sampler=SamplerWithoutReplacement(drop_last=True),
            batch_size=minibatch_size,
        )

    def train(self, batch, generator):
        if isinstance(self.loss, CentralValueLoss):
            self.loss.update_value_norm(batch)
        self.buffer.empty()
        self.buffer.extend(batch.reshape(-1))
        totals, steps = {}, 0
        for _ in range(self.epochs):
            for minibatch in self.buffer:  # one pass = every sample once, shuffled
                out = self.loss(minibatch)
                loss = sum(v for k, v in out.items() if k.startswith("loss_"))
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    self.loss.parameters(), self.max_grad_norm
                )
                self.optimizer.step()
                for key, value in out.items():
                    totals[key] = totals.get(key, 0.0) + value.detach()
                steps += 1
        return out.empty().update({k: v / steps for k, v in totals.items()})


updater = SequentialUpdater(
    {
        name: ReplayBufferTrainer(HAPPOLoss(actor), lr=5e-4)
        for name, actor in actors.items()
    },
    ReplayBufferTrainer(value_loss, lr=5e-4),
    seed=0,
)

# %%
# The loop
# --------
# Each iteration: collect 800 steps (16 environments x 50 steps), compute GAE, then
# one call of :meth:`~harl_torchrl.sequential.SequentialUpdater.update` trains the
# agents one after another in a fresh random order and the critic last.
collector = Collector(
    env,
    joint_policy(actors),
    frames_per_batch=800,
    total_frames=800 * 12,
    auto_register_policy_transforms=False,
)
returns, orders = [], []
for i, batch in enumerate(collector):
    with torch.no_grad():
        gae(batch)
    diagnostics = updater.update(batch)
    done = batch["next", "done"].squeeze(-1)
    returns.append(batch["next", "episode_reward"][done].mean().item())
    orders.append(updater.last_order)
    if i % 3 == 0:
        kl = {name: round(diagnostics[name, "kl_approx"].item(), 4) for name in actors}
        print(
            f"iter {i:2d}  return {returns[-1]:7.3f}  "
            f"order {updater.last_order}  KL {kl}"
        )
collector.shutdown()

# %%
# What the updater reported
# -------------------------
# Per agent: the averaged loss terms, ``clip_fraction``, ``kl_approx``, ``ESS`` and
# the factor after its turn; under ``"critic"``, the value loss and explained
# variance.
for group in [*actors, "critic"]:
    values = {key: round(value.item(), 4) for key, value in diagnostics[group].items()}
    print(group, values)

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, len(returns) + 1), returns, marker="o")
ax.set_xlabel("iteration (800 env steps each)")
ax.set_ylabel("mean episode team return")
ax.set_title("HAPPO on VMAS balance, own TorchRL loop")
fig.tight_layout()

# %%
# The same loop with the library's own trainer is
# :class:`~harl_torchrl.sequential.PolicyTrainer` /
# :class:`~harl_torchrl.sequential.CriticTrainer` in place of ``ReplayBufferTrainer``,
# and ``value_loss.compute_advantage(batch)`` in place of ``gae(batch)``: see
# :doc:`/quickstart`. The recipe ``recipes/train.py`` adds logging, evaluation and
# checkpoints around it.

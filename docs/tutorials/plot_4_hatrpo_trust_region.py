r"""
HATRPO's trust region
=====================

HATRPO updates each agent by one natural-gradient step that must stay inside a
trust region :math:`\bar{\mathrm{KL}}(\pi_{\text{old}} \| \pi_\theta) \le \delta`
(see :doc:`/algos/hatrpo`). The step is found by conjugate gradient on
Fisher-vector products, scaled so that its quadratic KL model equals
:math:`\delta`, then shrunk by a backtracking line search until the *measured*
KL is at most :math:`\delta` and the surrogate improves by at least
``accept_ratio`` of the linear prediction. A search that finds no such step
restores the parameters exactly.

This tutorial trains HATRPO on VMAS ``balance`` for a few iterations and plots,
for every agent update, the KL reached and the line search's outcome, from the
diagnostics that :class:`~harl_torchrl.sequential.TrustRegionTrainer` reports.
"""

# %%
# Setup: the library's builder for the ``algo`` config
# ----------------------------------------------------
# :func:`~harl_torchrl.algorithms.build_on_policy_updater` takes the same
# settings as ``algo=hatrpo`` (:class:`~harl_torchrl.config.HATRPOConfig`; omitted
# keys keep the reference's defaults: :math:`\delta = 0.01`, 10 CG iterations,
# damping 0.1, 10 line-search steps, shrink 0.8, accept ratio 0.5).
import matplotlib.pyplot as plt
import torch
from torchrl.collectors import Collector

from harl_torchrl.algorithms import build_on_policy_updater
from harl_torchrl.envs import make_vmas_env
from harl_torchrl.modules import (
    ValueNorm,
    joint_policy,
    make_actors,
    make_central_critic,
    observation_critic_inputs,
)
from harl_torchrl.objectives import CentralValueLoss

torch.manual_seed(0)
env = make_vmas_env("balance", num_envs=16, max_steps=50, n_agents=3, seed=0)
actors = make_actors(env, hidden_sizes=[64, 64])
critic = make_central_critic(
    *observation_critic_inputs(env), value_norm=ValueNorm(), hidden_sizes=[64, 64]
)
value_loss = CentralValueLoss(critic)
value_loss.make_value_estimator(gamma=0.99, lmbda=0.95)
max_kl = 0.01
updater = build_on_policy_updater(
    {"name": "hatrpo", "max_kl": max_kl}, actors, value_loss, seed=0
)
print(type(updater.agents["agent_0"]).__name__, updater.agents["agent_0"].settings)

# %%
# Training, and what each step reports
# ------------------------------------
collector = Collector(
    env,
    joint_policy(actors),
    frames_per_batch=800,
    total_frames=800 * 10,
    auto_register_policy_transforms=False,
)
records = []  # one per agent update
for iteration, batch in enumerate(collector):
    value_loss.compute_advantage(batch)
    diagnostics = updater.update(batch)
    for turn, name in enumerate(updater.last_order):
        d = diagnostics[name]
        records.append(
            {
                "iteration": iteration,
                "turn": turn,
                "agent": name,
                "kl": d["kl"].item(),
                "steps": int(d["line_search_steps"].item()),
                "accepted": bool(d["accepted"].item()),
                "expected": d["expected_improvement"].item(),
                "actual": d["actual_improvement"].item(),
            }
        )
collector.shutdown()
for r in records[:6]:
    print(
        f"iter {r['iteration']} turn {r['turn']} {r['agent']}: KL {r['kl']:.5f}, "
        f"{r['steps']} line-search tries, accepted {r['accepted']}, "
        f"improvement {r['actual']:.4f} of {r['expected']:.4f} predicted"
    )
accepted = sum(r["accepted"] for r in records)
print(
    f"{accepted} of {len(records)} steps accepted; "
    f"largest KL {max(r['kl'] for r in records):.5f} (delta {max_kl})"
)
assert all(r["kl"] <= max_kl + 1e-6 for r in records if r["accepted"])

# %%
# The plots
# ---------
# Left: the measured KL of every agent update (the trust region :math:`\delta`
# dashed); crosses mark rejected searches. Middle: how many candidate steps the line
# search tried (1 means the full step was accepted). Right: the surrogate's
# improvement against the linear prediction, with the acceptance line at
# ``accept_ratio = 0.5``.
fig, (ax_kl, ax_steps, ax_imp) = plt.subplots(1, 3, figsize=(11, 3.4))
colors = dict(zip(actors, ["tab:blue", "tab:orange", "tab:green"], strict=True))
for name in actors:
    rs = [(i, r) for i, r in enumerate(records) if r["agent"] == name]
    ax_kl.scatter(
        [i for i, r in rs],
        [r["kl"] for _, r in rs],
        color=colors[name],
        marker="o",
        s=18,
        label=name,
    )
    ax_steps.scatter(
        [i for i, _ in rs], [r["steps"] for _, r in rs], color=colors[name], s=18
    )
    ax_imp.scatter(
        [r["expected"] for _, r in rs],
        [r["actual"] for _, r in rs],
        color=colors[name],
        s=18,
    )
rejected = [(i, r) for i, r in enumerate(records) if not r["accepted"]]
ax_kl.scatter(
    [i for i, _ in rejected],
    [r["kl"] for _, r in rejected],
    color="k",
    marker="x",
    s=30,
    label="rejected",
)
ax_kl.axhline(max_kl, color="k", linestyle="--", linewidth=1)
ax_kl.set_ylim(0, 1.15 * max_kl)
ax_kl.set_xlabel("agent update")
ax_kl.set_ylabel("measured mean KL")
ax_kl.legend(fontsize=7)
ax_steps.set_xlabel("agent update")
ax_steps.set_ylabel("line-search tries")
ax_steps.set_ylim(0, 11)
limit = max(r["expected"] for r in records) * 1.1
ax_imp.plot(
    [0, limit], [0, limit], color="k", linewidth=0.8, label="actual = predicted"
)
ax_imp.plot(
    [0, limit],
    [0, 0.5 * limit],
    color="k",
    linestyle="--",
    linewidth=0.8,
    label="accept ratio 0.5",
)
ax_imp.set_xlabel("predicted improvement")
ax_imp.set_ylabel("actual improvement")
ax_imp.legend(fontsize=7)
fig.tight_layout()

# %%
# The full step's quadratic model puts its KL exactly at :math:`\delta`; the
# measured KL of a neural policy differs, so the search often shrinks the step once
# or twice (each try multiplies it by 0.8). Every accepted step is inside the trust
# region, which ``tests/test_trust_region.py`` also checks on explicit Fisher
# matrices.

"""HAD3QN test fixtures shared by tests/objectives/test_d3qn.py and tests/sequential/test_best_response.py."""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torchrl.data import Categorical

from harl_torchrl.modules.dueling import make_dueling_agent_qnet, make_joint_dueling_critic
from harl_torchrl.objectives.d3qn import HAD3QNAgentLoss, HAD3QNCriticLoss

KW = {"hidden_sizes": (16,), "head_hidden_sizes": (16,)}


def build(nvec=(2, 2), *, next_action="target_agents", distill="all_actions", obs_dim=1, seed=0):
    torch.manual_seed(seed)
    agents = [f"agent_{i}" for i in range(len(nvec))]
    specs = {a: Categorical(n=n) for a, n in zip(agents, nvec, strict=True)}
    losses = {
        a: HAD3QNAgentLoss(a, make_dueling_agent_qnet(a, obs_dim, s, **KW), distill=distill) for a, s in specs.items()
    }
    critic = make_joint_dueling_critic(["state"], obs_dim, specs, **KW)
    critic_loss = HAD3QNCriticLoss(
        critic, dict(zip(agents, nvec, strict=True)), agent_losses=losses, next_action=next_action, gamma=0.9
    )
    return agents, losses, critic_loss


def batch(agents, nvec, n=16, obs=None):
    obs = torch.ones(n, 1) if obs is None else obs
    td = TensorDict({"state": obs}, [n])
    for a, k in zip(agents, nvec, strict=True):
        td.set((a, "observation"), obs)
        td.set((a, "action"), torch.randint(0, k, (n,)))
    return td

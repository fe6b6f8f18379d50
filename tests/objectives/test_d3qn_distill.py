"""HAD3QN's two distillation targets (HAD3QNAgentLoss ``distill``) on a one-step matrix game.

The common-payoff game r = [[10, -20], [5, 4]] has one pure Nash equilibrium, the optimum
(0, 0); an agent that averages over its partner's uniform exploration prefers (1, 0). Both
variants train on the same uniformly explored joint actions with the same critic, so only the
distillation differs. Over seeds 0-9 (150 steps) ``all_actions`` ends at the optimum on 10 and
``greedy`` (the reference's target) on 4; this test replays seed 3, one where ``greedy`` stays
in the trap.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Categorical
from torchrl.objectives import SoftUpdate

from harl_torchrl.modules import make_dueling_agent_qnet, make_joint_dueling_critic
from harl_torchrl.objectives import HAD3QNAgentLoss, HAD3QNCriticLoss
from harl_torchrl.sequential import ActorTrainer, HAD3QNActorStep

PAYOFF = torch.tensor([[10.0, -20.0], [5.0, 4.0]])
AGENTS = ("agent_0", "agent_1")
NET = {"hidden_sizes": (16,), "head_hidden_sizes": (16,)}


def _uniform_batch(n: int) -> TensorDict:
    """One-step transitions with uniformly random joint actions (constant observation)."""
    td = TensorDict({"state": torch.ones(n, 1)}, [n])
    for agent in AGENTS:
        td.set((agent, "observation"), torch.ones(n, 1))
        td.set((agent, "action"), torch.randint(0, 2, (n,)))
    reward = PAYOFF[td["agent_0", "action"], td["agent_1", "action"]].unsqueeze(-1)
    td.set("next", td.exclude("next").update({"reward": reward, "terminated": torch.ones(n, 1, dtype=torch.bool)}))
    return td


def _train(distill: str, seed: int, steps: int = 150) -> tuple[tuple[int, ...], list[torch.Tensor]]:
    """The final greedy joint action and the critic's parameters after ``steps`` HAD3QN updates."""
    torch.manual_seed(seed)
    specs = {agent: Categorical(n=2) for agent in AGENTS}
    losses = {a: HAD3QNAgentLoss(a, make_dueling_agent_qnet(a, 1, specs[a], **NET), distill=distill) for a in AGENTS}
    critic = HAD3QNCriticLoss(
        make_joint_dueling_critic(["state"], 1, specs, **NET), {a: 2 for a in AGENTS}, agent_losses=losses
    )
    critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    trainers = {a: ActorTrainer(losses[a], torch.optim.Adam(losses[a].parameters(), lr=1e-2)) for a in AGENTS}
    step = HAD3QNActorStep(critic, trainers, seed=seed)
    updaters = [SoftUpdate(critic, tau=0.05), *(SoftUpdate(loss, tau=0.05) for loss in losses.values())]
    for _ in range(steps):
        batch = _uniform_batch(256)
        loss = critic(batch)["loss_qvalue"]
        critic_opt.zero_grad()
        loss.backward()
        critic_opt.step()
        step.step(batch)
        for updater in updaters:
            updater.step()
    probe = _uniform_batch(1)
    greedy = tuple(int(losses[a].greedy(probe)) for a in AGENTS)
    return greedy, [p.detach().clone() for p in critic.parameters()]


@pytest.mark.filterwarnings("ignore:No target network updater")
def test_all_actions_distillation_escapes_the_trap_that_holds_the_greedy_one():
    all_actions, critic_all = _train("all_actions", seed=3)
    greedy, critic_greedy = _train("greedy", seed=3)
    # same data and the same critic: the distillation target is the only difference
    assert len(critic_all) == len(critic_greedy)
    assert all(torch.equal(a, b) for a, b in zip(critic_all, critic_greedy, strict=True))
    assert all_actions == (0, 0)  # the optimum, return 10
    assert greedy == (1, 0)  # the trap of averaging over the partner's exploration, return 5

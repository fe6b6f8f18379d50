"""HAD3QN's two distillation targets on a one-step matrix game, over several seeds.

The common-payoff game r = [[10, -20], [5, 4]] has one pure Nash equilibrium, the optimum
(0, 0); an agent that averages over its partner's uniform exploration prefers (1, 0).
Both variants train on uniformly explored joint actions with the same critic; the script
prints, per variant, how many seeds end with the greedy joint action at the optimum.

    OMP_NUM_THREADS=1 python recipes/probe_had3qn_distill.py --seeds 10 --steps 150
"""

from __future__ import annotations

import argparse
import warnings

import torch
from tensordict import TensorDict
from torchrl.data import Categorical
from torchrl.objectives import SoftUpdate

from harl_torchrl.modules import make_dueling_agent_qnet, make_joint_dueling_critic
from harl_torchrl.objectives import HAD3QNAgentLoss, HAD3QNCriticLoss
from harl_torchrl.sequential import ActorTrainer, HAD3QNActorStep

PAYOFF = torch.tensor([[10.0, -20.0], [5.0, 4.0]])
AGENTS = ("agent_0", "agent_1")


def uniform_batch(n: int) -> TensorDict:
    """One-step transitions with uniformly random joint actions (constant observation)."""
    td = TensorDict({"state": torch.ones(n, 1)}, [n])
    for agent in AGENTS:
        td.set((agent, "observation"), torch.ones(n, 1))
        td.set((agent, "action"), torch.randint(0, 2, (n,)))
    reward = PAYOFF[td["agent_0", "action"], td["agent_1", "action"]].unsqueeze(-1)
    td.set("next", td.exclude("next").update({"reward": reward, "terminated": torch.ones(n, 1, dtype=torch.bool)}))
    return td


def run(distill: str, seed: int, steps: int) -> tuple[int, int]:
    """Trains HAD3QN with one distillation target; returns the final greedy joint action."""
    torch.manual_seed(seed)
    net = {"hidden_sizes": (16,), "head_hidden_sizes": (16,)}
    specs = {agent: Categorical(n=2) for agent in AGENTS}
    losses = {a: HAD3QNAgentLoss(a, make_dueling_agent_qnet(a, 1, specs[a], **net), distill=distill) for a in AGENTS}
    critic = HAD3QNCriticLoss(
        make_joint_dueling_critic(["state"], 1, specs, **net), {a: 2 for a in AGENTS}, agent_losses=losses
    )
    critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    trainers = {a: ActorTrainer(losses[a], torch.optim.Adam(losses[a].parameters(), lr=1e-2)) for a in AGENTS}
    step = HAD3QNActorStep(critic, trainers, seed=seed)
    updaters = [SoftUpdate(critic, tau=0.05), *(SoftUpdate(loss, tau=0.05) for loss in losses.values())]
    for _ in range(steps):
        batch = uniform_batch(256)
        loss = critic(batch)["loss_qvalue"]
        critic_opt.zero_grad()
        loss.backward()
        critic_opt.step()
        step.step(batch)
        for updater in updaters:
            updater.step()
    probe = uniform_batch(1)
    return tuple(int(losses[a].greedy(probe)) for a in AGENTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="No target network updater")
    for distill in ("all_actions", "greedy"):
        finals = [run(distill, seed, args.steps) for seed in range(args.seeds)]
        hits = sum(final == (0, 0) for final in finals)
        print(f"distill={distill:<12} optimum (0, 0) reached on {hits}/{args.seeds} seeds; finals: {finals}")


if __name__ == "__main__":
    main()

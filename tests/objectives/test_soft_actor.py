"""HASAC: the soft actor loss, the soft TD target, and small games solved by the sequential scheme."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.data import Bounded, Categorical, MultiCategorical
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SoftUpdate

from harl_torchrl.modules.q_critics import JointQCritic
from harl_torchrl.modules.soft_actors import make_soft_agent_actor
from harl_torchrl.objectives.joint_q import JointQLoss
from harl_torchrl.objectives.soft_actor import SoftActorLoss, SoftNextActions
from harl_torchrl.objectives.temperature import TemperatureLoss, TemperatureStep, target_entropy
from harl_torchrl.sequential import ActorTrainer, SequentialActorStep
from tests.games import trap_payoff

AGENTS = ("x", "y")


def _box_actors(hidden=(16,)):
    return {a: make_soft_agent_actor(a, 1, Bounded(-1.0, 1.0, shape=(1,)), hidden_sizes=hidden) for a in AGENTS}


def _critic(action_size: int = 1, num_classes=None, hidden=(64, 64)) -> JointQCritic:
    return JointQCritic(
        [("x", "observation")],
        1,
        [(a, "action") for a in AGENTS],
        [action_size] * len(AGENTS),
        num_classes=num_classes,
        hidden_sizes=hidden,
    )


def _batch(n: int = 8, discrete: int | None = None) -> TensorDict:
    td = TensorDict({}, [n])
    for a in AGENTS:
        td.set((a, "observation"), torch.ones(n, 1))
        td.set(
            (a, "action"),
            torch.randint(0, discrete, (n,)) if discrete else torch.rand(n, 1) * 2 - 1,
        )
    return td


def test_loss_against_a_hand_computation():
    torch.manual_seed(0)
    actors = _box_actors()
    critic = TensorDictModule(
        lambda ax, ay: torch.cat([-((ax - 0.3) ** 2) - ay, -((ax - 0.3) ** 2) + ay], -1),
        [("x", "action"), ("y", "action")],
        ["state_action_value"],
    )
    loss = SoftActorLoss(actors["x"], critic, temperature=0.2)
    td = _batch()
    torch.manual_seed(1)
    out = loss(td)
    torch.manual_seed(1)
    dist = actors["x"].get_dist(td.copy())
    action = dist.rsample()
    log_prob = dist.log_prob(action)
    q = torch.minimum(-((action - 0.3) ** 2) - td["y", "action"], -((action - 0.3) ** 2) + td["y", "action"])
    torch.testing.assert_close(out["loss_actor"], (0.2 * log_prob - q.squeeze(-1)).mean())
    torch.testing.assert_close(out["log_prob"], log_prob.mean().detach())


def test_gradient_reaches_only_this_agents_actor_and_input_is_untouched():
    actors = _box_actors()
    critic = _critic()
    temperature = TemperatureLoss(target_entropy=-1.0, agent="x")
    loss = SoftActorLoss(actors["x"], critic, temperature)
    td = _batch()
    before = td.clone()
    loss(td)["loss_actor"].backward()
    grads = [p.grad for p in actors["x"].parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in actors["y"].parameters())
    assert all(p.grad is None for p in critic.parameters())
    assert temperature.log_alpha.grad is None
    assert (td == before).all()
    assert {id(p) for p in loss.parameters()} == {id(p) for p in actors["x"].parameters()}


def test_discrete_gradient_flows_through_the_gumbel_one_hot():
    actors = {a: make_soft_agent_actor(a, 1, Categorical(n=3), hidden_sizes=(8,)) for a in AGENTS}
    critic = _critic(action_size=3, num_classes=[3, 3])
    loss = SoftActorLoss(actors["x"], critic, temperature=0.0)  # the Q term alone
    loss(_batch(discrete=3))["loss_actor"].backward()
    head = actors["x"].module[0].module.head
    assert head.bias.grad is not None and head.bias.grad.abs().sum() > 0


def test_multi_discrete_agents_through_the_joint_critic():
    """Concatenated straight-through one-hots enter the critic as they are; buffer indices get one-hot encoded."""
    actors = {a: make_soft_agent_actor(a, 1, MultiCategorical(nvec=[2, 3]), hidden_sizes=(8,)) for a in AGENTS}
    critic = _critic(action_size=5, num_classes=[[2, 3], [2, 3]])
    td = _batch(4)
    for a in AGENTS:
        td.set((a, "action"), torch.stack([torch.randint(0, 2, (4,)), torch.randint(0, 3, (4,))], -1))
    out = SoftActorLoss(actors["x"], critic, temperature=0.1)(td)
    out["loss_actor"].backward()
    assert actors["x"].module[0].module.head.bias.grad.abs().sum() > 0
    assert all(p.grad is None for p in actors["y"].parameters())


def test_soft_target_against_a_hand_computation():
    """y = r + gamma^k (1 - term) (min_j Q'_j(s', a') - alpha_Q sum_i log pi_i(a'_i))."""
    torch.manual_seed(0)
    actors = _box_actors()
    critic = _critic()
    critic_temperature = TemperatureLoss(
        target_entropy=-2.0, alpha_init=0.3, log_prob_keys=[(a, "action_log_prob") for a in AGENTS]
    )
    loss = JointQLoss(critic, SoftNextActions(actors, critic_temperature), gamma=0.9)
    td = _batch(6)
    td.set("steps_to_next_obs", torch.tensor([1, 2, 3, 1, 2, 3]))
    nxt = _batch(6)
    nxt.set("reward", torch.arange(6.0).unsqueeze(-1))
    nxt.set("terminated", torch.tensor([False, False, True, False, True, False]).unsqueeze(-1))
    td.set("next", nxt)
    torch.manual_seed(5)
    y = loss.target_value(td).squeeze(-1)
    # by hand, drawing the same next actions
    torch.manual_seed(5)
    hand = nxt.copy()
    log_prob = torch.zeros(6)
    for a in AGENTS:
        dist = actors[a].get_dist(hand)
        action = dist.rsample()
        hand.set((a, "action"), action)
        log_prob = log_prob + dist.log_prob(action)
    with torch.no_grad():
        q = (
            torch.stack(
                [
                    net(torch.cat([hand["x", "observation"], hand["x", "action"], hand["y", "action"]], -1))
                    for net in critic.nets
                ],
                0,
            )
            .squeeze(-1)
            .min(0)
            .values
        )
    gamma_k = 0.9 ** torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    not_term = 1.0 - nxt["terminated"].squeeze(-1).float()
    expected = torch.arange(6.0) + gamma_k * not_term * (q - 0.3 * log_prob.detach())
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def _hasac(actors, spec, critic, *, lr=3e-3, alpha_init=0.05, auto_alpha=True, seed=0):
    """The HASAC update pieces: Q loss with the soft next actions, trainers with temperature hooks."""
    temperatures = {
        a: TemperatureLoss(target_entropy=target_entropy(spec), agent=a, alpha_init=alpha_init, fixed=not auto_alpha)
        for a in actors
    }
    critic_temperature = TemperatureLoss(
        target_entropy=sum(t.target_entropy for t in temperatures.values()),
        log_prob_keys=[(a, "action_log_prob") for a in actors],
        alpha_init=alpha_init,
        fixed=not auto_alpha,
    )
    q_loss = JointQLoss(critic, SoftNextActions(actors, critic_temperature), gamma=0.99)
    q_opt = torch.optim.Adam(q_loss.parameters(), lr=1e-2)
    updater = SoftUpdate(q_loss, tau=0.05)
    trainers = {
        a: ActorTrainer(
            SoftActorLoss(actor, critic, temperatures[a]),
            torch.optim.Adam(actor.parameters(), lr=lr),
            after_step=TemperatureStep(temperatures[a], lr=1e-2),
        )
        for a, actor in actors.items()
    }
    step = SequentialActorStep(trainers, seed=seed)
    critic_step = TemperatureStep(critic_temperature, lr=1e-2)

    def update(batch):
        q_out = q_loss(batch)
        q_opt.zero_grad()
        q_out["loss_qvalue"].backward()
        q_opt.step()
        out = step.step(batch)
        critic_step.update(sum(out[a]["log_prob"] for a in actors))
        updater.step()
        return q_out, out

    return update


def test_hasac_solves_a_continuous_one_step_game():
    """r = -(a_x + a_y - 0.4)^2 - (a_x - a_y - 0.8)^2: optimum a_x = 0.6, a_y = -0.2."""
    torch.manual_seed(0)
    actors = _box_actors()
    update = _hasac(actors, Bounded(-1.0, 1.0, shape=(1,)), _critic(), lr=1e-2, alpha_init=0.01, auto_alpha=False)
    for _ in range(300):
        batch = _batch(256)
        ax, ay = batch["x", "action"], batch["y", "action"]
        nxt = _batch(256)
        nxt.set("reward", -((ax + ay - 0.4) ** 2) - (ax - ay - 0.8) ** 2)
        nxt.set("terminated", torch.ones(256, 1, dtype=torch.bool))
        batch.set("next", nxt)
        update(batch)
    td = _batch(1)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        for actor in actors.values():
            actor(td)
    assert td["x", "action"].item() == pytest.approx(0.6, abs=0.1)
    assert td["y", "action"].item() == pytest.approx(-0.2, abs=0.1)


def _expected_trap_return(actors) -> float:
    td = _batch(1, discrete=2)
    probs = [actor.get_dist(td.copy()).probs[0].detach() for actor in actors.values()]
    payoff = trap_payoff(2)
    return float(sum(probs[0][i] * probs[1][j] * payoff[i, j] for i in range(2) for j in range(2)))


def test_hasac_escapes_the_trap_of_homogeneity():
    """Reward 1 only for (0, 1) and (1, 0): separate soft policies reach it (a shared one cannot exceed 0.5)."""
    torch.manual_seed(0)
    actors = {a: make_soft_agent_actor(a, 1, Categorical(n=2), hidden_sizes=(16,)) for a in AGENTS}
    update = _hasac(
        actors, Categorical(n=2), _critic(action_size=2, num_classes=[2, 2]), lr=1e-2, alpha_init=0.01, auto_alpha=False
    )
    payoff = trap_payoff(2)
    for _ in range(100):
        batch = _batch(128, discrete=2)
        nxt = _batch(128, discrete=2)
        nxt.set("reward", payoff[batch["x", "action"], batch["y", "action"]].unsqueeze(-1))
        nxt.set("terminated", torch.ones(128, 1, dtype=torch.bool))
        batch.set("next", nxt)
        update(batch)
    assert _expected_trap_return(actors) >= 0.9


def test_a_shared_soft_policy_stays_in_the_trap():
    """The same soft losses with one network for both agents (a simultaneous step): at most 2p(1-p) <= 0.5."""
    torch.manual_seed(0)
    actors = {a: make_soft_agent_actor(a, 1, Categorical(n=2), hidden_sizes=(16,)) for a in AGENTS}
    actors["y"].module[0].module = actors["x"].module[0].module  # one network, each agent its own keys
    critic = _critic(action_size=2, num_classes=[2, 2])
    q_loss = JointQLoss(critic, SoftNextActions(actors, 0.01), gamma=0.99)
    q_opt = torch.optim.Adam(q_loss.parameters(), lr=1e-2)
    losses = [SoftActorLoss(actor, critic, 0.01) for actor in actors.values()]
    opt = torch.optim.Adam(actors["x"].parameters(), lr=1e-2)
    payoff = trap_payoff(2)
    for _ in range(100):
        batch = _batch(128, discrete=2)
        nxt = _batch(128, discrete=2)
        nxt.set("reward", payoff[batch["x", "action"], batch["y", "action"]].unsqueeze(-1))
        nxt.set("terminated", torch.ones(128, 1, dtype=torch.bool))
        batch.set("next", nxt)
        q_opt.zero_grad()
        q_loss(batch)["loss_qvalue"].backward()
        q_opt.step()
        joint = batch.copy()
        with torch.no_grad():
            for actor in actors.values():
                actor(joint)
        opt.zero_grad()
        sum(loss(joint)["loss_actor"] for loss in losses).backward()
        opt.step()
    assert _expected_trap_return(actors) <= 0.5 + 1e-6

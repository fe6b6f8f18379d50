"""Stacked groups (TorchRL's layout): each agent of a stack is its own HA agent, as n one-agent groups are.

The equivalence tests build one stacked policy (``MultiAgentMLP(share_params=False)``) and n
one-agent policies holding copies of its slices, feed both the same batch (the stacked one's
columns), the same seeds and agent order, and compare the parameters at the end of an update.
"""

import copy

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MLP, IndependentNormal, MultiAgentMLP, ProbabilisticActor, TanhNormal

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import JointQCritic
from harl_torchrl.objectives import DeterministicActorLoss, HAA2CLoss, HAPPOLoss, HATRPOLoss
from harl_torchrl.sequential import (
    ActorTrainer,
    AgentStack,
    PolicyTrainer,
    SequentialActorStep,
    SequentialUpdater,
    TrustRegionTrainer,
)

N, OBS, ACT, B = 3, 5, 2, 64
NAMES = [f"agent_{k}" for k in range(N)]
CELLS, DEPTH = 16, 2


def _stacked_net(n=N, obs=OBS, out=2 * ACT, share=False, centralized=False, seed=0):
    torch.manual_seed(seed)
    return MultiAgentMLP(
        n_agent_inputs=obs,
        n_agent_outputs=out,
        n_agents=n,
        centralized=centralized,
        share_params=share,
        depth=DEPTH,
        num_cells=CELLS,
        activation_class=nn.Tanh,
    )


def _single_net(stacked, k, obs=OBS, out=2 * ACT, n=N, centralized=False):
    """An MLP holding a copy of agent k's slice of a stacked network."""
    net = MLP(
        in_features=obs * (n if centralized else 1),
        out_features=out,
        depth=DEPTH,
        num_cells=CELLS,
        activation_class=nn.Tanh,
    )
    state = {".".join(key): value.detach()[k].clone() for key, value in stacked.params.items(True, True)}
    net.load_state_dict(state)
    return net


def _bounds(n=N):
    low = -torch.arange(1.0, n + 1.0)[:, None].expand(n, ACT).clone()
    return low, -low


def _stochastic_policy(group, net, dist, low=None, high=None):
    kwargs = {} if dist is IndependentNormal else {"low": low, "high": high}
    return ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(net, NormalParamExtractor()),
            in_keys=[(group, "observation")],
            out_keys=[(group, "loc"), (group, "scale")],
        ),
        in_keys=[(group, "loc"), (group, "scale")],
        out_keys=[(group, "action")],
        distribution_class=dist,
        distribution_kwargs=kwargs,
        return_log_prob=True,
    )


def _policies(dist=TanhNormal, centralized=False):
    """(stacked policy, {name: one-agent policy with agent k's weights})."""
    low, high = _bounds()
    stacked_net = _stacked_net(centralized=centralized)
    stacked = _stochastic_policy("agents", stacked_net, dist, low, high)
    singles = {
        name: _stochastic_policy(name, _single_net(stacked_net, k, centralized=centralized), dist, low[k], high[k])
        for k, name in enumerate(NAMES)
    }
    return stacked, singles


def _on_policy_batches(stacked, seed=1, per_agent_advantage=False, centralized=False):
    """The stacked batch, collected by the stacked policy, and its one-group-per-agent copy."""
    torch.manual_seed(seed)
    td = TensorDict({"agents": TensorDict({"observation": torch.randn(B, N, OBS)}, [B, N])}, [B])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        td = stacked(td)
    advantage = torch.randn(B, 1)
    td["advantage"] = advantage.unsqueeze(1).expand(B, N, 1).clone() if per_agent_advantage else advantage
    singles = TensorDict({"advantage": advantage.clone()}, [B])
    for k, name in enumerate(NAMES):
        for key in ("observation", "action", "action_log_prob", "loc", "scale"):
            singles[name, key] = td["agents", key][:, k].clone()
        if centralized:  # each agent's network reads every agent's observation
            singles[name, "observation"] = td["agents", "observation"].reshape(B, N * OBS).clone()
    return td, singles


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _slices(stacked, k):
    return [p.detach()[k].clone() for p in stacked.parameters()]


class _Recorder:
    """A trainer that records every agent's parameters right after each agent's turn."""

    def __init__(self, trainer, name, log, snapshot):
        self.trainer, self.name, self.log, self.snapshot = trainer, name, log, snapshot
        self.loss = trainer.loss

    def train(self, batch, generator):
        before = self.snapshot()
        out = self.trainer.train(batch, generator)
        self.log.append((self.name, before, self.snapshot()))
        return out


def _updaters(stacked, singles, loss_class, lr=3e-2, **loss_kwargs):
    stack = AgentStack(stacked, NAMES)
    stacked_trainers = {
        name: PolicyTrainer(
            loss_class(actor, **loss_kwargs), torch.optim.Adam(actor.parameters(), lr=lr), epochs=3, num_minibatches=2
        )
        for name, actor in stack.actors.items()
    }
    single_trainers = {
        name: PolicyTrainer(
            loss_class(actor, **loss_kwargs), torch.optim.Adam(actor.parameters(), lr=lr), epochs=3, num_minibatches=2
        )
        for name, actor in singles.items()
    }
    return (
        stack,
        SequentialUpdater(stacked_trainers, critic=None, seed=7),
        SequentialUpdater(single_trainers, critic=None, seed=7),
    )


@pytest.mark.parametrize("loss_class", [HAPPOLoss, HAA2CLoss])
@pytest.mark.parametrize("centralized", [False, True])
@pytest.mark.parametrize("dist", [IndependentNormal, TanhNormal])
def test_a_stack_ends_an_update_where_one_group_per_agent_ends(loss_class, centralized, dist):
    stacked, singles = _policies(dist=dist, centralized=centralized)
    td, singles_td = _on_policy_batches(stacked, centralized=centralized)
    # TanhNormal has no closed-form entropy: its estimate draws samples, n at a time for the stack
    entropy_coeff = 0.01 if dist is IndependentNormal else 0.0
    _, stacked_updater, single_updater = _updaters(stacked, singles, loss_class, entropy_coeff=entropy_coeff)
    start = [_slices(stacked, k) for k in range(N)]
    for _ in range(2):  # two iterations: Adam's moments and step counts carry over per agent
        stacked_out = stacked_updater.update(td)
        single_out = single_updater.update(singles_td)
        assert stacked_updater.last_order == single_updater.last_order
    for k, name in enumerate(NAMES):
        for got, want, initial in zip(_slices(stacked, k), _params(singles[name]), start[k], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            assert not torch.equal(got, initial)  # every agent moved
        torch.testing.assert_close(
            stacked_out[name, "factor_after"], single_out[name, "factor_after"], rtol=1e-5, atol=1e-6
        )


def test_an_agent_not_yet_updated_is_bit_identical_when_the_previous_agent_finishes():
    stacked, _ = _policies()
    td, _ = _on_policy_batches(stacked)
    stack = AgentStack(stacked, NAMES)
    log = []

    def snapshot():
        return [p.detach().clone() for p in stacked.parameters()]

    trainers = {
        name: _Recorder(
            PolicyTrainer(HAPPOLoss(actor), torch.optim.Adam(actor.parameters(), lr=3e-2), epochs=2),
            name,
            log,
            snapshot,
        )
        for name, actor in stack.actors.items()
    }
    updater = SequentialUpdater(trainers, critic=None, seed=0)
    initial = snapshot()
    torch.manual_seed(0)
    updater.update(td)
    done = set()
    for name, before, after in log:
        k = NAMES.index(name)
        for b, a, i in zip(before, after, initial, strict=True):
            for j in range(N):
                if j == k:
                    assert not torch.equal(a[j], b[j])  # this agent moved
                else:
                    assert torch.equal(a[j], b[j])  # nobody else did, during its turn
                if j != k and NAMES[j] not in done:
                    assert torch.equal(a[j], i[j])  # agents still to come: as they started
        done.add(name)
    assert [name for name, _, _ in log] == updater.last_order


def test_each_agent_has_its_own_adam_state_and_a_zero_gradient_does_not_move_it():
    stacked, _ = _policies()
    td, _ = _on_policy_batches(stacked)
    td["factor"] = torch.ones(B, 1)
    stack = AgentStack(stacked, NAMES)
    optimizers = {name: torch.optim.Adam(actor.parameters(), lr=1e-2) for name, actor in stack.actors.items()}
    losses = {name: HAPPOLoss(actor, entropy_coeff=0.0) for name, actor in stack.actors.items()}
    for _ in range(3):
        optimizers["agent_0"].zero_grad()
        losses["agent_0"](td)["loss_objective"].backward()
        optimizers["agent_0"].step()
    agent_0 = _slices(stacked, 0)
    for _ in range(3):
        optimizers["agent_1"].zero_grad()
        losses["agent_1"](td)["loss_objective"].backward()
        optimizers["agent_1"].step()
    assert all(torch.equal(a, b) for a, b in zip(_slices(stacked, 0), agent_0, strict=True))
    steps = {name: [float(s["step"]) for s in opt.state.values()] for name, opt in optimizers.items()}
    assert steps == {"agent_0": [3.0] * 6, "agent_1": [3.0] * 6, "agent_2": []}

    # the trap the views avoid: one Adam over the stacked tensor moves agent 0 on agent 1's steps
    trap, _ = _policies()
    trap_optimizer = torch.optim.Adam(trap.parameters(), lr=1e-2)
    for agent in (0, 1):
        trap_optimizer.zero_grad()
        trap.get_dist(td.copy()).log_prob(td["agents", "action"])[:, agent].mean().backward()
        before = _slices(trap, 0)
        trap_optimizer.step()
    assert not all(torch.equal(a, b) for a, b in zip(_slices(trap, 0), before, strict=True))


def test_a_per_agent_advantage_is_read_per_agent():
    stacked, singles = _policies()
    td, singles_td = _on_policy_batches(stacked, per_agent_advantage=True)
    stack = AgentStack(stacked, NAMES)
    td["factor"] = torch.ones(B, 1)
    singles_td["factor"] = torch.ones(B, 1)
    for name in NAMES:
        torch.manual_seed(0)
        got = HAPPOLoss(stack.actors[name])(td)
        torch.manual_seed(0)
        want = HAPPOLoss(singles[name])(singles_td)
        torch.testing.assert_close(got["loss_objective"], want["loss_objective"], rtol=1e-5, atol=1e-6)


def test_several_groups_stacked_and_single_train_as_one_group_per_agent():
    """A stack of two and a one-agent group of another shape, against three one-agent groups."""
    stacked_net = _stacked_net(n=2)
    stacked = _stochastic_policy("team", stacked_net, IndependentNormal)
    torch.manual_seed(5)
    solo_net = MLP(in_features=OBS + 2, out_features=2 * ACT, depth=DEPTH, num_cells=CELLS, activation_class=nn.Tanh)
    solo = _stochastic_policy("solo", solo_net, IndependentNormal)
    stack = AgentStack(stacked, ["team_0", "team_1"])
    singles = {
        f"team_{k}": _stochastic_policy(f"team_{k}", _single_net(stacked_net, k, n=2), IndependentNormal)
        for k in range(2)
    }
    singles["solo"] = copy.deepcopy(solo)
    torch.manual_seed(1)
    td = TensorDict(
        {
            "team": TensorDict({"observation": torch.randn(B, 2, OBS)}, [B, 2]),
            "solo": {"observation": torch.randn(B, OBS + 2)},
            "advantage": torch.randn(B, 1),
        },
        [B],
    )
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        td = solo(stacked(td))
    singles_td = TensorDict({"advantage": td["advantage"], "solo": td["solo"].clone()}, [B])
    for k in range(2):
        for key in ("observation", "action", "action_log_prob"):
            singles_td[f"team_{k}", key] = td["team", key][:, k].clone()

    def trainers(actors):
        return {
            name: PolicyTrainer(HAPPOLoss(actor), torch.optim.Adam(actor.parameters(), lr=3e-2), epochs=2)
            for name, actor in actors.items()
        }

    mixed = SequentialUpdater(trainers({**stack.actors, "solo": solo}), critic=None, seed=11)
    separate = SequentialUpdater(trainers(singles), critic=None, seed=11)
    for _ in range(3):
        torch.manual_seed(2)
        mixed.update(td)
        torch.manual_seed(2)
        separate.update(singles_td)
        assert mixed.last_order == separate.last_order
    assert sorted(mixed.last_order) == ["solo", "team_0", "team_1"]
    for k in range(2):
        for got, want in zip(_slices(stacked, k), _params(singles[f"team_{k}"]), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(_params(solo), _params(singles["solo"]), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_hatrpo_steps_the_agent_slice_as_one_group_per_agent_does():
    stacked, singles = _policies(dist=IndependentNormal)
    td, singles_td = _on_policy_batches(stacked)
    stack = AgentStack(stacked, NAMES)
    start = [_slices(stacked, k) for k in range(N)]
    stacked_updater = SequentialUpdater(
        {name: TrustRegionTrainer(HATRPOLoss(actor), max_kl=0.05) for name, actor in stack.actors.items()},
        critic=None,
        seed=3,
    )
    single_updater = SequentialUpdater(
        {name: TrustRegionTrainer(HATRPOLoss(actor), max_kl=0.05) for name, actor in singles.items()},
        critic=None,
        seed=3,
    )
    stacked_out = stacked_updater.update(td)
    single_out = single_updater.update(singles_td)
    assert stacked_updater.last_order == single_updater.last_order
    for k, name in enumerate(NAMES):
        assert stacked_out[name, "accepted"] == single_out[name, "accepted"] == 1.0
        assert stacked_out[name, "kl"] <= 0.05
        for got, want, initial in zip(_slices(stacked, k), _params(singles[name]), start[k], strict=True):
            # the stack differentiates the KL twice, one group per agent takes the Gauss-Newton product:
            # the same Fisher matrix, summed in another order
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
            assert not torch.equal(got, initial)


def test_hatrpo_moves_only_the_agent_in_its_turn():
    stacked, _ = _policies(dist=IndependentNormal)
    td, _ = _on_policy_batches(stacked)
    td["factor"] = torch.ones(B, 1)
    stack = AgentStack(stacked, NAMES)
    before = [p.detach().clone() for p in stacked.parameters()]
    out = TrustRegionTrainer(HATRPOLoss(stack.actors["agent_1"]), max_kl=0.05).train(td, torch.Generator())
    assert out["accepted"] == 1.0
    for b, a in zip(before, stacked.parameters(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and not torch.equal(a[1], b[1])


def _deterministic(group, net):
    return TensorDictModule(
        nn.Sequential(net, nn.Tanh()), in_keys=[(group, "observation")], out_keys=[(group, "action")]
    )


def test_hatd3_actor_step_on_a_stack_matches_one_group_per_agent():
    stacked_net = _stacked_net(out=ACT)
    stacked = _deterministic("agents", stacked_net)
    singles = {name: _deterministic(name, _single_net(stacked_net, k, out=ACT)) for k, name in enumerate(NAMES)}
    torch.manual_seed(4)
    stacked_critic = JointQCritic(["state"], 7, [("agents", "action")], [N * ACT], hidden_sizes=(32, 32))
    single_critic = JointQCritic(["state"], 7, [(name, "action") for name in NAMES], [ACT] * N, hidden_sizes=(32, 32))
    single_critic.load_state_dict(stacked_critic.state_dict())
    stack = AgentStack(stacked, NAMES)
    torch.manual_seed(2)
    td = TensorDict(
        {
            "state": torch.randn(B, 7),
            "agents": TensorDict(
                {"observation": torch.randn(B, N, OBS), "action": torch.rand(B, N, ACT) * 2 - 1}, [B, N]
            ),
        },
        [B],
    )
    singles_td = TensorDict({"state": td["state"]}, [B])
    for k, name in enumerate(NAMES):
        singles_td[name] = td["agents"][:, k].clone()
    torch.testing.assert_close(
        stacked_critic(td.clone())["state_action_value"], single_critic(singles_td.clone())["state_action_value"]
    )

    def step(actors, critic):
        return SequentialActorStep(
            {
                name: ActorTrainer(DeterministicActorLoss(actor, critic), torch.optim.Adam(actor.parameters(), lr=1e-2))
                for name, actor in actors.items()
            },
            seed=5,
        )

    stacked_step, single_step = step(stack.actors, stacked_critic), step(singles, single_critic)
    start = [_slices(stacked_net, k) for k in range(N)]
    for _ in range(3):
        stacked_out = stacked_step.step(td)
        single_out = single_step.step(singles_td)
        assert stacked_step.last_order == single_step.last_order
    assert torch.equal(td["agents", "action"], td["agents", "action"])  # the batch is not modified
    for k, name in enumerate(NAMES):
        torch.testing.assert_close(stacked_out[name, "q_value"], single_out[name, "q_value"], rtol=1e-5, atol=1e-6)
        for got, want, initial in zip(_slices(stacked_net, k), _params(singles[name]), start[k], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            assert not torch.equal(got, initial)


def test_the_actor_step_joint_action_keeps_the_other_agents_entries():
    stacked_net = _stacked_net(out=ACT)
    stack = AgentStack(_deterministic("agents", stacked_net), NAMES)
    td = TensorDict({"agents": TensorDict({"observation": torch.randn(B, N, OBS)}, [B, N])}, [B])
    td["agents", "action"] = torch.full((B, N, ACT), 7.0)
    with torch.no_grad():
        stack.actors["agent_2"](td)
        full = _deterministic("agents", stacked_net)(td.copy())["agents", "action"]
    assert torch.equal(td["agents", "action"][:, :2], torch.full((B, 2, ACT), 7.0))
    torch.testing.assert_close(td["agents", "action"][:, 2], full[:, 2])


# ---------------------------------------------------------------- refusals


def test_a_shared_stack_is_refused_as_mappo():
    shared, _ = _policies()
    shared = _stochastic_policy("agents", _stacked_net(share=True), TanhNormal, *_bounds())
    with pytest.raises(ConfigError, match="that is MAPPO"):
        AgentStack(shared)
    with pytest.raises(ConfigError, match="that is MAPPO"):
        HAPPOLoss(shared)


def test_a_whole_stack_given_to_a_per_agent_loss_is_refused_with_the_fix():
    stacked, _ = _policies()
    with pytest.raises(ConfigError, match="AgentStack"):
        HATRPOLoss(stacked)


def test_a_parameter_outside_the_stacked_networks_is_refused():
    net = nn.Sequential(_stacked_net(out=ACT), nn.Linear(ACT, ACT))
    policy = TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "action")])
    with pytest.raises(ConfigError, match="not inside a MultiAgentNetBase"):
        AgentStack(policy)


def test_an_optimiser_over_the_stacked_tensor_is_refused():
    stacked, _ = _policies()
    stack = AgentStack(stacked, NAMES)
    with pytest.raises(ConfigError, match="holds the stacked parameters"):
        PolicyTrainer(HAPPOLoss(stack.actors["agent_0"]), torch.optim.Adam(stacked.parameters()))
    with pytest.raises(ConfigError, match="another agent"):
        PolicyTrainer(HAPPOLoss(stack.actors["agent_0"]), torch.optim.Adam(stack.parameters(1)))


def test_views_that_no_longer_alias_the_stack_are_refused():
    stacked, _ = _policies()
    td, _ = _on_policy_batches(stacked)
    stack = AgentStack(stacked, NAMES)
    net = next(m for m in stacked.modules() if isinstance(m, MultiAgentMLP))
    net.params.unlock_()
    net.params["0", "weight"] = nn.Parameter(net.params["0", "weight"].detach().clone())  # e.g. a device move
    with pytest.raises(ConfigError, match="build the AgentStack"):
        stack.actors["agent_0"].get_dist(td)


def test_names_and_indices():
    stacked, _ = _policies()
    stack = AgentStack(stacked)
    assert stack.agent_names == ["agents_0", "agents_1", "agents_2"] and stack.group == "agents"
    assert stack.index("agents_2") == 2
    with pytest.raises(ConfigError, match="3 distinct agent names"):
        AgentStack(stacked, ["a", "b"])
    with pytest.raises(ConfigError, match="no agent"):
        stack.index("x")


# ------------------------------------------------ one module per agent, stacked storage


def _library_actors(seed=0):
    from torchrl.data import Bounded

    from harl_torchrl.modules import make_agent_actor

    torch.manual_seed(seed)
    return {name: make_agent_actor(name, OBS, Bounded(-1.0, 1.0, shape=(ACT,)), hidden_sizes=[16]) for name in NAMES}


def test_stacking_one_module_per_agent_keeps_training_bit_identical_and_the_stack_current():
    from harl_torchrl.sequential import stack_agent_parameters

    actors, reference = _library_actors(), _library_actors()
    stacked = stack_agent_parameters([actor.module[0].module for actor in actors.values()])
    assert stacked.batch_size == (N,)
    torch.manual_seed(1)
    batch = TensorDict({(name, "observation"): torch.randn(B, OBS) for name in NAMES}, [B])
    with torch.no_grad():
        for actor in actors.values():
            batch = actor(batch)
    batch["advantage"] = torch.randn(B, 1)

    def updater(actors):
        return SequentialUpdater(
            {
                name: PolicyTrainer(HAPPOLoss(a), torch.optim.Adam(a.parameters(), lr=1e-2), epochs=2)
                for name, a in actors.items()
            },
            critic=None,
            seed=0,
        )

    for _ in range(2):
        updater(actors).update(batch)
        updater(reference).update(batch)
    for name in NAMES:
        assert all(torch.equal(a, b) for a, b in zip(_params(actors[name]), _params(reference[name]), strict=True))
    # the storage holds every agent's current weights: one vmapped call gives each agent's outputs
    net = actors["agent_0"].module[0].module
    x = torch.randn(N, B, OBS)
    out = torch.vmap(lambda p, x: torch.func.functional_call(net, p, (x,)))(stacked.flatten_keys(".").to_dict(), x)
    for k, name in enumerate(NAMES):
        torch.testing.assert_close(out[0][k], actors[name].module[0].module(x[k])[0])


def test_stacking_refuses_different_shapes_and_shared_tensors():
    from harl_torchrl.sequential import stack_agent_parameters

    with pytest.raises(ConfigError, match="differs from agent 0"):
        stack_agent_parameters([nn.Linear(3, 2), nn.Linear(4, 2)])
    first, second = nn.Linear(3, 2), nn.Linear(3, 2)
    second.weight = first.weight
    with pytest.raises(ConfigError, match="share a parameter"):
        stack_agent_parameters([first, second])
    with pytest.raises(ConfigError, match="at least two"):
        stack_agent_parameters([first])


def test_hasac_refuses_a_stacked_agent_for_now():
    from harl_torchrl.objectives import SoftActorLoss

    stacked, _ = _policies()
    stack = AgentStack(stacked, NAMES)
    critic = JointQCritic(["state"], 7, [("agents", "action")], [N * ACT])
    with pytest.raises(ConfigError, match="one group per agent"):
        SoftActorLoss(stack.actors["agent_0"], critic, 0.2)

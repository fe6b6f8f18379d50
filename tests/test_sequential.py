import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import make_agent_actor, make_central_critic
from harl_torchrl.objectives import CentralValueLoss, HAPPOLoss
from harl_torchrl.sequential import CriticTrainer, PolicyTrainer, SequentialUpdater, normalize_advantage

AGENTS = ("agent_0", "agent_1", "agent_2", "agent_3")


def _snapshot(modules):
    return {name: [p.detach().clone() for p in m.parameters()] for name, m in modules.items()}


def _identical(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


class Recorder:
    """Wraps a trainer and logs what it saw and the state of every network around its call."""

    def __init__(self, name, trainer, networks, log):
        self.name, self.trainer, self.networks, self.log = name, trainer, networks, log
        self.loss = trainer.loss

    def train(self, batch, generator):
        self.log.append(
            ("start", self.name, batch.get("factor", None), batch.get("advantage"), _snapshot(self.networks))
        )
        out = self.trainer.train(batch, generator)
        self.log.append(("end", self.name, None, None, _snapshot(self.networks)))
        return out


def _setup(seed=0, order="random", use_factor=True, discrete=False):
    torch.manual_seed(seed)
    spec = Categorical(3) if discrete else Bounded(-1.0, 1.0, shape=(2,))
    actors = {a: make_agent_actor(a, 3, spec, hidden_sizes=[16]) for a in AGENTS}
    critic = make_central_critic([(a, "observation") for a in AGENTS], 12, hidden_sizes=[16])
    networks = {**actors, "critic": critic}
    log = []
    trainers = {
        a: Recorder(
            a,
            PolicyTrainer(HAPPOLoss(actor), torch.optim.Adam(actor.parameters(), lr=1e-2), epochs=2),
            networks,
            log,
        )
        for a, actor in actors.items()
    }
    critic_trainer = Recorder(
        "critic",
        CriticTrainer(CentralValueLoss(critic, clip_value=None), torch.optim.Adam(critic.parameters(), lr=1e-2)),
        networks,
        log,
    )
    updater = SequentialUpdater(trainers, critic_trainer, order=order, seed=seed, use_factor=use_factor)
    batch = TensorDict({(a, "observation"): torch.randn(32, 3) for a in AGENTS}, [32])
    with torch.no_grad():
        for actor in actors.values():
            batch = actor(batch)
        batch = critic(batch)
    batch["advantage"] = torch.randn(32, 1) * 3 + 1
    batch["value_target"] = torch.randn(32, 1)
    return updater, actors, critic, batch, log


def test_first_agent_factor_is_exactly_one():
    updater, _, _, batch, log = _setup()
    updater.update(batch)
    first = log[0]
    assert first[0] == "start" and first[1] == updater.last_order[0]
    assert torch.equal(first[2], torch.ones(32, 1))


@pytest.mark.parametrize("discrete", [False, True])
def test_factor_matches_direct_recomputation(discrete):
    updater, actors, _, batch, log = _setup(discrete=discrete)
    updater.update(batch)
    starts = [entry for entry in log if entry[0] == "start" and entry[1] != "critic"]
    # Agents earlier in the order are final for the rest of the iteration, so their
    # current parameters are the ones the factor must have been computed with.
    with torch.no_grad():
        expected = torch.ones(32, 1)
        for _, name, factor, _, _ in starts:
            torch.testing.assert_close(factor, expected, rtol=1e-6, atol=1e-6)
            dist = actors[name].get_dist(batch.copy())
            log_ratio = dist.log_prob(batch[name, "action"]) - batch[name, "action_log_prob"]
            expected = expected * log_ratio.exp().unsqueeze(-1)
    assert not torch.allclose(starts[-1][2], torch.ones(32, 1)), "the factor never moved: the test proves nothing"


def test_every_agent_updated_exactly_once_and_others_untouched_meanwhile():
    updater, actors, _, batch, log = _setup()
    initial = _snapshot(actors)
    updater.update(batch)
    starts = [e[1] for e in log if e[0] == "start"]
    assert sorted(starts[:-1]) == sorted(AGENTS) and starts[-1] == "critic"
    order = updater.last_order
    for position, name in enumerate(order):
        start = next(e for e in log if e[0] == "start" and e[1] == name)
        end = next(e for e in log if e[0] == "end" and e[1] == name)
        # agents later in the order are still bit-identical to their initial parameters
        for later in order[position:]:
            assert _identical(start[4][later], initial[later])
        for later in order[position + 1 :]:
            assert _identical(end[4][later], initial[later])
        # and the agent itself did move
        assert not _identical(end[4][name], initial[name])


def test_critic_is_updated_after_the_actors():
    updater, _, critic, batch, log = _setup()
    before = _snapshot({"critic": critic})
    updater.update(batch)
    assert log[-2][0] == "start" and log[-2][1] == "critic"
    # the critic had not moved while the actors were trained
    for entry in log[:-2]:
        assert _identical(entry[4]["critic"], before["critic"])
    assert not _identical(log[-1][4]["critic"], before["critic"])


def test_same_seed_same_orders_and_reported():
    orders = []
    for _ in range(2):
        updater, _, _, batch, _ = _setup(seed=7)
        sequence = []
        for _ in range(6):
            diagnostics = updater.update(batch)
            sequence.append(list(updater.last_order))
            assert [AGENTS[i] for i in diagnostics["order"].tolist()] == updater.last_order
        orders.append(sequence)
    assert orders[0] == orders[1]
    assert len({tuple(o) for o in orders[0]}) > 1, "a random order should change between iterations"
    other, _, _, batch, _ = _setup(seed=8)
    other_sequence = []
    for _ in range(6):
        other.update(batch)
        other_sequence.append(list(other.last_order))
    assert other_sequence != orders[0]


def test_fixed_order_and_no_factor():
    updater, _, _, batch, log = _setup(order="fixed", use_factor=False)
    updater.update(batch)
    starts = [e for e in log if e[0] == "start" and e[1] != "critic"]
    assert [e[1] for e in starts] == list(AGENTS)
    assert all(torch.equal(e[2], torch.ones(32, 1)) for e in starts)


def test_advantage_normalised_once_and_batch_untouched():
    updater, _, _, batch, log = _setup()
    before = batch.clone()
    updater.update(batch)
    advantages = [e[3] for e in log if e[0] == "start" and e[1] != "critic"]
    expected = normalize_advantage(before["advantage"])
    for advantage in advantages:
        torch.testing.assert_close(advantage, expected)
    assert set(batch.keys(True, True)) == set(before.keys(True, True))
    assert torch.equal(batch["advantage"], before["advantage"])


def test_generator_state_round_trip():
    updater, _, _, batch, _ = _setup(seed=3)
    updater.update(batch)
    state = updater.state_dict()
    updater.update(batch)
    order_after = updater.last_order
    updater.load_state_dict(state)
    assert updater.draw_order() == order_after


def test_bad_configuration():
    updater, _, _, _, _ = _setup()
    with pytest.raises(ConfigError):
        SequentialUpdater(updater.agents, None, order="reverse")
    with pytest.raises(ConfigError):
        SequentialUpdater({}, None)
    with pytest.raises(ConfigError, match="reserved"):
        SequentialUpdater({"critic": updater.agents["agent_0"]}, None)


def test_advantage_key_that_the_losses_would_ignore_is_refused():
    updater, _, _, _, _ = _setup()
    with pytest.raises(ConfigError, match=r"set_keys\(advantage='adv'\)"):
        SequentialUpdater(updater.agents, None, advantage_key="adv")
    # agreeing with the losses is fine
    assert SequentialUpdater(updater.agents, None, advantage_key="advantage").advantage_keys == ["advantage"]


def test_missing_advantage_names_the_key_and_the_fix():
    updater, _, _, batch, _ = _setup()
    del batch["advantage"]
    with pytest.raises(ConfigError, match=r"no advantage at 'advantage'.*compute_advantage"):
        updater.update(batch)


class _RecordingLoss(torch.nn.Module):
    """A quadratic loss on ``"x"`` that remembers each TensorDict it was called on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, td):
        self.seen.append(td)
        return TensorDict({"loss_x": ((td["x"] - self.weight) ** 2).mean()})


def test_one_minibatch_trains_on_the_batch_itself_and_several_on_shuffled_parts():
    # Regression: with one minibatch the batch was re-indexed (copied whole, every agent's
    # entries) each epoch, two thirds of the update's time on Humanoid 17x1.
    from harl_torchrl.sequential.trainers import minibatch_epochs

    batch = TensorDict({"x": torch.arange(8.0), "other": torch.zeros(8, 100)}, [8])
    loss = _RecordingLoss()
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.1)
    kwargs = {"epochs": 2, "max_grad_norm": None, "generator": torch.Generator().manual_seed(0)}
    minibatch_epochs(loss, optimizer, batch, num_minibatches=1, **kwargs)
    assert len(loss.seen) == 2 and all(td is batch for td in loss.seen)
    loss.seen.clear()
    minibatch_epochs(loss, optimizer, batch, num_minibatches=2, **kwargs)
    assert [td.shape[0] for td in loss.seen] == [4, 4, 4, 4]
    assert sorted(torch.cat([td["x"] for td in loss.seen[:2]]).tolist()) == batch["x"].tolist()

import pytest
import torch
from games import MatrixGameEnv, trap_payoff
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, MultiCategorical, OneHot
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import MaskedCategorical, make_actors, make_agent_actor


def test_gaussian_actor_outputs_and_initial_std():
    actor = make_agent_actor("a", 5, Bounded(-1.0, 1.0, shape=(3,)))
    td = actor(TensorDict({("a", "observation"): torch.randn(7, 5)}, [7]))
    assert td["a", "action"].shape == (7, 3)
    assert td["a", "action_log_prob"].shape == (7,)
    # reference parameterisation: 0.5 * sigmoid(1) at initialisation
    torch.testing.assert_close(td["a", "scale"], torch.full((7, 3), 0.5 * torch.sigmoid(torch.tensor(1.0)).item()))
    # small output gain: near-zero initial means
    assert td["a", "loc"].abs().max() < 0.1
    dist = actor.get_dist(td)
    torch.testing.assert_close(dist.log_prob(td["a", "action"]), td["a", "action_log_prob"])


def test_deterministic_mode_returns_the_mean():
    actor = make_agent_actor("a", 5, Bounded(-1.0, 1.0, shape=(2,)))
    td = TensorDict({("a", "observation"): torch.randn(4, 5)}, [4])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        out = actor(td.clone())
    torch.testing.assert_close(out["a", "action"], out["a", "loc"])
    sampled = actor(td.clone())
    assert not torch.equal(sampled["a", "action"], sampled["a", "loc"])


def test_categorical_actor():
    actor = make_agent_actor("a", 5, Categorical(4))
    td = actor(TensorDict({("a", "observation"): torch.randn(6, 5)}, [6]))
    assert td["a", "action"].shape == (6,) and td["a", "action"].dtype == torch.int64
    assert td["a", "logits"].shape == (6, 4)


def test_unsupported_action_spec_is_refused():
    with pytest.raises(ConfigError, match="OneHot"):
        make_agent_actor("a", 5, OneHot(4))


def test_multi_discrete_actor():
    actor = make_agent_actor("a", 5, MultiCategorical(nvec=[2, 3]))
    td = actor(TensorDict({("a", "observation"): torch.randn(6, 5)}, [6]))
    assert td["a", "action"].shape == (6, 2)
    assert (td["a", "action"][:, 0] < 2).all() and (td["a", "action"][:, 1] < 3).all()
    dist = actor.get_dist(td)
    expected = sum(
        torch.distributions.Categorical(logits=lg).log_prob(td["a", "action"][:, i])
        for i, lg in enumerate(td["a", "logits"].split([2, 3], -1))
    )
    torch.testing.assert_close(dist.log_prob(td["a", "action"]), expected)
    torch.testing.assert_close(td["a", "action_log_prob"], expected)


def test_masked_categorical_never_samples_masked_actions():
    mask = torch.tensor([True, False, True, False])
    dist = MaskedCategorical(torch.randn(1000, 4), mask=mask.expand(1000, 4))
    assert dist.sample().remainder(2).eq(0).all()
    assert dist.log_prob(torch.tensor(1)).exp().max() == 0


def test_separate_actors_own_their_parameters():
    env = MatrixGameEnv(trap_payoff(2), 4)
    actors = make_actors(env)
    ids = [{id(p) for p in actor.parameters()} for actor in actors.values()]
    assert not ids[0] & ids[1]


def test_shared_actors_share_one_network():
    env = MatrixGameEnv(trap_payoff(2), 4)
    actors = make_actors(env, share_params=True)
    ids = [{id(p) for p in actor.parameters()} for actor in actors.values()]
    assert ids[0] == ids[1]

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.errors import ConfigError
from harl_torchrl.exploration import RandomWarmup, epsilon_greedy, gaussian_noise

BOX = Bounded(torch.tensor([0.0, -2.0]), torch.tensor([1.0, 2.0]), shape=(2,))


def _actions(value, n=20000, agent="a"):
    return TensorDict({(agent, "action"): value.expand(n, *value.shape).clone()}, [n])


def test_gaussian_noise_is_scaled_to_each_half_range_and_clamped():
    torch.manual_seed(0)
    noise = gaussian_noise({"a": BOX}, 0.1)
    out = noise(_actions(torch.tensor([0.5, 0.0])))["a", "action"]
    # std = sigma * half-range per dimension: 0.1 * 0.5 and 0.1 * 2
    torch.testing.assert_close(out.std(0), torch.tensor([0.05, 0.2]), rtol=0.03, atol=0.0)
    near_edge = noise(_actions(torch.tensor([0.99, 1.95])))["a", "action"]
    assert near_edge[:, 0].max() <= 1.0 and near_edge[:, 1].max() <= 2.0
    assert (near_edge[:, 0] == 1.0).any(), "clamped at the bound, not resampled"


def test_exploration_modules_are_off_under_deterministic_evaluation():
    action = torch.tensor([0.5, 0.0])
    modules = [gaussian_noise({"a": BOX}, 0.3), RandomWarmup({"a": BOX})]
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for module in modules:
            assert torch.equal(module(_actions(action, 50))["a", "action"], action.expand(50, 2))
    discrete = TensorDict({("b", "action"): torch.zeros(50, dtype=torch.long)}, [50])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert not epsilon_greedy({"b": Categorical(5)}, 1.0)(discrete)["b", "action"].any()


def test_gaussian_noise_refuses_discrete_actions_naming_the_alternative():
    with pytest.raises(ConfigError, match="algo=hasac"):
        gaussian_noise({"a": Categorical(5)}, 0.1)


def test_random_warmup_is_uniform_on_the_box_and_switches_off():
    torch.manual_seed(0)
    warmup = RandomWarmup({"a": BOX})
    out = warmup(_actions(torch.tensor([0.5, 0.0])))["a", "action"]
    torch.testing.assert_close(out.mean(0), torch.tensor([0.5, 0.0]), atol=0.03, rtol=0.0)
    assert out[:, 0].min() >= 0.0 and out[:, 0].max() <= 1.0 and out[:, 1].abs().max() <= 2.0
    assert out[:, 1].min() < -1.9 and out[:, 1].max() > 1.9
    warmup.active = False
    assert torch.equal(warmup(_actions(torch.tensor([0.5, 0.0]), 10))["a", "action"], torch.tensor([[0.5, 0.0]] * 10))


def test_random_warmup_respects_action_masks():
    torch.manual_seed(0)
    mask = torch.tensor([False, True, False, True, False]).expand(2000, 5)
    td = TensorDict({("a", "action"): torch.zeros(2000, dtype=torch.long), ("a", "action_mask"): mask}, [2000])
    out = RandomWarmup({"a": Categorical(5)}, {"a": "action_mask"})(td)["a", "action"]
    assert set(out.unique().tolist()) == {1, 3}


def test_epsilon_greedy_rate():
    torch.manual_seed(0)
    td = TensorDict({("b", "action"): torch.zeros(20000, dtype=torch.long)}, [20000])
    changed = (epsilon_greedy({"b": Categorical(5)}, 0.2)(td)["b", "action"] != 0).float().mean().item()
    assert changed == pytest.approx(0.2 * 4 / 5, abs=0.01)

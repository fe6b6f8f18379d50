import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.data import Bounded, Categorical
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.modules import BatchedJointPolicy, make_agent_actor


def _actors(spec, agents=("a", "b", "c"), mask_key=None):
    torch.manual_seed(0)
    return {name: make_agent_actor(name, 4, spec, hidden_sizes=[8], mask_key=mask_key) for name in agents}


def _obs(agents, n=6, masks=False):
    td = TensorDict({(a, "observation"): torch.randn(n, 4) for a in agents}, [n])
    if masks:
        for a in agents:
            mask = torch.rand(n, 5) > 0.5
            mask[:, 3] = True
            td[a, "action_mask"] = mask
    return td


@pytest.mark.parametrize("use_vmap", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_deterministic_outputs_equal_running_each_actor(use_vmap, discrete):
    spec = Categorical(5) if discrete else Bounded(-1.0, 1.0, shape=(2,))
    actors = _actors(spec)
    td = _obs(actors)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        ours = BatchedJointPolicy(actors, use_vmap=use_vmap)(td.clone())
        reference = TensorDictSequential(*actors.values())(td.clone())
    assert set(ours.keys(True, True)) == set(reference.keys(True, True))
    for key in reference.keys(True, True):
        torch.testing.assert_close(ours[key], reference[key], rtol=1e-5, atol=1e-6)


def test_sampled_log_probs_match_each_agents_distribution():
    actors = _actors(Bounded(-1.0, 1.0, shape=(2,)))
    with torch.no_grad():
        td = BatchedJointPolicy(actors)(_obs(actors))
        for name, actor in actors.items():
            expected = actor.get_dist(td.copy()).log_prob(td[name, "action"])
            torch.testing.assert_close(td[name, "action_log_prob"], expected, rtol=1e-5, atol=1e-6)


def test_masks_are_honoured():
    actors = _actors(Categorical(5), mask_key="action_mask")
    td = _obs(actors, n=400, masks=True)
    with torch.no_grad():
        out = BatchedJointPolicy(actors)(td)
    for name in actors:
        chosen = out[name, "action_mask"].gather(-1, out[name, "action"].unsqueeze(-1))
        assert chosen.all()


def test_agents_of_different_shapes_run_separately():
    actors = {
        "a": make_agent_actor("a", 4, Bounded(-1.0, 1.0, shape=(2,))),
        "b": make_agent_actor("b", 4, Categorical(3)),
    }
    policy = BatchedJointPolicy(actors)
    assert len(policy.groups) == 0 and len(policy.singles) == 2
    with torch.no_grad():
        td = policy(_obs(actors))
    assert td["a", "action"].shape == (6, 2) and td["b", "action"].shape == (6,)

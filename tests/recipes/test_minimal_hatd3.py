"""recipes/benchmarks/minimal_hatd3.py computes what our HATD3 gradient step computes (the benchmark's reference)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from harl_torchrl.config import env_config
from harl_torchrl.off_policy import make_off_policy_components

pytest.importorskip("mpe2")

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "benchmarks" / "minimal_hatd3.py"


def _module():
    spec = importlib.util.spec_from_file_location("minimal_hatd3", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def minimal():
    return _module()


def _ours(**algo):
    env = env_config({"family": "pettingzoo", "scenario": "simple_spread"}).make(num_envs=2, seed=0, device="cpu")
    torch.manual_seed(0)
    parts = make_off_policy_components(
        {"name": "hatd3", "batch_size": 64, **algo}, {"hidden_sizes": [32, 32]}, env, seed=0
    )
    parts.buffer.extend(env.rollout(60, parts.policy, break_when_any_done=False))  # random warm-up actions
    return parts


def _parameters(parts):
    """Every live and target parameter of ours, in the minimal version's order."""
    updater = parts.updater
    critic, agents = parts.critic, list(parts.actors)
    targets = updater.critic_loss.target_qvalue_network_params
    target_actors = updater.modules["target_actions"].target_actors_params
    live = [*critic.parameters(), *(p for a in agents for p in parts.actors[a].module.parameters())]
    target = [targets.get(("nets", *n.split("."))) for n, _ in critic.nets.named_parameters()]
    target += [
        target_actors.get((a, "module", *n.split(".")))
        for a in agents
        for n, _ in parts.actors[a].module.named_parameters()
    ]
    return live, target


def _minimal_parameters(mine):
    live = [*mine.critics.parameters(), *mine.actors.parameters()]
    return live, [*mine.target_critics.parameters(), *mine.target_actors.parameters()]


def _assert_same_parameters(parts, mine, **tolerance):
    for ours, theirs in zip(_parameters(parts), _minimal_parameters(mine), strict=True):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(b, a.detach(), **tolerance)


def test_the_minimal_version_starts_from_our_parameters_and_samples_our_rows(minimal):
    parts = _ours()
    agents = list(parts.actors)
    mine = minimal.from_components(parts, seed=0)
    _assert_same_parameters(parts, mine, rtol=0.0, atol=0.0)
    replay = minimal.replay_from(parts.buffer, agents)
    assert replay.size == len(parts.buffer)
    torch.manual_seed(5)
    ours = minimal.transitions_from(parts.buffer.sample(64), agents)
    torch.manual_seed(5)
    theirs = replay.sample(64)
    for name in ("state", "reward", "next_state", "terminated", "steps"):
        assert torch.equal(getattr(theirs, name), getattr(ours, name)), name
    for name in ("observations", "actions", "next_observations"):
        for a, b in zip(getattr(theirs, name), getattr(ours, name), strict=True):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("tau", [0.005, 0.3])
def test_from_the_same_parameters_and_batches_it_computes_what_ours_computes(minimal, tau):
    parts = _ours(tau=tau)
    agents = list(parts.actors)
    mine = minimal.from_components(parts, seed=0)
    updater = parts.updater
    for step in range(1, 7):  # three actor steps (policy delay 2), each in a fresh random order
        torch.manual_seed(100 + step)
        batch = parts.buffer.sample(64)
        noise = torch.get_rng_state()  # the target smoothing noise is drawn from here, by both
        out = updater.step(batch)
        torch.set_rng_state(noise)
        losses = mine.step(minimal.transitions_from(batch, agents))
        torch.testing.assert_close(losses["critic"], out["critic", "loss_qvalue"], rtol=1e-5, atol=1e-6)
        assert ("order" in out.keys()) == (step % 2 == 0)
        for i, agent in enumerate(agents):
            if step % 2 == 0:
                torch.testing.assert_close(losses[f"actor_{i}"], out[agent, "loss_actor"], rtol=1e-5, atol=1e-6)
            else:
                assert f"actor_{i}" not in losses
        _assert_same_parameters(parts, mine, rtol=1e-5, atol=1e-6)
    if tau == 0.3:  # the targets moved visibly, the same way
        live, target = _minimal_parameters(mine)
        assert not torch.equal(live[0], target[0])

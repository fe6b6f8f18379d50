"""TargetActions: TD3 smoothing noise scaled to each box, clamped to it, from the target actors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical
from torchrl.objectives import SoftUpdate

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import make_deterministic_actor
from harl_torchrl.objectives import TargetActions

# two boxes of very different widths: half-ranges 2.0 and 0.25
SPECS = {"wide": Bounded(-2.0, 2.0, shape=(2,)), "narrow": Bounded(0.0, 0.5, shape=(1,))}
N = 20000


def build(**kwargs):
    actors = {a: make_deterministic_actor(a, 3, spec, hidden_sizes=(8,)) for a, spec in SPECS.items()}
    targets = TargetActions(actors, SPECS, **kwargs)
    updater = SoftUpdate(targets, tau=0.1)
    return actors, targets, updater


def observations(n=64):
    g = torch.Generator().manual_seed(2)
    return TensorDict({(a, "observation"): torch.randn(n, 3, generator=g) for a in SPECS}, [n])


def test_smoothing_noise_scaled_to_each_box_and_clipped():
    _, targets, _ = build(noise_std=0.2, noise_clip=0.5)
    _, unclipped, _ = build(noise_std=0.2, noise_clip=100.0)
    for index, spec in enumerate(SPECS.values()):
        half = (spec.space.high - spec.space.low) / 2
        centre = (spec.space.high + spec.space.low) / 2
        noise = targets.smooth(centre.expand(N, -1).clone(), index) - centre
        assert (noise.abs() <= 0.5 * half + 1e-6).all()
        # the clip is reached (P(|z| > 2.5) ~ 1.2%): its level is 0.5 * half-range, not 0.5 absolute
        torch.testing.assert_close(noise.abs().max(dim=0).values, 0.5 * half, rtol=1e-4, atol=1e-6)
        # unclipped, the spread is 0.2 * half-range
        spread = (unclipped.smooth(centre.expand(N, -1).clone(), index) - centre).std(dim=0)
        torch.testing.assert_close(spread, 0.2 * half, rtol=0.05, atol=0)


def test_final_actions_inside_the_box():
    _, targets, _ = build(noise_std=0.2, noise_clip=0.5)
    for index, spec in enumerate(SPECS.values()):
        at_bounds = torch.stack([spec.space.low, spec.space.high]).repeat(N // 2, 1)
        smoothed = targets.smooth(at_bounds, index)
        assert (smoothed >= spec.space.low).all() and (smoothed <= spec.space.high).all()
        assert (smoothed == spec.space.high).any() and (smoothed < spec.space.high).any()  # clamped, not frozen
    out = targets(observations())
    for agent, spec in SPECS.items():
        assert (out[agent, "action"] >= spec.space.low).all() and (out[agent, "action"] <= spec.space.high).all()


def test_ddpg_targets_are_the_target_actors_exactly_and_follow_soft_updates():
    actors, targets, updater = build(noise_std=0.0)
    obs = observations()
    first = targets(obs.copy())
    for agent, actor in actors.items():
        with torch.no_grad():
            torch.testing.assert_close(first[agent, "action"], actor(obs.copy())[agent, "action"], rtol=0, atol=0)
        with torch.no_grad():
            for p in actor.parameters():
                p.add_(0.3)
    # the live actors moved, the targets did not
    second = targets(obs.copy())
    for agent in SPECS:
        assert torch.equal(first[agent, "action"], second[agent, "action"])
    old = targets.target_actors_params.clone()
    live = targets.actors_params.detach().clone()
    updater.step()
    expected = old.apply(lambda t, s: 0.9 * t + 0.1 * s, live)
    torch.testing.assert_close(targets.target_actors_params.to_dict(), expected.to_dict())
    assert not torch.equal(targets(obs.copy())["wide", "action"], first["wide", "action"])


def test_bad_arguments():
    actors = {"a": make_deterministic_actor("a", 3, Bounded(-1.0, 1.0, shape=(1,)))}
    with pytest.raises(ConfigError, match="different agents"):
        TargetActions(actors, {"b": Bounded(-1.0, 1.0, shape=(1,))})
    with pytest.raises(ConfigError, match="HASAC"):
        TargetActions(actors, {"a": Categorical(n=3)})
    with pytest.raises(ConfigError, match="noise"):
        TargetActions(actors, {"a": Bounded(-1.0, 1.0, shape=(1,))}, noise_std=-0.1)


def test_bounds_live_on_the_actors_device():
    # the meta device stands in for an accelerator: the specs stay on the CPU, the actors do not
    actors = {a: make_deterministic_actor(a, 3, spec, hidden_sizes=(8,)).to("meta") for a, spec in SPECS.items()}
    targets = TargetActions(actors, SPECS)
    for index in range(len(SPECS)):
        assert {bound.device.type for bound in targets.bounds(index)} == {"meta"}


def test_smooth_is_bit_identical_to_the_max_min_formula_and_follows_new_settings():
    """The clamp form and the cached noise scales compute exactly max(min(.)) of the formula."""
    low, high = torch.tensor([-0.4, 0.0, -3.0]), torch.tensor([0.4, 1.0, 5.0])
    spec = Bounded(low, high, shape=(3,))
    targets = TargetActions({"a": make_deterministic_actor("a", 2, spec)}, {"a": spec}, noise_std=0.7, noise_clip=0.3)
    action = torch.randn(500, 3) * 4

    def formula(noise_std, noise_clip):
        half = (high - low) / 2
        noise = torch.randn_like(action) * (noise_std * half)
        limit = noise_clip * half
        out = action + torch.maximum(torch.minimum(noise, limit), -limit)
        return torch.maximum(torch.minimum(out, high), low)

    for noise_std, noise_clip in ((0.7, 0.3), (0.7, 0.3), (0.2, 0.5), (0.0, 0.5)):
        targets.noise_std, targets.noise_clip = noise_std, noise_clip
        torch.manual_seed(1)
        ours = targets.smooth(action, 0)
        torch.manual_seed(1)
        assert torch.equal(ours, formula(noise_std, noise_clip) if noise_std > 0 else action.clamp(low, high))

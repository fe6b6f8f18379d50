import pytest
import torch
import vmas
from vmas.simulator.core import Agent, Sphere, World
from vmas.simulator.scenario import BaseScenario

from harl_torchrl.envs import VmasTeamEnv
from harl_torchrl.envs._vmas_state import TwinResetter, iter_batched_tensors, reset_draws_global_state, reset_where


def _observations(env):
    return [env.scenario.observation(agent).clone() for agent in env.agents]


def _perturbed_env(scenario, num_envs=12):
    env = vmas.make_env(scenario, num_envs=num_envs, device="cpu", seed=0)
    for _ in range(4):
        env.step([torch.rand(num_envs, env.get_agent_action_size(a)) * 0.2 - 0.1 for a in env.agents])
    return env


@pytest.mark.parametrize("scenario", ["balance", "navigation", "transport", "give_way", "simple_spread"])
def test_partial_reset_keeps_others_and_matches_a_full_reset(scenario):
    env = _perturbed_env(scenario)
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[1, 5, 6]] = True
    state_before = {path: t.clone() for path, _, _, t in iter_batched_tensors(env.scenario, 12)}
    obs_before = _observations(env)
    rng = torch.get_rng_state()
    reset_where(env.scenario, mask)
    obs_after = _observations(env)
    state_after = {path: t for path, _, _, t in iter_batched_tensors(env.scenario, 12)}
    torch.set_rng_state(rng)
    env.scenario.env_reset_world_at(None)
    obs_full_reset = _observations(env)
    for before, after, full in zip(obs_before, obs_after, obs_full_reset, strict=True):
        assert torch.equal(after[~mask], before[~mask])
        assert torch.equal(after[mask], full[mask])
        assert not torch.equal(full[~mask], before[~mask]), "a full reset moves every env: the test can fail"
    for key, before in state_before.items():
        if key in state_after and state_after[key].shape == before.shape:
            assert torch.equal(state_after[key][~mask], before[~mask])


@pytest.mark.parametrize("scenario", ["balance", "navigation", "transport", "give_way", "simple_spread"])
def test_twin_reset_copies_fresh_rows_and_keeps_the_others(scenario):
    env = _perturbed_env(scenario)
    twin = vmas.make_env(scenario, num_envs=4, device="cpu", seed=1)
    resetter = TwinResetter(env.scenario, twin.scenario, lambda: twin.scenario.env_reset_world_at(None))
    state_before = {path: t.clone() for path, _, _, t in iter_batched_tensors(env.scenario, 12)}
    obs_before = _observations(env)
    rows = torch.tensor([2, 3, 9])
    resetter.reset_rows(rows)
    obs_after = _observations(env)
    twin_obs = _observations(twin)
    kept = torch.ones(12, dtype=torch.bool)
    kept[rows] = False
    for before, after, fresh in zip(obs_before, obs_after, twin_obs, strict=True):
        assert torch.equal(after[kept], before[kept])
        assert torch.equal(after[rows], fresh[:3])
    for path, _, _, tensor in iter_batched_tensors(env.scenario, 12):
        assert torch.equal(tensor[kept], state_before[path][kept]), path


def test_twin_reset_handles_more_rows_than_the_twin_holds():
    env = _perturbed_env("balance")
    twin = vmas.make_env("balance", num_envs=2, device="cpu", seed=1)
    resetter = TwinResetter(env.scenario, twin.scenario, lambda: twin.scenario.env_reset_world_at(None))
    before = _observations(env)
    rows = torch.arange(0, 12, 2)  # six rows, three twin resets
    resetter.reset_rows(rows)
    after = _observations(env)
    for b, a in zip(before, after, strict=True):
        assert torch.equal(a[1::2], b[1::2])
        assert not torch.equal(a[rows], b[rows])
        # three independent twin resets: the first and last pairs differ
        assert not torch.equal(a[rows[:2]], a[rows[4:]])


def test_twin_rows_are_used_once_and_in_order_before_the_twin_is_reset_again():
    env = _perturbed_env("balance")
    twin = vmas.make_env("balance", num_envs=4, device="cpu", seed=1)
    resets = []

    def reset_twin():
        resets.append(1)
        twin.scenario.env_reset_world_at(None)

    resetter = TwinResetter(env.scenario, twin.scenario, reset_twin)
    resetter.reset_rows(torch.tensor([7]))
    first_draw = [obs.clone() for obs in _observations(twin)]
    resetter.reset_rows(torch.tensor([1, 5]))
    assert len(resets) == 1, "three rows fit in one twin reset of four"
    for agent_obs, fresh in zip(_observations(env), first_draw, strict=True):
        assert torch.equal(agent_obs[7], fresh[0])
        assert torch.equal(agent_obs[[1, 5]], fresh[1:3])
    resetter.reset_rows(torch.tensor([0, 11]))  # one row left, then a new twin reset
    assert len(resets) == 2
    second_draw = _observations(twin)
    for agent_obs, old, new in zip(_observations(env), first_draw, second_draw, strict=True):
        assert torch.equal(agent_obs[0], old[3])
        assert torch.equal(agent_obs[11], new[0])
        assert not torch.equal(old[0], new[0]), "a new twin reset draws new states: the test can fail"


def test_twin_of_another_configuration_is_refused():
    env = _perturbed_env("balance")
    twin = vmas.make_env("balance", num_envs=4, device="cpu", n_agents=2)
    with pytest.raises(ValueError, match="do not match"):
        TwinResetter(env.scenario, twin.scenario, lambda: None)


def test_mask_all_false_changes_nothing():
    env = _perturbed_env("balance")
    before = _observations(env)
    reset_where(env.scenario, torch.zeros(12, dtype=torch.bool))
    for b, a in zip(before, _observations(env), strict=True):
        assert torch.equal(a, b)


class _PythonStateScenario(BaseScenario):
    """Keeps a per-env counter in a Python list: state the batched reset cannot blend."""

    def make_world(self, batch_dim, device, **kwargs):
        world = World(batch_dim, device)
        world.add_agent(Agent(name="agent_0", shape=Sphere(0.05)))
        self.counter = [0.0] * batch_dim
        return world

    def reset_world_at(self, env_index=None):
        indices = range(self.world.batch_dim) if env_index is None else [env_index]
        for i in indices:
            self.counter[i] = 0.0
        for agent in self.world.agents:
            agent.set_pos(torch.zeros(1, 2), batch_index=env_index)

    def observation(self, agent):
        return torch.tensor(self.counter, device=self.world.device).unsqueeze(-1)

    def reward(self, agent):
        return torch.zeros(self.world.batch_dim, device=self.world.device)

    def process_action(self, agent):
        for i in range(self.world.batch_dim):
            self.counter[i] += 1.0


def test_auto_mode_falls_back_to_loop_for_unblendable_state():
    with pytest.warns(UserWarning, match="per-index reset"):
        env = VmasTeamEnv(_PythonStateScenario(), num_envs=4, max_steps=None)
    assert env.reset_mode == "loop"
    env.reset()
    td = env.rollout(3)
    assert td["next", "agent_0", "observation"][:, -1, 0].eq(3).all()


def test_twin_reset_is_exact_over_many_resets():
    # Regression: the reset allocates new tensors where it frees old ones, so a freed
    # tensor's id() can come back; change detection must not trust ids alone.
    env = _perturbed_env("balance", num_envs=256)
    twin = vmas.make_env("balance", num_envs=8, device="cpu", seed=1)
    resetter = TwinResetter(env.scenario, twin.scenario, lambda: twin.scenario.env_reset_world_at(None))
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        rows = torch.randperm(256, generator=generator)[:8].sort().values
        resetter.reset_rows(rows)
        for agent_obs, fresh in zip(_observations(env), _observations(twin), strict=True):
            assert torch.equal(agent_obs[rows], fresh)


@pytest.mark.parametrize(
    "scenario, shared", [("balance", False), ("navigation", False), ("simple_speaker_listener", True)]
)
def test_detects_state_drawn_once_for_the_whole_batch(scenario, shared):
    # simple_speaker_listener draws one goal landmark for the whole batch at a full reset
    env = vmas.make_env(scenario, num_envs=4, device="cpu", seed=0)
    assert reset_draws_global_state(env.scenario, lambda: env.scenario.env_reset_world_at(None)) is shared

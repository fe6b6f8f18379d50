import io

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from harl_torchrl.errors import ConfigError
from harl_torchrl.off_policy import make_off_policy_components
from harl_torchrl.replay import make_replay_buffer

pytest.importorskip("vmas")

SMALL = {"hidden_sizes": [16]}


def _env(continuous=True):
    from harl_torchrl.envs import make_vmas_env

    return make_vmas_env("balance", num_envs=4, n_agents=2, max_steps=8, continuous_actions=continuous, seed=0)


def _batch(env, parts, size=32):
    buffer = make_replay_buffer(env, 500, n_steps=2)
    buffer.extend(env.rollout(20, parts.policy, break_when_any_done=False))
    torch.manual_seed(0)
    return buffer.sample(size)


def _flat(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    after = module.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_td3_actor_and_target_updates_only_every_policy_freq_critic_steps():
    torch.manual_seed(0)
    env = _env()
    parts = make_off_policy_components({"name": "hatd3", "batch_size": 32}, SMALL, env, seed=0)
    batch = _batch(env, parts)
    updater = parts.updater
    targets = updater.modules["target_actions"].target_actors_params
    target_critic = updater.critic_loss.target_qvalue_network_params
    for step in range(1, 5):
        actors = {a: _flat(actor) for a, actor in parts.actors.items()}
        critic, target_a, target_c = _flat(parts.critic), targets.clone(), target_critic.clone()
        out = updater.step(batch)
        assert _changed(critic, parts.critic), "the critic steps every time"
        due = step % 2 == 0
        assert all(_changed(actors[a], actor) == due for a, actor in parts.actors.items())
        assert ("order" in out.keys()) == due and ("agent_0" in out.keys()) == due
        assert (targets != target_a).any() == due and (target_critic != target_c).any() == due
    assert updater.gradient_steps == 4 and updater.delay.critic_steps == 4


def test_soft_update_moves_targets_by_tau():
    torch.manual_seed(0)
    env = _env()
    parts = make_off_policy_components({"name": "haddpg", "batch_size": 32, "tau": 0.25}, SMALL, env, seed=0)
    batch = _batch(env, parts)
    loss = parts.updater.critic_loss
    before = loss.target_qvalue_network_params.clone()
    parts.updater.step(batch)  # DDPG: actor step and target update every critic step
    online = loss.qvalue_network_params
    target = loss.target_qvalue_network_params
    for key, value in target.items(include_nested=True, leaves_only=True):
        torch.testing.assert_close(value, 0.75 * before[key] + 0.25 * online[key], rtol=0.0, atol=1e-6)
    assert (target != before).any(), "the target moved"


def test_hasac_steps_every_temperature_and_the_critic_one():
    torch.manual_seed(0)
    env = _env()
    parts = make_off_policy_components({"name": "hasac", "batch_size": 32, "n_step": 2}, SMALL, env, seed=0)
    batch = _batch(env, parts)
    temps = parts.updater.modules["temperatures"]
    critic_temp = parts.updater.modules["critic_temperature"]
    before = {a: t.log_alpha.item() for a, t in temps.items()}
    critic_before = critic_temp.log_alpha.item()
    out = parts.updater.step(batch)
    assert all(temps[a].log_alpha.item() != before[a] for a in temps)
    assert critic_temp.log_alpha.item() != critic_before
    assert "critic_alpha" in out.keys() and "alpha" in out["agent_0"].keys()


def test_state_dict_round_trip_gives_the_same_next_step():
    env = _env()
    torch.manual_seed(0)
    a = make_off_policy_components({"name": "hatd3", "batch_size": 32}, SMALL, env, seed=0)
    batch = _batch(env, a)
    for _ in range(3):
        a.updater.step(batch)
    torch.manual_seed(1)
    b = make_off_policy_components({"name": "hatd3", "batch_size": 32}, SMALL, env, seed=5)
    saved = io.BytesIO()  # through bytes, as a checkpoint: optimiser states share no tensors with `a`
    torch.save(a.state_dict(), saved)
    saved.seek(0)
    b.load_state_dict(torch.load(saved, weights_only=True))
    for parts in (a, b):
        torch.manual_seed(2)
        parts.updater.step(batch)
        parts.updater.step(batch)
    sa, sb = a.state_dict()["components"]["updater"]["modules"], b.state_dict()["components"]["updater"]["modules"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.updater.gradient_steps == a.updater.gradient_steps == 5


def test_collection_policy_explores_and_evaluation_is_deterministic():
    torch.manual_seed(0)
    env = _env()
    parts = make_off_policy_components({"name": "hatd3", "batch_size": 32}, SMALL, env, seed=0)
    td = env.reset()
    parts.warmup.active = False
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first = parts.policy(td.clone())["agent_0", "action"]
        again = parts.policy(td.clone())["agent_0", "action"]
    noisy = parts.policy(td.clone())["agent_0", "action"]
    assert torch.equal(first, again) and not torch.equal(first, noisy)
    assert torch.equal(first, parts.actors["agent_0"](td.clone())["agent_0", "action"])


@pytest.mark.parametrize(
    "name, continuous, match",
    [("hatd3", False, "algo=hasac"), ("maddpg", False, "algo=hasac"), ("had3qn", True, "algo=hatd3")],
)
def test_builder_refuses_action_spaces_the_algorithm_cannot_take(name, continuous, match):
    with pytest.raises(ConfigError, match=match):
        make_off_policy_components({"name": name}, SMALL, _env(continuous))


def test_builder_refuses_on_policy_algorithms_and_recurrent_models():
    with pytest.raises(ConfigError, match="not an off-policy algorithm"):
        make_off_policy_components({"name": "happo"}, SMALL, _env())
    with pytest.raises(ConfigError, match="model=mlp"):
        make_off_policy_components({"name": "hatd3"}, {"name": "gru", "hidden_sizes": [16]}, _env())


@pytest.mark.parametrize(("name", "steps"), [("hatd3", 5), ("hatd3", 1), ("hasac", 4), ("had3qn", 3)])
def test_run_logs_what_the_step_loop_logs_and_updates_the_same(name, steps):
    """run() computes diagnostics on the last policy_freq steps only: same result, bit-identical updates."""
    results, states = [], []
    for use_run in (False, True):
        torch.manual_seed(1)
        env = _env(continuous=name != "had3qn")
        parts = make_off_policy_components({"name": name, "batch_size": 32}, SMALL, env, seed=0)
        buffer = make_replay_buffer(env, 500, n_steps=1)
        buffer.extend(env.rollout(20, parts.policy, break_when_any_done=False))
        torch.manual_seed(2)
        if use_run:
            latest = parts.updater.run(lambda buffer=buffer: buffer.sample(32), steps)
        else:
            latest = TensorDict({}, batch_size=[])
            for _ in range(steps):
                latest.update(parts.updater.step(buffer.sample(32)))
        results.append(latest)
        states.append(parts.updater.state_dict()["modules"])
    loop, ran = results
    assert sorted(ran.keys(True, True), key=str) == sorted(loop.keys(True, True), key=str)
    for key in loop.keys(True, True):
        assert torch.equal(ran[key], loop[key]), key
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_a_step_without_diagnostics_returns_nothing_and_updates_the_same():
    states = []
    for diagnostics in (True, False):
        torch.manual_seed(1)
        env = _env()
        parts = make_off_policy_components({"name": "hatd3", "batch_size": 32}, SMALL, env, seed=0)
        batch = _batch(env, parts)
        outs = [parts.updater.step(batch, diagnostics=diagnostics) for _ in range(2)]
        assert all(bool(out.keys()) == diagnostics for out in outs)
        states.append(parts.updater.state_dict()["modules"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])

"""A stacked group with TorchRL's own keys and tools: set_keys, ClipPPOLoss, MultiAgentGAE, VmasEnv, Collector."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs.libs.vmas import VmasEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss, ValueEstimators
from torchrl.objectives.value import MultiAgentGAE

from harl_torchrl.objectives import CentralValueLoss, HAA2CLoss, HAPPOLoss
from harl_torchrl.sequential import AgentStack, CriticTrainer, PolicyTrainer, SequentialUpdater

N, OBS, ACT, B, T = 3, 5, 2, 4, 6


def _policy(n=N, obs=OBS, seed=0):
    torch.manual_seed(seed)
    net = MultiAgentMLP(
        n_agent_inputs=obs, n_agent_outputs=2 * ACT, n_agents=n, centralized=False, share_params=False, depth=1,
        num_cells=16,
    )  # fmt: skip
    return ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(net, NormalParamExtractor()),
            in_keys=[("agents", "observation")],
            out_keys=[("agents", "loc"), ("agents", "scale")],
        ),
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[("agents", "action")],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -torch.ones(n, ACT), "high": torch.ones(n, ACT)},
        return_log_prob=True,
    )


def _critic(n=N, obs=OBS, seed=1):
    torch.manual_seed(seed)
    net = MultiAgentMLP(
        n_agent_inputs=obs, n_agent_outputs=1, n_agents=n, centralized=True, share_params=True, depth=1, num_cells=16
    )
    return ValueOperator(net, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])


def _rollout(policy, seed=2):
    """A [B, T] rollout in VmasEnv's default layout: per-agent reward, team done/terminated at the root."""
    torch.manual_seed(seed)
    td = TensorDict(
        {
            "agents": TensorDict({"observation": torch.randn(B, T, N, OBS)}, [B, T, N]),
            "next": {
                "agents": TensorDict(
                    {"observation": torch.randn(B, T, N, OBS), "reward": torch.randn(B, T, 1, 1).expand(B, T, N, 1)},
                    [B, T, N],
                ),
                "done": torch.zeros(B, T, 1, dtype=torch.bool),
                "terminated": torch.zeros(B, T, 1, dtype=torch.bool),
            },
        },
        [B, T],
    )
    td["next", "terminated"][:, -1] = True
    td["next", "done"][:, -1] = True
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        return policy(td)


def test_factor_one_averaged_over_the_stack_is_torchrls_clip_ppo_loss():
    policy = _policy()
    td = _rollout(policy).reshape(-1)
    td["advantage"] = torch.randn(B * T, 1, 1).expand(B * T, N, 1).clone()  # per agent, as GAE writes it
    td["factor"] = torch.ones(B * T, 1)
    with torch.no_grad():
        new = policy(td.copy())  # move the stored log-probabilities off the current policy: ratios != 1
    td["agents", "action_log_prob"] = new["agents", "action_log_prob"] + 0.3 * torch.randn(B * T, N)
    stack = AgentStack(policy)
    ours = torch.stack([HAPPOLoss(actor, entropy_coeff=0.0)(td)["loss_objective"] for actor in stack.actors.values()])
    torchrl = ClipPPOLoss(policy, entropy_bonus=False, normalize_advantage=False, critic_coeff=None)
    torchrl.set_keys(action=("agents", "action"), sample_log_prob=("agents", "action_log_prob"))
    torch.testing.assert_close(ours.mean(), torchrl(td)["loss_objective"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_class", [HAPPOLoss, HAA2CLoss])
def test_set_keys_remaps_a_stacks_entries(loss_class):
    policy = _policy()
    td = _rollout(policy).reshape(-1)
    td["advantage"] = torch.randn(B * T, N, 1)
    td["factor"] = torch.rand(B * T, 1) + 0.5
    renamed = td.clone()
    renamed["agents", "act"] = renamed["agents"].pop("action")
    renamed["agents", "old_log_prob"] = renamed["agents"].pop("action_log_prob")
    renamed["agents", "adv"] = renamed.pop("advantage")
    renamed["m"] = renamed.pop("factor")
    for actor in AgentStack(policy).actors.values():
        loss = loss_class(actor, entropy_coeff=0.0)
        assert loss.tensor_keys.action == ("agents", "action")
        assert loss.tensor_keys.sample_log_prob == ("agents", "action_log_prob")
        remapped = loss_class(actor, entropy_coeff=0.0)
        remapped.set_keys(
            action=("agents", "act"),
            sample_log_prob=("agents", "old_log_prob"),
            advantage=("agents", "adv"),
            factor="m",
        )
        assert torch.equal(loss(td)["loss_objective"], remapped(renamed)["loss_objective"])


def test_the_critic_loss_takes_torchrls_centralised_critic_and_multi_agent_gae():
    policy, critic = _policy(), _critic()
    td = _rollout(policy)
    value_loss = CentralValueLoss(critic)
    value_loss.set_keys(value=("agents", "state_value"), reward=("agents", "reward"))
    value_loss.make_value_estimator(ValueEstimators.MAGAE, gamma=0.9, lmbda=0.8)
    assert isinstance(value_loss.value_estimator, MultiAgentGAE)
    ours = value_loss.compute_advantage(td.clone())
    reference = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=critic)
    reference.set_keys(value=("agents", "state_value"), reward=("agents", "reward"))
    with torch.no_grad():
        theirs = reference(td.clone())
    assert ours["advantage"].shape == (B, T, N, 1)
    torch.testing.assert_close(ours["advantage"], theirs["advantage"])
    torch.testing.assert_close(ours["value_target"], theirs["value_target"])
    out = value_loss(ours.reshape(-1))
    out["loss_critic"].backward()
    assert all(p.grad is not None for p in critic.parameters())


def test_happo_on_torchrls_vmas_layout_with_its_collector():
    """VmasEnv's default grouping, TorchRL's stacked actor and centralised critic, its Collector and MAGAE."""
    env = VmasEnv(scenario="balance", num_envs=4, continuous_actions=True, max_steps=10, n_agents=3, seed=0)
    obs = env.observation_spec["agents", "observation"].shape[-1]
    spec = env.full_action_spec_unbatched[env.action_key]
    torch.manual_seed(0)
    net = MultiAgentMLP(
        n_agent_inputs=obs, n_agent_outputs=2 * spec.shape[-1], n_agents=env.n_agents, centralized=False,
        share_params=False, depth=1, num_cells=16,
    )  # fmt: skip
    policy = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(net, NormalParamExtractor()),
            in_keys=[("agents", "observation")],
            out_keys=[("agents", "loc"), ("agents", "scale")],
        ),
        spec=env.full_action_spec_unbatched,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": spec.space.low, "high": spec.space.high},
        return_log_prob=True,
    )
    critic = _critic(n=env.n_agents, obs=obs)
    stack = AgentStack(policy, env.group_map["agents"])
    value_loss = CentralValueLoss(critic)
    value_loss.set_keys(value=("agents", "state_value"), reward=env.reward_key)
    value_loss.make_value_estimator(ValueEstimators.MAGAE, gamma=0.99, lmbda=0.9)
    updater = SequentialUpdater(
        {
            name: PolicyTrainer(HAPPOLoss(actor), torch.optim.Adam(actor.parameters(), lr=3e-3), epochs=2)
            for name, actor in stack.actors.items()
        },
        CriticTrainer(value_loss, torch.optim.Adam(critic.parameters(), lr=3e-3), epochs=2),
        seed=0,
    )
    collector = Collector(env, policy, frames_per_batch=40, total_frames=80, auto_register_policy_transforms=False)
    for batch in collector:
        with torch.no_grad():  # the collector ran the current (trained) stacked weights: no copy went stale
            log_prob = policy.get_dist(batch.copy()).log_prob(batch["agents", "action"])
        torch.testing.assert_close(log_prob, batch["agents", "action_log_prob"], rtol=1e-4, atol=1e-4)
        before = [p.detach().clone() for p in policy.parameters()]
        value_loss.compute_advantage(batch)
        diagnostics = updater.update(batch)
        assert sorted(updater.last_order) == ["agent_0", "agent_1", "agent_2"]
        for name in stack.agent_names:
            assert diagnostics[name, "ESS"] > 0 and torch.isfinite(diagnostics[name, "loss_objective"])
        # every agent's slice of the stacked weights moved: the collector's policy is the trained one
        assert all(
            not torch.equal(p[k], b[k]) for p, b in zip(policy.parameters(), before, strict=True) for k in range(3)
        )
    collector.shutdown()


@pytest.mark.slow
def test_readme_stacked_example_runs(capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"### Or keep TorchRL's stacked layout\n.*?```python\n(.*?)```", readme, re.S).group(1)
    block = block.replace("total_frames=32000", "total_frames=6400")  # two iterations
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2
    assert sorted(namespace["updater"].last_order) == ["agent_0", "agent_1", "agent_2"]
    assert set(namespace["diagnostics"].keys()) >= {"agent_0", "agent_1", "agent_2", "critic", "order"}

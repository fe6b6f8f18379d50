"""One agent on a [-1, 1] box: our critic loss is TorchRL's TD3 value loss; wider boxes differ by the noise scale."""

from __future__ import annotations

import warnings

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.objectives import SoftUpdate, TD3Loss

from harl_torchrl.modules import JointQCritic, make_deterministic_actor
from harl_torchrl.modules.q_critics import QNet
from harl_torchrl.objectives import JointQLoss, TargetActions

OBS, ACT, N, GAMMA = 3, 2, 64, 0.9


class ConcatQ(nn.Module):
    """TorchRL-style Q(o, a) -> [B, 1] with the same inner network as one of our heads."""

    def __init__(self) -> None:
        super().__init__()
        self.q = QNet(OBS + ACT, (16,), "relu", False)

    def forward(self, observation, action):
        return self.q(torch.cat([observation, action], dim=-1))


def batch():
    g = torch.Generator().manual_seed(1)
    terminated = torch.rand(N, 1, generator=g) < 0.3
    return TensorDict(
        {
            ("a", "observation"): torch.randn(N, OBS, generator=g),
            ("a", "action"): torch.rand(N, ACT, generator=g) * 2 - 1,
            "next": {
                ("a", "observation"): torch.randn(N, OBS, generator=g),
                "reward": torch.randn(N, 1, generator=g),
                "terminated": terminated,
                "done": terminated,
            },
        },
        [N],
    )


def build(low: float, high: float):
    spec = Bounded(low, high, shape=(ACT,))
    actor = make_deterministic_actor("a", OBS, spec, hidden_sizes=(16,))
    critic = JointQCritic([("a", "observation")], OBS, [("a", "action")], [ACT], num_qvalue=2, hidden_sizes=(16,))
    targets = TargetActions({"a": actor}, {"a": spec}, noise_std=0.2, noise_clip=0.5)
    ours = JointQLoss(critic, targets, gamma=GAMMA)
    SoftUpdate(ours, tau=0.005)
    SoftUpdate(targets, tau=0.005)
    qvalue = TensorDictModule(
        ConcatQ(), in_keys=[("a", "observation"), ("a", "action")], out_keys=["state_action_value"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TD3Loss(
            actor,
            qvalue,
            action_spec=spec,
            num_qvalue_nets=2,
            policy_noise=0.2,  # TorchRL: absolute units
            noise_clip=0.5,
            loss_function="l2",  # TorchRL's default is smooth_l1; the reference (and our default) MSE
        )
        theirs.set_keys(action=("a", "action"), reward="reward", done="done", terminated="terminated")
        theirs.make_value_estimator(gamma=GAMMA)
        SoftUpdate(theirs, tau=0.005)
    # the same two Q networks (online and target) on both sides
    with torch.no_grad():
        for params in (theirs.qvalue_network_params, theirs.target_qvalue_network_params):
            for head, net in enumerate(critic.nets):
                params["module", "q"][head].update_(TensorDict.from_module(net).data)
    return ours, theirs


def value_losses(low, high):
    ours, theirs = build(low, high)
    td = batch()
    torch.manual_seed(123)
    mine = ours(td)["loss_qvalue"]
    torch.manual_seed(123)  # the same smoothing-noise draws
    reference, _ = theirs.value_loss(td)
    return mine, reference


def test_equal_to_torchrl_td3_value_loss_on_a_unit_box():
    mine, reference = value_losses(-1.0, 1.0)
    torch.testing.assert_close(mine, reference)


def test_differs_on_a_wider_box_where_our_noise_is_scaled_by_the_half_range():
    mine, reference = value_losses(-3.0, 3.0)
    assert not torch.allclose(mine, reference)

"""FusedSoftUpdate moves the targets exactly as TorchRL's SoftUpdate does."""

import torch
from torchrl.data import Bounded
from torchrl.objectives import SoftUpdate

from harl_torchrl.modules import JointQCritic, make_deterministic_actor
from harl_torchrl.objectives import FusedSoftUpdate, JointQLoss, TargetActions


def _losses():
    torch.manual_seed(0)
    specs = {a: Bounded(-2.0, 2.0, shape=(2,)) for a in "ab"}
    actors = {a: make_deterministic_actor(a, 3, spec, hidden_sizes=[8, 8]) for a, spec in specs.items()}
    critic = JointQCritic(["state"], 4, [("a", "action"), ("b", "action")], [2, 2], hidden_sizes=[8, 8])
    targets = TargetActions(actors, specs)
    params = [*critic.parameters(), *(p for actor in actors.values() for p in actor.parameters())]
    return JointQLoss(critic, targets), targets, params


def _leaves(module):
    return [t.clone() for t in module.state_dict().values()]


def test_fused_soft_update_is_bit_identical_to_torchrls():
    ours_q, ours_a, ours_params = _losses()
    theirs_q, theirs_a, theirs_params = _losses()
    fused = [FusedSoftUpdate(ours_q, tau=0.05), FusedSoftUpdate(ours_a, tau=0.05)]
    plain = [SoftUpdate(theirs_q, tau=0.05), SoftUpdate(theirs_a, tau=0.05)]
    before = _leaves(ours_q)
    for step in range(5):
        torch.manual_seed(step)
        with torch.no_grad():  # the same move of every live parameter on both sides
            for a, b in zip(ours_params, theirs_params, strict=True):
                noise = torch.randn_like(a)
                a.add_(noise)
                b.add_(noise)
        for updater in (*fused, *plain):
            updater.step()
        for ours, theirs in ((ours_q, theirs_q), (ours_a, theirs_a)):
            for a, b in zip(_leaves(ours), _leaves(theirs), strict=True):
                assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(before, _leaves(ours_q), strict=True)), "the targets moved"
    assert not any(t.requires_grad for t in ours_q.target_qvalue_network_params.values(True, True))

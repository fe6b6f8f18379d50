"""optimizer_step: one norm formula, the same step as torch's clip_grad_norm_, with or without a clip."""

import pytest
import torch
from torch import nn

from harl_torchrl.sequential import optimizer_parameters, optimizer_step


def _net_and_loss(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(16, 3)
    return net, lambda: (net(x) ** 2).sum() * 10


@pytest.mark.parametrize("max_grad_norm", [None, 0.5, 1e6])
def test_same_parameters_and_norm_as_clip_grad_norm(max_grad_norm):
    net, loss = _net_and_loss()
    reference, reference_loss = _net_and_loss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for _ in range(3):
        grad_norm = optimizer_step(loss(), optimizer, max_grad_norm=max_grad_norm)
        reference_optimizer.zero_grad(set_to_none=True)
        reference_loss().backward()
        params = list(reference.parameters())
        if max_grad_norm is None:
            expected = nn.utils.get_total_norm([p.grad for p in params])
        else:
            expected = nn.utils.clip_grad_norm_(params, max_grad_norm)
        reference_optimizer.step()
        assert torch.equal(grad_norm, expected) and not grad_norm.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), reference.parameters(), strict=True))


def test_the_norm_is_before_clipping_and_the_gradient_after():
    net, loss = _net_and_loss()
    grad_norm = optimizer_step(loss(), torch.optim.SGD(net.parameters(), lr=0.0), max_grad_norm=0.1)
    assert grad_norm > 0.1
    torch.testing.assert_close(nn.utils.get_total_norm([p.grad for p in net.parameters()]), torch.tensor(0.1))


def test_parameters_without_gradient_are_left_out():
    net, loss = _net_and_loss()
    frozen = nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([*net.parameters(), frozen], lr=0.1)
    assert len(optimizer_parameters(optimizer)) == 5
    grad_norm = optimizer_step(loss(), optimizer)
    torch.testing.assert_close(grad_norm, nn.utils.get_total_norm([p.grad for p in net.parameters()]))
    assert frozen.grad is None and torch.equal(frozen, torch.ones(3))
    only_frozen = optimizer_step(loss(), optimizer, params=[frozen], max_grad_norm=1.0)
    assert torch.equal(only_frozen, torch.zeros(()))


def test_measure_false_skips_the_norm_only_where_nothing_clips():
    torch.manual_seed(0)
    nets = [nn.Linear(3, 2) for _ in range(3)]
    for net in nets[1:]:
        net.load_state_dict(nets[0].state_dict())
    optimizers = [torch.optim.Adam(net.parameters(), lr=0.1) for net in nets]
    x = torch.randn(5, 3)
    norms = [
        optimizer_step(nets[0](x).pow(2).sum(), optimizers[0]),
        optimizer_step(nets[1](x).pow(2).sum(), optimizers[1], measure=False),
        optimizer_step(nets[2](x).pow(2).sum(), optimizers[2], max_grad_norm=1e9, measure=False),
    ]
    assert norms[1] is None and torch.equal(norms[2], norms[0])  # a clip needs the norm: measured anyway
    for net in nets[1:]:
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), nets[0].parameters(), strict=True))

import copy

import pytest
import torch
from tensordict import TensorDict
from torch import distributions as D
from torchrl.data import Bounded, Categorical, MultiCategorical

from harl_torchrl.errors import ConfigError
from harl_torchrl.modules import make_agent_actor
from harl_torchrl.objectives import HATRPOLoss
from harl_torchrl.sequential import TrustRegionTrainer
from harl_torchrl.trust_region import conjugate_gradient, fisher_vector_product, flat, set_flat, trust_region_step


@pytest.mark.parametrize("seed", range(5))
def test_conjugate_gradient_matches_a_direct_solve(seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(12, 12, generator=g, dtype=torch.float64)
    spd = q @ q.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: spd @ v, b, iterations=50, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(spd, b), rtol=1e-6, atol=1e-8)


def _batch(spec, n=64, seed=0):
    torch.manual_seed(seed)
    actor = make_agent_actor("a", 3, spec, hidden_sizes=[4])
    with torch.no_grad():
        td = actor(TensorDict({("a", "observation"): torch.randn(n, 3)}, [n]))
    td["advantage"] = torch.randn(n, 1)
    td["factor"] = torch.rand(n, 1) + 0.5
    return actor, td


SPECS = {"gaussian": Bounded(-1.0, 1.0, shape=(2,)), "categorical": Categorical(4)}


@pytest.mark.parametrize("head", list(SPECS))
def test_fisher_vector_product_matches_the_explicit_hessian(head):
    actor, td = _batch(SPECS[head], n=16)
    loss = HATRPOLoss(actor)
    params = list(actor.parameters())
    shapes = [p.shape for p in params]
    theta0 = flat([p.detach() for p in params]).double()

    def mean_kl_of(theta):
        # rebuild the parameters from a flat vector and evaluate the mean KL there
        chunks, offset = [], 0
        for shape in shapes:
            n = torch.Size(shape).numel()
            chunks.append(theta[offset : offset + n].view(shape))
            offset += n
        named = dict(zip([n for n, _ in actor.named_parameters()], chunks, strict=True))
        with torch.nn.utils.stateless._reparametrize_module(actor, named):
            return loss.mean_kl(td.copy().apply(lambda t: t.double() if t.is_floating_point() else t))

    actor.double()
    explicit = torch.autograd.functional.hessian(mean_kl_of, theta0)
    fvp = fisher_vector_product(
        loss.mean_kl(td.apply(lambda t: t.double() if t.is_floating_point() else t)), params, 0.1
    )
    v = torch.randn_like(theta0)
    torch.testing.assert_close(fvp(v), explicit @ v + 0.1 * v, rtol=1e-6, atol=1e-9)
    assert explicit.abs().sum() > 0


@pytest.mark.parametrize("head", list(SPECS))
def test_full_step_has_quadratic_kl_equal_to_delta(head):
    actor, td = _batch(SPECS[head])
    loss = HATRPOLoss(actor)
    params = list(actor.parameters())
    before = flat([p.detach() for p in params])
    old_actor = copy.deepcopy(actor)  # H + damping at the old parameters, on an untouched copy
    fvp = fisher_vector_product(HATRPOLoss(old_actor).mean_kl(td), list(old_actor.parameters()), 0.1)
    # one accepted line-search try means the applied step is the full step
    result = trust_region_step(params, lambda: loss.surrogate(td), lambda: loss.mean_kl(td), max_kl=0.02)
    assert result.accepted and result.line_search_steps == 1
    step = flat([p.detach() for p in params]) - before
    assert (0.5 * step.dot(fvp(step))).item() == pytest.approx(0.02, rel=1e-3)


@pytest.mark.parametrize("head", [*SPECS, "multi_discrete", "masked"])
def test_gauss_newton_fisher_product_equals_the_kl_hessian(head):
    if head == "multi_discrete":
        actor, td = _batch(MultiCategorical(nvec=[2, 3]), n=32)
    elif head == "masked":
        torch.manual_seed(0)
        actor = make_agent_actor("a", 3, Categorical(4), hidden_sizes=[4], mask_key="action_mask")
        mask = torch.rand(32, 4) > 0.4
        mask[:, 0] = True
        with torch.no_grad():
            td = actor(TensorDict({("a", "observation"): torch.randn(32, 3), ("a", "action_mask"): mask}, [32]))
        td["advantage"], td["factor"] = torch.randn(32, 1), torch.ones(32, 1)
    else:
        actor, td = _batch(SPECS[head], n=32)
    loss = HATRPOLoss(actor)
    params = list(actor.parameters())
    product = loss.fisher_product(td)
    assert product is not None
    hessian = fisher_vector_product(loss.mean_kl(td), params, 0.0)
    for seed in range(3):
        v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(product(v), hessian(v), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("head", list(SPECS))
def test_accepted_updates_respect_the_trust_region(head):
    accepted = 0
    for seed in range(20):
        actor, td = _batch(SPECS[head], seed=seed)
        loss = HATRPOLoss(actor)
        result = TrustRegionTrainer(loss, max_kl=0.01).train(td, torch.Generator())
        if result["accepted"]:
            accepted += 1
            assert loss.mean_kl(td).item() <= 0.01 + 1e-7
            assert result["kl"].item() <= 0.01
            assert result["actual_improvement"] > 0
    assert accepted >= 15, "most steps should be accepted, or the test proves little"


@pytest.mark.parametrize("head", list(SPECS))
def test_subsampled_fisher_keeps_accepted_updates_inside_the_trust_region(head):
    accepted = 0
    for seed in range(20):
        actor, td = _batch(SPECS[head], n=256, seed=seed)
        loss = HATRPOLoss(actor)
        trainer = TrustRegionTrainer(loss, fisher_fraction=0.25, max_kl=0.01)
        result = trainer.train(td, torch.Generator().manual_seed(seed))
        if result["accepted"]:
            accepted += 1
            assert loss.mean_kl(td).item() <= 0.01 + 1e-7  # measured on the whole batch
    assert accepted >= 15, "most steps should be accepted, or the test proves little"


@pytest.mark.parametrize("fraction, rows", [(0.25, 16), (1.0, 64)])
def test_fisher_products_see_the_requested_fraction_of_the_batch(monkeypatch, fraction, rows):
    actor, td = _batch(SPECS["categorical"], n=64)
    loss = HATRPOLoss(actor)
    seen = []
    exact = loss.fisher_product

    def spy(batch):
        seen.append(batch)
        return exact(batch)

    monkeypatch.setattr(loss, "fisher_product", spy)
    TrustRegionTrainer(loss, fisher_fraction=fraction).train(td, torch.Generator().manual_seed(0))
    assert [b.shape[0] for b in seen] == [rows]
    if fraction == 1.0:
        assert seen[0] is td


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_fisher_fraction_out_of_range_is_refused(fraction):
    actor, _ = _batch(SPECS["gaussian"])
    with pytest.raises(ConfigError, match="fisher_fraction"):
        TrustRegionTrainer(HATRPOLoss(actor), fisher_fraction=fraction)


def test_rejected_search_restores_parameters_bit_identically(monkeypatch):
    actor, td = _batch(SPECS["gaussian"])
    before = [p.detach().clone() for p in actor.parameters()]
    loss = HATRPOLoss(actor)
    true_kl = loss.mean_kl

    def kl_measured_too_large(batch):
        # the step is computed from the true KL; every candidate then measures beyond the region
        value = true_kl(batch)
        return value if torch.is_grad_enabled() else value + 1.0

    monkeypatch.setattr(loss, "mean_kl", kl_measured_too_large)
    out = TrustRegionTrainer(loss).train(td, torch.Generator())
    assert out["accepted"].item() == 0.0 and out["line_search_steps"].item() == 10
    assert out["step_norm"].item() == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, actor.parameters(), strict=True))


def test_surrogate_that_cannot_improve_is_rejected_and_restored():
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2]))
    before = w.detach().clone()
    direction = torch.tensor([0.01, 0.0])

    def surrogate():
        # a tiny slope and strong curvature: every candidate step lowers the surrogate
        delta = w - before
        return direction.dot(delta) - 1000.0 * (delta**2).sum()

    result = trust_region_step([w], surrogate, lambda: 0.5 * ((w - before) ** 2).sum())
    assert not result.accepted and result.actual_improvement < 0
    assert torch.equal(w.detach(), before)
    linear = trust_region_step([w], lambda: direction.dot(w - before), lambda: 0.5 * ((w - before) ** 2).sum())
    assert linear.accepted, "the same step on a linear surrogate is accepted: the rejection above is meaningful"


def test_set_flat_round_trip():
    params = [torch.nn.Parameter(torch.randn(2, 3)), torch.nn.Parameter(torch.randn(4))]
    vector = torch.arange(10.0)
    set_flat(params, vector)
    assert torch.equal(flat([p.detach() for p in params]), vector)


def test_reference_logit_kl_differs_from_the_true_kl():
    actor, td = _batch(SPECS["categorical"])
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    exact = HATRPOLoss(actor).mean_kl(td)
    reference = HATRPOLoss(actor, kl_type="reference_logits").mean_kl(td)
    old = HATRPOLoss(actor).old_distribution(td)
    new = actor.get_dist(td.copy())
    torch.testing.assert_close(exact, D.kl_divergence(old, new).mean())
    assert exact > 0 and reference > 0 and not torch.isclose(exact, reference)


def test_reference_logit_kl_is_refused_for_gaussian_policies():
    from harl_torchrl.errors import ConfigError

    actor, _ = _batch(SPECS["gaussian"])
    with pytest.raises(ConfigError, match="categorical policies"):
        HATRPOLoss(actor, kl_type="reference_logits")

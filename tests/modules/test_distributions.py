import torch
from tensordict import TensorDict
from torch import distributions as D
from torchrl.data import Bounded

from harl_torchrl.modules import MaskedCategorical, make_agent_actor
from harl_torchrl.modules.distributions import MaskedMultiCategorical


def _masked_reference(logits, mask):
    probs = torch.softmax(logits, -1) * mask
    return D.Categorical(probs=probs / probs.sum(-1, keepdim=True))


def test_masked_categorical_kl_equals_torch_kl():
    g = torch.Generator().manual_seed(0)
    p_logits, q_logits = torch.randn(50, 6, generator=g), torch.randn(50, 6, generator=g)
    mask = torch.rand(50, 6, generator=g) > 0.3
    mask[:, 0] = True  # at least one available action per row
    ours = D.kl_divergence(MaskedCategorical(p_logits, mask), MaskedCategorical(q_logits, mask))
    reference = D.kl_divergence(_masked_reference(p_logits, mask), _masked_reference(q_logits, mask))
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)
    unmasked = D.kl_divergence(D.Categorical(logits=p_logits), D.Categorical(logits=q_logits))
    assert not torch.allclose(ours, unmasked), "the mask must matter for this check to mean anything"


def test_masked_categorical_entropy_and_log_prob():
    logits, mask = torch.randn(20, 5), torch.rand(20, 5) > 0.4
    mask[:, 2] = True
    ours, reference = MaskedCategorical(logits, mask), _masked_reference(logits, mask)
    torch.testing.assert_close(ours.entropy(), reference.entropy(), rtol=1e-6, atol=1e-6)
    action = torch.full((20,), 2)
    torch.testing.assert_close(ours.log_prob(action), reference.log_prob(action), rtol=1e-6, atol=1e-6)


def test_masked_action_never_sampled_and_has_zero_probability():
    mask = torch.tensor([True, False, True, False, False])
    dist = MaskedCategorical(torch.randn(4000, 5), mask.expand(4000, 5))
    samples = dist.sample()
    assert set(samples.unique().tolist()) == {0, 2}
    assert dist.log_prob(torch.ones(4000, dtype=torch.long)).exp().max() == 0
    assert dist.deterministic_sample.remainder(2).eq(0).all()


def test_gaussian_head_kl_equals_torch_kl():
    actor = make_agent_actor("a", 4, Bounded(-1.0, 1.0, shape=(3,)))
    obs = TensorDict({("a", "observation"): torch.randn(30, 4)}, [30])
    old = actor.get_dist(obs.copy())
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.2 * torch.randn_like(p))
    new = actor.get_dist(obs.copy())
    reference = D.kl_divergence(
        D.Independent(D.Normal(old.base_dist.loc, old.base_dist.scale), 1),
        D.Independent(D.Normal(new.base_dist.loc, new.base_dist.scale), 1),
    )
    manual = (
        torch.log(new.base_dist.scale / old.base_dist.scale)
        + (old.base_dist.scale**2 + (old.base_dist.loc - new.base_dist.loc) ** 2) / (2 * new.base_dist.scale**2)
        - 0.5
    ).sum(-1)
    torch.testing.assert_close(D.kl_divergence(old, new), reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(D.kl_divergence(old, new), manual, rtol=1e-5, atol=1e-6)


def test_multi_categorical_is_a_product_of_heads():
    logits, mask = torch.randn(10, 7), torch.ones(10, 7, dtype=torch.bool)
    mask[:, 1] = False
    q_logits = torch.randn(10, 7)
    p = MaskedMultiCategorical(logits, [3, 4], mask)
    q = MaskedMultiCategorical(q_logits, [3, 4], mask)
    heads_kl = sum(
        D.kl_divergence(MaskedCategorical(a, m), MaskedCategorical(b, m))
        for a, b, m in zip(logits.split([3, 4], -1), q_logits.split([3, 4], -1), mask.split([3, 4], -1), strict=True)
    )
    torch.testing.assert_close(D.kl_divergence(p, q), heads_kl)
    sample = p.sample((500,))
    assert not (sample[..., 0] == 1).any()
    torch.testing.assert_close(p.entropy(), p.heads[0].entropy() + p.heads[1].entropy())

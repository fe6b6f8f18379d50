import pytest
import torch

from harl_torchrl.modules import ValueNorm


def test_statistics_follow_the_debiased_running_average():
    norm = ValueNorm(beta=0.9)
    a, b = torch.tensor([[1.0], [3.0]]), torch.tensor([[5.0], [7.0]])
    norm.update(a)
    norm.update(b)
    # debiased EMA of the batch means 2 and 6 with weights 0.1*0.9 and 0.1
    w1, w2 = 0.1 * 0.9, 0.1
    mean = (w1 * 2 + w2 * 6) / (w1 + w2)
    mean_sq = (w1 * 5 + w2 * 37) / (w1 + w2)
    m, v = norm.mean_var()
    torch.testing.assert_close(m, torch.tensor([mean]))
    torch.testing.assert_close(v, torch.tensor([mean_sq - mean**2]))


def test_normalize_and_denormalize_are_inverse():
    norm = ValueNorm()
    norm.update(torch.randn(100, 1) * 5 + 3)
    x = torch.randn(10, 1)
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)
    torch.testing.assert_close(norm.normalize(norm.denormalize(x)), x)


def test_variance_floor():
    norm = ValueNorm()
    norm.update(torch.full((10, 1), 4.0))
    _, var = norm.mean_var()
    assert var.item() == pytest.approx(1e-2)


def test_state_dict_holds_the_statistics():
    norm = ValueNorm()
    norm.update(torch.randn(20, 1) * 3)
    other = ValueNorm()
    other.load_state_dict(norm.state_dict())
    x = torch.randn(5, 1)
    torch.testing.assert_close(other.normalize(x), norm.normalize(x))

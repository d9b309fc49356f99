"""tinyconv.distributions: Multinomial and Normal with PyTorch's constructors, sample shapes, dtypes, moments and
log-probabilities; draws follow tc.manual_seed."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.distributions import Multinomial, Normal, multinomial


def test_multinomial_sample_shapes_and_counts():
    tc.manual_seed(0)
    fair = tc.ones([6]) / 6
    one = multinomial.Multinomial(1, fair).sample()
    assert one.shape == (6,) and one.dtype == np.float32 and one.sum().item() == 1.0
    assert sorted(set(one.tolist())) == [0.0, 1.0]
    ten = multinomial.Multinomial(10, fair).sample()
    assert ten.sum().item() == 10.0 and min(ten.tolist()) >= 0
    counts = multinomial.Multinomial(10, fair).sample((500,))
    assert counts.shape == (500, 6) and counts.sum(dim=1).tolist() == [10.0] * 500
    assert Multinomial(3, tc.ones(2, 4)).sample((5, 7)).shape == (5, 7, 2, 4)  # sample + batch + event
    assert Multinomial(3, tc.ones(4)).batch_shape == () and Multinomial(3, tc.ones(4)).event_shape == (4,)


def test_multinomial_frequencies_approach_the_probabilities():
    tc.manual_seed(1)
    probs = tc.tensor([0.1, 0.2, 0.3, 0.4])
    counts = Multinomial(100000, probs).sample()
    np.testing.assert_allclose((counts / 100000).numpy(), probs.numpy(), atol=0.01)
    unnormalised = Multinomial(4, tc.tensor([1.0, 3.0]))  # probs are normalised, as in PyTorch
    assert unnormalised.probs.tolist() == [0.25, 0.75] and unnormalised.mean.tolist() == [1.0, 3.0]
    assert unnormalised.variance.tolist() == pytest.approx([0.75, 0.75])
    from_logits = Multinomial(4, logits=tc.tensor([0.0, math.log(3.0)]))
    np.testing.assert_allclose(from_logits.probs.numpy(), [0.25, 0.75], rtol=1e-6)


def test_multinomial_draws_follow_the_seed():
    tc.manual_seed(7)
    a = Multinomial(10, tc.ones(6) / 6).sample((20,))
    tc.manual_seed(7)
    assert Multinomial(10, tc.ones(6) / 6).sample((20,)).tolist() == a.tolist()


def test_multinomial_log_prob_is_the_formula_and_differentiable():
    p = tc.tensor([0.2, 0.3, 0.5], dtype=tc.float64, requires_grad=True)
    x = tc.tensor([1.0, 0.0, 2.0], dtype=tc.float64)
    lp = Multinomial(3, p).log_prob(x)
    expected = math.log(3) + math.log(0.2) + 2 * math.log(0.5)  # 3!/(1!0!2!) p0 p2^2
    assert lp.item() == pytest.approx(expected, rel=1e-12)
    lp.backward()
    # d/dp of log(p_i / sum p) weighted by counts, at sum p = 1: x_i / p_i - sum(x)
    np.testing.assert_allclose(p.grad.numpy(), [1 / 0.2 - 3, -3, 2 / 0.5 - 3], rtol=1e-12)
    assert Multinomial(2, tc.tensor([1.0, 0.0])).log_prob(tc.tensor([2.0, 0.0])).item() == 0.0  # 0 * log 0 is 0


def test_multinomial_refuses_bad_arguments():
    with pytest.raises(ValueError, match="Either `probs` or `logits` must be specified"):
        Multinomial(3)
    with pytest.raises(ValueError, match="non-negative and finite"):
        Multinomial(3, tc.tensor([0.5, -0.5]))
    with pytest.raises(ValueError, match="total_count must be a non-negative int"):
        Multinomial(2.5, tc.ones(2))
    with pytest.raises(TypeError, match=r"sample_shape must be a tuple of ints such as \(500,\)"):
        Multinomial(3, tc.ones(2)).sample(500)
    with pytest.raises(ValueError, match="must have 2 categories"):
        Multinomial(3, tc.ones(2)).log_prob(tc.ones(3))


def test_normal_samples_moments_and_log_prob():
    tc.manual_seed(0)
    d = Normal(tc.tensor([0.0, 5.0]), tc.tensor([1.0, 0.5]))
    x = d.sample((20000,))
    assert x.shape == (20000, 2) and x.dtype == np.float32 and not x.requires_grad
    np.testing.assert_allclose(x.numpy().mean(0), [0.0, 5.0], atol=0.03)
    np.testing.assert_allclose(x.numpy().std(0), [1.0, 0.5], rtol=0.03)
    lp = Normal(0.0, 2.0).log_prob(tc.tensor([0.0, 2.0]))
    np.testing.assert_allclose(lp.numpy(), [-math.log(2 * math.sqrt(2 * math.pi)),
                                            -0.5 - math.log(2 * math.sqrt(2 * math.pi))], rtol=1e-6)
    assert Normal(0.0, 2.0).entropy().item() == pytest.approx(0.5 + 0.5 * math.log(2 * math.pi) + math.log(2))
    assert repr(Normal(0.0, 1.0)) == "Normal(loc: tensor(0.), scale: tensor(1.))"
    assert repr(Normal(tc.zeros(3), 1.0)) == "Normal(loc: tinyconv.Size([3]), scale: tensor(1.))"
    with pytest.raises(ValueError, match="scale .* positive"):
        Normal(0.0, -1.0)


def test_normal_rsample_carries_the_gradient_to_its_parameters():
    loc = tc.tensor([1.0, 2.0], requires_grad=True)
    scale = tc.tensor([0.5, 0.5], requires_grad=True)
    tc.manual_seed(3)
    y = Normal(loc, scale).rsample((4,))
    y.sum().backward()
    assert loc.grad.tolist() == [4.0, 4.0]
    tc.manual_seed(3)
    eps = (Normal(loc, scale).sample((4,)) - loc.detach()) / scale.detach()
    np.testing.assert_allclose(scale.grad.numpy(), eps.numpy().sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_shapes_moments_and_log_probs_match_pytorch():
    torch = pytest.importorskip("torch")
    from torch.distributions import multinomial as tm

    probs = [0.1, 0.2, 0.3, 0.4]
    ours, theirs = Multinomial(10, tc.tensor(probs)), tm.Multinomial(10, torch.tensor(probs))
    assert tuple(ours.sample((3, 2)).shape) == tuple(theirs.sample((3, 2)).shape)
    assert repr(ours) == repr(theirs) == "Multinomial()"
    value = [1.0, 2.0, 3.0, 4.0]
    assert ours.log_prob(tc.tensor(value)).item() == pytest.approx(theirs.log_prob(torch.tensor(value)).item(),
                                                                   rel=1e-5)
    np.testing.assert_allclose(ours.variance.numpy(), theirs.variance.numpy(), rtol=1e-6)
    n, tn = Normal(tc.tensor([0.0, 1.0]), 2.0), torch.distributions.Normal(torch.tensor([0.0, 1.0]), 2.0)
    np.testing.assert_allclose(n.log_prob(tc.tensor([0.5, -1.0])).numpy(),
                               tn.log_prob(torch.tensor([0.5, -1.0])).numpy(), rtol=1e-6)
    assert tuple(n.sample((5,)).shape) == tuple(tn.sample((5,)).shape) == (5, 2)

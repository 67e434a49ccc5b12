"""Every head against numpy/scipy references computed from the head's own weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from registry import HEADS, HeadCase

IN_DIM, OUT_DIM, BATCH = 5, 4, 64


def _setup(case: HeadCase, seed: int):
    torch.manual_seed(seed)
    head = case.make(IN_DIM, OUT_DIM).double()
    h = 2.0 * torch.randn(BATCH, IN_DIM, dtype=torch.float64)
    x = case.sample_data(np.random.default_rng(seed), (BATCH, OUT_DIM))
    return head, h, x


@pytest.mark.parametrize("case", HEADS, ids=lambda c: c.name)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_prob_matches_reference(case: HeadCase, seed: int) -> None:
    head, h, x = _setup(case, seed)
    px = head(h)
    assert px.batch_shape == (BATCH,) and px.event_shape == (OUT_DIM,)
    log_pdf, _, _ = case.reference(head, h)
    expected = log_pdf(x).sum(-1)  # independent dimensions: one number per example
    actual = px.log_prob(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", HEADS, ids=lambda c: c.name)
def test_mean_and_variance_match_reference(case: HeadCase) -> None:
    head, h, _ = _setup(case, 0)
    px = head(h)
    _, mean, var = case.reference(head, h)
    known = np.isfinite(mean)
    assert known.mean() > 0.9
    np.testing.assert_allclose(px.mean.detach().numpy()[known], mean[known], rtol=1e-6)
    np.testing.assert_allclose(px.variance.detach().numpy()[known], var[known], rtol=1e-6)


@pytest.mark.parametrize("case", HEADS, ids=lambda c: c.name)
def test_log_prob_gradients_pass_gradcheck(case: HeadCase) -> None:
    head, h, x = _setup(case, 0)
    x = torch.as_tensor(x[:4])

    def log_prob(h: torch.Tensor) -> torch.Tensor:
        return head(h).log_prob(x)

    assert torch.autograd.gradcheck(log_prob, (h[:4].clone().requires_grad_(),))


@pytest.mark.parametrize("case", HEADS, ids=lambda c: c.name)
def test_heads_accept_leading_sample_dimensions(case: HeadCase) -> None:
    head, h, x = _setup(case, 0)
    stacked = torch.stack([h, h + 1])  # (k, B, in_dim), as when decoding k samples of z
    px = head(stacked)
    assert px.batch_shape == (2, BATCH)
    log_p = px.log_prob(torch.as_tensor(x))
    np.testing.assert_allclose(log_p[0].detach(), head(h).log_prob(torch.as_tensor(x)).detach())


def test_learned_scales_stay_bounded_away_from_zero() -> None:
    from aevb import NormalHead

    head = NormalHead(3, 2, min_scale=0.01)
    with torch.no_grad():
        head.raw_scale.bias.fill_(-1e4)  # push the raw scale to -infinity
    assert head(torch.zeros(1, 3)).base_dist.scale.min().item() == pytest.approx(0.01)


@pytest.mark.parametrize("size", [1, 15, 16, 17, 784, 2000, 3072])
def test_grouped_bernoulli_log_prob_matches_scipy(size: int) -> None:
    """The compiled path's formula (logarithms of products of up to 64 factors), evaluated
    eagerly, against scipy's log-sigmoid in float64 and float32, extreme logits included."""
    from scipy.special import log_expit

    from aevb.distributions.core import bernoulli_log_prob

    rng = np.random.default_rng(size)
    logits = rng.normal(0, 6, (3, size))
    logits[:, : min(size, 4)] = [-90.0, 90.0, -0.0, 1e-6][: min(size, 4)]
    x = rng.integers(0, 2, (3, size)).astype(float)
    exact = np.where(x == 1, log_expit(logits), log_expit(-logits)).sum(-1)  # log sigmoid(+-l)
    actual = bernoulli_log_prob(torch.as_tensor(logits), torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(actual, exact, rtol=1e-12, atol=1e-9)
    single = bernoulli_log_prob(torch.as_tensor(logits).float(), torch.as_tensor(x).float())
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), exact, rtol=2e-6, atol=2e-4)


def test_compiled_bernoulli_head_agrees_with_eager() -> None:
    """Under torch.compile the head's distribution switches to the grouped formula."""
    from aevb import BernoulliHead

    torch.manual_seed(0)
    head = BernoulliHead(8, 784)
    h, x = 3 * torch.randn(5, 8), (torch.rand(5, 784) > 0.7).float()
    eager = head(h).log_prob(x)
    compiled = torch.compile(lambda h, x: head(h).log_prob(x), dynamic=False)(h, x)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=2e-4)
    expanded = head(h).expand((2, 5))  # as torch.distributions expects of a distribution
    assert expanded.batch_shape == (2, 5) and torch.equal(expanded.log_prob(x)[1], eager)

"""Per-column families and the masked row likelihood, against scipy computed from raw
parameters (the links re-derived in numpy) and from the head's own weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from registry import affine, softplus
from scipy import special, stats

from aevb import FAMILIES, VAE, ColumnsHead, DataError, MaskedInput, NormalHead, StandardNormalPrior
from aevb.nn.mlp import MLP

MIN = 1e-3


def _reference(name: str, raw: np.ndarray, num_categories: int = 3):
    """A frozen scipy distribution per row of ``raw (n, P)``: the documented links."""
    pos = lambda r: softplus(r) + MIN  # noqa: E731
    if name == "normal":
        return stats.norm(raw[:, 0], pos(raw[:, 1]))
    if name == "student-t":
        return stats.t(1 + pos(raw[:, 2]), raw[:, 0], pos(raw[:, 1]))
    if name == "lognormal":
        return stats.lognorm(pos(raw[:, 1]), scale=np.exp(raw[:, 0]))
    if name == "gamma":
        mean, shape = pos(raw[:, 0]), pos(raw[:, 1])
        return stats.gamma(shape, scale=mean / shape)
    if name == "exponential":
        return stats.expon(scale=pos(raw[:, 0]))
    if name == "beta":
        mean, precision = special.expit(raw[:, 0]), pos(raw[:, 1])
        return stats.beta(mean * precision, (1 - mean) * precision)
    if name == "poisson":
        return stats.poisson(pos(raw[:, 0]))
    if name == "negative-binomial":  # scipy counts failures before n successes
        mean, total = pos(raw[:, 0]), pos(raw[:, 1])
        return stats.nbinom(total, total / (total + mean))
    if name == "bernoulli":
        return stats.bernoulli(special.expit(raw[:, 0]))
    raise AssertionError(name)


def _data(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if name in ("normal", "student-t"):
        return rng.normal(0, 2, n)
    if name in ("lognormal", "gamma", "exponential"):
        return rng.gamma(2.0, 1.0, n)
    if name == "beta":
        return rng.uniform(0.01, 0.99, n)
    if name in ("poisson", "negative-binomial"):
        return rng.poisson(3.0, n).astype(float)
    if name == "bernoulli":
        return rng.integers(0, 2, n).astype(float)
    return rng.integers(0, 3, n).astype(float)


def _log_density(name: str, raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    if name == "categorical":
        return special.log_softmax(raw, axis=-1)[np.arange(len(x)), x.astype(int)]
    dist = _reference(name, raw)
    discrete = name in ("poisson", "negative-binomial", "bernoulli")
    return dist.logpmf(x) if discrete else dist.logpdf(x)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_log_density_and_mean_match_scipy(name: str) -> None:
    rng = np.random.default_rng(0)
    family = FAMILIES[name]
    raw = rng.normal(0, 1.5, (200, family.num_params(3)))
    x = _data(name, rng, 200)
    dist = family.distribution(torch.as_tensor(raw))
    actual = dist.log_prob(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(actual, _log_density(name, raw, x), rtol=1e-7, atol=1e-8)
    if name != "categorical":
        np.testing.assert_allclose(dist.mean.numpy(), _reference(name, raw).mean(), rtol=1e-7)


@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "categorical"])
def test_initial_raw_matches_the_column_moments(name: str) -> None:
    rng = np.random.default_rng(1)
    values = _data(name, rng, 5000)
    if name == "negative-binomial":
        values = rng.negative_binomial(2, 0.3, 5000).astype(float)  # overdispersed
    family = FAMILIES[name]
    raw = np.array([family.initial_raw(values)])
    dist = _reference(name, raw)
    if name == "lognormal":  # the maximum-likelihood fit: moments of log x
        values, dist = np.log(values), stats.norm(raw[0, 0], softplus(raw[0, 1]) + MIN)
    np.testing.assert_allclose(dist.mean(), values.mean(), rtol=0.03)
    if name not in ("exponential", "poisson", "bernoulli", "student-t"):  # one-parameter
        np.testing.assert_allclose(dist.var(), values.var(), rtol=0.05)


def _head_and_rows(seed: int = 0):
    families = ["normal", "gamma", "categorical", "poisson", "bernoulli", "beta", "categorical"]
    num_categories = [0, 0, 3, 0, 0, 0, 4]
    torch.manual_seed(seed)
    head = ColumnsHead(6, families, num_categories).double()
    rng = np.random.default_rng(seed)
    n = 40
    columns = [_data(f, rng, n) for f in families]
    columns[6] = rng.integers(0, 4, n).astype(float)
    x = np.stack(columns, 1)
    x[rng.random(x.shape) < 0.3] = np.nan  # holes everywhere
    return head, families, num_categories, torch.randn(n, 6, dtype=torch.float64), x


def test_masked_row_likelihood_equals_observed_subvector_by_scipy() -> None:
    head, _, _, h, x = _head_and_rows()
    raw_all = affine(head.params, h)  # (n, total params), in the head's group layout
    expected = np.zeros(len(x))
    at = 0
    for name, columns, size in head._groups:
        for j in columns:
            raw = raw_all[:, at : at + size]
            at += size
            observed = ~np.isnan(x[:, j])
            log_p = _log_density(name, raw[observed], x[observed, j])
            expected[observed] += log_p
    actual = head(h).log_prob(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-9)


def test_columns_shapes_sampling_and_support() -> None:
    head, _, _, h, x = _head_and_rows()
    px = head(h)
    assert px.batch_shape == (40,) and px.event_shape == (7,)
    draws = px.sample((3,))
    assert draws.shape == (3, 40, 7) and bool(px.support.check(draws).all())
    assert bool(px.support.check(torch.as_tensor(x)).all())  # NaN counts as allowed
    bad = torch.as_tensor(x).clone()
    bad[0, 2] = 3.0  # the first categorical column has 3 classes: code 3 is outside
    bad[1, 1] = -1.0  # gamma needs positive values
    outside = ~px.support.check(bad)
    assert outside.nonzero().tolist() == [[0, 2], [1, 1]]
    # decoded from (k, batch) latents, the log-density broadcasts over the data rows
    stacked = head(h.expand(5, -1, -1))
    assert stacked.log_prob(torch.as_tensor(x)).shape == (5, 40)


def test_masked_input_features() -> None:
    features = MaskedInput([0, 3, 0])(torch.tensor([[0.5, 2.0, np.nan], [np.nan, np.nan, -1.0]]))
    expected = [[0.5, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0, 0, -1, 1, 1, 0]]
    np.testing.assert_array_equal(features.numpy(), expected)


def test_check_data_lets_missing_entries_through_but_not_infinities() -> None:
    head = ColumnsHead(8, ["normal", "gamma"])
    body = MLP(2, (8,))
    masked = MaskedInput([0, 0])
    model = VAE(
        torch.nn.Sequential(masked, MLP(masked.out_dim, (8,)), NormalHead(8, 2)),
        torch.nn.Sequential(body, head),
        StandardNormalPrior(2),
    )
    model.check_data(torch.tensor([[0.1, np.nan], [np.nan, 2.0]]))
    with pytest.raises(DataError, match="infinite"):
        model.check_data(torch.tensor([[0.1, np.inf]]))
    with pytest.raises(DataError, match="outside the support"):
        model.check_data(torch.tensor([[0.1, -2.0]]))

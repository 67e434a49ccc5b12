"""VAEEstimator: scikit-learn's own estimator checks, pipelines, grid search, and its
log-likelihood against aevb's importance sampler and a change of units."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.decomposition import FactorAnalysis
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from aevb import VAEEstimator, log_px


def _quick(**options) -> VAEEstimator:
    return VAEEstimator(
        **{"hidden_dims": (16,), "max_epochs": 3, "score_k": 20, "random_state": 0, **options}
    )


@parametrize_with_checks([_quick()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _low_rank(n: int = 600, rank: int = 3, dim: int = 8, seed: int = 0) -> np.ndarray:
    """x = W z + noise: a probabilistic-PCA sample with ``rank`` latent dimensions."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rank, dim))
    return rng.normal(size=(n, rank)) @ w + 0.05 * rng.normal(size=(n, dim))


def test_score_samples_matches_aevb_importance_sampling():
    x = _low_rank()
    vae = _quick(max_epochs=30, score_k=4000).fit(x)
    mine = vae.score_samples(x[:20])
    standardized = torch.from_numpy((x[:20] - vae.mean_) / vae.scale_)
    torch.manual_seed(0)
    reference = log_px(vae.model_, standardized, k=4000)
    jacobian = np.log(vae.scale_).sum()
    # two independent estimates of the same log p(x): within a few standard errors
    gap = np.abs(mine - (reference.log_px.numpy() - jacobian))
    assert (gap < 5 * reference.stderr.numpy() + 1e-3).all(), gap.max()


def test_heldout_likelihood_approaches_the_exact_linear_gaussian_model():
    # Data from a linear-Gaussian model: factor analysis (fit by maximum likelihood,
    # exact log-density) is the right model, so a VAE can approach it but not beat it by
    # much on held-out rows.
    x = _low_rank(n=2000)
    train, test = x[:1500], x[1500:]
    exact = FactorAnalysis(n_components=3, random_state=0).fit(train).score(test)  # 1.28
    vae = VAEEstimator(3, (64,), max_epochs=60, batch_size=100, lr=3e-3, random_state=0)
    mine = vae.fit(train).score(test)  # 0.85 nats per row
    assert exact - 0.6 < mine < exact + 0.3, (mine, exact)


def test_score_is_a_density_of_the_data_in_its_own_units():
    x = _low_rank()
    a, b = _quick().fit(x), _quick().fit(10.0 * x)
    # same standardized data, same model: the density of 10x is 10^-d times that of x
    expected = a.score_samples(x) - x.shape[1] * math.log(10.0)
    np.testing.assert_allclose(b.score_samples(10.0 * x), expected, atol=1e-3)


def test_transform_inverse_sample_and_pickle_in_data_units():
    x = _low_rank() + 100.0
    vae = _quick(max_epochs=40, latent_dim=3, hidden_dims=(32,)).fit(x)
    codes = vae.transform(x)
    assert codes.shape == (600, 3) and codes.dtype == np.float64
    back = vae.inverse_transform(codes)
    residual = np.mean((back - x) ** 2) / np.var(x)
    assert residual < 0.2, residual  # the three latent directions are reconstructed
    draws = vae.sample(2000, random_state=1)
    assert draws.shape == (2000, 8)
    np.testing.assert_allclose(draws.mean(0), x.mean(0), atol=0.3 * x.std(0).max())
    again = pickle.loads(pickle.dumps(vae))
    np.testing.assert_array_equal(again.transform(x), codes)
    with pytest.raises(ValueError, match="columns"):
        vae.inverse_transform(codes[:, :2])


def test_pipeline_and_grid_search_choose_the_latent_size_by_heldout_likelihood():
    x = _low_rank(n=800)
    vae = _quick(max_epochs=30, hidden_dims=(32,), batch_size=50, lr=3e-3)
    pipeline = make_pipeline(FunctionTransformer(), vae)
    search = GridSearchCV(pipeline, {"vaeestimator__latent_dim": [1, 3]}, cv=2)
    search.fit(x)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"vaeestimator__latent_dim": 3}, scores
    assert scores[1] > scores[0] + 3.0  # nats per row: three directions need three codes


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="latent_dim"):
        VAEEstimator(latent_dim=0).fit(_low_rank())
    with pytest.raises(ValueError, match="activation"):
        VAEEstimator(activation="swishy").fit(_low_rank())

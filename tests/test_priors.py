"""Every prior against a numpy/scipy mixture-of-Gaussians reference: density, moments, KL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from registry import PRIORS, PriorCase, perturbed

from aevb import NormalHead, has_closed_form, kl, kl_per_dim

LATENT_DIM = 3


def _prior(case: PriorCase) -> torch.nn.Module:
    return perturbed(case.make(LATENT_DIM)).double()


@pytest.mark.parametrize("case", PRIORS, ids=lambda c: c.name)
def test_log_prob_matches_reference(case: PriorCase, float64) -> None:
    prior = _prior(case)
    pz = prior()
    assert pz.batch_shape == () and pz.event_shape == (LATENT_DIM,)
    z = 2 * torch.randn(50, LATENT_DIM)
    expected = case.reference_log_prob(prior, z.numpy())
    np.testing.assert_allclose(pz.log_prob(z).detach().numpy(), expected, rtol=1e-9)
    stacked = pz.log_prob(z.reshape(5, 10, LATENT_DIM))  # (k, batch) leading dimensions
    np.testing.assert_allclose(stacked.detach().numpy().ravel(), expected, rtol=1e-9)


@pytest.mark.parametrize("case", PRIORS, ids=lambda c: c.name)
def test_samples_have_the_reference_moments(case: PriorCase, float64) -> None:
    prior = _prior(case)
    num = 200_000
    samples = prior().sample((num,)).numpy()
    mean, cov = case.reference_moments(prior)
    stderr = np.sqrt(np.diag(cov) / num)
    assert (np.abs(samples.mean(0) - mean) < 5 * stderr).all()
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.05 * np.abs(cov).max())


@pytest.mark.parametrize("case", PRIORS, ids=lambda c: c.name)
def test_kl_to_the_prior_by_closed_form_or_monte_carlo(case: PriorCase, float64) -> None:
    prior = _prior(case)
    qz = NormalHead(6, LATENT_DIM).double()(torch.randn(4, 6))
    pz = prior()
    assert has_closed_form(qz, pz) == case.closed_form_kl
    num = 100_000
    with torch.no_grad():
        z = qz.sample((num,))
        estimate = kl(qz, pz, z)  # closed form when registered, else this Monte Carlo
        fresh = qz.sample((num,))
        log_q = qz.log_prob(fresh).numpy()
        reference = log_q - case.reference_log_prob(prior, fresh.reshape(-1, 3).numpy()).reshape(
            num, 4
        )
    stderr = reference.std(0) / np.sqrt(num)
    assert (np.abs(estimate.numpy() - reference.mean(0)) < 5 * stderr * np.sqrt(2)).all()
    if not case.closed_form_kl:
        assert kl_per_dim(qz, pz) is None


@pytest.mark.parametrize("case", PRIORS, ids=lambda c: c.name)
def test_prior_parameters_receive_gradients(case: PriorCase) -> None:
    prior = case.make(LATENT_DIM)
    if not list(prior.parameters()):
        pytest.skip(f"{case.name} has no parameters")
    prior().log_prob(torch.randn(7, LATENT_DIM)).sum().backward()
    grads = [p.grad for p in prior.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

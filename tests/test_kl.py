"""Every closed-form KL against Monte Carlo; the Monte Carlo fallback where none exists."""

from __future__ import annotations

import pytest
import torch
from registry import PRIORS, perturbed
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from aevb import NormalHead, has_closed_form, kl, kl_per_dim

LATENT_DIM, BATCH, NUM_MC = 3, 8, 200_000


CLOSED_FORM = [case for case in PRIORS if case.closed_form_kl]


@pytest.mark.parametrize("case", CLOSED_FORM, ids=lambda c: c.name)
def test_closed_form_kl_matches_monte_carlo(case, float64) -> None:
    qz = NormalHead(6, LATENT_DIM)(torch.randn(BATCH, 6))
    pz = perturbed(case.make(LATENT_DIM))()
    assert has_closed_form(qz, pz)
    with torch.no_grad():
        closed = kl(qz, pz)
        z = qz.sample((NUM_MC,))
        terms = qz.log_prob(z) - pz.log_prob(z)  # (NUM_MC, BATCH)
    mc, stderr = terms.mean(0), terms.std(0) / NUM_MC**0.5
    assert closed.shape == (BATCH,)
    assert ((closed - mc).abs() < 4 * stderr + 1e-12).all(), (closed, mc, stderr)
    assert torch.allclose(kl(qz, pz, z, analytic=False), mc)


@pytest.mark.parametrize("case", CLOSED_FORM, ids=lambda c: c.name)
def test_per_dimension_kl_sums_to_total(case, float64) -> None:
    qz = NormalHead(6, LATENT_DIM)(torch.randn(BATCH, 6))
    pz = perturbed(case.make(LATENT_DIM))()
    per_dim = kl_per_dim(qz, pz)
    assert per_dim.shape == (BATCH, LATENT_DIM)
    assert torch.allclose(per_dim.sum(-1), kl(qz, pz))


def _mixture_prior() -> MixtureSameFamily:
    components = Independent(Normal(torch.randn(4, LATENT_DIM), torch.rand(4, LATENT_DIM) + 0.5), 1)
    return MixtureSameFamily(Categorical(logits=torch.randn(4)), components)


def test_monte_carlo_fallback_without_a_closed_form(float64) -> None:
    qz = NormalHead(6, LATENT_DIM)(torch.randn(BATCH, 6))
    pz = _mixture_prior()
    assert not has_closed_form(qz, pz)
    with pytest.raises(ValueError, match="no closed-form KL"):
        kl(qz, pz)
    z = qz.sample((NUM_MC,))
    estimate = kl(qz, pz, z)  # falls back to Monte Carlo
    # Against an independent estimate of E_q[log q - log p] from fresh samples.
    fresh = qz.sample((NUM_MC,))
    reference = (qz.log_prob(fresh) - pz.log_prob(fresh)).mean(0)
    assert torch.allclose(estimate, reference, atol=0.02)
    assert kl_per_dim(qz, pz) is None  # a mixture does not factorize over dimensions

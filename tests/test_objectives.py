"""The ELBO estimator against the exact reference model and a naive implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ppca import PPCA, LinearGaussianEncoder, encoder_gradients
from torch import nn
from torch.distributions import Independent, Normal

from aevb import elbo, linear_warmup, mlp_vae


@pytest.fixture
def ppca(float64) -> PPCA:
    return PPCA(data_dim=5, latent_dim=2, noise=0.5, seed=0)


def test_elbo_estimate_matches_closed_form(ppca: PPCA) -> None:
    x = ppca.sample(6)
    model = ppca.model(LinearGaussianEncoder(5, 2))
    qz = model.encode(x)
    exact = ppca.closed_form_elbo(x, qz.mean.detach().numpy(), qz.stddev.detach().numpy())
    num_samples = 20_000
    terms = elbo(model, x, num_samples=num_samples)
    # Standard error of the reconstruction term from the spread of log p(x|z) over samples.
    with torch.no_grad():
        log_lik = model.decode(qz.sample((num_samples,))).log_prob(x)
    stderr = (log_lik.std(0) / math.sqrt(num_samples)).numpy()
    estimate = terms.elbo.detach().numpy()
    assert (np.abs(estimate - exact) < 4 * stderr).all(), (estimate, exact, stderr)


def test_elbo_is_below_log_px_with_the_gap_of_a_poor_q(ppca: PPCA) -> None:
    x = ppca.sample(50)
    model = ppca.model(LinearGaussianEncoder(5, 2))
    log_px = ppca.log_px(x)
    estimate = elbo(model, x, num_samples=2000).elbo.detach().numpy()
    assert (estimate < log_px).all()
    qz = model.encode(x)
    exact = ppca.closed_form_elbo(x, qz.mean.detach().numpy(), qz.stddev.detach().numpy())
    # log p(x) - ELBO = KL(q(z|x) || p(z|x)) > 0, computed here from the exact posterior.
    mean, cov = ppca.posterior(x)
    posterior = torch.distributions.MultivariateNormal(torch.as_tensor(mean), torch.as_tensor(cov))
    q_full = torch.distributions.MultivariateNormal(qz.mean, torch.diag_embed(qz.variance))
    gap = torch.distributions.kl_divergence(q_full, posterior).detach().numpy()
    np.testing.assert_allclose(log_px - exact, gap, rtol=1e-8)


def test_elbo_equals_log_px_when_q_is_the_exact_posterior(ppca: PPCA) -> None:
    x = ppca.sample(20)
    model = ppca.model(ppca.exact_encoder())
    mean, cov = ppca.posterior(x)
    qz = model.encode(x)
    np.testing.assert_allclose(qz.mean.detach().numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(qz.variance[0].detach().numpy(), np.diag(cov), atol=1e-12)
    # log p(x, z) - log q(z|x) = log p(x) for every z: one sample is exact.
    single = elbo(model, x, analytic_kl=False).elbo.detach().numpy()
    np.testing.assert_allclose(single, ppca.log_px(x), rtol=1e-10)
    averaged = elbo(model, x, num_samples=5000).elbo.detach().numpy()
    np.testing.assert_allclose(averaged, ppca.log_px(x), atol=0.05)


def test_stl_gradient_has_lower_variance_near_the_optimum(ppca: PPCA) -> None:
    x = ppca.sample(10)
    model = ppca.model(ppca.exact_encoder())
    with torch.no_grad():  # near, not at, the optimum
        for parameter in model.encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    standard = encoder_gradients(elbo, model, x, 300, analytic_kl=False)
    stl = encoder_gradients(elbo, model, x, 300, stl=True)
    assert stl.var(0).sum() < 0.1 * standard.var(0).sum()
    # Both are unbiased: their means agree within Monte Carlo error.
    stderr = (standard.var(0) / 300 + stl.var(0) / 300).sqrt()
    assert ((standard.mean(0) - stl.mean(0)).abs() < 5 * stderr + 1e-9).all()


def test_stl_gradient_is_zero_at_the_exact_posterior(ppca: PPCA) -> None:
    model = ppca.model(ppca.exact_encoder())
    grads = encoder_gradients(elbo, model, ppca.sample(10), 5, stl=True)
    assert grads.abs().max() < 1e-10


def test_reparameterized_gradient_matches_hand_derived(float64) -> None:
    """For f(z) = z^2, z ~ N(mu, sigma^2): d/dmu E f = 2 mu, d/dsigma E f = 2 sigma."""
    loc = torch.tensor([0.7, -1.3], requires_grad=True)
    scale = torch.tensor([0.5, 2.0], requires_grad=True)
    z = Independent(Normal(loc, scale), 1).rsample((200_000,))
    z.square().mean(0).sum().backward()
    assert torch.allclose(loc.grad, 2 * loc.detach(), atol=0.03)
    assert torch.allclose(scale.grad, 2 * scale.detach(), atol=0.03)


class _Surrogate(nn.Module):
    def __init__(self, model: nn.Module, **options: object) -> None:
        super().__init__()
        self.model, self.options = model, options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elbo(self.model, x, **self.options).surrogate


# Not stl=True: its gradient drops the score term on purpose, so it is not the derivative
# of the surrogate's value (its variance and unbiasedness are tested above).
GRADCHECK_OPTIONS = [{}, {"analytic_kl": False}, {"num_samples": 3, "free_bits": 0.5}]


@pytest.mark.parametrize("options", GRADCHECK_OPTIONS)
def test_elbo_passes_gradcheck_through_the_reparameterized_sample(ppca: PPCA, options) -> None:
    x = ppca.sample(3)
    surrogate = _Surrogate(ppca.model(LinearGaussianEncoder(5, 2)), **options)

    def objective(A: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)  # the same noise at every evaluation
        params = {"model.encoder.A": A, "model.encoder.log_scale": log_scale}
        return torch.func.functional_call(surrogate, params, (x,))

    encoder = surrogate.model.encoder
    inputs = (encoder.A.detach().clone(), encoder.log_scale.detach().clone())
    assert torch.autograd.gradcheck(objective, tuple(t.requires_grad_() for t in inputs))


def _naive_elbo(model, x, num_samples, beta, free_bits):
    """Loops over examples and samples; KL per dimension by the Gaussian formula."""
    torch.manual_seed(0)
    qz = model.encode(x)
    loc, scale = qz.mean, qz.stddev
    eps = torch.randn(num_samples, *loc.shape)
    pz = model.prior()
    prior_loc, prior_scale = pz.mean, pz.stddev
    log_lik, kl_rows = [], []
    for i in range(x.shape[0]):
        total = 0.0
        for s in range(num_samples):
            z = loc[i] + scale[i] * eps[s, i]
            total = total + model.decode(z).log_prob(x[i])
        log_lik.append(total / num_samples)
        ratio = scale[i] / prior_scale
        diff = (loc[i] - prior_loc) / prior_scale
        kl_rows.append(0.5 * (ratio**2 + diff**2 - 1) - torch.log(ratio))
    kl_dims = torch.stack(kl_rows)
    log_lik = torch.stack(log_lik)
    penalty = sum(max(free_bits, kl_dims[:, j].mean()) for j in range(kl_dims.shape[1]))
    return log_lik, kl_dims.sum(-1), log_lik.mean() - beta * penalty


@pytest.mark.parametrize(("num_samples", "beta", "free_bits"), [(1, 1.0, 0.0), (3, 0.5, 0.3)])
def test_vectorized_elbo_matches_naive_loops(num_samples, beta, free_bits, float64) -> None:
    model = mlp_vae(12, 3, (16,)).double()
    x = (torch.rand(7, 12) > 0.5).double()
    log_lik, kl, surrogate = _naive_elbo(model, x, num_samples, beta, free_bits)
    torch.manual_seed(0)
    terms = elbo(model, x, num_samples=num_samples, beta=beta, free_bits=free_bits)
    assert torch.allclose(terms.log_px_z, log_lik)
    assert torch.allclose(terms.kl, kl)
    assert torch.allclose(terms.elbo, log_lik - kl)
    assert torch.allclose(terms.surrogate, surrogate)


def test_free_bits_stop_penalizing_dimensions_below_the_threshold(float64) -> None:
    model = mlp_vae(12, 3, (16,)).double()
    x = (torch.rand(7, 12) > 0.5).double()
    torch.manual_seed(1)
    terms = elbo(model, x, free_bits=100.0)  # every dimension is below 100 nats
    assert torch.allclose(terms.surrogate, terms.log_px_z.mean() - 3 * 100.0)
    model.zero_grad()
    terms.loss.backward()
    head = model.encoder[-1]
    assert head.raw_scale.weight.grad.abs().sum() > 0  # still driven by reconstruction


def test_stl_requires_the_monte_carlo_kl(ppca: PPCA) -> None:
    model = ppca.model(LinearGaussianEncoder(5, 2))
    with pytest.raises(ValueError, match="Monte Carlo KL"):
        elbo(model, ppca.sample(2), stl=True, analytic_kl=True)


def test_linear_warmup() -> None:
    assert [linear_warmup(s, 4) for s in (0, 2, 4, 8)] == [0.0, 0.5, 1.0, 1.0]
    assert linear_warmup(0, 0) == 1.0

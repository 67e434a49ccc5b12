"""Every prior against a numpy/scipy mixture-of-Gaussians reference: density, moments, KL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from registry import PRIORS, PriorCase, perturbed
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from aevb import NormalHead, has_closed_form, kl, kl_per_dim
from aevb.cli.config import ConfigError, config_from_dict
from aevb.distributions.core import DiagonalNormalMixture
from aevb.models.heads import FullCovarianceNormalHead
from aevb.models.priors import VampPrior
from aevb.nn.mlp import MLP

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


def test_fast_mixture_density_in_float32_is_within_a_hundredth_of_a_nat() -> None:
    """The expanded-square log-density in float32 against the direct form in float64, with a
    VampPrior-like mixture: 500 narrow components (scales 0.05-0.5) in 50 dimensions."""
    torch.manual_seed(0)
    logits, loc = torch.randn(500), 2 * torch.randn(500, 50)
    scale = 0.05 + 0.45 * torch.rand(500, 50)
    exact = MixtureSameFamily(
        Categorical(logits=logits.double()), Independent(Normal(loc.double(), scale.double()), 1)
    )
    z = exact.sample((200,))
    fast = DiagonalNormalMixture(logits, loc, scale).log_prob(z.float()).double()
    error = (fast - exact.log_prob(z)).abs()
    assert error.max() < 1e-2 and error.mean() < 2e-3  # of log-densities -16 ... +10
    components = DiagonalNormalMixture(logits, loc, scale).component_log_prob(z[:3].float())
    assert components.shape == (3, 500)


def test_vamp_prior_starts_at_data_and_keeps_general_encoders() -> None:
    torch.manual_seed(0)
    x = torch.rand(40, 6)
    diagonal = VampPrior(NormalHead(6, LATENT_DIM), 6, num_components=5)
    diagonal.initialize_from(x)
    rows = [int((x == u).all(1).nonzero()) for u in diagonal.pseudo_inputs]
    assert len(set(rows)) == 5  # five distinct training rows
    assert isinstance(diagonal(), DiagonalNormalMixture)
    with pytest.raises(ValueError, match="at least 5 examples"):
        diagonal.initialize_from(x[:3])
    full = VampPrior(FullCovarianceNormalHead(6, LATENT_DIM), 6, num_components=5, init=x[:5])
    pz, z = full(), torch.randn(7, LATENT_DIM)
    direct = torch.stack([full._encoder[0](full.pseudo_inputs).log_prob(zi[None]) for zi in z])
    expected = torch.logsumexp(direct, dim=1) - math.log(5)
    torch.testing.assert_close(pz.log_prob(z), expected)


def test_glorot_init_scales_weights_by_the_activation_gain() -> None:
    torch.manual_seed(0)
    for activation, gain in ((torch.nn.Tanh, 5 / 3), (torch.nn.ReLU, 2**0.5)):
        layer = MLP(400, (600,), activation)[0]
        bound = gain * math.sqrt(6 / (400 + 600))
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.99 * bound
        assert (layer.bias == 0).all()


def test_tanh_module_is_tanh_eager_and_compiled() -> None:
    """networks.Tanh computes 2 sigmoid(2a) - 1 when compiled: the same function."""
    from aevb.nn.mlp import ACTIVATIONS, Tanh

    a = torch.linspace(-30, 30, 20_001)
    assert ACTIVATIONS["tanh"] is Tanh and issubclass(Tanh, torch.nn.Tanh)
    assert torch.equal(Tanh()(a), torch.tanh(a))
    compiled = torch.compile(Tanh(), dynamic=False)(a)
    torch.testing.assert_close(compiled, torch.tanh(a.double()).float(), rtol=0, atol=3e-7)


def test_pseudo_inputs_from_data_need_a_vamp_prior() -> None:
    base = {"data": {"source": "digits"}, "model": {"pseudo_inputs": "data"}}
    with pytest.raises(ConfigError, match="set prior = 'vamp'"):
        config_from_dict(base)
    with pytest.raises(ConfigError, match="not one of noise, data"):
        config_from_dict({"model": {"prior": "vamp", "pseudo_inputs": "images"}})
    config_from_dict({"model": {"prior": "vamp", "pseudo_inputs": "data"}})


def test_float32_mixture_density_stays_within_its_documented_bound() -> None:
    """The matrix-product mixture density in float32 against float64, at points next to the
    components (the hard case: 500 components, scales down to 0.05, 50 dimensions)."""
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

    from aevb.distributions.core import DiagonalNormalMixture

    worst = 0.0
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        loc = 2 * torch.randn(500, 50, generator=g)
        scale = 0.05 + torch.rand(500, 50, generator=g)
        z = loc[torch.randint(0, 500, (2000,), generator=g)] + 0.05 * torch.randn(
            2000, 50, generator=g
        )
        fast = DiagonalNormalMixture(torch.zeros(500), loc, scale).log_prob(z).double()
        exact = MixtureSameFamily(
            Categorical(logits=torch.zeros(500, dtype=torch.float64)),
            Independent(Normal(loc.double(), scale.double()), 1),
        ).log_prob(z.double())
        worst = max(worst, float((fast - exact).abs().max()))
    assert worst < 1e-2

"""Hierarchical latents against a model whose log p(x) is exact: a 2-layer linear-Gaussian
chain z_2 -> z_1 -> x. Its marginal is Gaussian, so scipy gives log p(x); the bounds must
order as ELBO <= IWAE_k <= log p(x), and importance sampling must converge to log p(x), for
bottom-up and ladder inference alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from aevb import (
    MLP,
    VAE,
    BottomUpEncoder,
    LadderEncoder,
    NormalHead,
    TopDownPrior,
    elbo,
    iwae_bound,
    log_px,
)
from aevb.distributions import kl_per_layer
from aevb.evaluation import active_units, layer_summary
from aevb.models.hierarchy import FirstLayer

DATA_DIM, SIZES = 4, (2, 1)


def _constant_scale(head: NormalHead, scale: float) -> None:
    """Make a head's scale independent of its input: a linear-Gaussian conditional."""
    assert head.raw_scale is not None
    with torch.no_grad():
        head.raw_scale.weight.zero_()
        head.raw_scale.bias.fill_(float(np.log(np.expm1(scale - head.min_scale))))


def _linear_model(inference: str) -> VAE:
    torch.manual_seed(0)
    prior = TopDownPrior(SIZES, hidden_dims=(), activation=nn.Identity).double()
    (step,) = prior.steps  # p(z_1 | z_2) = N(A z_2 + a, 0.7^2 I)
    _constant_scale(step[1], 0.7)
    likelihood = NormalHead(SIZES[0], DATA_DIM)  # p(x | z_1) = N(B z_1 + b, 0.5^2 I)
    _constant_scale(likelihood, 0.5)
    decoder = nn.Sequential(FirstLayer(SIZES[0]), likelihood).double()
    encoder: nn.Module
    if inference == "ladder":
        encoder = LadderEncoder(MLP(DATA_DIM, ()), prior, hidden_dims=(3,), activation=nn.Tanh)
    else:
        first = NormalHead(DATA_DIM, SIZES[0])
        encoder = BottomUpEncoder(first, SIZES, hidden_dims=(3,), activation=nn.Tanh)
    return VAE(encoder.double(), decoder, prior)


def _exact_log_px(model: VAE, x: torch.Tensor) -> np.ndarray:
    """log N(x; B a + b, B (A A^T + 0.49 I) B^T + 0.25 I) in float64 with scipy."""
    step = model.prior.steps[0][1]
    A, a = step.loc.weight.detach().numpy(), step.loc.bias.detach().numpy()
    head = model.decoder[1]
    B, b = head.loc.weight.detach().numpy(), head.loc.bias.detach().numpy()
    cov_z1 = A @ A.T + 0.49 * np.eye(SIZES[0])
    mean = B @ a + b
    cov = B @ cov_z1 @ B.T + 0.25 * np.eye(DATA_DIM)
    return stats.multivariate_normal(mean, cov).logpdf(x.numpy())


def _fit_encoder(model: VAE, x: torch.Tensor, steps: int = 300) -> None:
    """Train q only (the model stays exact): a rough q, so that k = 5,000 proposals converge."""
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        elbo(model, x, analytic_kl=False).loss.backward()
        optimizer.step()


@pytest.mark.parametrize("inference", ["bottom-up", "ladder"])
def test_bounds_order_and_importance_sampling_converges_at_depth_two(inference: str) -> None:
    model = _linear_model(inference)
    x = model.sample(200).detach()
    exact = float(_exact_log_px(model, x).mean())
    _fit_encoder(model, x)
    with torch.no_grad():
        torch.manual_seed(1)
        bound_1 = float(elbo(model, x, num_samples=200, analytic_kl=False).elbo.mean())
        bound_10 = float(np.mean([iwae_bound(model, x, k=10).elbo.mean() for _ in range(20)]))
        estimate = log_px(model, x, 5000)
    # Monte Carlo error of each average is below 0.02 nats here; the gaps are larger.
    assert bound_1 < bound_10 - 0.05 < exact
    assert bound_10 < exact
    assert abs(estimate.mean - exact) < max(4 * estimate.mean_stderr, 0.01)
    assert exact - bound_1 > 0.02  # q is not exact: the test would see a bound above log p(x)


def test_prior_chain_log_prob_is_the_joint_density() -> None:
    model = _linear_model("bottom-up")
    pz = model.prior()
    z = pz.sample((50,))
    step = model.prior.steps[0][1]
    z1, z2 = z[:, :2].numpy(), z[:, 2:].numpy()
    mean_z1 = z2 @ step.loc.weight.detach().numpy().T + step.loc.bias.detach().numpy()
    direct = stats.norm.logpdf(z2).sum(-1) + stats.norm.logpdf(z1, mean_z1, 0.7).sum(-1)
    np.testing.assert_allclose(pz.log_prob(z).detach().numpy(), direct, rtol=1e-10)
    layers = pz.layer_log_probs(z)
    np.testing.assert_allclose(
        layers[1].detach().numpy(), stats.norm.logpdf(z2).sum(-1), rtol=1e-10
    )


@pytest.mark.parametrize("inference", ["bottom-up", "ladder"])
def test_layer_kls_add_up_and_units_are_counted_per_layer(inference: str) -> None:
    model = _linear_model(inference)
    torch.manual_seed(2)
    with torch.no_grad():
        x = model.sample(300)
        qz, pz = model.encode(x), model.prior()
        z = qz.sample((8,))
        per_layer = kl_per_layer(qz, pz, z)
        assert per_layer is not None and per_layer.shape == (300, 2)
        total = (qz.log_prob(z) - pz.log_prob(z)).mean(0)
        torch.testing.assert_close(per_layer.sum(-1), total)
    activity, _ = active_units(model, x)
    summary = layer_summary(model, x, activity)
    assert summary is not None
    assert summary["layer_sizes"] == [2, 1]
    assert len(summary["kl_per_layer"]) == 2 and len(summary["active_units_per_layer"]) == 2


def test_free_bits_apply_per_layer() -> None:
    """With free bits above every layer's KL, the KL term stops pulling: the surrogate
    equals E log p(x|z) minus the thresholds, whatever q is."""
    model = _linear_model("bottom-up")
    x = model.sample(64).detach()
    torch.manual_seed(3)
    terms = elbo(model, x, free_bits=50.0, analytic_kl=False)
    expected = terms.log_px_z.mean() - 50.0 * len(SIZES)
    torch.testing.assert_close(-terms.loss, expected)


@pytest.mark.parametrize(
    "train", [{"refine_steps": 3}, {"objective": "iwae", "iwae_gradient": "dreg"}]
)
def test_options_a_hierarchy_cannot_take_are_refused_before_any_work(train: dict) -> None:
    from aevb.cli.config import config_from_dict
    from aevb.errors import ConfigError

    raw = {"model": {"latent_layers": [2]}, "train": train}
    with pytest.raises(ConfigError, match="latent_layers"):
        config_from_dict(raw)


def test_vamp_prior_on_the_ladders_top_layer_is_the_mixture_of_its_posteriors() -> None:
    from scipy import special

    from aevb import BernoulliHead, hierarchical_vae

    torch.manual_seed(6)
    decoder = nn.Sequential(MLP(3, (8,)), BernoulliHead(8, 6))
    model = hierarchical_vae(
        MLP(6, (8,)), decoder, (3, 2), hidden_dims=(5,), inference="ladder", vamp_components=4
    ).double()
    pz = model.prior()
    z = pz.sample((7,))
    top = model.encoder.top(model.prior.top.pseudo_inputs)  # q(z_2 | u_k), k = 1..4
    loc, scale = top.mean.detach().numpy(), top.stddev.detach().numpy()
    z2 = z[:, 3:].numpy()
    log_components = stats.norm.logpdf(z2[:, None, :], loc[None], scale[None]).sum(-1)
    log_top = special.logsumexp(log_components, axis=1) - np.log(4)
    np.testing.assert_allclose(pz.layer_log_probs(z)[1].detach().numpy(), log_top, rtol=1e-9)
    x = (torch.rand(5, 6) > 0.5).double()
    elbo(model, x, analytic_kl=False).loss.backward()
    assert model.prior.top.pseudo_inputs.grad is not None

"""Registry of heads and priors: one entry each, every generic test runs over all of them.

Each head entry gives an independent reference (numpy/scipy, from the head's own weights) for
the log-density, mean and variance of the distribution the head emits, and a sampler of data
inside the head's support. Adding a head to aevb means adding one entry here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special, stats
from torch import nn

from aevb import (
    MLP,
    BernoulliHead,
    CategoricalHead,
    ContinuousBernoulliHead,
    DiscretizedLogisticHead,
    LaplaceHead,
    LearnedNormalPrior,
    MixturePrior,
    NegativeBinomialHead,
    NormalHead,
    StandardNormalPrior,
    VampPrior,
)

Array = np.ndarray


def affine(layer: nn.Linear, h: torch.Tensor) -> Array:
    """``W h + b`` in numpy float64, computed apart from torch's kernels."""
    weight = layer.weight.detach().double().numpy()
    bias = layer.bias.detach().double().numpy()
    return h.detach().double().numpy() @ weight.T + bias


def softplus(raw: Array) -> Array:
    return np.logaddexp(0.0, raw)


def _cb_log_norm(lam: Array) -> Array:
    """log C(lambda) of the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, eq. 7)."""
    lam = np.clip(lam, 1e-12, 1 - 1e-12)
    far = np.abs(lam - 0.5) > 1e-3
    safe = np.where(far, lam, 0.25)
    exact = np.log(np.abs(2 * np.arctanh(1 - 2 * safe) / (1 - 2 * safe)))
    near = np.log(2.0) + 4.0 / 3.0 * (lam - 0.5) ** 2  # Taylor expansion around 1/2
    return np.where(far, exact, near)


def _cb_moments(lam: Array) -> tuple[Array, Array]:
    """Mean and variance; NaN (not compared) near 1/2, where the closed forms cancel badly."""
    lam = np.where(np.abs(lam - 0.5) < 0.01, np.nan, lam)
    mean = lam / (2 * lam - 1) + 1 / (2 * np.arctanh(1 - 2 * lam))
    var = lam * (lam - 1) / (1 - 2 * lam) ** 2 + 1 / (2 * np.arctanh(1 - 2 * lam)) ** 2
    return mean, var


@dataclass(frozen=True)
class HeadCase:
    name: str
    make: Callable[[int, int], nn.Module]
    sample_data: Callable[[np.random.Generator, tuple[int, ...]], Array]
    # (head, h) -> per-element (log_pdf(x) function, mean, variance), all numpy float64
    reference: Callable[[nn.Module, torch.Tensor], tuple[Callable[[Array], Array], Array, Array]]


def _bernoulli(head: nn.Module, h: torch.Tensor):
    p = special.expit(affine(head.logits, h))
    return (lambda x: stats.bernoulli.logpmf(x, p)), stats.bernoulli.mean(p), stats.bernoulli.var(p)


def _continuous_bernoulli(head: nn.Module, h: torch.Tensor):
    lam = special.expit(affine(head.logits, h))
    mean, var = _cb_moments(lam)
    return (lambda x: _cb_log_norm(lam) + x * np.log(lam) + (1 - x) * np.log1p(-lam)), mean, var


def _normal(head: nn.Module, h: torch.Tensor):
    loc = affine(head.loc, h)
    if head.raw_scale is None:
        scale = np.full_like(loc, float(head.fixed_scale))
    else:
        scale = softplus(affine(head.raw_scale, h)) + head.min_scale
    return (lambda x: stats.norm.logpdf(x, loc, scale)), loc, scale**2


def _laplace(head: nn.Module, h: torch.Tensor):
    loc = affine(head.loc, h)
    scale = softplus(affine(head.raw_scale, h)) + head.min_scale
    return (lambda x: stats.laplace.logpdf(x, loc, scale)), loc, stats.laplace.var(loc, scale)


def _categorical(head: nn.Module, h: torch.Tensor):
    logits = affine(head.logits, h).reshape(*h.shape[:-1], head.out_dim, head.num_categories)
    log_p = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    values = np.arange(head.num_categories)
    mean = np.exp(log_p) @ values
    var = np.exp(log_p) @ values**2 - mean**2

    def log_pmf(x: Array) -> Array:
        return np.take_along_axis(log_p, x.astype(int)[..., None], axis=-1)[..., 0]

    return log_pmf, mean, var


def _negative_binomial(head: nn.Module, h: torch.Tensor):
    r = softplus(affine(head.raw_total_count, h)) + head.min_count
    p = special.expit(-affine(head.logits, h))  # scipy's p: the failure probability in torch
    return (lambda x: stats.nbinom.logpmf(x, r, p)), stats.nbinom.mean(r, p), stats.nbinom.var(r, p)


HEADS = [
    HeadCase(
        "bernoulli",
        BernoulliHead,
        lambda rng, shape: rng.integers(0, 2, shape).astype(float),
        _bernoulli,
    ),
    HeadCase(
        "continuous-bernoulli",
        ContinuousBernoulliHead,
        lambda rng, shape: rng.uniform(0, 1, shape),
        _continuous_bernoulli,
    ),
    HeadCase("normal", NormalHead, lambda rng, shape: 3 * rng.standard_normal(shape), _normal),
    HeadCase(
        "normal-fixed",
        functools.partial(NormalHead, scale=0.3),
        lambda rng, shape: rng.standard_normal(shape),
        _normal,
    ),
    HeadCase("laplace", LaplaceHead, lambda rng, shape: 2 * rng.standard_t(3, shape), _laplace),
    HeadCase(
        "categorical",
        functools.partial(CategoricalHead, num_categories=7),
        lambda rng, shape: rng.integers(0, 7, shape).astype(float),
        _categorical,
    ),
    HeadCase(
        "negative-binomial",
        NegativeBinomialHead,
        lambda rng, shape: rng.negative_binomial(2, 0.3, shape).astype(float),
        _negative_binomial,
    ),
]


def perturbed(prior: nn.Module) -> nn.Module:
    """Move a learnable prior away from its initialization so tests see non-trivial values."""
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    return prior


def _mixture_moments(weights: Array, locs: Array, scales: Array) -> tuple[Array, Array]:
    """Mean and covariance of sum_k w_k N(loc_k, diag scale_k^2)."""
    mean = weights @ locs
    second = sum(
        w * (np.diag(s**2) + np.outer(m, m)) for w, m, s in zip(weights, locs, scales, strict=True)
    )
    return mean, second - np.outer(mean, mean)


def _normal_parts(prior: nn.Module):
    pz = prior()
    loc, scale = pz.mean.detach().double().numpy(), pz.stddev.detach().double().numpy()
    return np.ones(1), loc[None], scale[None]


def _mixture_parts(prior: nn.Module):
    weights = torch.softmax(prior.logits, 0).detach().double().numpy()
    scale = softplus(prior.raw_scale.detach().double().numpy()) + prior.min_scale
    return weights, prior.loc.detach().double().numpy(), scale


def _vamp_parts(prior: nn.Module):
    encoder = prior._encoder[0]
    hidden = np.maximum(affine(encoder[0][0], prior.pseudo_inputs), 0.0)  # MLP: Linear, ReLU
    head = encoder[1]
    loc = hidden @ head.loc.weight.detach().double().numpy().T + head.loc.bias.detach().numpy()
    raw = hidden @ head.raw_scale.weight.detach().double().numpy().T
    scale = softplus(raw + head.raw_scale.bias.detach().numpy()) + head.min_scale
    return np.full(len(loc), 1.0 / len(loc)), loc, scale


def _vamp(latent_dim: int) -> nn.Module:
    encoder = nn.Sequential(MLP(6, (8,)), NormalHead(8, latent_dim))
    return VampPrior(encoder, 6, num_components=5, init=torch.randn(5, 6))


@dataclass(frozen=True)
class PriorCase:
    name: str
    make: Callable[[int], nn.Module]
    # prior -> (weights (K,), locs (K, D), scales (K, D)): every prior here is a mixture of
    # diagonal Gaussians (K = 1 for the normal priors), read from its parameters with numpy.
    parts: Callable[[nn.Module], tuple[Array, Array, Array]]
    closed_form_kl: bool

    def reference_log_prob(self, prior: nn.Module, z: Array) -> Array:
        weights, locs, scales = self.parts(prior)
        per_component = stats.norm.logpdf(z[:, None, :], locs, scales).sum(-1)  # (n, K)
        return special.logsumexp(per_component + np.log(weights), axis=1)

    def reference_moments(self, prior: nn.Module) -> tuple[Array, Array]:
        return _mixture_moments(*self.parts(prior))


PRIORS = [
    PriorCase("standard-normal", StandardNormalPrior, _normal_parts, True),
    PriorCase("learned-normal", LearnedNormalPrior, _normal_parts, True),
    PriorCase("mixture", functools.partial(MixturePrior, num_components=4), _mixture_parts, False),
    PriorCase("vamp", _vamp, _vamp_parts, False),
]


def _discretized_logistic(head: nn.Module, h: torch.Tensor):
    """Mixture weights, locations and scales from the head's weights in numpy; the mass of each
    of the head's levels from scipy's logistic CDF, edges taking the tails."""
    raw = affine(head.params, h).reshape(*h.shape[:-1], head.out_dim, 3, head.num_components)
    logits, loc, raw_scale = raw[..., 0, :], raw[..., 1, :], raw[..., 2, :]
    floor = head.min_log_scale
    scale = np.exp(floor + softplus(raw_scale - floor))
    weights = special.softmax(logits, axis=-1)
    bins = head.num_bins
    values = np.arange(bins) / (bins - 1)
    edges = (np.arange(bins + 1) - 0.5) / (bins - 1)
    cdf = stats.logistic.cdf(edges[:, None, None, None], loc[None], scale[None])  # (bins+1, ...)
    cdf[0], cdf[-1] = 0.0, 1.0
    mass = ((cdf[1:] - cdf[:-1]) * weights[None]).sum(-1)  # (bins, B, D)
    mean = np.einsum("j,jbd->bd", values, mass)
    var = np.einsum("j,jbd->bd", values**2, mass) - mean**2

    def log_pmf(x: Array) -> Array:
        index = np.rint(x * (bins - 1)).astype(int)
        return np.log(np.take_along_axis(mass, index[None], axis=0)[0])

    return log_pmf, mean, var


HEADS.append(
    HeadCase(
        "discretized-logistic",
        functools.partial(DiscretizedLogisticHead, num_components=3, num_bins=16),
        lambda rng, shape: rng.integers(0, 16, shape) / 15.0,
        _discretized_logistic,
    )
)

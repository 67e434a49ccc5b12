"""ELBO surgery (Hoffman & Johnson 2016): the average KL split into the index-code mutual
information and the marginal KL of the aggregate posterior."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution

from ..distributions.core import DiagonalNormalMixture, is_diagonal_normal
from ..distributions.kl import kl
from ..models.vae import VAE
from ..nn.utils import device_of


@dataclass(frozen=True)
class Surgery:
    """ELBO surgery (Hoffman & Johnson 2016): average KL = I[n; z] + KL(q(z) || p(z)).

    Attributes:
        average_kl: (1/N) sum_n KL(q(z|x_n) || p(z)), nats (closed form where registered).
        mutual_info: index-code mutual information I[n; z] under q(n, z) = q(z|x_n) / N.
        marginal_kl: KL(q(z) || p(z)) of the aggregate posterior q(z) = (1/N) sum_n q(z|x_n),
            ``average_kl - mutual_info``, so the terms add up exactly.
        stderr: Monte Carlo standard error of ``mutual_info`` (and so of ``marginal_kl``).
        num_data: N; the mutual information is at most log N.
    """

    average_kl: float
    mutual_info: float
    marginal_kl: float
    stderr: float
    num_data: int


@torch.no_grad()
def elbo_surgery(
    model: VAE, x: torch.Tensor, *, num_samples: int = 1, max_elements: int = 1 << 24
) -> Surgery:
    """Split the average KL of ``x`` into mutual information and marginal KL.

    The estimator draws ``num_samples`` z ~ q(z|x_n) for every n and evaluates the aggregate
    posterior exactly as the N-component mixture log q(z) = logsumexp_m log q(z|x_m) - log N,
    so I[n; z] ~= mean [log q(z|x_n) - log q(z)] is unbiased for the N data points and the
    whole computation is O(N^2 * num_samples * latent_dim), done in blocks of at most
    ``max_elements`` numbers. The average KL is the closed form (or Monte Carlo with the same
    samples), and the marginal KL is their difference.
    """
    device = device_of(model)
    x = x.to(device)
    n = x.shape[0]
    qz_all = model.encode(x)  # batch (N,)
    pz = model.prior()
    z = qz_all.sample((num_samples,))  # (S, N, D)
    log_q_own = qz_all.log_prob(z)  # (S, N)
    average_kl = float(kl(qz_all, pz, z).double().mean())
    flat = z.reshape(-1, z.shape[-1])  # (S * N, D)
    log_q_aggregate = _aggregate_log_prob(qz_all, flat, max_elements).reshape(num_samples, n)
    terms = (log_q_own.double() - log_q_aggregate).flatten()
    mutual_info = float(terms.mean())
    stderr = float(terms.std() / math.sqrt(terms.numel())) if terms.numel() > 1 else math.nan
    return Surgery(average_kl, mutual_info, average_kl - mutual_info, stderr, n)


def _aggregate_log_prob(qz_all: Distribution, z: torch.Tensor, max_elements: int) -> torch.Tensor:
    """log q(z) = logsumexp_m log q(z|x_m) - log N for ``z (M, D)``, in float64 blocks."""
    n = qz_all.batch_shape[0]
    if is_diagonal_normal(qz_all):
        # Diagonal Gaussians: the N-component mixture's matrix-product density, (rows, N) blocks.
        aggregate = DiagonalNormalMixture(
            torch.zeros(n, dtype=torch.float64, device=z.device),
            qz_all.mean.double(),
            qz_all.stddev.double(),
        )
        rows = max(1, max_elements // n)
        return torch.cat([aggregate.log_prob(part.double()) for part in z.split(rows)])
    rows = max(1, max_elements // (n * z.shape[-1]))  # general q: (rows, N, D) blocks
    return torch.cat(
        [
            torch.logsumexp(qz_all.log_prob(part[:, None, :]).double(), dim=1) - math.log(n)
            for part in z.split(rows)
        ]
    )

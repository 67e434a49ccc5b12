"""Evaluation in nats: the ELBO and its terms, codes, active units, KL per dimension.

All functions take a model with ``encode``, ``decode`` and ``prior`` (e.g. :class:`aevb.VAE`)
and data ``x`` of shape ``(n, *event)``; they work in batches under ``torch.no_grad`` and
return CPU tensors or floats.
"""

from __future__ import annotations

import torch
from torch import nn

from .kl import kl_per_dim
from .model import VAE
from .objectives import elbo


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters live: batches are moved there (a no-op when already)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _batches(model: VAE, x: torch.Tensor, batch_size: int):
    device = device_of(model)
    for begin in range(0, x.shape[0], batch_size):
        yield x[begin : begin + batch_size].to(device)


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Mean ELBO, reconstruction term and KL over ``x``, in nats per example (one z sample)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    for batch in _batches(model, x, batch_size):
        terms = elbo(model, batch)
        totals += torch.stack([terms.elbo.sum(), terms.log_px_z.sum(), terms.kl.sum()]).cpu()
    model.train(was_training)
    means = (totals / x.shape[0]).tolist()
    return {"elbo": means[0], "log_px_z": means[1], "kl": means[2]}


@torch.no_grad()
def encode_means(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means E_q[z|x], ``(n, latent_dim)``: the codes of the data."""
    parts = [model.encode(batch).mean.cpu() for batch in _batches(model, x, batch_size)]
    return torch.cat(parts)


def active_units(
    model: VAE, x: torch.Tensor, threshold: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activity Cov_x(E_q[z_j|x]) of each latent dimension and which exceed ``threshold``.

    A unit is active when its posterior mean varies across the data (Burda et al. 2015,
    section 5.2); inactive units have collapsed to the prior.

    Returns:
        ``(activity (latent_dim,), active (latent_dim,) bool)``.
    """
    means = encode_means(model, x).double()
    activity = means.var(0) if means.shape[0] > 1 else torch.zeros(means.shape[1])
    return activity, activity > threshold


@torch.no_grad()
def kl_per_dimension(
    model: VAE, x: torch.Tensor, batch_size: int = 1000, num_samples: int = 16
) -> torch.Tensor | None:
    """Average KL(q(z_j|x) || p(z_j)) over ``x`` for each latent dimension, ``(latent_dim,)``.

    Closed form where registered, else a Monte Carlo estimate with ``num_samples`` draws;
    ``None`` when q or p does not factorize over dimensions (e.g. a mixture prior).
    """
    total: torch.Tensor | None = None
    for batch in _batches(model, x, batch_size):
        qz, pz = model.encode(batch), model.prior()
        per_dim = kl_per_dim(qz, pz, qz.sample((num_samples,)))
        if per_dim is None:
            return None
        part = per_dim.sum(0).double().cpu()
        total = part if total is None else total + part
    return None if total is None else total / x.shape[0]

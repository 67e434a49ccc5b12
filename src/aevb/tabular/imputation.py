"""Filling missing entries from p(x_miss | x_obs), for models whose likelihood masks NaN.

With a likelihood that skips missing entries (:class:`aevb.distributions.columns.Columns`)
and an encoder that sees which entries are missing (:class:`aevb.nn.MaskedInput`),

    p(x_miss | x_obs) = E_{p(z|x_obs)}[p(x_miss | z)],

and p(z|x_obs) is reached from q(z|x_obs) by self-normalized importance sampling with weights
w_i ∝ p(x_obs|z_i) p(z_i) / q(z_i|x_obs) (Mattei & Frellsen 2019, MIWAE). Without importance
weighting q(z|x_obs) stands in for the posterior, which is cheaper but only as good as q.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..distributions.columns import Columns
from ..models.vae import VAE


def _row_batches(x: torch.Tensor, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    for begin in range(0, x.shape[0], batch_size):
        yield begin, x[begin : begin + batch_size]


def _proposals(model: VAE, x: torch.Tensor, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (K, B, L)`` from q(z|x_obs) and normalized log importance weights ``(K, B)``."""
    qz = model.encode(x)
    z = qz.sample((num_samples,))
    log_w = model.decode(z).log_prob(x) + model.prior().log_prob(z) - qz.log_prob(z)
    return z, torch.log_softmax(log_w, dim=0)


def _columns(model: VAE, z: torch.Tensor) -> Columns:
    px = model.decode(z)
    if not isinstance(px, Columns):
        raise TypeError(
            "imputation needs a decoder ending in aevb.ColumnsHead (a likelihood that skips "
            f"missing entries); this model's likelihood is {type(px).__name__}"
        )
    return px


@torch.no_grad()
def impute(
    model: VAE,
    x: torch.Tensor,
    *,
    num_samples: int = 100,
    importance: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    """Single imputation: each missing entry replaced by a point estimate under p(x_miss|x_obs).

    The estimate is the conditional mean (the most probable class for categorical and
    Bernoulli columns; counts rounded), computed as a self-normalized importance-weighted
    average over ``num_samples`` proposals from q(z|x_obs); ``importance=False`` decodes the
    posterior mean E_q[z|x_obs] instead.

    Args:
        x: ``(n, num_columns)`` rows as modelled, NaN where missing.

    Returns:
        ``(n, num_columns)``: ``x`` with its NaN entries filled; observed entries unchanged.
    """
    model.eval()
    out = x.clone()
    for begin, rows in _row_batches(x, batch_size):
        if importance:
            z, log_weights = _proposals(model, rows, num_samples)
            px = _columns(model, z)
            w = log_weights.exp()[..., None, None]  # (K, B, 1, 1) against summaries (K, B, n, E)
            filled = px.points([(w * s).sum(0) for s in px.summaries()])
        else:
            filled = _columns(model, model.encode(rows).mean).mean
        block = out[begin : begin + rows.shape[0]]
        block.copy_(torch.where(torch.isnan(rows), filled, rows))
    return out


@torch.no_grad()
def multiple_imputations(
    model: VAE,
    x: torch.Tensor,
    num_imputations: int,
    *,
    num_samples: int = 100,
    importance: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    """``num_imputations`` draws of the missing entries from p(x_miss | x_obs).

    With ``importance=True`` (sampling importance resampling): draw ``num_samples`` z from
    q(z|x_obs), resample one per imputation with probability proportional to its importance
    weight, then draw x_miss ~ p(x_miss|z); as ``num_samples`` grows the draws come from the
    model's exact conditional. With ``importance=False``: z ~ q(z|x_obs), x_miss ~ p(x_miss|z).

    Returns:
        ``(num_imputations, n, num_columns)`` completed copies of ``x``.
    """
    model.eval()
    out = x.expand(num_imputations, *x.shape).clone()
    for begin, rows in _row_batches(x, batch_size):
        if importance:
            z, log_weights = _proposals(model, rows, num_samples)  # (K, B, L), (K, B)
            weights = log_weights.exp().T  # (B, K)
            chosen = torch.multinomial(weights, num_imputations, replacement=True)  # (B, m)
            z = z.gather(0, chosen.T[..., None].expand(-1, -1, z.shape[-1]))  # (m, B, L)
        else:
            z = model.encode(rows).sample((num_imputations,))
        draws = _columns(model, z).sample()  # (m, B, D)
        block = out[:, begin : begin + rows.shape[0]]
        block.copy_(torch.where(torch.isnan(rows), draws, rows))
    return out


@torch.no_grad()
def heldout_log_likelihood(
    model: VAE,
    x: torch.Tensor,
    heldout: torch.Tensor,
    *,
    num_samples: int = 20,
    batch_size: int = 256,
) -> float:
    """Mean log p(x_held | x_obs) per held-out entry, in nats: how well the model imputes.

    ``log p(x_held | x_obs) ~= log sum_i w~_i p(x_held | z_i)`` with the self-normalized
    weights of proposals from q(z|x_obs). Used to choose when to stop training a model for
    imputation (:class:`aevb.TabularVAE`): the likelihood of whole held-out rows can peak long
    before the imputations of the training rows stop improving.

    Args:
        x: ``(n, num_columns)`` rows as seen in training (held-out entries are NaN).
        heldout: ``(n, num_columns)`` the held-out values, NaN everywhere else.
    """
    was_training = model.training
    model.eval()
    total = 0.0
    for begin, rows in _row_batches(x, batch_size):
        z, log_weights = _proposals(model, rows, num_samples)
        held = heldout[begin : begin + rows.shape[0]]
        log_p_held = model.decode(z).log_prob(held)  # (K, B): only the held-out entries
        total += float(torch.logsumexp(log_weights + log_p_held, dim=0).double().sum())
    model.train(was_training)
    return total / max(int((~torch.isnan(heldout)).sum()), 1)

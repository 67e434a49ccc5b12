"""Objectives as functions: each returns a small frozen record of its terms, in nats.

The ELBO of one example (Kingma & Welling 2014, eq. 3):

    ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x).

Variants are keyword arguments, not classes: ``beta`` (Higgins et al. 2017), ``free_bits``
(Kingma et al. 2016), ``stl`` (Roeder et al. 2017), ``num_samples``, ``analytic_kl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch.distributions import Distribution

from .distributions import detach
from .kl import kl, kl_per_dim


class LatentVariableModel(Protocol):
    """What an objective needs of a model: q(z|x), p(x|z) and p(z) as distributions."""

    def encode(self, x: torch.Tensor) -> Distribution: ...
    def decode(self, z: torch.Tensor) -> Distribution: ...
    def prior(self) -> Distribution: ...


@dataclass(frozen=True)
class ELBOTerms:
    """Terms of the ELBO, per example, in nats.

    Attributes:
        elbo: ``(B,)`` the bound itself, ``log_px_z - kl`` (never weighted by ``beta``).
        log_px_z: ``(B,)`` reconstruction term E_q[log p(x|z)] ("negative reconstruction loss").
        kl: ``(B,)`` KL(q(z|x) || p(z)) ("regularizer"), closed form or Monte Carlo.
        surrogate: ``()`` the batch objective to maximize, with ``beta``, free bits and the
            STL gradient applied; its value equals ``elbo.mean()`` when beta=1, free_bits=0.
    """

    elbo: torch.Tensor
    log_px_z: torch.Tensor
    kl: torch.Tensor
    surrogate: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        """``-surrogate``: the scalar to minimize with a torch optimizer."""
        return -self.surrogate


def elbo(
    model: LatentVariableModel,
    x: torch.Tensor,
    *,
    num_samples: int = 1,
    beta: float = 1.0,
    analytic_kl: bool | None = None,
    stl: bool = False,
    free_bits: float = 0.0,
) -> ELBOTerms:
    """SGVB estimate of the ELBO per example (Kingma & Welling 2014).

    Args:
        model: anything with ``encode``, ``decode`` and ``prior`` (e.g. :class:`aevb.VAE`).
        x: ``(B, *event)`` data.
        num_samples: ``k`` reparameterized samples z ~ q(z|x) per example, averaged.
        beta: weight of the KL term in ``surrogate`` (beta-VAE; KL warm-up anneals it).
        analytic_kl: closed-form KL where registered (default), ``False`` for Monte Carlo.
            ``stl=True`` needs the Monte Carlo KL and defaults to it.
        stl: "sticking the landing" (Roeder et al. 2017): the gradient of the Monte Carlo
            ELBO with q's parameters detached inside log q(z|x), dropping the score term
            whose expectation is zero; zero variance when q is the exact posterior.
        free_bits: nats per latent dimension below which the batch-averaged KL of that
            dimension is not penalized (Kingma et al. 2016); for priors that do not factorize
            over dimensions, the threshold is ``free_bits * latent_dim`` on the total KL.

    Returns:
        :class:`ELBOTerms` with ``(B,)`` terms and the scalar ``surrogate``.

    Example:
        >>> terms = elbo(model, x, beta=0.5)          # doctest: +SKIP
        >>> terms.loss.backward()                      # doctest: +SKIP
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if analytic_kl is None:
        analytic_kl = not stl
    if stl and analytic_kl:
        raise ValueError("stl=True uses the Monte Carlo KL; do not also set analytic_kl=True")
    qz = model.encode(x)
    z = qz.rsample((num_samples,))  # (k, B, D)
    px = model.decode(z)
    log_px_z = px.log_prob(x).mean(0)  # (B,)
    pz = model.prior()
    q_in_kl = detach(qz) if stl else qz
    kl_dims = kl_per_dim(q_in_kl, pz, z, analytic=analytic_kl) if free_bits > 0 else None
    if kl_dims is not None:
        kl_value = kl_dims.sum(-1)
        penalty = kl_dims.mean(0).clamp(min=free_bits).sum()
    else:
        kl_value = kl(q_in_kl, pz, z, analytic=analytic_kl)
        threshold = free_bits * z.shape[-1]
        penalty = kl_value.mean().clamp(min=threshold) if free_bits > 0 else kl_value.mean()
    surrogate = log_px_z.mean() - beta * penalty
    return ELBOTerms(log_px_z - kl_value, log_px_z, kl_value, surrogate)


def linear_warmup(step: int, num_steps: int) -> float:
    """KL warm-up factor min(1, step / num_steps) (Bowman et al. 2016; Sønderby et al. 2016).

    Multiply ``beta`` by it; ``num_steps == 0`` means no warm-up.
    """
    return 1.0 if num_steps <= 0 else min(1.0, step / num_steps)

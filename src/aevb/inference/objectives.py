"""Objectives as functions: each returns a small frozen record of its terms, in nats.

The ELBO of one example (Kingma & Welling 2014, eq. 3):

    ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x).

Variants are keyword arguments, not classes: ``beta`` (Higgins et al. 2017), ``free_bits``
(Kingma et al. 2016), ``stl`` (Roeder et al. 2017), ``num_samples``, ``analytic_kl``; the
importance-weighted bound is :func:`iwae_bound` (``k``, ``gradient="dreg"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch.distributions import Distribution

from ..distributions.core import detach
from ..distributions.kl import kl, kl_groups
from ..distributions.quantized import Quantized
from ..errors import ConfigError


class Terms(Protocol):
    """What the Trainer needs of an objective's record: the loss and per-example terms."""

    @property
    def loss(self) -> torch.Tensor: ...
    def per_example(self) -> dict[str, torch.Tensor]: ...


class LatentVariableModel(Protocol):
    """What an objective needs of a model: q(z|x), p(x|z) and p(z) as distributions."""

    def encode(self, x: torch.Tensor) -> Distribution: ...
    def decode(self, z: torch.Tensor) -> Distribution: ...
    def prior(self) -> Distribution: ...


@dataclass(frozen=True)
class ELBOTerms:
    """Terms of the ELBO, per example, in nats.

    Attributes:
        elbo: ``(B,)`` the bound itself, never weighted by ``beta``: ``log_px_z - kl`` for
            :func:`elbo`, the importance-weighted bound for :func:`iwae_bound`.
        log_px_z: ``(B,)`` reconstruction term E_q[log p(x|z)] ("negative reconstruction loss").
        kl: ``(B,)`` KL(q(z|x) || p(z)) ("regularizer"), closed form or Monte Carlo.
        surrogate: ``()`` the batch objective to maximize, with ``beta``, free bits and the
            STL gradient applied; its value equals ``elbo.mean()`` when beta=1, free_bits=0.
    """

    elbo: torch.Tensor
    log_px_z: torch.Tensor
    kl: torch.Tensor
    surrogate: torch.Tensor

    # What a non-finite value of each term is called when training stops on it.
    descriptions: ClassVar[dict[str, str]] = {
        "log_px_z": "reconstruction term E_q[log p(x|z)]",
        "kl": "KL term",
    }

    @property
    def loss(self) -> torch.Tensor:
        """``-surrogate``: the scalar to minimize with a torch optimizer."""
        return -self.surrogate

    def per_example(self) -> dict[str, torch.Tensor]:
        """The terms the Trainer averages per epoch (``train_<name>``), each ``(B,)``."""
        return {"elbo": self.elbo, "log_px_z": self.log_px_z, "kl": self.kl}


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
            dimension is not penalized (Kingma et al. 2016); per layer for a hierarchy of
            latent layers (its KL per layer); for priors that do not factorize over
            dimensions, the threshold is ``free_bits * latent_dim`` on the total KL.

    Returns:
        :class:`ELBOTerms` with ``(B,)`` terms and the scalar ``surrogate``.

    Example:
        >>> terms = elbo(model, x, beta=0.5)          # doctest: +SKIP
        >>> terms.loss.backward()                      # doctest: +SKIP
    """
    if num_samples < 1:
        raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
    if analytic_kl is None:
        analytic_kl = not stl
    if stl and analytic_kl:
        raise ConfigError("stl=True uses the Monte Carlo KL; do not also set analytic_kl=True")
    qz = model.encode(x)
    z = qz.rsample((num_samples,))  # (k, B, D)
    px = model.decode(z)
    log_px_z = px.log_prob(x).mean(0)  # (B,)
    pz = model.prior()
    q_in_kl = detach(qz) if stl else qz
    kl_dims = kl_groups(q_in_kl, pz, z, analytic=analytic_kl) if free_bits > 0 else None
    if kl_dims is not None:
        kl_value = kl_dims.sum(-1)
        penalty = kl_dims.mean(0).clamp(min=free_bits).sum()
    else:
        kl_value = kl(q_in_kl, pz, z, analytic=analytic_kl)
        threshold = free_bits * z.shape[-1]
        penalty = kl_value.mean().clamp(min=threshold) if free_bits > 0 else kl_value.mean()
    surrogate = log_px_z.mean() - beta * penalty
    return ELBOTerms(log_px_z - kl_value, log_px_z, kl_value, surrogate)


@dataclass(frozen=True)
class VQTerms(ELBOTerms):
    """:class:`ELBOTerms` of a VQ-VAE, plus ``commitment`` ``(B,)``: ``|z_e - sg(z_q)|^2``."""

    commitment: torch.Tensor

    descriptions: ClassVar[dict[str, str]] = {
        **ELBOTerms.descriptions,
        "commitment": "commitment term |z_e - sg(z_q)|^2",
    }

    def per_example(self) -> dict[str, torch.Tensor]:
        return {**super().per_example(), "commitment": self.commitment}


def vq_elbo(
    model: LatentVariableModel,
    x: torch.Tensor,
    *,
    beta: float = 1.0,
    commitment: float = 0.25,
) -> VQTerms:
    """The VQ-VAE objective (van den Oord et al. 2017, eq. 3) around its bound.

    q(z|x) is a point mass at the quantized codes z_q (:class:`aevb.distributions.quantized.
    Quantized`), so the ELBO is log p(x|z_q) + log p(z_q) <= log p(x). The surrogate adds the
    codebook loss ``|sg(z_e) - z_q|^2`` (no gradient reaches a codebook kept by moving averages)
    and ``commitment`` times ``|z_e - sg(z_q)|^2``; the decoder's gradient reaches the encoder
    straight through the quantization.

    Args:
        beta: weight of -log p(z_q), which trains a learned prior over the codes alongside.
        commitment: weight of the commitment term (0.25 in the paper).

    Returns:
        :class:`VQTerms`, ``(B,)`` each, and the scalar ``surrogate``.
    """
    qz = model.encode(x)
    if not isinstance(qz, Quantized):
        raise ConfigError(
            f"vq_elbo needs a VQ head (its q(z|x) is Quantized), got {type(qz).__name__}: "
            "use elbo or iwae_bound for this model"
        )
    if not commitment >= 0:
        raise ConfigError(f"commitment must be >= 0, got {commitment}")
    log_px_z = model.decode(qz.rsample()).log_prob(x)
    kl_value = kl(qz, model.prior())
    commit = qz.commitment
    surrogate = (
        log_px_z.mean()
        - beta * kl_value.mean()
        - qz.codebook_loss.mean()
        - commitment * commit.mean()
    )
    return VQTerms(log_px_z - kl_value, log_px_z, kl_value, surrogate, commit.detach())


IWAE_GRADIENTS = ("standard", "stl", "dreg")


def iwae_bound(
    model: LatentVariableModel,
    x: torch.Tensor,
    *,
    k: int = 5,
    gradient: str = "standard",
    beta: float = 1.0,
) -> ELBOTerms:
    """Importance-weighted bound (Burda et al. 2015), per example:

        IWAE_k(x) = E[log (1/k) sum_i w_i],  w_i = p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x),

    with ELBO = IWAE_1 <= IWAE_k <= IWAE_{k+1} <= log p(x).

    Args:
        k: importance samples per example.
        gradient: ``"standard"`` (reparameterized gradient of the bound), ``"stl"`` (q's
            parameters detached inside log q; Roeder et al. 2017) or ``"dreg"`` (doubly
            reparameterized: the encoder's path gradient weighted by the squared normalized
            weights, unbiased with lower variance; Tucker et al. 2019). The decoder's gradient
            is the standard one in all three.
        beta: weight of log p(z) - log q(z|x) inside each log w_i (KL warm-up for IWAE;
            ``beta=1`` is the bound itself).

    Returns:
        :class:`ELBOTerms` whose ``elbo`` is the IWAE bound, ``log_px_z`` and ``kl`` the
        sample averages of log p(x|z_i) and log q(z_i|x) - log p(z_i), and ``surrogate`` the
        batch objective for the chosen gradient.
    """
    if gradient not in IWAE_GRADIENTS:
        raise ConfigError(f"gradient must be one of {IWAE_GRADIENTS}, got {gradient!r}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    qz = model.encode(x)
    z = qz.rsample((k,))  # (k, B, D)
    log_px_z = model.decode(z).log_prob(x)  # (k, B)
    log_ratio = model.prior().log_prob(z) - (qz if gradient == "standard" else detach(qz)).log_prob(
        z
    )
    log_w = log_px_z + beta * log_ratio
    if gradient == "dreg":
        # d/dz of sum_i w~_i log w_i is w~_i d log w_i / dz; DReG wants w~_i^2: scale by w~_i.
        normalized = torch.softmax(log_w.detach(), dim=0)
        if z.requires_grad:
            z.register_hook(lambda grad: grad * normalized.unsqueeze(-1))
    bound = torch.logsumexp(log_w, dim=0) - math.log(k)
    with torch.no_grad():
        value = torch.logsumexp(log_px_z + log_ratio, dim=0) - math.log(k)
    return ELBOTerms(value, log_px_z.mean(0).detach(), -log_ratio.mean(0).detach(), bound.mean())


def linear_warmup(step: int, num_steps: int) -> float:
    """KL warm-up factor min(1, step / num_steps) (Bowman et al. 2016; Sønderby et al. 2016).

    Multiply ``beta`` by it; ``num_steps == 0`` means no warm-up.
    """
    return 1.0 if num_steps <= 0 else min(1.0, step / num_steps)


KL_SCHEDULES = ("linear", "sigmoid", "cyclical")


def kl_annealing(step: int, num_steps: int, schedule: str = "linear", cycles: int = 4) -> float:
    """The KL weight's factor at ``step`` of an annealing over ``num_steps`` (0: none, 1.0).

    ``"linear"``: min(1, step / num_steps) (Bowman et al. 2016; Sønderby et al. 2016);
    ``"sigmoid"``: the logistic 1 / (1 + exp(-10 (step / num_steps - 1/2))), then 1 (Bowman
    et al.'s shape); ``"cyclical"``: ``cycles`` cycles of ``num_steps`` steps each, rising
    linearly over the first half of each and held at 1 over the second, then 1 (Fu et al.
    2019, R = 0.5).
    """
    if num_steps <= 0:
        return 1.0
    if schedule == "linear":
        return min(1.0, step / num_steps)
    if schedule == "sigmoid":
        return 1.0 if step >= num_steps else 1.0 / (1.0 + math.exp(-10 * (step / num_steps - 0.5)))
    if schedule == "cyclical":
        if step >= cycles * num_steps:
            return 1.0
        return min(1.0, 2 * (step % num_steps) / num_steps)
    raise ConfigError(f"unknown KL schedule {schedule!r}; choose one of {KL_SCHEDULES}")

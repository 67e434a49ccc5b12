"""Semi-amortized training: the ELBO after K gradient steps on q from the encoder's output
(Kim et al. 2018, SA-VAE; Krishnan et al. 2018), as a training objective for the Trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution, Independent, Normal
from torch.func import functional_call

from .local import _loc_and_scale, _WithPosterior
from .objectives import ELBOTerms, elbo

if TYPE_CHECKING:
    from ..models.vae import VAE


MAX_STEP = 1.0


def semi_amortized_elbo(
    model: VAE,
    x: torch.Tensor,
    *,
    steps: int = 5,
    lr: float = 0.1,
    differentiable: bool = False,
    beta: float = 1.0,
) -> ELBOTerms:
    """Training objective: the ELBO at λ_K, after K gradient-ascent steps from the encoder's λ_0.

    λ = (μ, log σ) of a diagonal Gaussian; each step is λ ← λ + lr ∇_λ ELBO(λ) (one z sample),
    each coordinate's move clipped to ±``MAX_STEP`` (a trust region: σ changes by at most a
    factor e per step).
    With ``differentiable=True`` the steps are unrolled and the encoder is trained through
    them (SA-VAE, Kim et al. 2018). Otherwise λ_0 is detached: the decoder learns from the
    refined ELBO and the encoder from its own ELBO, which then does not train the decoder
    (Krishnan et al. 2018).

    Use it as ``Trainer(model, objective=functools.partial(semi_amortized_elbo, steps=5))``.
    """
    qz = model.encode(x)
    loc, scale = _loc_and_scale(qz)
    # Under no_grad (validation, evaluation) the steps still need gradients with respect to λ,
    # but nothing is unrolled.
    through = differentiable and torch.is_grad_enabled()
    lam = [loc, scale.log()]
    if not through:
        lam = [t.detach().requires_grad_(True) for t in lam]
    with torch.enable_grad():
        for _ in range(steps):
            q_step = Independent(Normal(lam[0], lam[1].exp(), validate_args=False), 1)
            value = elbo(_WithPosterior(model, q_step), x).elbo.sum()
            grads = torch.autograd.grad(value, lam, create_graph=through)
            # Each coordinate moves at most MAX_STEP: a trust region without which one large
            # gradient on log σ overflows σ (NaN within 15 steps on digits with lr 0.1).
            lam = [t + (lr * g).clamp(-MAX_STEP, MAX_STEP) for t, g in zip(lam, grads, strict=True)]
            if not through:
                lam = [t.detach().requires_grad_(True) for t in lam]
    refined = Independent(Normal(lam[0], lam[1].exp(), validate_args=False), 1)
    terms = elbo(_WithPosterior(model, refined), x, beta=beta)
    if differentiable:
        return terms
    # The encoder's own ELBO, through a copy of the decoder's weights cut from the graph.
    weights = {k: v.detach() for k, v in model.decoder.named_parameters()}
    decoder = _DetachedDecoder(model, weights)
    encoder_terms = elbo(decoder, x, beta=beta)
    surrogate = terms.surrogate + encoder_terms.surrogate
    return ELBOTerms(terms.elbo, terms.log_px_z, terms.kl, surrogate)


class _DetachedDecoder:
    def __init__(self, model: VAE, weights: dict[str, torch.Tensor]) -> None:
        self.model, self.weights = model, weights

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.model.encode(x)

    def decode(self, z: torch.Tensor) -> Distribution:
        return functional_call(self.model.decoder, self.weights, (z,))

    def prior(self) -> Distribution:
        return self.model.prior()

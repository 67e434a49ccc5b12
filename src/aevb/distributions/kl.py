"""KL(q || p): closed form where torch registers one, Monte Carlo otherwise.

Closed forms come from :func:`torch.distributions.kl_divergence` and its registry
(``torch.distributions.kl.register_kl`` adds a pair). Without one, the estimate is
``mean_k [log q(z_k) - log p(z_k)]`` over samples ``z_k ~ q``.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent, kl_divergence


def has_closed_form(q: Distribution, p: Distribution) -> bool:
    """Whether ``kl_divergence(q, p)`` is registered for this pair of families."""
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


def kl(
    q: Distribution, p: Distribution, z: torch.Tensor | None = None, *, analytic: bool = True
) -> torch.Tensor:
    """KL(q || p) per example.

    Args:
        q: distribution with ``batch_shape (B,)``.
        p: distribution broadcastable against ``q`` (a prior has ``batch_shape ()``).
        z: ``(k, B, *event)`` samples from q, needed for the Monte Carlo estimate.
        analytic: use the closed form when one is registered; ``False`` forces Monte Carlo.

    Returns:
        ``(B,)`` KL in nats (a Monte Carlo estimate when no closed form is used).
    """
    if analytic:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            if z is None:
                raise ValueError(
                    f"no closed-form KL is registered for ({type(q).__name__}, "
                    f"{type(p).__name__}); pass samples z to estimate it by Monte Carlo"
                ) from None
    if z is None:
        raise ValueError("the Monte Carlo KL needs samples z ~ q of shape (k, batch, *event)")
    return (q.log_prob(z) - p.log_prob(z)).mean(0)


def kl_per_dim(
    q: Distribution, p: Distribution, z: torch.Tensor | None = None, *, analytic: bool = True
) -> torch.Tensor | None:
    """KL per latent dimension, ``(B, latent_dim)``, when q and p both factorize over z.

    Returns ``None`` when either is not a product of independent one-dimensional factors
    (e.g. a mixture prior), where a per-dimension KL is not defined.
    """
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        return None
    if q.reinterpreted_batch_ndims != 1 or p.reinterpreted_batch_ndims != 1:
        return None
    return kl(q.base_dist, p.base_dist, z, analytic=analytic)


def kl_per_layer(q: Distribution, p: Distribution, z: torch.Tensor) -> torch.Tensor | None:
    """Monte Carlo KL of each latent layer, ``(B, L)``, when q and p are chains of layers
    (:class:`aevb.distributions.chain.MarkovChain`): mean over samples of
    log q(z_l | .) - log p(z_l | .), which sums to the KL of the whole hierarchy.

    Returns ``None`` unless both are chains with the same layer sizes.
    """
    q_layers, p_layers = getattr(q, "layer_log_probs", None), getattr(p, "layer_log_probs", None)
    if q_layers is None or p_layers is None or getattr(q, "sizes", 0) != getattr(p, "sizes", 1):
        return None
    pairs = zip(q_layers(z), p_layers(z), strict=True)
    return torch.stack([(log_q - log_p).mean(0) for log_q, log_p in pairs], dim=-1)


def kl_groups(
    q: Distribution, p: Distribution, z: torch.Tensor, *, analytic: bool = True
) -> torch.Tensor | None:
    """The KL split into the groups that free bits threshold one by one, ``(B, groups)``:
    layers of a hierarchy (:func:`kl_per_layer`), else dimensions (:func:`kl_per_dim`)."""
    layers = kl_per_layer(q, p, z)
    return layers if layers is not None else kl_per_dim(q, p, z, analytic=analytic)

"""Distribution helpers and the few families torch lacks.

Distributions are the currency between the parts of a model: a head returns one, a prior
returns one, an objective consumes them. A distribution crossing a module boundary has
``batch_shape == (batch,)`` (or ``(k, batch)`` once sampled latents are decoded) and
``event_shape`` equal to one datum's shape, so ``log_prob`` gives one number per example.
"""

from __future__ import annotations

import torch
from torch.distributions import Categorical, Distribution, Independent, constraints


class ValueCategorical(Categorical):
    """Categorical over the ordered values ``0, 1, ..., C-1`` (pixel intensities, counts).

    Same density as :class:`torch.distributions.Categorical`; because the categories are
    numbers, ``mean``, ``variance`` and ``mode`` are those of the value (torch's
    ``Categorical.mean`` is NaN, as its categories are unordered labels).

    Args:
        logits: ``(*batch, C)`` unnormalized log-probabilities.
    """

    @property
    def _values(self) -> torch.Tensor:
        return torch.arange(self._num_events, dtype=self.probs.dtype, device=self.probs.device)

    @property
    def mean(self) -> torch.Tensor:
        return self.probs @ self._values

    @property
    def variance(self) -> torch.Tensor:
        return self.probs @ self._values.square() - self.mean.square()


# Parameters to rebuild a distribution from, in order of preference: the first one present
# is used, so over-parameterized families (probs/logits, scale_tril/covariance) get one.
_PREFERRED = ("logits", "scale_tril", "probs", "covariance_matrix", "precision_matrix")


def detach(dist: Distribution) -> Distribution:
    """The same distribution with its parameters cut from the autograd graph.

    Used by the sticking-the-landing estimator (Roeder et al. 2017): ``log q(z)`` is
    evaluated with detached variational parameters while ``z`` keeps its path derivative.
    """
    if isinstance(dist, Independent):
        return Independent(detach(dist.base_dist), dist.reinterpreted_batch_ndims)
    names = list(dist.arg_constraints)
    if not names:
        raise ValueError(
            f"{type(dist).__name__} cannot be rebuilt with detached parameters, which the "
            "STL and DReG gradients need: use the standard gradient with this family"
        )
    given = [n for n in names if n in dist.__dict__]
    exclusive = [n for n in _PREFERRED if n in given]
    if exclusive:
        given = [n for n in given if n not in _PREFERRED] + exclusive[:1]
    params = {n: dist.__dict__[n].detach() for n in given}
    return type(dist)(**params, validate_args=False)


def unwrap(dist: Distribution) -> Distribution:
    """The per-element family inside any :class:`Independent` wrappers."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return dist


def support_fix(support: constraints.Constraint) -> str:
    """How to make data fit a support: the advice a support error ends with."""
    if support is constraints.boolean:
        return (
            "this likelihood needs binary values {0, 1}: binarize the data (--binarize 0.5) "
            "or use the continuous-bernoulli likelihood for values in [0, 1]"
        )
    if support is constraints.unit_interval:
        return "this likelihood needs values in [0, 1]: divide by the largest possible value"
    if isinstance(support, constraints.integer_interval):
        return (
            f"this likelihood needs integers {support.lower_bound}..{support.upper_bound}: "
            "round or rescale the values, or raise num_categories"
        )
    return f"choose a likelihood whose support ({support}) contains the data"

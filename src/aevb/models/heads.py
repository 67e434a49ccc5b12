"""Heads: the last layer of an encoder or decoder, hidden features -> Distribution.

A head is the projection P_e / P_d of the "VAE anatomy" (seed 004): a linear map onto the
parameters of a distribution followed by the link that puts each parameter in its domain.
Posterior heads q(z|x) and likelihood heads p(x|z) are the same kind of object.

Every head maps ``h`` of shape ``(*batch, in_dim)`` to a distribution with
``batch_shape == batch`` and ``event_shape == (out_dim,)``; ``log_prob`` of a datum gives one
number per example. Heads build distributions with ``validate_args=False``: their links keep
parameters in their domains, data are checked once against the support before training
(:meth:`aevb.VAE.check_data`), and a NaN parameter surfaces as a NaN term that the trainer
names, instead of a check on every step.

Likelihood heads take ``projection``, the layer from features to parameters: ``nn.Linear`` by
default; a convolutional decoder passes its per-pixel 1x1 convolution
(:meth:`aevb.nn.ConvDecoder.projection`), laid out as ``(*batch, out_dim * P)`` value-major.

Adding a likelihood is one class here plus one entry in the test registry
(``tests/registry.py``), which runs every generic check on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (
    Categorical,
    ContinuousBernoulli,
    Distribution,
    Independent,
    Laplace,
    MultivariateNormal,
    NegativeBinomial,
    Normal,
    StudentT,
)

from ..distributions.columns import FAMILIES, ColumnGroup, Columns
from ..distributions.core import IndependentBernoulli, ValueCategorical
from ..distributions.discretized import DiscretizedLogisticMixture

Projection = Callable[[int, int], nn.Module]  # (in_dim, out_dim) -> layer, nn.Linear's signature


def _positive(raw: torch.Tensor, min_value: float) -> torch.Tensor:
    """Softplus link bounded away from zero, so a scale can never collapse to 0."""
    return F.softplus(raw) + min_value


class BernoulliHead(nn.Module):
    """p(x|h) = prod_d Bernoulli(x_d; sigmoid(W h + b)_d), for binary data x in {0, 1}."""

    def __init__(self, in_dim: int, out_dim: int, *, projection: Projection = nn.Linear) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.logits = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return IndependentBernoulli(self.logits(h))


class ContinuousBernoulliHead(nn.Module):
    """p(x|h) = prod_d CB(x_d; sigmoid(W h + b)_d), for grey levels x in [0, 1].

    The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019) is the normalized density that
    the "Bernoulli on grey pixels" loss is missing.
    """

    def __init__(self, in_dim: int, out_dim: int, *, projection: Projection = nn.Linear) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.logits = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        return Independent(ContinuousBernoulli(logits=self.logits(h), validate_args=False), 1)


class NormalHead(nn.Module):
    """Diagonal Gaussian N(x; mu(h), diag sigma(h)^2): a likelihood head or q(z|x).

    Args:
        in_dim: size of the hidden features ``h``.
        out_dim: size of the variable (data dimension, or ``latent_dim`` for q(z|x)).
        scale: ``None`` learns a per-dimension, per-example scale (heteroscedastic);
            a float fixes sigma for every dimension (the "Gaussian with fixed variance").
        min_scale: lower bound on a learned sigma, keeping the density bounded.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        scale: float | None = None,
        min_scale: float = 1e-3,
        *,
        projection: Projection = nn.Linear,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.min_scale = in_dim, out_dim, min_scale
        self.loc = projection(in_dim, out_dim)
        self.raw_scale: nn.Module | None = None
        self.fixed_scale: torch.Tensor
        if scale is None:
            self.raw_scale = projection(in_dim, out_dim)
        else:
            if not scale > 0:
                raise ValueError(f"NormalHead scale must be positive, got {scale}")
            self.register_buffer("fixed_scale", torch.tensor(float(scale)))

    def forward(self, h: torch.Tensor) -> Distribution:
        loc = self.loc(h)
        if self.raw_scale is None:
            scale = self.fixed_scale.to(loc.dtype).expand_as(loc)
        else:
            scale = _positive(self.raw_scale(h), self.min_scale)
        return Independent(Normal(loc, scale, validate_args=False), 1)


class LaplaceHead(nn.Module):
    """p(x|h) = prod_d Laplace(x_d; mu(h)_d, b(h)_d), a heavy-tailed real likelihood."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        min_scale: float = 1e-3,
        *,
        projection: Projection = nn.Linear,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.min_scale = in_dim, out_dim, min_scale
        self.loc = projection(in_dim, out_dim)
        self.raw_scale = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        scale = _positive(self.raw_scale(h), self.min_scale)
        return Independent(Laplace(self.loc(h), scale, validate_args=False), 1)


class StudentTHead(nn.Module):
    """p(x|h) = prod_d StudentT(x_d; nu(h)_d, mu(h)_d, s(h)_d), a robust real likelihood
    whose degrees of freedom are learned per value: nu = 2 + softplus (finite variance)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        min_scale: float = 1e-3,
        *,
        projection: Projection = nn.Linear,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.min_scale = in_dim, out_dim, min_scale
        self.loc = projection(in_dim, out_dim)
        self.raw_scale = projection(in_dim, out_dim)
        self.raw_df = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        scale = _positive(self.raw_scale(h), self.min_scale)
        df = 2.0 + F.softplus(self.raw_df(h))
        return Independent(StudentT(df, self.loc(h), scale, validate_args=False), 1)


class NegativeBinomialHead(nn.Module):
    """p(x|h) = prod_d NegativeBinomial(x_d; r(h)_d, logits(h)_d), for over-dispersed counts.

    In torch's parameterization the mean is ``r exp(logits)`` and the variance
    ``mean + mean^2 / r``: a count likelihood whose variance exceeds the Poisson's, as gene
    counts need (Lopez et al. 2018, scVI). ``r`` (``total_count``) is softplus + ``min_count``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        min_count: float = 1e-3,
        *,
        projection: Projection = nn.Linear,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.min_count = in_dim, out_dim, min_count
        self.logits = projection(in_dim, out_dim)
        self.raw_total_count = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        total_count = _positive(self.raw_total_count(h), self.min_count)
        nb = NegativeBinomial(total_count, logits=self.logits(h), validate_args=False)
        return Independent(nb, 1)


class CategoricalHead(nn.Module):
    """p(x|h) = prod_d Categorical(x_d; softmax(W_d h + b_d)) over values 0..C-1.

    A discrete likelihood over pixel or feature values (e.g. 256 intensity levels); the
    distribution's mean is the expected value, so it can be shown as an image.
    """

    def __init__(
        self, in_dim: int, out_dim: int, num_categories: int, *, projection: Projection = nn.Linear
    ) -> None:
        super().__init__()
        if num_categories < 2:
            raise ValueError(f"CategoricalHead needs num_categories >= 2, got {num_categories}")
        self.in_dim, self.out_dim, self.num_categories = in_dim, out_dim, num_categories
        self.logits = projection(in_dim, out_dim * num_categories)

    def forward(self, h: torch.Tensor) -> Distribution:
        logits = self.logits(h).unflatten(-1, (self.out_dim, self.num_categories))
        return Independent(ValueCategorical(logits=logits, validate_args=False), 1)


class DiscretizedLogisticHead(nn.Module):
    """p(x|h) = prod_d sum_k pi_dk DLogistic(x_d; mu_dk, s_dk): 8-bit pixels scaled to [0, 1].

    A :class:`aevb.distributions.DiscretizedLogisticMixture` over ``num_bins`` levels per value
    (PixelCNN++, Salimans et al. 2017; one component is the IAF paper's likelihood). The
    scales are ``min_log_scale + softplus(raw - min_log_scale)`` in log space, bounded below
    as PixelCNN++ clamps them at -7, but with a gradient everywhere.

    Args:
        in_dim: size of the hidden features ``h``.
        out_dim: D, values per datum.
        num_components: K logistics per value.
        num_bins: levels per value (256: 8-bit); the grid is j / (num_bins - 1) in [0, 1].
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_components: int = 5,
        num_bins: int = 256,
        min_log_scale: float = -7.0,
        *,
        projection: Projection = nn.Linear,
    ) -> None:
        super().__init__()
        if num_components < 1 or num_bins < 2:
            raise ValueError(
                f"need num_components >= 1, num_bins >= 2: {num_components}, {num_bins}"
            )
        self.in_dim, self.out_dim = in_dim, out_dim
        self.num_components, self.num_bins, self.min_log_scale = (
            num_components,
            num_bins,
            min_log_scale,
        )
        self.params = projection(in_dim, out_dim * 3 * num_components)

    def forward(self, h: torch.Tensor) -> Distribution:
        raw = self.params(h).unflatten(-1, (self.out_dim, 3, self.num_components))
        logits, loc, raw_scale = raw.unbind(-2)
        floor = self.min_log_scale
        log_scale = floor + F.softplus(raw_scale - floor)
        return DiscretizedLogisticMixture(logits, loc, log_scale, num_bins=self.num_bins)


class ClassHead(nn.Module):
    """q(y|h) = Categorical(softmax(W h + b)): one label out of ``num_classes`` (a classifier).

    Returns a ``torch.distributions.Categorical`` with batch_shape ``h.shape[:-1]``.
    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"ClassHead needs num_classes >= 2, got {num_classes}")
        self.in_dim, self.num_classes = in_dim, num_classes
        self.logits = nn.Linear(in_dim, num_classes)

    def forward(self, h: torch.Tensor) -> Distribution:
        return Categorical(logits=self.logits(h), validate_args=False)


class ColumnsHead(nn.Module):
    """Hidden features -> :class:`Columns`: one family per column of a table.

    Args:
        in_dim: size of the hidden features ``h``.
        families: the family name of each column, e.g. ``["gamma", "normal", "categorical"]``.
        num_categories: number of classes of each column (used by categorical columns only).
        init_values: optional observed values of each column (rescaled as modelled, NaN for
            missing); the output biases are set to the moment-matched marginal fit.

    Example:
        >>> head = ColumnsHead(16, ["gamma", "normal", "categorical"], [0, 0, 3])
        >>> head(torch.zeros(5, 16)).log_prob(torch.tensor([[1.0, float("nan"), 2.0]])).shape
        torch.Size([5])
    """

    def __init__(
        self,
        in_dim: int,
        families: Sequence[str],
        num_categories: Sequence[int] | None = None,
        init_values: Sequence[np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown families {unknown}; choose from {sorted(FAMILIES)}")
        num_categories = list(num_categories or [0] * len(families))
        self.in_dim, self.out_dim = in_dim, len(families)
        # Groups: all columns of a family together, each categorical column on its own.
        self._groups: list[tuple[str, list[int], int]] = []  # (family, columns, params each)
        for name in FAMILIES:
            columns = [j for j, f in enumerate(families) if f == name]
            if name == "categorical":
                self._groups += [(name, [j], num_categories[j]) for j in columns]
            elif columns:
                self._groups.append((name, columns, FAMILIES[name].num_params()))
        sizes = [len(columns) * size for _, columns, size in self._groups]
        self.params = nn.Linear(in_dim, sum(sizes))
        self._sizes = sizes
        for _, columns, _ in self._groups:
            self.register_buffer(f"_index_{columns[0]}", torch.tensor(columns), persistent=False)
        if init_values is not None:
            self._init_biases(init_values, num_categories)

    @torch.no_grad()
    def _init_biases(self, values: Sequence[np.ndarray], num_categories: list[int]) -> None:
        biases = []
        for name, columns, _ in self._groups:
            for j in columns:
                observed = np.asarray(values[j], dtype=np.float64)
                observed = observed[~np.isnan(observed)]
                biases += FAMILIES[name].initial_raw(observed, num_categories[j])
        # Groups store parameters column-major within a group: (n, P) -> flattened.
        self.params.bias.copy_(torch.tensor(biases, dtype=self.params.bias.dtype))
        self.params.weight.mul_(0.1)  # start near the marginal fit

    def forward(self, h: torch.Tensor) -> Columns:
        raw = self.params(h).split(self._sizes, dim=-1)
        groups = []
        for (name, columns, size), part in zip(self._groups, raw, strict=True):
            index = getattr(self, f"_index_{columns[0]}")
            params = part.reshape(*part.shape[:-1], len(columns), size)
            groups.append(ColumnGroup(FAMILIES[name], index, FAMILIES[name].distribution(params)))
        return Columns(groups, self.out_dim)


class FullCovarianceNormalHead(nn.Module):
    """Full-covariance Gaussian q(z|h) = N(z; mu(h), L(h) L(h)^T), a posterior head.

    A richer q(z|x) than the diagonal :class:`NormalHead`: the lower-triangular Cholesky
    factor ``L`` is a linear function of ``h``, and ``z = mu + L eps`` reparameterizes it
    (Kingma & Welling 2019, "An Introduction to Variational Autoencoders", sec. 2.5.1).
    The ``out_dim * (out_dim + 1) / 2`` raw entries fill the lower triangle row by row,
    ``(0, 0), (1, 0), (1, 1), (2, 0), ...`` (``torch.tril_indices`` order); the diagonal goes
    through softplus + ``min_scale`` so ``L`` is a valid Cholesky factor and the density stays
    bounded, the strict lower part is used as is.

    Args:
        in_dim: size of the hidden features ``h``.
        out_dim: size of z (``latent_dim``).
        min_scale: lower bound on each diagonal entry of ``L``.

    Returns (from ``forward``): a :class:`~torch.distributions.MultivariateNormal` with
    ``batch_shape == h.shape[:-1]`` and ``event_shape == (out_dim,)``.
    """

    def __init__(self, in_dim: int, out_dim: int, min_scale: float = 1e-3) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.min_scale = in_dim, out_dim, min_scale
        self.loc = nn.Linear(in_dim, out_dim)
        self.raw_tril = nn.Linear(in_dim, out_dim * (out_dim + 1) // 2)

    def forward(self, h: torch.Tensor) -> Distribution:
        loc, raw = self.loc(h), self.raw_tril(h)
        rows, cols = torch.tril_indices(self.out_dim, self.out_dim, device=raw.device)
        tril = raw.new_zeros(*raw.shape[:-1], self.out_dim, self.out_dim)
        tril[..., rows, cols] = raw
        diagonal = _positive(tril.diagonal(0, -2, -1), self.min_scale)
        tril = tril.tril(-1) + torch.diag_embed(diagonal)
        return MultivariateNormal(loc, scale_tril=tril, validate_args=False)

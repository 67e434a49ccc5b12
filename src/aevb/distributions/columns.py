"""Likelihoods for tables: one distribution family per column, and their product.

A row of a table is a vector whose entries live in different spaces (a positive amount, a
count, a category...). :class:`aevb.ColumnsHead` maps the decoder's hidden features to one
distribution per column and returns a :class:`Columns` distribution over the whole row:

    log p(x|z) = sum over observed columns j of log p_j(x_j | z).

Missing entries are NaN and are left out of the sum, so a table with holes trains as it is
(the marginal likelihood of the observed entries, as in MIWAE; Mattei & Frellsen 2019).

Every family is parameterized by a location-like and a spread-like raw parameter whose links
keep them in their domains; :meth:`Family.initial_raw` gives the raw values that moment-match
a column, so a fresh decoder starts at the column's marginal fit instead of at random.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Distribution,
    Exponential,
    Gamma,
    LogNormal,
    NegativeBinomial,
    Normal,
    Poisson,
    StudentT,
    constraints,
)

_MIN = 1e-3  # lower bound of every positive parameter: densities stay bounded


class _OpenUnitInterval(constraints.Constraint):
    """(0, 1) without its ends, where a Beta density is finite."""

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value > 0) & (value < 1)

    def __repr__(self) -> str:
        return "open interval (0, 1)"


def _positive(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + _MIN


def _raw_positive(value: float) -> float:
    """Inverse of :func:`_positive`: the raw parameter that gives ``value``."""
    value = max(value - _MIN, 1e-6)
    return value + math.log(-math.expm1(-value))


def _moments(values: np.ndarray) -> tuple[float, float]:
    mean, var = float(values.mean()), float(values.var())
    return mean, max(var, 1e-6 * max(mean**2, 1.0), 1e-8)


@dataclass(frozen=True)
class Family:
    """One column's distribution family.

    Attributes:
        name: the name used in schemas (``"gamma"``, ``"categorical"``...).
        support: the values the family puts mass on.
        fill: a value inside the support, used in place of a missing entry (then masked out).
        standardize: how the column is rescaled before modelling: ``"center"`` (subtract the
            mean, divide by the standard deviation), ``"scale"`` (divide only: positivity is
            kept) or ``"none"``.
        discrete: point estimates are rounded (counts) or taken as the mode (labels).
    """

    name: str
    support: constraints.Constraint
    fill: float
    standardize: str = "none"
    discrete: bool = False

    def num_params(self, num_categories: int = 0) -> int:
        return 2

    def distribution(self, raw: torch.Tensor) -> Distribution:
        """``raw (*batch, n, P)`` -> a distribution with batch_shape ``(*batch, n)``."""
        raise NotImplementedError

    def initial_raw(self, values: np.ndarray, num_categories: int = 0) -> list[float]:
        """Raw parameters that moment-match the observed (rescaled) ``values`` of a column."""
        raise NotImplementedError

    def clip(self, sample: torch.Tensor) -> torch.Tensor:
        """A draw kept strictly inside the support (floating point can round onto its edge)."""
        return sample

    def summary(self, dist: Distribution) -> torch.Tensor:
        """``(*batch, n, E)`` quantities whose (weighted) average gives a point estimate."""
        return dist.mean.unsqueeze(-1)

    def point(self, summary: torch.Tensor) -> torch.Tensor:
        """Point estimate ``(*batch, n)`` from an averaged :meth:`summary`."""
        value = summary[..., 0]
        return value.round() if self.discrete else value


class _PositiveFamily(Family):
    def clip(self, sample):
        return sample.clamp(min=torch.finfo(sample.dtype).tiny)


class _Normal(Family):
    def distribution(self, raw):
        return Normal(raw[..., 0], _positive(raw[..., 1]), validate_args=False)

    def initial_raw(self, values, num_categories=0):
        mean, var = _moments(values)
        return [mean, _raw_positive(math.sqrt(var))]


class _StudentT(Family):
    def num_params(self, num_categories=0):
        return 3

    def distribution(self, raw):
        # df > 1 so that the mean (the imputed value) exists.
        df = 1.0 + _positive(raw[..., 2])
        return StudentT(df, raw[..., 0], _positive(raw[..., 1]), validate_args=False)

    def initial_raw(self, values, num_categories=0):
        mean, var = _moments(values)
        return [mean, _raw_positive(math.sqrt(var)), _raw_positive(9.0)]


class ZeroSafeLogNormal(LogNormal):
    """torch's LogNormal, with log-density -inf at x <= 0 (torch gives NaN at 0): a zero in a
    positive column then reads as impossible under the model, not as a NaN loss."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        positive = value > 0
        safe = torch.where(positive, value, torch.ones_like(value))
        return torch.where(positive, super().log_prob(safe), torch.full_like(safe, -math.inf))


class _LogNormal(_PositiveFamily):
    def distribution(self, raw):
        return ZeroSafeLogNormal(raw[..., 0], _positive(raw[..., 1]), validate_args=False)

    def initial_raw(self, values, num_categories=0):
        mean, var = _moments(np.log(values))
        return [mean, _raw_positive(math.sqrt(var))]


class _Gamma(_PositiveFamily):
    def distribution(self, raw):  # mean and shape; rate = shape / mean
        mean, shape = _positive(raw[..., 0]), _positive(raw[..., 1])
        return Gamma(shape, shape / mean, validate_args=False)

    def initial_raw(self, values, num_categories=0):
        mean, var = _moments(values)
        return [_raw_positive(mean), _raw_positive(mean**2 / var)]


class _Exponential(_PositiveFamily):
    def num_params(self, num_categories=0):
        return 1

    def distribution(self, raw):
        return Exponential(1.0 / _positive(raw[..., 0]), validate_args=False)

    def initial_raw(self, values, num_categories=0):
        return [_raw_positive(float(values.mean()))]


class _Beta(Family):
    def distribution(self, raw):  # mean in (0, 1) and precision a + b
        mean, precision = torch.sigmoid(raw[..., 0]), _positive(raw[..., 1])
        return Beta(mean * precision, (1 - mean) * precision, validate_args=False)

    def clip(self, sample):
        eps = torch.finfo(sample.dtype).eps
        return sample.clamp(eps, 1 - eps)

    def initial_raw(self, values, num_categories=0):
        mean, var = _moments(values)
        mean = min(max(mean, 1e-4), 1 - 1e-4)
        precision = max(mean * (1 - mean) / var - 1, 0.1)
        return [math.log(mean / (1 - mean)), _raw_positive(precision)]


class _Poisson(Family):
    def num_params(self, num_categories=0):
        return 1

    def distribution(self, raw):
        return Poisson(_positive(raw[..., 0]), validate_args=False)

    def initial_raw(self, values, num_categories=0):
        return [_raw_positive(float(values.mean()))]


class _NegativeBinomial(Family):
    def distribution(self, raw):  # mean m and total count r: logits = log m - log r
        mean, total = _positive(raw[..., 0]), _positive(raw[..., 1])
        return NegativeBinomial(total, logits=mean.log() - total.log(), validate_args=False)

    def initial_raw(self, values, num_categories=0):
        mean, var = _moments(values)
        total = mean**2 / (var - mean) if var > 1.01 * mean else 100.0
        return [_raw_positive(mean), _raw_positive(total)]


class _Bernoulli(Family):
    def num_params(self, num_categories=0):
        return 1

    def distribution(self, raw):
        return Bernoulli(logits=raw[..., 0], validate_args=False)

    def initial_raw(self, values, num_categories=0):
        p = min(max(float(values.mean()), 1e-4), 1 - 1e-4)
        return [math.log(p / (1 - p))]

    def point(self, summary):
        return (summary[..., 0] > 0.5).to(summary.dtype)


class _Categorical(Family):
    def num_params(self, num_categories=0):
        return num_categories

    def distribution(self, raw):
        return Categorical(logits=raw, validate_args=False)

    def initial_raw(self, values, num_categories=0):
        counts = np.bincount(values.astype(np.int64), minlength=num_categories) + 0.5
        return np.log(counts / counts.sum()).tolist()

    def summary(self, dist):
        return dist.probs

    def point(self, summary):
        return summary.argmax(-1).to(summary.dtype)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        _Normal("normal", constraints.real, 0.0, "center"),
        _StudentT("student-t", constraints.real, 0.0, "center"),
        _LogNormal("lognormal", constraints.positive, 1.0, "scale"),
        _Gamma("gamma", constraints.positive, 1.0, "scale"),
        _Exponential("exponential", constraints.positive, 1.0, "scale"),
        _Beta("beta", _OpenUnitInterval(), 0.5),
        _Poisson("poisson", constraints.nonnegative_integer, 0.0, discrete=True),
        _NegativeBinomial("negative-binomial", constraints.nonnegative_integer, 0.0, discrete=True),
        _Bernoulli("bernoulli", constraints.boolean, 0.0, discrete=True),
        _Categorical("categorical", constraints.nonnegative_integer, 0.0, discrete=True),
    )
}


@dataclass(frozen=True)
class ColumnGroup:
    """Columns sharing one family (one categorical column per group): a single distribution."""

    family: Family
    index: torch.Tensor  # (n,) column positions in the row
    dist: Distribution  # batch_shape (*batch, n)


class _ColumnsSupport(constraints.Constraint):
    """Entry-wise support of a row: each column's own; NaN (missing) is allowed."""

    def __init__(self, groups: Sequence[ColumnGroup]) -> None:
        super().__init__()
        self.groups = groups

    def check(self, value: torch.Tensor) -> torch.Tensor:
        inside = torch.isnan(value)
        for group in self.groups:
            index = group.index.to(value.device)
            column = value[..., index]
            ok = group.family.support.check(column)
            if group.family.name == "categorical":
                ok = ok & (column < group.dist.logits.shape[-1])  # type: ignore[attr-defined]
            inside[..., index] |= ok
        return inside

    def __repr__(self) -> str:
        return "each column's own support (" + ", ".join(g.family.name for g in self.groups) + ")"


class Columns(Distribution):
    """Product of per-column distributions over a row; NaN entries are missing.

    ``batch_shape`` is the decoder's batch, ``event_shape == (num_columns,)``. ``log_prob``
    sums the log-densities of the observed entries of each row (missing entries contribute 0),
    ``sample`` draws every column, and ``mean`` is each column's mean (the most probable class
    for a categorical or Bernoulli column, where a mean of codes means nothing).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    has_rsample = False
    handles_missing = True  # NaN entries are masked out of log_prob

    def __init__(self, groups: Sequence[ColumnGroup], num_columns: int) -> None:
        self.groups = list(groups)
        batch_shape = self.groups[0].dist.batch_shape[:-1]
        super().__init__(batch_shape, torch.Size([num_columns]), validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return _ColumnsSupport(self.groups)

    def log_prob_entries(self, value: torch.Tensor) -> torch.Tensor:
        """``(*batch, num_columns)`` log-density of each entry; 0 where it is missing."""
        shape = torch.broadcast_shapes(value.shape, (*self.batch_shape, self.event_shape[0]))
        out = value.new_zeros(shape)
        for group in self.groups:
            index = group.index.to(value.device)
            column = value[..., index]
            observed = ~torch.isnan(column)
            filled = torch.where(observed, column, torch.full_like(column, group.family.fill))
            log_p = group.dist.log_prob(filled)
            out[..., index] = torch.where(observed, log_p, torch.zeros_like(log_p))
        return out

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.log_prob_entries(value).sum(-1)

    def _assemble(self, parts: list[torch.Tensor], leading: torch.Size) -> torch.Tensor:
        dtype = next((p.dtype for p in parts if p.is_floating_point()), torch.get_default_dtype())
        out = torch.empty(*leading, self.event_shape[0], dtype=dtype, device=parts[0].device)
        for group, part in zip(self.groups, parts, strict=True):
            out[..., group.index.to(out.device)] = part.to(out.dtype)
        return out

    def sample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        with torch.no_grad():
            parts = [g.family.clip(g.dist.sample(shape)) for g in self.groups]
        return self._assemble(parts, shape + self.batch_shape)

    def summaries(self) -> list[torch.Tensor]:
        """Per group, ``(*batch, n, E)`` quantities to average for a point estimate."""
        return [group.family.summary(group.dist) for group in self.groups]

    def points(self, summaries: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(*batch', num_columns)`` point estimates from (averaged) :meth:`summaries`."""
        parts = [g.family.point(s) for g, s in zip(self.groups, summaries, strict=True)]
        return self._assemble(parts, parts[0].shape[:-1])

    @property
    def mean(self) -> torch.Tensor:
        return self.points(self.summaries())

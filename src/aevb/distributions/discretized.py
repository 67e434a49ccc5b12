"""The discretized logistic mixture: a likelihood for 8-bit pixels in nats and bits per dim.

Each value lives on a grid of ``num_bins`` points in [low, high] (8-bit pixels scaled to
[0, 1]: the points j / 255). Its probability is the mass a mixture of logistics puts on the
value's bin, the interval of half a step either side; the edge bins take the tails, so the
probabilities over the grid sum to one (Salimans et al. 2017, PixelCNN++; Kingma et al.
2016, IAF, with one component). Unlike a density on [0, 1], log p(x) is then a log
*probability* of the observed pixels, comparable across models and in bits per dimension.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints


class Grid(constraints.Constraint):
    """Values on the grid ``low + j (high - low) / (num_bins - 1)``, j = 0 .. num_bins - 1."""

    is_discrete = True
    event_dim = 0

    def __init__(self, low: float, high: float, num_bins: int) -> None:
        self.low, self.high, self.num_bins = low, high, num_bins
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        position = (value - self.low) / (self.high - self.low) * (self.num_bins - 1)
        on_grid = (position - position.round()).abs() < 1e-3
        return on_grid & (position > -0.5) & (position < self.num_bins - 0.5)

    def __repr__(self) -> str:
        return f"Grid(low={self.low}, high={self.high}, num_bins={self.num_bins})"


def log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a > b, without cancellation at either tail.

    sigmoid(a) - sigmoid(b) = (e^a - e^b) / ((1 + e^a)(1 + e^b)), so the log is
    b + log(e^(a-b) - 1) - softplus(a) - softplus(b), and log(e^d - 1) = d + log(1 - e^-d).
    """
    d = a - b
    return b + d + torch.log(-torch.expm1(-d)) - F.softplus(a) - F.softplus(b)


class DiscretizedLogisticMixture(Distribution):
    """prod_d sum_k pi_dk P(x_d's bin | logistic(mu_dk, s_dk)) over D values on a grid.

    Args:
        logits: ``(*batch, D, K)`` unnormalized log mixture weights per value.
        loc: ``(*batch, D, K)`` component locations.
        log_scale: ``(*batch, D, K)`` log component scales.
        num_bins: grid points per value (256 for 8-bit pixels).
        low, high: the grid's ends (0 and 1 for pixels scaled by 1/255).

    ``batch_shape == batch``, ``event_shape == (D,)``; ``log_prob`` sums over the D values.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "logits": constraints.real,
        "loc": constraints.real,
        "log_scale": constraints.real,
    }
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        loc: torch.Tensor,
        log_scale: torch.Tensor,
        *,
        num_bins: int = 256,
        low: float = 0.0,
        high: float = 1.0,
    ) -> None:
        if num_bins < 2 or not high > low:
            raise ValueError(f"need num_bins >= 2 and high > low, got {num_bins}, {low}, {high}")
        self.logits, self.loc, self.log_scale = logits, loc, log_scale
        self.num_bins, self.low, self.high = num_bins, low, high
        self.half_bin = (high - low) / (num_bins - 1) / 2
        super().__init__(loc.shape[:-2], loc.shape[-2:-1], validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        """Per value (as the other likelihoods' families, checked elementwise)."""
        return Grid(self.low, self.high, self.num_bins)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        x = value.unsqueeze(-1)  # against every component
        inv_scale = torch.exp(-self.log_scale)
        plus = inv_scale * (x - self.loc + self.half_bin)
        minus = inv_scale * (x - self.loc - self.half_bin)
        middle = log_sigmoid_difference(plus, minus)
        # The edge bins hold the tails: P(X <= first + half) and P(X > last - half).
        lowest = -F.softplus(-plus)
        highest = -F.softplus(minus)
        log_bin = torch.where(
            x < self.low + self.half_bin,
            lowest,
            torch.where(x > self.high - self.half_bin, highest, middle),
        )
        log_mixture = torch.logsumexp(log_bin + F.log_softmax(self.logits, dim=-1), dim=-1)
        return log_mixture.sum(-1)

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact E[X] and E[X^2], ``(*batch, D)`` each, from the mass of every grid point in
        turn (one pass per level: no ``(levels, *batch, D, K)`` tensor is formed)."""
        weights = F.softmax(self.logits, dim=-1)
        inv_scale = torch.exp(-self.log_scale)
        step = 2 * self.half_bin
        first = torch.zeros(self.loc.shape[:-1], dtype=self.loc.dtype, device=self.loc.device)
        second = torch.zeros_like(first)
        below = torch.zeros_like(first)  # P(X < x_j - half), the mass of the bins below
        for j in range(self.num_bins):
            value = self.low + j * step
            if j == self.num_bins - 1:
                upto = torch.ones_like(first)
            else:
                upto = (
                    weights * torch.sigmoid((value + self.half_bin - self.loc) * inv_scale)
                ).sum(-1)
            mass = upto - below
            first = first + value * mass
            second = second + value**2 * mass
            below = upto
        return first, second

    @property
    def mean(self) -> torch.Tensor:
        """E[X] per value, exact (a sum over the grid)."""
        return self._moments()[0]

    @property
    def variance(self) -> torch.Tensor:
        """Var[X] per value, exact (a sum over the grid)."""
        first, second = self._moments()
        return (second - first.square()).clamp_min(0)

    @property
    def mode(self) -> torch.Tensor:
        """The grid point nearest the location of the heaviest component (not the exact mode)."""
        best = self.logits.argmax(-1, keepdim=True)
        return self._snap(self.loc.gather(-1, best).squeeze(-1))

    def _snap(self, x: torch.Tensor) -> torch.Tensor:
        step = 2 * self.half_bin
        return (self.low + ((x - self.low) / step).round() * step).clamp(self.low, self.high)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            gumbel = -torch.log(
                -torch.log(torch.rand(shape, device=self.loc.device).clamp_min(1e-20))
            )
            component = (self.logits.expand(shape) + gumbel).argmax(-1, keepdim=True)
            loc = self.loc.expand(shape).gather(-1, component).squeeze(-1)
            log_scale = self.log_scale.expand(shape).gather(-1, component).squeeze(-1)
            u = torch.rand_like(loc).clamp(1e-6, 1 - 1e-6)
            return self._snap(loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u)))

    def __repr__(self) -> str:
        return (
            f"DiscretizedLogisticMixture(batch_shape={tuple(self.batch_shape)}, "
            f"D={self.event_shape[0]}, K={self.loc.shape[-1]}, num_bins={self.num_bins})"
        )

"""Hierarchies of latent layers as one distribution over z = [z_1, ..., z_L].

A model with L stochastic layers has a prior p(z_L) prod_l p(z_l | z_{l+1}) and a posterior
that is also a chain: bottom-up q(z_1|x) prod_l q(z_{l+1} | z_l) (Burda et al. 2015, the
IWAE paper's 2-layer model) or top-down q(z_L|x) prod_l q(z_l | z_{l+1}, x) (the ladder VAE,
Sønderby et al. 2016). :class:`MarkovChain` is either, as a ``Distribution`` whose event is the
concatenation of the layers (z_1, next to the data, first). So every objective, importance
sampling, ELBO surgery and the figures treat a hierarchy like one latent variable:
``rsample`` draws the layers in order, ``log_prob`` sums the layers' conditionals, and
``layer_log_probs`` gives them one by one (the KL of each layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch.distributions import Distribution, Independent, Normal, constraints

Step = Callable[[torch.Tensor], Distribution]  # the layer drawn last -> the next layer's law


class MarkovChain(Distribution):
    """z_(1), z_(2), ... drawn in turn, each given the one before: a chain of latent layers.

    Args:
        first: the distribution of the first layer drawn (z_1 bottom-up, z_L top-down).
        steps: ``L - 1`` maps from the layer drawn last to the next layer's distribution.
        sizes: ``(d_1, ..., d_L)``, the width of each layer, z_1 (next to the data) first.
        top_down: draw z_L first and z_1 last (the prior, a ladder posterior), else z_1 first.

    ``batch_shape`` is ``first``'s; ``event_shape == (sum(sizes),)``, layers in the order
    z_1, ..., z_L whatever the order they are drawn in.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self, first: Distribution, steps: Sequence[Step], sizes: Sequence[int], *, top_down: bool
    ) -> None:
        if len(steps) != len(sizes) - 1:
            raise ValueError(f"{len(sizes)} layers need {len(sizes) - 1} steps, got {len(steps)}")
        self.first, self.steps, self.sizes = first, list(steps), tuple(int(s) for s in sizes)
        self.top_down = top_down
        super().__init__(first.batch_shape, torch.Size([sum(self.sizes)]), validate_args=False)

    @property
    def _order(self) -> list[int]:
        """Layer indices (0 = z_1) in the order they are drawn."""
        layers = list(range(len(self.sizes)))
        return layers[::-1] if self.top_down else layers

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """``(*batch, sum(sizes))`` -> the layers ``[z_1, ..., z_L]``."""
        return list(z.split(self.sizes, dim=-1))

    def _walk(self, draw: Callable[[Distribution], torch.Tensor]) -> torch.Tensor:
        layers: dict[int, torch.Tensor] = {}
        order = self._order
        current = draw(self.first)
        layers[order[0]] = current
        for step, index in zip(self.steps, order[1:], strict=True):
            current = draw(step(current))
            layers[index] = current
        shape = torch.broadcast_shapes(*(layers[i].shape[:-1] for i in layers))
        return torch.cat([layers[i].expand(*shape, -1) for i in sorted(layers)], dim=-1)

    def _draw(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...], *, grad: bool
    ) -> torch.Tensor:
        shape, drawn = torch.Size(sample_shape), [False]

        def draw(dist: Distribution) -> torch.Tensor:
            # The first layer carries the sample shape; later ones inherit it from their input.
            own_shape = shape if not drawn[0] else torch.Size()
            drawn[0] = True
            return dist.rsample(own_shape) if grad else dist.sample(own_shape)

        return self._walk(draw)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        return self._draw(sample_shape, grad=True)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        """Without gradients, so layers without ``rsample`` (a VampPrior top) can be drawn."""
        with torch.no_grad():
            return self._draw(sample_shape, grad=False)

    @property
    def mean(self) -> torch.Tensor:
        """The layers' means passed down the chain (each layer's mean given the mean of the one
        before): exact for the first layer drawn, an approximation of E[z] for the others."""
        return self._walk(lambda dist: dist.mean)

    @property
    def stddev(self) -> torch.Tensor:
        """Each layer's standard deviation given the mean of the layer before (the pass of
        :attr:`mean`): the spread of one layer's conditional, not of its marginal."""
        spreads: list[torch.Tensor] = []

        def draw(dist: Distribution) -> torch.Tensor:
            spreads.append(dist.stddev)
            return dist.mean

        self._walk(draw)
        order = self._order
        return torch.cat([spreads[order.index(i)] for i in range(len(self.sizes))], dim=-1)

    def layer_log_probs(self, z: torch.Tensor) -> list[torch.Tensor]:
        """log-density of each layer given the one drawn before, ``[layer 1, ..., layer L]``,
        each of shape ``z.shape[:-1]`` broadcast against ``batch_shape``."""
        layers, order = self.split(z), self._order
        out: dict[int, torch.Tensor] = {order[0]: self.first.log_prob(layers[order[0]])}
        for step, before, index in zip(self.steps, order[:-1], order[1:], strict=True):
            out[index] = step(layers[before]).log_prob(layers[index])
        return [out[i] for i in range(len(self.sizes))]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        parts = self.layer_log_probs(value)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def __repr__(self) -> str:
        direction = "top-down" if self.top_down else "bottom-up"
        return (
            f"MarkovChain({direction}, sizes={self.sizes}, batch_shape={tuple(self.batch_shape)})"
        )


def precision_weighted(bottom_up: Distribution, top_down: Distribution) -> Distribution:
    """The ladder VAE's posterior layer: the product of two diagonal Gaussians, renormalized.

    N(mu_q, s_q^2) with s_q^-2 = s_1^-2 + s_2^-2 and mu_q = (mu_1 s_1^-2 + mu_2 s_2^-2) s_q^2,
    combining the bottom-up estimate from x with the prior's top-down p(z_l | z_{l+1})
    (Sønderby et al. 2016, eq. 17-18). Batch shapes broadcast.
    """
    precision_1, precision_2 = bottom_up.stddev.pow(-2), top_down.stddev.pow(-2)
    variance = 1 / (precision_1 + precision_2)
    loc = (bottom_up.mean * precision_1 + top_down.mean * precision_2) * variance
    return Independent(Normal(loc, variance.sqrt(), validate_args=False), 1)

"""Independent latent blocks of different families as one distribution over their
concatenation: e.g. a Gaussian style vector beside a categorical class-like variable.

``Concatenated([q_1, ..., q_m])`` is the product q_1(z_1) ... q_m(z_m) over
z = [z_1, ..., z_m]; every part has the same batch shape and a one-dimensional event. Samples
and means are concatenated, log-probabilities summed, and the KL between two products of the
same block sizes is the sum of the blocks' KLs (each block's closed form where one is
registered). So the objectives, IS log p(x) and the figures need no change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch.distributions import Distribution, constraints, kl_divergence
from torch.distributions.kl import register_kl

from ..errors import ConfigError

_Shape = torch.Size | list[int] | tuple[int, ...]


class Concatenated(Distribution):
    """The product of independent ``parts`` over their concatenated events.

    Args:
        parts: distributions with equal ``batch_shape`` and events of shape ``(size_i,)``.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}

    def __init__(self, parts: Sequence[Distribution]) -> None:
        if not parts:
            raise ConfigError("Concatenated needs at least one part")
        batch = parts[0].batch_shape
        if any(p.batch_shape != batch or len(p.event_shape) != 1 for p in parts):
            raise ConfigError(
                "the parts of a Concatenated distribution need one batch shape and flat events, "
                f"got {[(tuple(p.batch_shape), tuple(p.event_shape)) for p in parts]}"
            )
        self.parts = list(parts)
        self.sizes = [p.event_shape[0] for p in parts]
        super().__init__(batch, torch.Size((sum(self.sizes),)), validate_args=False)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return all(p.has_rsample for p in self.parts)

    @property
    def mean(self) -> torch.Tensor:
        return torch.cat([p.mean for p in self.parts], -1)

    @property
    def variance(self) -> torch.Tensor:
        return torch.cat([p.variance for p in self.parts], -1)

    def expand(self, batch_shape: _Shape, _instance: object = None) -> Concatenated:
        return Concatenated([p.expand(batch_shape) for p in self.parts])

    def sample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        return torch.cat([p.sample(sample_shape) for p in self.parts], -1)

    def rsample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        return torch.cat([p.rsample(sample_shape) for p in self.parts], -1)

    def split(self, value: torch.Tensor) -> list[torch.Tensor]:
        """``value (..., sum(sizes))`` cut into the parts' blocks."""
        return list(value.split(self.sizes, -1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        blocks = self.split(value)
        return sum(p.log_prob(z) for p, z in zip(self.parts, blocks, strict=True))  # type: ignore[return-value]

    def entropy(self) -> torch.Tensor:
        return sum(p.entropy() for p in self.parts)  # type: ignore[return-value]


@register_kl(Concatenated, Concatenated)
def _kl_concatenated(q: Concatenated, p: Concatenated) -> torch.Tensor:
    if q.sizes != p.sizes:
        raise NotImplementedError  # not the same blocks: no closed form
    return sum(kl_divergence(a, b) for a, b in zip(q.parts, p.parts, strict=True))  # type: ignore[return-value]

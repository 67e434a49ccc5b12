"""Priors p(z): modules called with no input that return a distribution over z.

``pz = prior()`` has ``batch_shape == ()`` and ``event_shape == (latent_dim,)``, so
``pz.log_prob(z)`` broadcasts over any leading ``(k, batch)`` dimensions of ``z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I), the prior of Kingma & Welling (2014)."""

    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)


class LearnedNormalPrior(nn.Module):
    """p(z) = N(mu, diag sigma^2) with mu and sigma learned with the model (from N(0, I))."""

    def __init__(self, latent_dim: int, min_scale: float = 1e-3) -> None:
        super().__init__()
        self.latent_dim, self.min_scale = latent_dim, min_scale
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        # softplus(raw) + min_scale == 1 at initialization
        raw = torch.log(torch.expm1(torch.tensor(1.0 - min_scale)))
        self.raw_scale = nn.Parameter(raw.repeat(latent_dim))

    def forward(self) -> Distribution:
        scale = F.softplus(self.raw_scale) + self.min_scale
        return Independent(Normal(self.loc, scale, validate_args=False), 1)

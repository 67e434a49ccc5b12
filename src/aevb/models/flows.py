"""The amortized planar-flow posterior q(z|x) (Rezende & Mohamed 2015): a head whose
distribution, :class:`aevb.distributions.planar.PlanarFlowNormal`, lives with the other
distribution families.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..distributions.planar import PlanarFlowNormal
from .heads import _positive

# softplus^{-1}(1) = log(e - 1): where w^T u takes this value, m(w^T u) = 0 and û = 0.
_IDENTITY_WU = math.log(math.e - 1)


class PlanarFlowHead(nn.Module):
    """Amortized planar-flow posterior: ``h -> PlanarFlowNormal`` (Rezende & Mohamed 2015).

    The base Gaussian is a :class:`~aevb.NormalHead` (linear ``loc``, softplus + ``min_scale``
    scale); one more linear layer maps ``h`` to every flow's ``u_k, w_k, b_k``, so each
    example gets its own flow.

    Initialization starts each flow at the identity. Small weights alone would not: for
    small ``u, w`` the constraint gives ``û ~ -0.31 w / ||w||^2``, a map that contracts z by
    31% along ``w``. Instead the layer's weights are scaled by 0.01 and its biases put each
    ``w_k`` on a random unit direction with ``u_k = log(e - 1) w_k``, where
    ``m(w^T u) = 0`` and so ``û_k = 0``; training moves away from there.

    Args:
        in_dim: size of the hidden features ``h``.
        out_dim: size of z (``latent_dim``).
        num_flows: number of planar maps ``K`` (0 gives the diagonal Gaussian).
        min_scale: lower bound on the base Gaussian's learned scale.

    Returns (from ``forward``): a :class:`PlanarFlowNormal` with ``batch_shape ==
    h.shape[:-1]`` and ``event_shape == (out_dim,)``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, num_flows: int = 4, min_scale: float = 1e-3
    ) -> None:
        super().__init__()
        if num_flows < 0:
            raise ValueError(f"PlanarFlowHead needs num_flows >= 0, got {num_flows}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.num_flows, self.min_scale = num_flows, min_scale
        self.loc = nn.Linear(in_dim, out_dim)
        self.raw_scale = nn.Linear(in_dim, out_dim)
        self.flow = nn.Linear(in_dim, num_flows * (2 * out_dim + 1))  # u, w, then b
        self._init_identity()

    @torch.no_grad()
    def _init_identity(self) -> None:
        self.flow.weight.mul_(0.01)
        direction = torch.randn(self.num_flows, self.out_dim)
        direction = direction / direction.norm(dim=-1, keepdim=True)  # w_k, ||w_k|| = 1
        u = _IDENTITY_WU * direction  # w_k^T u_k = log(e - 1): û_k = 0
        bias = torch.cat([u.flatten(), direction.flatten(), torch.zeros(self.num_flows)])
        self.flow.bias.copy_(bias)

    def forward(self, h: torch.Tensor) -> PlanarFlowNormal:
        loc = self.loc(h)
        scale = _positive(self.raw_scale(h), self.min_scale)
        size = self.num_flows * self.out_dim
        u, w, b = self.flow(h).split([size, size, self.num_flows], dim=-1)
        shape = (*h.shape[:-1], self.num_flows, self.out_dim)
        return PlanarFlowNormal(
            loc, scale, u.reshape(shape), w.reshape(shape), b, validate_args=False
        )

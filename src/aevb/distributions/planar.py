"""Planar normalizing flows: a q(z|x) richer than a Gaussian (Rezende & Mohamed 2015).

:class:`PlanarFlowNormal` pushes a diagonal Gaussian ``z_0 ~ N(loc, diag scale^2)`` through
``K`` planar maps

    z_k = f_k(z_{k-1}) = z_{k-1} + û_k tanh(w_k^T z_{k-1} + b_k),

and by the change of variables ::

    log q(z_K) = log N(z_0; loc, scale) - sum_k log |1 + û_k^T psi_k(z_{k-1})|,
    psi_k(z) = (1 - tanh^2(w_k^T z + b_k)) w_k

(Rezende & Mohamed 2015, "Variational inference with normalizing flows", eqs. 10-13). Each
map is invertible because ``û_k`` is the raw ``u_k`` moved along ``w_k`` until
``w_k^T û_k = m(w_k^T u_k) = -1 + softplus(w_k^T u_k) > -1`` (their appendix A.1).
:class:`aevb.PlanarFlowHead` (:mod:`aevb.models.flows`) is the amortized version: every
flow parameter is a linear function of the encoder's features ``h``, one flow per example.

Caching contract. A planar map has no closed-form inverse, so the density of an arbitrary
point cannot be evaluated: ``log q(z)`` is computed together with ``z`` while sampling.
``rsample``/``sample`` cache the pair for the *last* draw, and ``log_prob(z)`` returns the
cached value when ``z`` *is* that tensor (the same object, not an equal copy); any other
tensor raises ``ValueError``. This covers the Monte Carlo ELBO, the IWAE bound and
importance-sampled log p(x), which evaluate ``q.log_prob`` on the very samples they drew;
:meth:`PlanarFlowNormal.rsample_and_log_prob` returns the pair explicitly. It rules out
evaluating q at other points (e.g. the aggregate posterior of ELBO surgery, or the
sticking-the-landing estimator, which rebuilds q with detached parameters) and closed-form
KL terms: no KL is registered, so :func:`aevb.kl` falls back to Monte Carlo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch.distributions import Distribution, constraints

_LOG_2PI = math.log(2 * math.pi)

_NO_INVERSE = (
    "planar flows have no closed-form inverse: log_prob is available only for samples drawn "
    "from this distribution; draw z with rsample/sample first"
)


class PlanarFlowNormal(Distribution):
    """Diagonal Gaussian pushed through ``K`` planar maps (Rezende & Mohamed 2015).

    Args:
        loc: ``(*batch, L)`` mean of the base Gaussian ``z_0``.
        scale: ``(*batch, L)`` positive standard deviations of ``z_0``.
        u: ``(*batch, K, L)`` raw (unconstrained) ``u_k``; the maps use :attr:`u_hat`.
        w: ``(*batch, K, L)`` normal vectors ``w_k`` of the maps' hyperplanes.
        b: ``(*batch, K)`` offsets ``b_k``.
        validate_args: check ``scale > 0`` and finite parameters (torch's global default
            when ``None``).

    ``batch_shape`` is the broadcast of the parameters' batch shapes, ``event_shape`` is
    ``(L,)``; ``K = 0`` gives exactly the diagonal Gaussian ``N(loc, diag scale^2)``.
    ``log_prob`` works only on the last tensor drawn by ``rsample``/``sample`` (see the module
    docstring): use :meth:`rsample_and_log_prob` to get ``z`` and ``log q(z)`` together.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        u: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
        validate_args: bool | None = None,
    ) -> None:
        if loc.dim() < 1 or scale.dim() < 1 or u.dim() < 2 or w.dim() < 2 or b.dim() < 1:
            raise ValueError(
                "PlanarFlowNormal needs loc, scale (*batch, L), u, w (*batch, K, L), b (*batch, K)"
            )
        latent_dim, num_flows = loc.shape[-1], u.shape[-2]
        if (
            scale.shape[-1] != latent_dim
            or u.shape[-1] != latent_dim
            or w.shape[-2:] != u.shape[-2:]
            or b.shape[-1] != num_flows
        ):
            raise ValueError(
                f"PlanarFlowNormal shapes disagree: loc {tuple(loc.shape)}, scale "
                f"{tuple(scale.shape)}, u {tuple(u.shape)}, w {tuple(w.shape)}, b "
                f"{tuple(b.shape)}; expected (*batch, L), (*batch, L), (*batch, K, L) twice, "
                "(*batch, K)"
            )
        batch_shape = torch.broadcast_shapes(
            loc.shape[:-1], scale.shape[:-1], u.shape[:-2], w.shape[:-2], b.shape[:-1]
        )
        self.loc = loc.expand(*batch_shape, latent_dim)
        self.scale = scale.expand(*batch_shape, latent_dim)
        self.u = u.expand(*batch_shape, num_flows, latent_dim)
        self.w = w.expand(*batch_shape, num_flows, latent_dim)
        self.b = b.expand(*batch_shape, num_flows)
        self.num_flows = num_flows
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(batch_shape, torch.Size((latent_dim,)), validate_args=validate_args)
        if self._validate_args:
            params = {"loc": loc, "scale": scale, "u": u, "w": w, "b": b}
            bad = [name for name, value in params.items() if not torch.isfinite(value).all()]
            if bad:
                raise ValueError(f"PlanarFlowNormal parameters {bad} are not all finite")
            if not (scale > 0).all():
                raise ValueError("PlanarFlowNormal scale must be positive")

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> PlanarFlowNormal:
        batch_shape = torch.Size(batch_shape)
        latent_dim, num_flows = self.event_shape[0], self.num_flows
        return PlanarFlowNormal(
            self.loc.expand(*batch_shape, latent_dim),
            self.scale.expand(*batch_shape, latent_dim),
            self.u.expand(*batch_shape, num_flows, latent_dim),
            self.w.expand(*batch_shape, num_flows, latent_dim),
            self.b.expand(*batch_shape, num_flows),
            validate_args=False,
        )

    def _constrained(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``û`` ``(*batch, K, L)`` and ``1 + w^T û = softplus(w^T u)`` ``(*batch, K)``.

        ``1 + w^T û`` is returned in the closed form, which stays positive where
        ``w^T u << 0`` (the explicit dot product would round to 0 there). A zero ``w`` (the
        map is then a translation) leaves ``u`` unchanged instead of dividing by 0.
        """
        wu = (self.w * self.u).sum(-1)
        w_sq = self.w.square().sum(-1)
        tiny = torch.finfo(w_sq.dtype).tiny
        softplus = torch.logaddexp(wu, torch.zeros_like(wu))  # 1 + m(w^T u), exact for all wu
        shift = (softplus - 1 - wu) / w_sq.clamp_min(tiny)  # (m(w^T u) - w^T u) / ||w||^2
        u_hat = self.u + shift.unsqueeze(-1) * self.w
        one_plus_wu_hat = torch.where(w_sq >= tiny, softplus, 1 + wu)
        return u_hat, one_plus_wu_hat

    @property
    def u_hat(self) -> torch.Tensor:
        """``(*batch, K, L)`` the constrained ``û_k``, with ``w_k^T û_k > -1``."""
        return self._constrained()[0]

    def _flow(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_0 (*sample, *batch, L) -> (z_K, sum_k log |det df_k/dz|)``."""
        u_hat, one_plus_wu_hat = self._constrained()
        log_det = z.new_zeros(z.shape[:-1])
        for k in range(self.num_flows):
            t = torch.tanh((z * self.w[..., k, :]).sum(-1) + self.b[..., k])
            t_sq = t.square()
            # 1 + û^T psi = 1 + (1 - t^2) w^T û = t^2 + (1 - t^2)(1 + w^T û): no cancellation
            log_det = log_det + torch.log(torch.abs(t_sq + (1 - t_sq) * one_plus_wu_hat[..., k]))
            z = z + t.unsqueeze(-1) * u_hat[..., k, :]
        return z, log_det

    def rsample_and_log_prob(
        self, sample_shape: Sequence[int] = torch.Size()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized ``z (*sample, *batch, L)`` and its ``log q(z) (*sample, *batch)``.

        The pair is cached, so ``self.log_prob(z)`` on this very ``z`` returns ``log q(z)``.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        z0 = self.loc + self.scale * eps
        log_base = -(0.5 * eps.square() + self.scale.log() + 0.5 * _LOG_2PI).sum(-1)
        z, log_det = self._flow(z0)
        log_q = log_base - log_det
        self._cache = (z, log_q)
        return z, log_q

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> torch.Tensor:
        """Reparameterized ``z (*sample, *batch, L)``; caches ``(z, log q(z))``."""
        return self.rsample_and_log_prob(sample_shape)[0]

    def sample(self, sample_shape: Sequence[int] = torch.Size()) -> torch.Tensor:
        """``z (*sample, *batch, L)`` without gradients; caches ``(z, log q(z))``."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log q(z) (*sample, *batch)`` of the last drawn ``z``; ``ValueError`` otherwise."""
        if self._cache is not None and value is self._cache[0]:
            return self._cache[1]
        raise ValueError(_NO_INVERSE)

    @property
    def mean(self) -> torch.Tensor:
        """``(*batch, L)`` the flow applied to ``loc``: the image of the base mean.

        This is a deterministic code for the example (what :func:`aevb.encode_means` uses),
        not ``E[z]``, which has no closed form under a nonlinear flow.
        """
        return self._flow(self.loc)[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_shape: {tuple(self.batch_shape)}, "
            f"latent_dim: {self.event_shape[0]}, num_flows: {self.num_flows})"
        )

"""Priors p(z): modules called with no input that return a distribution over z.

``pz = prior()`` has ``batch_shape == ()`` and ``event_shape == (latent_dim,)``, so
``pz.log_prob(z)`` broadcasts over any leading ``(k, batch)`` dimensions of ``z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from ..data.ondisk import Rows
from ..distributions.core import DiagonalNormalMixture, is_diagonal_normal
from ..errors import require_positive


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I), the prior of Kingma & Welling (2014)."""

    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        require_positive("StandardNormalPrior", latent_dim=latent_dim)
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)


class LearnedNormalPrior(nn.Module):
    """p(z) = N(mu, diag sigma^2) with mu and sigma learned with the model (from N(0, I))."""

    def __init__(self, latent_dim: int, min_scale: float = 1e-3) -> None:
        super().__init__()
        require_positive("LearnedNormalPrior", latent_dim=latent_dim)
        self.latent_dim, self.min_scale = latent_dim, min_scale
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        # softplus(raw) + min_scale == 1 at initialization
        raw = torch.log(torch.expm1(torch.tensor(1.0 - min_scale)))
        self.raw_scale = nn.Parameter(raw.repeat(latent_dim))

    def forward(self) -> Distribution:
        scale = F.softplus(self.raw_scale) + self.min_scale
        return Independent(Normal(self.loc, scale, validate_args=False), 1)


class MixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2), all learned (e.g. Dilokthanakul et al.
    2016). No closed-form KL to q(z|x) exists: the ELBO uses the Monte Carlo KL.

    Args:
        latent_dim: size of z.
        num_components: K mixture components; means start spread out as N(0, I) draws.
    """

    def __init__(self, latent_dim: int, num_components: int = 10, min_scale: float = 1e-3) -> None:
        super().__init__()
        require_positive("MixturePrior", latent_dim=latent_dim, num_components=num_components)
        self.latent_dim, self.num_components, self.min_scale = latent_dim, num_components, min_scale
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, latent_dim))
        raw = torch.log(torch.expm1(torch.tensor(1.0 - min_scale)))
        self.raw_scale = nn.Parameter(raw.repeat(num_components, latent_dim))

    def forward(self) -> Distribution:
        scale = F.softplus(self.raw_scale) + self.min_scale
        return DiagonalNormalMixture(self.logits, self.loc, scale)


class VampPrior(nn.Module):
    """p(z) = (1/K) sum_k q(z|u_k): the variational mixture of posteriors (Tomczak & Welling
    2018), with K learned pseudo-inputs u_k passed through the model's own encoder.

    Args:
        encoder: the VAE's encoder, ``x -> q(z|x)``. It is referenced, not registered as a
            submodule, so its parameters belong to the VAE once (and are saved once).
        data_dim: size of one flattened datum (the pseudo-inputs' size).
        num_components: K pseudo-inputs.
        init: ``(K, data_dim)`` starting pseudo-inputs (e.g. random training examples); by
            default N(0.05, 0.01^2) noise, as in the paper's MNIST experiments.
    """

    def __init__(
        self,
        encoder: nn.Module,
        data_dim: int,
        num_components: int = 500,
        init: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        require_positive("VampPrior", data_dim=data_dim, num_components=num_components)
        self._encoder = (encoder,)  # a tuple: not a submodule
        if init is None:
            init = 0.05 + 0.01 * torch.randn(num_components, data_dim)
        if init.shape != (num_components, data_dim):
            raise ValueError(f"init must have shape ({num_components}, {data_dim})")
        self.pseudo_inputs = nn.Parameter(init.clone().float())
        self.num_components = num_components

    @property
    def latent_dim(self) -> int:
        return int(self().event_shape[-1])

    @torch.no_grad()
    def initialize_from(self, x: Rows) -> None:
        """Start the pseudo-inputs at K distinct random rows of ``x`` (``(N, data_dim)``, N >= K),
        drawn with torch's global generator; a faster start than noise (Tomczak & Welling 2018
        mention both)."""
        if x.shape[0] < self.num_components:
            raise ValueError(f"need at least {self.num_components} examples, got {x.shape[0]}")
        rows = torch.randperm(x.shape[0])[: self.num_components]
        self.pseudo_inputs.copy_(x[rows].reshape(self.pseudo_inputs.shape))

    def forward(self) -> Distribution:
        components = self._encoder[0](self.pseudo_inputs)  # batch (K,), event (latent_dim,)
        logits = self.pseudo_inputs.new_zeros(self.num_components)  # float64 with the model
        if is_diagonal_normal(components):
            return DiagonalNormalMixture(logits, components.mean, components.stddev)
        # Full-covariance or flow posteriors: the general (slower) mixture.
        weights = Categorical(logits=logits, validate_args=False)
        return MixtureSameFamily(weights, components, validate_args=False)

"""Several stochastic layers: the encoders and the prior of a hierarchical VAE.

Generative model: p(z_L) prod_{l<L} p(z_l | z_{l+1}) p(x | z_1). Two inference networks:

- :class:`BottomUpEncoder`: q(z_1|x) prod_l q(z_{l+1} | z_l), the IWAE paper's 2-layer
  model (Burda et al. 2015: 784-200-200-z1(100)-100-100-z2(50) on MNIST);
- :class:`LadderEncoder`: a deterministic bottom-up pass d_1(x), ..., d_L(x), then top-down
  q(z_L|x) prod_l q(z_l | z_{l+1}, x), each layer the precision-weighted product of the
  bottom-up Gaussian and the prior's own top-down p(z_l | z_{l+1}), so inference and generation
  share that path (the ladder VAE, Sønderby et al. 2016).

Both return a :class:`aevb.distributions.chain.MarkovChain` over z = [z_1, ..., z_L], and the
prior returns one too; the decoder reads z_1 only (:class:`FirstLayer`). Any encoder or
decoder body (MLP, convolutional) sits below z_1; :func:`hierarchical_vae` builds one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import Distribution

from ..distributions.chain import MarkovChain, precision_weighted
from ..errors import ConfigError, require_positive
from ..nn.mlp import MLP
from ..nn.utils import out_dim
from .heads import NormalHead
from .priors import StandardNormalPrior, VampPrior
from .vae import VAE


def _gaussian_step(
    in_dim: int, out_dim: int, hidden_dims: Sequence[int], activation: type[nn.Module]
) -> nn.Sequential:
    body = MLP(in_dim, hidden_dims, activation)
    return nn.Sequential(body, NormalHead(body.out_dim, out_dim))


class TopDownPrior(nn.Module):
    """p(z) = p(z_L) prod_{l<L} p(z_l | z_{l+1}), each conditional a diagonal Gaussian from an
    MLP of ``hidden_dims``; p(z_L) is N(0, I) or any prior module given as ``top`` (e.g. a
    :class:`aevb.VampPrior`, see :func:`hierarchical_vae`).

    Args:
        sizes: ``(d_1, ..., d_L)``, z_1 (next to the data) first.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden_dims: Sequence[int] = (100, 100),
        activation: type[nn.Module] = nn.Tanh,
        top: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.top = top if top is not None else StandardNormalPrior(self.sizes[-1])
        # steps[i] maps z_{l+1} to p(z_l | z_{l+1}), from the top down: l = L-1, ..., 1.
        self.steps = nn.ModuleList(
            _gaussian_step(self.sizes[layer], self.sizes[layer - 1], hidden_dims, activation)
            for layer in range(len(self.sizes) - 1, 0, -1)
        )

    @property
    def latent_dim(self) -> int:
        return sum(self.sizes)

    def forward(self) -> Distribution:
        return MarkovChain(self.top(), list(self.steps), self.sizes, top_down=True)


class BottomUpEncoder(nn.Module):
    """q(z|x) = q(z_1|x) prod_l q(z_{l+1} | z_l): stochastic layers stacked bottom-up.

    Args:
        first: ``x -> q(z_1|x)``, any encoder (body and head) of the one-layer model.
        sizes: ``(d_1, ..., d_L)``.
        hidden_dims: widths of the MLP between consecutive layers.
    """

    def __init__(
        self,
        first: nn.Module,
        sizes: Sequence[int],
        hidden_dims: Sequence[int] = (100, 100),
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.first, self.sizes = first, tuple(int(s) for s in sizes)
        self.steps = nn.ModuleList(
            _gaussian_step(self.sizes[layer], self.sizes[layer + 1], hidden_dims, activation)
            for layer in range(len(self.sizes) - 1)
        )

    def forward(self, x: torch.Tensor) -> Distribution:
        return MarkovChain(self.first(x), list(self.steps), self.sizes, top_down=False)


class LadderEncoder(nn.Module):
    """Top-down q(z|x) sharing the prior's top-down path (Sønderby et al. 2016).

    Bottom-up: ``h = body(x)``, d_1 = h, d_{l+1} = MLP(d_l); a Gaussian head on each d_l gives
    the estimate N(mu^_l, s^_l^2). Top-down: q(z_L|x) is the top estimate; q(z_l | z_{l+1}, x)
    is :func:`aevb.distributions.chain.precision_weighted` of the estimate and the prior's
    p(z_l | z_{l+1}).

    Args:
        body: ``x -> h`` with ``out_dim`` (MLP or convolutional).
        prior: the model's :class:`TopDownPrior`; referenced, not registered, so its
            parameters belong to the VAE once.
        hidden_dims: widths of each MLP d_l -> d_{l+1}.
    """

    def __init__(
        self,
        body: nn.Module,
        prior: TopDownPrior,
        hidden_dims: Sequence[int] = (100, 100),
        activation: type[nn.Module] = nn.Tanh,
        first_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body, self.sizes, self._prior = body, prior.sizes, (prior,)
        paths: list[nn.Module] = [nn.Identity()]
        width = [out_dim(body)]
        for _ in self.sizes[1:]:
            path = MLP(width[-1], hidden_dims, activation)
            paths.append(path)
            width.append(path.out_dim)
        self.paths = nn.ModuleList(paths)
        # z_1's head may be given (e.g. per position, for a spatial z_1)
        first = first_head if first_head is not None else NormalHead(width[0], self.sizes[0])
        rest = [NormalHead(w, d) for w, d in zip(width[1:], self.sizes[1:], strict=True)]
        self.heads = nn.ModuleList([first, *rest])

    def top(self, x: torch.Tensor) -> Distribution:
        """The bottom-up estimate of the top layer, q(z_L|x): what a VampPrior on z_L mixes."""
        d = self.body(x)
        for path in self.paths:
            d = path(d)
        return self.heads[-1](d)

    def forward(self, x: torch.Tensor) -> Distribution:
        estimates, d = [], self.body(x)
        for path, head in zip(self.paths, self.heads, strict=True):
            d = path(d)
            estimates.append(head(d))
        prior_steps = list(self._prior[0].steps)  # p(z_l | z_{l+1}) for l = L-1, ..., 1

        def step(
            estimate: Distribution, conditional: nn.Module
        ) -> Callable[[torch.Tensor], Distribution]:
            return lambda above: precision_weighted(estimate, conditional(above))

        steps = [
            step(estimates[layer - 1], prior_steps[i])
            for i, layer in enumerate(range(len(self.sizes) - 1, 0, -1))
        ]
        return MarkovChain(estimates[-1], steps, self.sizes, top_down=True)


def _missing_in_dim(body: nn.Module) -> int:
    raise ValueError(f"{type(body).__name__} declares no in_dim: a VampPrior needs the data size")


class _TopEstimate(nn.Module):
    """``x -> q(z_L|x)`` of a ladder, for a VampPrior (which references it, not registers it)."""

    def __init__(self, ladder: LadderEncoder) -> None:
        super().__init__()
        self._ladder = (ladder,)  # not a submodule: the ladder belongs to the VAE once

    def forward(self, x: torch.Tensor) -> Distribution:
        return self._ladder[0].top(x)


class FirstLayer(nn.Module):
    """z = [z_1, ..., z_L] -> z_1: what the decoder of a hierarchy reads."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., : self.size]


INFERENCE_PATHS = ("bottom-up", "ladder")


def hierarchical_vae(
    encoder_body: nn.Module,
    decoder: nn.Module,
    sizes: Sequence[int],
    *,
    hidden_dims: Sequence[int] = (100, 100),
    activation: type[nn.Module] = nn.Tanh,
    inference: str = "bottom-up",
    first_head: nn.Module | None = None,
    vamp_components: int | None = None,
) -> VAE:
    """A VAE with ``len(sizes)`` stochastic layers over the given bodies.

    Args:
        encoder_body: ``x -> h`` with ``out_dim``.
        decoder: ``z_1 -> p(x|z_1)`` (body and likelihood head), z_1 of ``sizes[0]``.
        sizes: ``(d_1, ..., d_L)``, L >= 2; e.g. ``(100, 50)`` (Burda et al. 2015).
        hidden_dims: widths of the MLPs between stochastic layers (both directions).
        inference: ``"bottom-up"`` or ``"ladder"``.
        first_head: the Gaussian head from ``encoder_body``'s features to z_1 (q(z_1|x)
            bottom-up, the bottom-up estimate of z_1 for a ladder); a dense
            :class:`NormalHead` by default, a per-position one for spatial latents.
        vamp_components: ladder only: p(z_L) is a VampPrior, the mixture of the ladder's own
            q(z_L|u_k) over K learned pseudo-inputs u_k (the hierarchical VampPrior of
            Tomczak & Welling 2018); ``encoder_body`` must declare ``in_dim`` (data size).

    Example:
        >>> body = MLP(784, (200, 200), nn.Tanh)
        >>> decoder = nn.Sequential(MLP(100, (200, 200), nn.Tanh), BernoulliHead(200, 784))
        >>> model = hierarchical_vae(body, decoder, (100, 50))  # doctest: +SKIP
    """
    if len(sizes) < 2:
        raise ConfigError(f"a hierarchy needs at least two layers, got sizes {tuple(sizes)}")
    require_positive("hierarchical_vae", **{f"sizes[{i}]": s for i, s in enumerate(sizes)})
    if inference not in INFERENCE_PATHS:
        raise ValueError(f"inference must be one of {INFERENCE_PATHS}, got {inference!r}")
    prior = TopDownPrior(sizes, hidden_dims, activation)
    encoder: nn.Module
    head = first_head if first_head is not None else NormalHead(out_dim(encoder_body), sizes[0])
    if vamp_components is not None and inference != "ladder":
        raise ValueError("a VampPrior on the top layer needs the ladder's q(z_L|x): use ladder")
    if inference == "ladder":
        ladder = LadderEncoder(encoder_body, prior, hidden_dims, activation, first_head=head)
        if vamp_components is not None:
            data_dim = int(getattr(encoder_body, "in_dim", 0)) or _missing_in_dim(encoder_body)
            prior.top = VampPrior(_TopEstimate(ladder), data_dim, vamp_components)
        encoder = ladder
    else:
        first = nn.Sequential(encoder_body, head)
        encoder = BottomUpEncoder(first, sizes, hidden_dims, activation)
    return VAE(encoder, nn.Sequential(FirstLayer(sizes[0]), decoder), prior)

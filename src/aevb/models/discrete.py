"""Discrete latent variables: q(z|x) heads and priors over categorical and Bernoulli latents
(:mod:`aevb.distributions.discrete`), for the one :class:`aevb.VAE` and its objectives; and
latents of mixed families, blocks side by side (:class:`ConcatenatedHead`,
:class:`ConcatenatedPrior`, :mod:`aevb.distributions.concat`).

A categorical VAE as in Jang et al. (2017), 20 variables of 10 categories (a 200-value z)::

    vae = mlp_vae(
        784, 200, (512, 256),
        posterior=functools.partial(CategoricalLatentHead, num_categories=10),
        prior=CategoricalPrior(20, 10),
    )
    Trainer(vae, callbacks=[TemperatureSchedule()]).fit(x)

Training draws relaxed codes (Gumbel-softmax at the head's ``temperature``, annealed by
:class:`aevb.training.callbacks.TemperatureSchedule`); the KL is the exact one between the
discrete q and p. In ``eval()`` mode a head draws exact codes, so validation ELBOs, IS log
p(x) and the figures are those of the discrete model, with no relaxation at test time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..distributions.concat import Concatenated
from ..distributions.discrete import Bernoullis, Categoricals
from ..errors import ConfigError
from .heads import Projection


class CategoricalLatentHead(nn.Module):
    """q(z|x) over ``out_dim // num_categories`` categorical variables, z their concatenated
    one-hot codes (``out_dim`` values).

    Args:
        num_categories: values of each variable.
        temperature: of the Gumbel-softmax relaxation while training.
        straight_through: train on exact codes with the relaxed gradient (ST Gumbel-softmax).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_categories: int = 10,
        temperature: float = 1.0,
        straight_through: bool = False,
        *,
        projection: Projection = nn.Linear,
    ) -> None:
        super().__init__()
        if num_categories < 2 or out_dim % num_categories:
            raise ConfigError(
                f"a categorical latent of {out_dim} values cannot hold variables of "
                f"{num_categories} categories: latent size = variables x categories, "
                "categories >= 2"
            )
        self.num_categories, self.num_vars = num_categories, out_dim // num_categories
        self.temperature, self.straight_through = temperature, straight_through
        self.logits = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Categoricals:
        logits = self.logits(h).unflatten(-1, (self.num_vars, self.num_categories))
        hard = self.straight_through or not self.training  # exact codes when evaluating
        return Categoricals(logits, self.temperature, hard)


class BernoulliLatentHead(nn.Module):
    """q(z|x) over ``out_dim`` binary variables (binary Concrete relaxation in training)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        temperature: float = 1.0,
        straight_through: bool = False,
        *,
        projection: Projection = nn.Linear,
    ) -> None:
        super().__init__()
        self.temperature, self.straight_through = temperature, straight_through
        self.logits = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Bernoullis:
        hard = self.straight_through or not self.training
        return Bernoullis(self.logits(h), self.temperature, hard)


class CategoricalPrior(nn.Module):
    """p(z): ``num_vars`` independent categorical variables of ``num_categories`` values.

    Args:
        probs: ``(num_categories,)`` or ``(num_vars, num_categories)`` probabilities, each
            row summing to one (``None``: uniform).
        learned: fit the logits with the model (started at ``probs``).
    """

    def __init__(
        self,
        num_vars: int,
        num_categories: int,
        *,
        probs: torch.Tensor | None = None,
        learned: bool = False,
    ) -> None:
        super().__init__()
        if num_vars < 1 or num_categories < 2:
            raise ConfigError(
                f"need num_vars >= 1, num_categories >= 2: {num_vars}, {num_categories}"
            )
        shape = (num_vars, num_categories)
        probs = torch.full(shape, 1 / num_categories) if probs is None else probs
        probs = torch.as_tensor(probs, dtype=torch.float32).expand(shape)
        sums = probs.sum(-1)
        if not (bool((probs > 0).all()) and torch.allclose(sums, torch.ones_like(sums), atol=1e-5)):
            raise ConfigError(
                "each variable's prior probabilities must be positive and sum to one, got "
                f"{probs.tolist()}"
            )
        logits = probs.log()
        if learned:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def forward(self) -> Categoricals:
        return Categoricals(self.logits, hard=True)


class BernoulliPrior(nn.Module):
    """p(z): ``num_vars`` independent binary variables, P(1) = ``probs`` (0.5 by default);
    ``learned`` fits their log-odds."""

    def __init__(self, num_vars: int, *, probs: float = 0.5, learned: bool = False) -> None:
        super().__init__()
        if not 0 < probs < 1:
            raise ConfigError(f"a Bernoulli prior's P(1) must lie in (0, 1), got {probs}")
        logits = torch.full((num_vars,), math.log(probs) - math.log1p(-probs))
        if learned:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def forward(self) -> Bernoullis:
        return Bernoullis(self.logits, hard=True)


class ConcatenatedHead(nn.Module):
    """q(z|x) of independent blocks of different families from one hidden ``h``: ``parts``
    are ``(head factory, block size)`` pairs, e.g. ``[(NormalHead, 10),
    (functools.partial(CategoricalLatentHead, num_categories=10), 10)]`` for a 10-d Gaussian
    style beside one 10-valued categorical variable (z of 20 values)."""

    def __init__(self, in_dim: int, parts: Sequence[tuple[Callable[..., nn.Module], int]]) -> None:
        super().__init__()
        self.heads = nn.ModuleList([factory(in_dim, size) for factory, size in parts])

    def forward(self, h: torch.Tensor) -> Concatenated:
        return Concatenated([head(h) for head in self.heads])


class ConcatenatedPrior(nn.Module):
    """p(z) of independent blocks, one prior each, in the order of the q head's blocks."""

    def __init__(self, priors: Sequence[nn.Module]) -> None:
        super().__init__()
        self.priors = nn.ModuleList(priors)

    def forward(self) -> Concatenated:
        return Concatenated([prior() for prior in self.priors])

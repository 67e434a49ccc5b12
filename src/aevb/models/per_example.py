"""Mean-field q as a model: a free q_i(z) for every training example (seed 003).

Variational EM gives each data point its own variational parameters λ_i = (μ_i, σ_i)
instead of an encoder that predicts them. :class:`PerExampleVAE` keeps the λ_i in tables
indexed by example, next to the decoder and prior, so the one :class:`aevb.Trainer` fits
both with :func:`aevb.per_example_elbo` and a sampler that passes the rows' indices.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from ..inference.local import LocalPosterior
from .vae import check_data


class PerExampleVAE(nn.Module):
    """p(x|z) p(z) with q_i(z) = N(loc_i, diag scale_i^2) for each of ``num_examples`` examples.

    The λ_i live in ``nn.Embedding`` tables with sparse gradients: the Trainer updates them
    with ``torch.optim.SparseAdam`` (step size ``sparse_lr``), which moves only the rows of
    the current minibatch; dense Adam would keep moving every λ_i by its stale momentum. They
    start at the prior, N(0, I).

    Args:
        decoder: ``z (*batch, latent_dim) -> p(x|z)``, e.g. a :class:`aevb.VAE`'s decoder
            (shared, not copied: training this model trains it).
        prior: ``() -> p(z)``.
        num_examples: rows of the training set.

    Example:
        >>> vae = aevb.mlp_vae(64, 2)                                  # doctest: +SKIP
        >>> model = PerExampleVAE(vae.decoder, vae.prior, len(x))       # doctest: +SKIP
        >>> Trainer(model, objective=per_example_elbo, sampler=Shuffled(100, with_index=True),
        ...         sparse_lr=1e-2).fit(x)                              # doctest: +SKIP
    """

    def __init__(self, decoder: nn.Module, prior: nn.Module, num_examples: int) -> None:
        super().__init__()
        self.decoder, self.prior = decoder, prior
        weight = next(decoder.parameters(), torch.zeros(()))  # tables follow its dtype, device
        start = LocalPosterior.init(
            "diagonal", num_examples, self.latent_dim, dtype=weight.dtype, device=weight.device
        )
        self.loc, self.raw_scale = (
            nn.Embedding.from_pretrained(start.params[name].detach(), freeze=False, sparse=True)
            for name in ("loc", "raw_scale")
        )

    @property
    def latent_dim(self) -> int:
        return self.prior().event_shape[-1]

    def encode(self, x: torch.Tensor, index: torch.Tensor) -> Distribution:
        """q_i(z) of the examples ``index (B,)``; ``x`` is not used (no encoder)."""
        return self.posterior(index).distribution()

    def decode(self, z: torch.Tensor) -> Distribution:
        return self.decoder(z)

    def posterior(self, index: torch.Tensor | None = None) -> LocalPosterior:
        """The λ_i of rows ``index`` (all rows by default) as a :class:`LocalPosterior`."""
        params = {"loc": self.loc.weight, "raw_scale": self.raw_scale.weight}
        if index is not None:
            params = {"loc": self.loc(index), "raw_scale": self.raw_scale(index)}
        return LocalPosterior("diagonal", params)

    def check_data(self, x: torch.Tensor) -> None:
        """As :meth:`aevb.VAE.check_data`; also one row per example of the table."""
        check_data(self, x)
        if x.shape[0] != self.loc.num_embeddings:
            raise ValueError(
                f"this model has q_i for {self.loc.num_embeddings} examples, got "
                f"{x.shape[0]} rows: train it on the data it was built for"
            )

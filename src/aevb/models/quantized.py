"""VQ-VAE parts (van den Oord et al. 2017): the codebook, the quantizing q(z|x) head and the
prior over codes, uniform or autoregressive (:mod:`aevb.distributions.quantized` holds
their distributions).

A VQ-VAE of 16 codes of 8 values each from a codebook of 128, MLP bodies::

    codebook = Codebook(128, 8)
    vae = mlp_vae(
        784, 16 * 8, (512, 256),
        posterior=functools.partial(VQHead, codebook=codebook),
        prior=CodePrior(codebook, 16, autoregressive=True),
    )
    Trainer(vae, objective=vq_elbo).fit(x)

The codebook follows the encoder by exponential moving averages (the paper's appendix A.1)
or by the codebook loss (``ema=False``), and restarts dead codes at encoder outputs of the
current batch (as in Dhariwal et al. 2020, Jukebox), so the whole codebook stays in use.
"""

from __future__ import annotations

import torch
from torch import nn

from ..distributions.quantized import Codes, Quantized, as_vectors, nearest
from ..errors import ConfigError
from .heads import Projection


class Codebook(nn.Module):
    """``num_codes`` (K) vectors of ``code_dim`` values.

    Args:
        ema: follow the encoder by exponential moving averages of the vectors assigned to
            each code (decay ``decay``, Laplace-smoothed counts); ``False``: the codes are
            parameters, learned by the objective's codebook loss.
        dead_fraction: a code whose moving count of assignments per step falls below this
            fraction of the average (``assignments / K``) is restarted at a random encoder
            output of the current batch. At the first training step every code is dead, so
            the codebook starts at data. ``0`` turns restarts off.
    """

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        *,
        ema: bool = True,
        decay: float = 0.99,
        dead_fraction: float = 0.03,
    ) -> None:
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ConfigError(
                f"a codebook needs at least one code of at least one value, got {num_codes} "
                f"codes of {code_dim}: give codebook_size >= 1 (e.g. 512) and code_dim >= 1"
            )
        if not (0 < decay < 1 and 0 <= dead_fraction < 1):
            raise ConfigError(
                f"need 0 < decay < 1, 0 <= dead_fraction < 1: {decay}, {dead_fraction}"
            )
        self.num_codes, self.code_dim, self.ema = num_codes, code_dim, ema
        self.decay, self.dead_fraction = decay, dead_fraction
        start = torch.randn(num_codes, code_dim)
        self.embedding: torch.Tensor
        self.ema_sum: torch.Tensor
        self.ema_count: torch.Tensor
        if ema:
            self.register_buffer("embedding", start)
            self.register_buffer("ema_sum", start.clone())
        else:
            self.embedding = nn.Parameter(start)
        # assignments per training step, a moving average: usage (and the EMA's counts)
        self.register_buffer("ema_count", torch.zeros(num_codes))

    @torch.no_grad()
    def update(self, vectors: torch.Tensor, index: torch.Tensor) -> None:
        """One training step's moving averages and restarts from ``vectors (N, code_dim)``
        assigned to codes ``index (N,)``."""
        vectors = vectors.to(self.ema_count.dtype)
        counts = torch.bincount(index, minlength=self.num_codes).to(vectors.dtype)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, index, vectors)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + 1e-5) / (total + self.num_codes * 1e-5) * total
            self.embedding.copy_(self.ema_sum / smoothed.unsqueeze(-1))
        average = len(index) / self.num_codes
        dead = (self.ema_count < self.dead_fraction * average).nonzero().squeeze(-1)
        if len(dead):
            chosen = vectors[torch.randint(len(vectors), (len(dead),), device=vectors.device)]
            self.embedding[dead] = chosen.to(self.embedding.dtype)
            self.ema_count[dead] = average  # a fresh start, not dead again at once
            if self.ema:
                self.ema_sum[dead] = chosen * average


class VQHead(nn.Module):
    """q(z|x) of a VQ-VAE: ``out_dim / code_dim`` vectors from ``h`` (a linear map, or
    ``projection``, e.g. a spatial map's 1x1 convolution), each snapped to its nearest
    code (:class:`aevb.distributions.quantized.Quantized`).

    In training mode each call also updates the codebook (:meth:`Codebook.update`).

    Shapes:
        ``h (*batch, in_dim) -> Quantized`` with event ``(out_dim,)``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, codebook: Codebook, *, projection: Projection = nn.Linear
    ) -> None:
        super().__init__()
        if out_dim % codebook.code_dim:
            raise ConfigError(
                f"a latent of {out_dim} values cannot hold codes of {codebook.code_dim}: "
                "latent size = codes x code_dim"
            )
        self.codebook, self.num_codes = codebook, out_dim // codebook.code_dim
        self.z_e = projection(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Quantized:
        z_e = self.z_e(h)
        vectors = as_vectors(z_e.detach(), self.codebook.code_dim)
        index = nearest(vectors.to(self.codebook.embedding.dtype), self.codebook.embedding.detach())
        quantized = Quantized(z_e, self.codebook.embedding, index)  # the codes before updating
        if self.training and torch.is_grad_enabled():
            flat = vectors.reshape(-1, self.codebook.code_dim)
            self.codebook.update(flat, index.reshape(-1))
        return quantized


class CodeTransformer(nn.Module):
    """An autoregressive model of ``length`` code indices in a fixed (raster) order: a causal
    transformer (Vaswani et al. 2017; the learned prior of VQ-VAE-2, Razavi et al. 2019, is
    of this kind), p(c) = prod_i p(c_i | c_<i).

    Args:
        num_codes: K, values of each index.
        length: n, indices per datum.
        width, layers, heads: of the transformer.
    """

    def __init__(
        self, num_codes: int, length: int, *, width: int = 64, layers: int = 2, heads: int = 4
    ) -> None:
        super().__init__()
        self.num_codes, self.length = num_codes, length
        self.tokens = nn.Embedding(num_codes + 1, width)  # the last one marks the start
        self.positions = nn.Parameter(torch.zeros(length, width))
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_codes))
        mask = torch.triu(torch.full((length, length), float("-inf")), diagonal=1)
        self.mask: torch.Tensor
        self.register_buffer("mask", mask, persistent=False)

    def logits(self, index: torch.Tensor) -> torch.Tensor:
        """``(B, m)`` indices, m <= n -> ``(B, m, K)`` logits of c_i given c_<i, i < m."""
        start = torch.full_like(index[:, :1], self.num_codes)
        inputs = torch.cat([start, index[:, :-1]], dim=1)
        m = inputs.shape[1]
        h = self.tokens(inputs) + self.positions[:m]
        h = self.layers(h, mask=self.mask[:m, :m], is_causal=True)
        return self.out(h)

    def log_prob(self, index: torch.Tensor) -> torch.Tensor:
        """log p of ``(*, n)`` indices: ``(*)``."""
        flat = index.reshape(-1, self.length).long()
        log_p = torch.log_softmax(self.logits(flat), -1)
        return log_p.gather(-1, flat.unsqueeze(-1)).squeeze(-1).sum(-1).reshape(index.shape[:-1])

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size) -> torch.Tensor:
        """``(*sample_shape, n)`` indices drawn one place at a time."""
        count = int(torch.Size(sample_shape).numel())
        index = torch.zeros(count, 0, dtype=torch.long, device=self.positions.device)
        for _ in range(self.length):
            padded = torch.cat([index, index.new_zeros(count, 1)], dim=1)
            logits = self.logits(padded)[:, -1]
            index = torch.cat([index, torch.multinomial(logits.softmax(-1), 1)], dim=1)
        return index.reshape(*sample_shape, self.length)


class CodePrior(nn.Module):
    """p(z) over the codes of a VQ head: each of ``num_codes`` places uniform over the
    codebook (log p(z) = -n log K), or ``autoregressive`` (:class:`CodeTransformer`), fitted
    with the model (the ELBO's KL term is -log p(z_q)) and refitted to the encoded training
    set afterwards (:func:`aevb.training.recipes.fit_code_prior`).

    ``codebook`` is the q head's, shared; the head owns it (saved once, as its part).
    """

    def __init__(
        self,
        codebook: Codebook,
        num_codes: int,
        *,
        autoregressive: bool = False,
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
    ) -> None:
        super().__init__()
        self.__dict__["codebook"] = codebook  # not a submodule: the head's part
        self.codebook: Codebook
        self.num_codes = num_codes
        self.index_model: CodeTransformer | None = (
            CodeTransformer(codebook.num_codes, num_codes, width=width, layers=layers, heads=heads)
            if autoregressive
            else None
        )

    def forward(self) -> Codes:
        return Codes(self.codebook.embedding, self.num_codes, self.index_model)

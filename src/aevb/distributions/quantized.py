"""Vector-quantized latents (VQ-VAE, van den Oord et al. 2017): a deterministic q(z|x) that
snaps the encoder's output to the nearest vectors of a codebook, and a prior over the codes.

A datum's z is ``num_codes`` code vectors of ``code_dim`` values, flattened channel-major:
event shape ``(code_dim * num_codes,)``, value ``z[d * num_codes + i]`` = entry ``d`` of code
``i``. The same layout is a spatial map of ``code_dim`` channels when the codes sit on an
``h x w`` grid (``num_codes = h * w``), which is what a convolutional decoder reads.

- :class:`Quantized` is q(z|x): a point mass at the quantized codes. ``rsample`` passes the
  decoder's gradient straight through to the encoder's output (the value is the codes, the
  gradient that of the unquantized vectors); ``log_prob`` is 0, the log-probability of a
  point mass at its own value on the discrete set of code tuples.
- :class:`Codes` is p(z): a distribution over tuples of code indices (uniform, or anything
  with ``log_prob`` and ``sample`` over index tuples, e.g. an autoregressive model), read as
  vectors through the codebook.

With q a point mass, KL(q || p) = -log p(z_q), registered here, so the ELBO is the bound of
the VQ-VAE paper, log p(x) >= log p(x | z_q) + log p(z_q), and :func:`aevb.log_px` returns it
for any ``k`` (all importance samples coincide).
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl

_Shape = torch.Size | list[int] | tuple[int, ...]


class IndexModel(Protocol):
    """A distribution over tuples of ``num_codes`` code indices."""

    def log_prob(self, index: torch.Tensor) -> torch.Tensor: ...  # (*, n) long -> (*)
    def sample(self, sample_shape: torch.Size) -> torch.Tensor: ...  # -> (*shape, n) long


def as_vectors(z: torch.Tensor, code_dim: int) -> torch.Tensor:
    """Flat ``z (*, code_dim * n)`` -> its ``(*, n, code_dim)`` code vectors."""
    return z.unflatten(-1, (code_dim, -1)).transpose(-1, -2)


def as_flat(vectors: torch.Tensor) -> torch.Tensor:
    """``(*, n, code_dim)`` code vectors -> flat ``z (*, code_dim * n)`` (inverse of
    :func:`as_vectors`)."""
    return vectors.transpose(-1, -2).flatten(-2)


def nearest(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (Euclidean) of each vector: ``(*, D), (K, D) -> (*)``."""
    flat = vectors.reshape(-1, vectors.shape[-1])
    # |v - e|^2 = |v|^2 - 2 v.e + |e|^2; |v|^2 is the same for every code of a row.
    distances = (codebook * codebook).sum(-1) - 2 * flat @ codebook.T
    return distances.argmin(-1).reshape(vectors.shape[:-1])


class Quantized(Distribution):
    """q(z|x) of a VQ-VAE: the point mass at the codes nearest to the encoder's output.

    Args:
        z_e: ``(*batch, code_dim * num_codes)`` the encoder's output, before quantization.
        codebook: ``(K, code_dim)`` the code vectors.
        index: ``(*batch, num_codes)`` index of the code chosen at each place (the nearest
            to ``z_e``'s vector there).

    ``commitment`` (``|z_e - sg(z_q)|^2``, which keeps the encoder near its codes) and
    ``codebook_loss`` (``|sg(z_e) - z_q|^2``, which moves codes learned by gradient towards the
    encoder's output) are the VQ-VAE's two extra terms, per example.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    has_rsample = True

    def __init__(self, z_e: torch.Tensor, codebook: torch.Tensor, index: torch.Tensor) -> None:
        self.z_e, self.codebook, self.index = z_e, codebook, index
        self.code_dim = codebook.shape[-1]
        self.z_q = as_flat(codebook[index])
        super().__init__(z_e.shape[:-1], z_e.shape[-1:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.z_q

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.z_q)

    @property
    def commitment(self) -> torch.Tensor:
        return (self.z_e - self.z_q.detach()).pow(2).sum(-1)

    @property
    def codebook_loss(self) -> torch.Tensor:
        return (self.z_e.detach() - self.z_q).pow(2).sum(-1)

    def rsample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        # The value is exactly z_q (z_e - sg(z_e) is 0); the gradient reaches z_e unchanged.
        z = self.z_q.detach() + (self.z_e - self.z_e.detach())
        return z.expand(torch.Size(sample_shape) + z.shape)

    def sample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        return self.z_q.detach().expand(torch.Size(sample_shape) + self.z_q.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log q of ``(*sample, *batch, D)`` values on the set of code tuples: 0 at this
        datum's codes (all that it draws), -inf at any other tuple (e.g. another datum's
        codes, as ELBO surgery's aggregate posterior asks)."""
        index = nearest(as_vectors(value.detach(), self.code_dim), self.codebook.detach())
        same = (index == self.index).all(-1)
        return torch.where(same, 0.0, -math.inf).to(value.dtype)

    def entropy(self) -> torch.Tensor:
        return self.z_q.new_zeros(self.batch_shape)


class Codes(Distribution):
    """p(z) over tuples of ``num_codes`` codes of a codebook, the vectors of indices drawn
    from ``index_model``.

    Args:
        codebook: ``(K, code_dim)`` the code vectors (the q head's).
        num_codes: codes per datum.
        index_model: ``log_prob((*, n) indices) -> (*)`` and ``sample(shape) -> (*shape, n)``
            (``None``: every code equally likely at every place, log p = -n log K).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}

    def __init__(
        self, codebook: torch.Tensor, num_codes: int, index_model: IndexModel | None = None
    ) -> None:
        self.codebook, self.num_codes, self.index_model = codebook, num_codes, index_model
        self.code_dim = codebook.shape[-1]
        event = torch.Size((self.code_dim * num_codes,))
        super().__init__(torch.Size(), event, validate_args=False)

    def expand(self, batch_shape: _Shape, _instance: object = None) -> Codes:
        if tuple(batch_shape):
            raise NotImplementedError("Codes has no batch dimensions; draw samples instead")
        return self

    def index_log_prob(self, index: torch.Tensor) -> torch.Tensor:
        """log p of ``(*, num_codes)`` index tuples: ``(*)``."""
        if self.index_model is None:
            value = -self.num_codes * math.log(self.codebook.shape[0])
            return torch.full(index.shape[:-1], value, device=index.device)
        return self.index_model.log_prob(index)

    def index_of(self, z: torch.Tensor) -> torch.Tensor:
        """The ``(*, num_codes)`` indices of flat ``z (*, code_dim * num_codes)``: each vector's
        nearest code (exactly its code when z came from this codebook)."""
        return nearest(as_vectors(z.detach(), self.code_dim), self.codebook.detach())

    def vectors(self, index: torch.Tensor) -> torch.Tensor:
        """Flat z of ``(*, num_codes)`` indices."""
        return as_flat(self.codebook[index])

    def sample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        with torch.no_grad():
            if self.index_model is None:
                size = self.codebook.shape[0]
                index = torch.randint(size, (*shape, self.num_codes), device=self.codebook.device)
            else:
                index = self.index_model.sample(shape)
            return self.vectors(index)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.index_log_prob(self.index_of(value)).to(value.device)


@register_kl(Quantized, Codes)
def _kl_quantized_codes(q: Quantized, p: Codes) -> torch.Tensor:
    return -p.index_log_prob(q.index).to(q.z_q.device)  # entropy of a point mass: 0

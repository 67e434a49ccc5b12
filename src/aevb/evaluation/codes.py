"""The codes of a VQ-VAE (:mod:`aevb.models.quantized`): which code each datum uses where, and
how much of the codebook is in use."""

from __future__ import annotations

import math

import torch

from ..data.ondisk import Rows
from ..distributions.quantized import Quantized
from ..errors import ConfigError
from ..models.vae import VAE
from ..nn.utils import device_of


@torch.no_grad()
def code_indices(model: VAE, x: Rows, batch_size: int = 1000) -> torch.Tensor:
    """The code index at each place of each datum, ``(n, num_codes)`` long: the q(z|x) of a
    VQ-VAE is the point mass at these codes."""
    model.eval()
    parts = []
    for begin in range(0, x.shape[0], batch_size):
        qz = model.encode(x[begin : begin + batch_size].to(device_of(model)))
        if not isinstance(qz, Quantized):
            raise ConfigError(
                f"this model's q(z|x) is {type(qz).__name__}, not vector-quantized: code "
                "indices exist for VQ-VAE runs (posterior = 'vq') only"
            )
        parts.append(qz.index.cpu())
    return torch.cat(parts)


def code_usage(index: torch.Tensor, num_codes: int) -> dict[str, float]:
    """How much of a codebook of ``num_codes`` the assignments ``index`` (any shape) use.

    Returns:
        ``code_perplexity``: exp of the entropy of the codes' frequencies (``num_codes`` when
        all are used equally, 1 when one code takes everything; van den Oord et al. 2017 and
        later VQ papers report it); ``codes_used``: the fraction of codes used at least once.
    """
    counts = torch.bincount(index.reshape(-1), minlength=num_codes).double()
    frequencies = counts / counts.sum()
    entropy = -(frequencies[counts > 0] * frequencies[counts > 0].log()).sum()
    return {
        "code_perplexity": math.exp(float(entropy)),
        "codes_used": float((counts > 0).double().mean()),
    }

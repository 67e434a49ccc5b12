"""Sentence VAEs (Bowman et al. 2016) and the language model they are measured against.

:func:`text_vae` composes a recurrent encoder (:class:`aevb.nn.recurrent.RNNEncoder`) with a
Gaussian q head, the N(0, I) prior, and an autoregressive p(x|z)
(:class:`SequenceLikelihood` around :class:`aevb.nn.recurrent.RNNDecoder`). With
``latent_dim=0`` it is the language model of the same decoder: no latent variable (formally a
one-dimensional z that the decoder never reads, with q(z|x) = p(z), so the KL is 0 and the ELBO
is log p(x) exactly), trained and evaluated by the same Trainer and estimators.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from ..distributions.sequence import SERIES_FAMILIES, RealSequence, TokenSequence
from ..errors import ConfigError
from ..nn.recurrent import RNNDecoder, RNNEncoder
from .heads import NormalHead
from .priors import StandardNormalPrior
from .vae import VAE


class SequenceLikelihood(nn.Module):
    """``z (*batch, latent_dim) ->`` p(x|z) over sequences: a :class:`TokenSequence` over rows
    of ``length`` token ids, or with ``channels > 0`` a :class:`RealSequence` over rows of
    ``length`` steps of ``channels`` values, each step ``family`` ("normal", "student-t").

    ``word_dropout`` replaces input words by ``<unk>`` while training (Bowman et al. 2016).
    """

    def __init__(
        self,
        decoder: RNNDecoder,
        length: int,
        *,
        word_dropout: float = 0.0,
        channels: int = 0,
        family: str = "normal",
    ) -> None:
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ConfigError(f"word_dropout must be in [0, 1), got {word_dropout}")
        if family not in SERIES_FAMILIES:
            raise ConfigError(f"family must be one of {sorted(SERIES_FAMILIES)}, got {family!r}")
        self.body, self.length, self.word_dropout = decoder, length, word_dropout
        self.channels, self.family = channels, family

    def forward(self, z: torch.Tensor) -> Distribution:
        if self.channels > 0:
            return RealSequence(self.body, z, self.length, self.channels, family=self.family)
        return TokenSequence(self.body, z, self.length, word_dropout=self.word_dropout)


class PriorAsPosterior(nn.Module):
    """q(z|x) = N(0, I) for every x: the encoder of a model whose decoder ignores z."""

    def __init__(self, latent_dim: int = 1) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> Distribution:
        loc = x.new_zeros(x.shape[0], self.latent_dim)
        return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)


def text_vae(
    vocab_size: int,
    length: int,
    latent_dim: int = 32,
    *,
    embed_dim: int = 256,
    hidden_dim: int = 256,
    layers: int = 1,
    cell: str = "lstm",
    bidirectional: bool = True,
    word_dropout: float = 0.0,
    dropout: float = 0.0,
    z_init: bool = True,
    z_every_step: bool = True,
    prior: nn.Module | None = None,
) -> VAE:
    """A sentence VAE over rows of ``length`` token ids (:mod:`aevb.data.text`).

    Args:
        vocab_size: ids 0 .. vocab_size - 1 (``len(vocabulary)``).
        length: ids per row, ``max_length + 1``.
        latent_dim: size of z; 0 gives the language model (no latent; see the module).
        cell, layers, bidirectional: the recurrent cells ("lstm" or "gru"), stacked ``layers``
            deep in encoder and decoder, the encoder reading both ways.
        word_dropout: input words replaced by ``<unk>`` while training, against posterior
            collapse (Bowman et al. 2016).
        dropout: on the decoder's embeddings and outputs (and between stacked layers).
        z_init, z_every_step: z sets the decoder's initial state / is read at every step.
        prior: p(z) (``None``: N(0, I)).

    Example:
        >>> vae = text_vae(100, 12, 8, embed_dim=16, hidden_dim=32)
        >>> x = torch.tensor([[5.0, 6.0, 3.0] + [0.0] * 9])  # two words, </s>, padding
        >>> vae.elbo(x).elbo.shape
        torch.Size([1])
    """
    if latent_dim < 0 or length < 2 or vocab_size < 5:
        raise ConfigError(
            f"text_vae needs latent_dim >= 0, length >= 2 (a word and </s>) and a vocabulary "
            f"beyond the 4 special tokens; got {latent_dim}, {length}, {vocab_size}"
        )
    network: dict[str, Any] = dict(
        embed_dim=embed_dim, hidden_dim=hidden_dim, layers=layers, cell=cell, dropout=dropout
    )
    decoder = RNNDecoder(
        vocab_size, latent_dim, z_init=z_init, z_every_step=z_every_step, **network
    )
    likelihood = SequenceLikelihood(decoder, length, word_dropout=word_dropout)
    return _recurrent_vae(
        likelihood, latent_dim, prior, vocab_size=vocab_size, bidirectional=bidirectional, **network
    )


def series_vae(
    channels: int,
    steps: int,
    latent_dim: int = 16,
    *,
    family: str = "normal",
    embed_dim: int = 64,
    hidden_dim: int = 128,
    layers: int = 1,
    cell: str = "gru",
    bidirectional: bool = True,
    dropout: float = 0.0,
    z_init: bool = True,
    z_every_step: bool = True,
    prior: nn.Module | None = None,
) -> VAE:
    """A VAE over real-valued sequences of up to ``steps`` steps of ``channels`` values (rows
    of ``steps * channels``, NaN after each end; :mod:`aevb.data.series`): the recurrent
    encoder and autoregressive decoder of :func:`text_vae`, each step a diagonal ``family``
    ("normal" or "student-t") over the channels (:class:`RealSequence`); ``latent_dim=0``
    gives the autoregressive model alone.

    Example:
        >>> vae = series_vae(2, 5, 3, hidden_dim=8)
        >>> x = torch.tensor([[0.1, 0.2, 0.3, 0.4] + [float("nan")] * 6])  # two steps
        >>> vae.elbo(x).elbo.shape
        torch.Size([1])
    """
    if latent_dim < 0 or steps < 1 or channels < 1:
        raise ConfigError(
            f"series_vae needs latent_dim >= 0, steps >= 1 and channels >= 1; got "
            f"{latent_dim}, {steps}, {channels}"
        )
    network: dict[str, Any] = dict(
        embed_dim=embed_dim, hidden_dim=hidden_dim, layers=layers, cell=cell, dropout=dropout
    )
    network["channels"] = channels
    decoder = RNNDecoder(
        0, latent_dim, z_init=z_init, z_every_step=z_every_step,
        out_dim=SERIES_FAMILIES[family] * channels, **network,
    )  # fmt: skip
    likelihood = SequenceLikelihood(decoder, steps, channels=channels, family=family)
    return _recurrent_vae(likelihood, latent_dim, prior, bidirectional=bidirectional, **network)


def _recurrent_vae(
    likelihood: SequenceLikelihood, latent_dim: int, prior: nn.Module | None, **encoder: Any
) -> VAE:
    """The VAE around ``likelihood``: a recurrent encoder with a Gaussian head and the prior
    (``None``: N(0, I)); with ``latent_dim = 0``, no latent variable (see the module)."""
    if latent_dim == 0:
        return VAE(PriorAsPosterior(1), likelihood, StandardNormalPrior(1))
    body = likelihood.body
    if body.init is None and not body.z_every_step:
        raise ConfigError("the decoder must read z: set z_init or z_every_step (or both)")
    encoder_body = RNNEncoder(encoder.pop("vocab_size", 0), **encoder)
    head = NormalHead(encoder_body.out_dim, latent_dim)
    return VAE(
        nn.Sequential(encoder_body, head),
        likelihood,
        prior if prior is not None else StandardNormalPrior(latent_dim),
    )


@torch.no_grad()
def homotopies(
    model: VAE, starts: torch.Tensor, ends: torch.Tensor, num_steps: int = 5, *, beam: int = 0
) -> torch.Tensor:
    """Decode points on the line between the codes of two sentences (Bowman et al. 2016,
    Table 8): z = (1 - t) E_q[z|start] + t E_q[z|end], t = 0, 1/(num_steps-1), ..., 1.

    Decoding is greedy (``beam = 0``) or by beam search with ``beam`` beams.

    Returns:
        ``(R, num_steps, length)`` float ids, one row of sentences per ``(start, end)`` pair.
    """
    z_start, z_end = model.encode(starts).mean, model.encode(ends).mean  # (R, D)
    t = torch.linspace(0, 1, num_steps, dtype=z_start.dtype)[None, :, None]
    z = ((1 - t) * z_start[:, None] + t * z_end[:, None]).reshape(-1, z_start.shape[-1])
    px = model.decode(z)
    rows = px.beam_search(beam) if beam > 0 else px.mean  # type: ignore[attr-defined]
    return rows.reshape(len(starts), num_steps, -1)

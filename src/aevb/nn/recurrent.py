"""Recurrent bodies for sequences of token ids (rows of float ids, 0 = padding; see
:mod:`aevb.data.text`): a (bidirectional, stacked) GRU or LSTM encoder that summarizes a
sentence, and an autoregressive decoder that reads z (Bowman et al. 2016, "Generating
sentences from a continuous space").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..errors import ConfigError

CELLS: dict[str, Callable[..., nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}
State = Any  # the cell's state: h (GRU) or (h, c) (LSTM), each (layers, N, hidden)


def _cell(cell: str) -> Callable[..., nn.RNNBase]:
    if cell not in CELLS:
        raise ConfigError(f"unknown recurrent cell {cell!r}; choose one of {sorted(CELLS)}")
    return CELLS[cell]


class RNNEncoder(nn.Module):
    """A sentence to one vector: embeddings, a stacked (bi)directional GRU/LSTM over the real
    steps only (packed), and the last layer's final hidden state(s).

    With ``channels > 0`` it reads real-valued sequences instead: rows of ``T * channels``
    values, steps after a sequence's end NaN, a linear map in place of the embedding.

    Shapes:
        ``x (B, T)`` float ids, 0 = padding (or ``(B, T * channels)`` values, NaN = padding)
        -> ``(B, out_dim)``, ``out_dim = hidden_dim`` times 2 when ``bidirectional``.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        channels: int = 0,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.embed = _input_map(vocab_size, channels, embed_dim)
        self.rnn = _cell(cell)(
            embed_dim,
            hidden_dim,
            layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.out_dim = hidden_dim * self.directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs, real = steps_of(x, self.channels)
        steps = real.sum(-1).clamp(min=1)  # an all-padding row reads one padding step
        packed = pack_padded_sequence(
            self.embed(inputs), steps.cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # (layers * directions, B, H)
        return torch.cat(list(h[-self.directions :]), dim=-1)


class RNNDecoder(nn.Module):
    """The autoregressive body of p(x|z): next-token logits from the tokens so far and z.

    z sets the initial state (``z_init``: h_0 = tanh(W z), c_0 = 0) and/or is concatenated to
    every step's input embedding (``z_every_step``); with ``latent_dim = 0`` it is a plain
    language model. ``dropout`` acts on the input embeddings and on the hidden states before
    the output projection (Zaremba et al. 2014; the setup of He et al. 2019's LSTM decoders).

    With ``channels > 0`` the steps are real vectors (a linear map replaces the embedding)
    and :meth:`logits` gives ``out_dim`` numbers per step (the parameters of each step's
    distribution) in place of the vocabulary's logits.

    Shapes:
        ``z (N, latent_dim)``, ``inputs (N, T)`` long ids (or ``(N, T, channels)``
        values) -> hidden states ``(N, T, H)`` and
        the state after the last step (to continue one step at a time); :meth:`logits` maps
        hidden states ``(..., H)`` to next-token logits ``(..., vocab_size)``, so that a
        caller projects only the steps it needs (the vocabulary's projection dominates).
    """

    def __init__(
        self,
        vocab_size: int,
        latent_dim: int,
        *,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        layers: int = 1,
        cell: str = "lstm",
        z_init: bool = True,
        z_every_step: bool = True,
        dropout: float = 0.0,
        channels: int = 0,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size, self.latent_dim, self.layers = vocab_size, latent_dim, layers
        self.hidden_dim, self.lstm, self.channels = hidden_dim, cell == "lstm", channels
        self.z_every_step = z_every_step and latent_dim > 0
        self.embed = _input_map(vocab_size, channels, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.rnn = _cell(cell)(
            embed_dim + (latent_dim if self.z_every_step else 0),
            hidden_dim,
            layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.init = nn.Linear(latent_dim, layers * hidden_dim) if z_init and latent_dim else None
        self.out = nn.Linear(hidden_dim, out_dim if out_dim is not None else vocab_size)

    def initial_state(self, z: torch.Tensor) -> State:
        """The state before the first token: from z, or zeros."""
        if self.init is None:
            h = z.new_zeros(self.layers, z.shape[0], self.hidden_dim)
        else:
            h = torch.tanh(self.init(z)).reshape(z.shape[0], self.layers, -1).transpose(0, 1)
            h = h.contiguous()
        return (h, torch.zeros_like(h)) if self.lstm else h

    def forward(
        self, z: torch.Tensor, inputs: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        e = self.dropout(self.embed(inputs))
        if self.z_every_step:
            e = torch.cat([e, z[:, None, :].expand(-1, inputs.shape[1], -1).to(e.dtype)], -1)
        h, state = self.rnn(e, self.initial_state(z) if state is None else state)
        return self.dropout(h), state

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)


def _input_map(vocab_size: int, channels: int, embed_dim: int) -> nn.Module:
    """Token ids -> embeddings, or (``channels > 0``) real step vectors -> the same width."""
    if channels > 0:
        return nn.Linear(channels, embed_dim)
    return nn.Embedding(vocab_size, embed_dim, padding_idx=0)


def steps_of(x: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a sequence model's data as steps, and which steps are real.

    Token rows ``(B, T)`` (0 = padding) give long ids ``(B, T)``; with ``channels > 0``, rows
    of ``T * channels`` values (NaN after the end) give ``(B, T, channels)`` values with the
    padding set to 0. The mask ``(B, T)`` is True at real steps.
    """
    if channels <= 0:
        ids = x.long()
        return ids, ids != 0
    steps = x.reshape(*x.shape[:-1], -1, channels)
    real = ~torch.isnan(steps).any(-1)
    return torch.nan_to_num(steps, nan=0.0), real

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

    Shapes:
        ``x (B, T)`` float ids, 0 = padding -> ``(B, out_dim)``, ``out_dim = hidden_dim``
        times 2 when ``bidirectional``.
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
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
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
        ids = x.long()
        steps = (ids != 0).sum(-1).clamp(min=1)  # an all-padding row reads one padding step
        packed = pack_padded_sequence(
            self.embed(ids), steps.cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # (layers * directions, B, H)
        return torch.cat(list(h[-self.directions :]), dim=-1)


class RNNDecoder(nn.Module):
    """The autoregressive body of p(x|z): next-token logits from the tokens so far and z.

    z sets the initial state (``z_init``: h_0 = tanh(W z), c_0 = 0) and/or is concatenated to
    every step's input embedding (``z_every_step``); with ``latent_dim = 0`` it is a plain
    language model. Embedding ``dropout`` as Bowman et al. trained.

    Shapes:
        ``z (N, latent_dim)``, ``inputs (N, T)`` long ids -> hidden states ``(N, T, H)`` and
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
    ) -> None:
        super().__init__()
        self.vocab_size, self.latent_dim, self.layers = vocab_size, latent_dim, layers
        self.hidden_dim, self.lstm = hidden_dim, cell == "lstm"
        self.z_every_step = z_every_step and latent_dim > 0
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.rnn = _cell(cell)(
            embed_dim + (latent_dim if self.z_every_step else 0),
            hidden_dim,
            layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.init = nn.Linear(latent_dim, layers * hidden_dim) if z_init and latent_dim else None
        self.out = nn.Linear(hidden_dim, vocab_size)

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
        return h, state

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)

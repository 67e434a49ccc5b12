"""p(x|z) over a sentence of token ids: an autoregressive distribution (Bowman et al. 2016).

A datum is a row of ``length`` float ids ``[w_1, ..., w_n, </s>, <pad>, ...]``
(:mod:`aevb.data.text`); log p(x|z) = sum_{t <= n + 1} log p(x_t | x_<t, z) over the real
steps, ``</s>`` included and padding not, so appending padding changes nothing. The decoder is
any module ``(z (N, D), inputs (N, T) long, state) -> (h (N, T, H), state)`` with
``logits(h) -> (..., V)`` and a ``vocab_size`` (:class:`aevb.nn.recurrent.RNNDecoder`); it is
run with teacher forcing, the vocabulary's projection only at real steps, in chunks of rows
when no gradient is needed (IS with thousands of proposals).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Normal, StudentT, constraints

# The ids aevb.data.text gives its special tokens (data and distributions do not import each
# other; tests/test_text.py checks the two agree).
PAD, UNK, BOS, EOS = 0, 1, 2, 3


class TokenSequence(Distribution):
    """p(x|z) = prod_t p(x_t | x_<t, z) over rows of ``length`` token ids.

    Args:
        decoder: the autoregressive body (see the module's docstring).
        z: ``(*batch, latent_dim)``; the distribution's batch shape is ``batch``.
        length: ids per row (``max_length + 1``): at most ``length - 1`` words, then ``</s>``.
        word_dropout: while ``decoder.training``, each input word is replaced by ``<unk>``
            with this probability (Bowman et al. 2016, section 3.2), so that the decoder leans
            on z; log-probabilities in evaluation use the true words.
        chunk_rows: rows decoded at once when no gradient is taken.

    ``sample()`` draws ancestrally, ``mean`` is the greedy decoding (the most probable word at
    each step: a stand-in for the mode, which the data's mean has no meaning for), and
    :meth:`beam_search` keeps the ``width`` most probable prefixes. The support is the rows of
    at most ``length - 1`` words: ``</s>`` is certain at the last place, and ``<pad>`` and
    ``<s>`` are never predicted, so the probabilities of all rows sum to one.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}

    def __init__(
        self,
        decoder: Any,
        z: torch.Tensor,
        length: int,
        *,
        word_dropout: float = 0.0,
        chunk_rows: int = 512,
    ) -> None:
        self.decoder, self.z, self.length = decoder, z, length
        self.vocab_size: int = decoder.vocab_size
        self.word_dropout, self.chunk_rows = word_dropout, chunk_rows
        super().__init__(z.shape[:-1], torch.Size([length]), validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.vocab_size - 1)

    def expand(self, batch_shape: Any, _instance: Any = None) -> TokenSequence:
        z = self.z.expand(*batch_shape, self.z.shape[-1])
        return TokenSequence(
            self.decoder, z, self.length, word_dropout=self.word_dropout, chunk_rows=self.chunk_rows
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(self.batch_shape, value.shape[:-1])
        ids = value.expand(*shape, value.shape[-1]).reshape(-1, value.shape[-1]).long()
        z = self.z.expand(*shape, self.z.shape[-1]).reshape(-1, self.z.shape[-1])
        ids = ids[:, : max(int((ids != PAD).sum(-1).max()), 1)]  # all-padding columns: none
        if torch.is_grad_enabled():
            return self._log_prob(z, ids).reshape(shape)
        step = self.chunk_rows
        parts = [self._log_prob(z[i : i + step], ids[i : i + step]) for i in range(0, len(z), step)]
        return torch.cat(parts).reshape(shape)

    def _log_prob(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([torch.full_like(ids[:, :1], BOS), ids[:, :-1]], dim=1)
        if self.word_dropout > 0 and self.decoder.training:
            drop = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            drop[:, 0] = False  # <s> stays: it starts every sentence
            inputs = inputs.masked_fill(drop & (inputs != PAD), UNK)
        h, _ = self.decoder(z, inputs)
        real = ids != PAD  # the projection on the vocabulary at real steps only
        row, place = real.nonzero(as_tuple=True)  # in the order of h[real]
        log_p = self._log_p(self.decoder.logits(h[real]), place)
        per_step = log_p.gather(-1, ids[real][:, None])[:, 0]
        return per_step.new_zeros(ids.shape[0]).index_add(0, row, per_step)

    @property
    def mean(self) -> torch.Tensor:
        return self._generate(torch.Size(), greedy=True)

    @property
    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        return self._generate(torch.Size(sample_shape), greedy=False)

    def _log_p(self, logits: torch.Tensor, place: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the next id from ``logits (n, V)`` at row places ``place (n,)``:
        never ``<pad>`` or ``<s>``, and ``</s>`` for certain at the row's last place, so that
        the rows of the support have probabilities summing to one."""
        logits = logits.float().clone()
        logits[:, [PAD, BOS]] = -torch.inf
        last = place == self.length - 1
        if bool(last.any()):
            only_end = torch.arange(logits.shape[1], device=logits.device) == EOS
            logits[last] = torch.where(only_end, 0.0, -torch.inf)
        return logits.log_softmax(-1)

    @torch.no_grad()
    def _generate(self, sample_shape: torch.Size, *, greedy: bool) -> torch.Tensor:
        z = self.z.expand(*sample_shape, *self.z.shape).reshape(-1, self.z.shape[-1])
        out = torch.zeros(len(z), self.length, dtype=torch.long, device=z.device)
        token = torch.full((len(z), 1), BOS, dtype=torch.long, device=z.device)
        done = torch.zeros(len(z), dtype=torch.bool, device=z.device)
        state = None
        for t in range(self.length):
            h, state = self.decoder(z, token, state)
            log_p = self._log_p(
                self.decoder.logits(h[:, -1]), torch.full((len(z),), t, device=z.device)
            )
            step = log_p.argmax(-1) if greedy else torch.multinomial(log_p.exp(), 1)[:, 0]
            step = step.masked_fill(done, PAD)
            out[:, t], done = step, done | (step == EOS)
            token = step[:, None]
            if bool(done.all()):
                break
        return out.to(self.z.dtype).reshape(*sample_shape, *self.batch_shape, self.length)

    @torch.no_grad()
    def beam_search(self, width: int = 5) -> torch.Tensor:
        """The most probable row found by beam search with ``width`` beams per z (total
        log-probability, no length normalization). Returns ``(*batch, length)`` float ids."""
        z = self.z.reshape(-1, self.z.shape[-1])
        n, v = len(z), self.vocab_size
        z_beams = z.repeat_interleave(width, dim=0)
        scores = torch.full((n, width), -torch.inf, device=z.device)
        scores[:, 0] = 0.0  # one live beam to start: the others would duplicate it
        rows = torch.zeros(n, width, 0, dtype=torch.long, device=z.device)
        done = torch.zeros(n, width, dtype=torch.bool, device=z.device)
        token = torch.full((n * width, 1), BOS, dtype=torch.long, device=z.device)
        padding = torch.full((v,), -torch.inf, device=z.device)
        padding[PAD] = 0.0  # a finished beam continues with padding at no cost
        state = None
        for t in range(self.length):
            h, state = self.decoder(z_beams, token, state)
            place = torch.full((len(z_beams),), t, device=z.device)
            log_p = self._log_p(self.decoder.logits(h[:, -1]), place).reshape(n, width, v)
            log_p = torch.where(done[..., None], padding, log_p)
            scores, best = (scores[..., None] + log_p).reshape(n, -1).topk(width, dim=-1)
            beam, step = best // v, best % v
            rows = torch.cat(
                [rows.gather(1, beam[..., None].expand(-1, -1, t)), step[..., None]], -1
            )
            done = done.gather(1, beam) | (step == EOS)
            order = (torch.arange(n, device=z.device)[:, None] * width + beam).reshape(-1)
            state = (
                tuple(s[:, order] for s in state) if isinstance(state, tuple) else state[:, order]
            )
            token = step.reshape(-1, 1)
            if bool(done.all()):
                break
        best_rows = rows[torch.arange(n), scores.argmax(-1)]
        out = torch.zeros(n, self.length, dtype=torch.long, device=z.device)
        out[:, : best_rows.shape[1]] = best_rows
        return out.to(self.z.dtype).reshape(*self.batch_shape, self.length)


SERIES_FAMILIES = {"normal": 2, "student-t": 3}  # parameters per channel of each step


class RealSequence(Distribution):
    """p(x|z) = prod_t p(x_t | x_<t, z) over real-valued sequences (time series).

    A datum is a row of ``steps * channels`` values, step after step, NaN after the
    sequence's end (so sequences of any length up to ``steps`` share one row width); each
    step is a diagonal Normal or Student-t over the channels, its parameters from the
    decoder (``logits(h)``: ``channels`` locations, ``channels`` scales through softplus,
    and for ``"student-t"`` ``channels`` degrees of freedom, 2 + softplus, so the variance is
    finite). The first step reads zeros, later ones the previous step's values (teacher
    forcing). The length of a sequence is taken as given, not modelled; log p(x|z) sums
    over its real steps only.

    ``sample()`` and ``mean`` run the decoder step by step on its own draws (or means) for
    all ``steps`` steps.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    handles_missing = True  # NaN marks the padding, which data checks must let through

    def __init__(
        self,
        decoder: Any,
        z: torch.Tensor,
        steps: int,
        channels: int,
        *,
        family: str = "normal",
        min_scale: float = 1e-3,
    ) -> None:
        if family not in SERIES_FAMILIES:
            raise ValueError(f"family must be one of {sorted(SERIES_FAMILIES)}, got {family!r}")
        self.decoder, self.z, self.steps, self.channels = decoder, z, steps, channels
        self.family, self.min_scale = family, min_scale
        super().__init__(z.shape[:-1], torch.Size([steps * channels]), validate_args=False)

    @property
    def support(self) -> Any:  # real values, and NaN after the end: not one constraint
        return None

    def expand(self, batch_shape: Any, _instance: Any = None) -> RealSequence:
        z = self.z.expand(*batch_shape, self.z.shape[-1])
        return RealSequence(self.decoder, z, self.steps, self.channels, family=self.family)

    def step_distribution(self, params: torch.Tensor) -> Distribution:
        """Each step's distribution over the channels from ``params (..., k * channels)``."""
        c = self.channels
        params = params.float()
        loc = params[..., :c]
        scale = F.softplus(params[..., c : 2 * c]) + self.min_scale
        if self.family == "normal":
            return Normal(loc, scale, validate_args=False)
        return StudentT(2.0 + F.softplus(params[..., 2 * c :]), loc, scale, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(self.batch_shape, value.shape[:-1])
        x = value.expand(*shape, value.shape[-1]).reshape(-1, self.steps, self.channels)
        z = self.z.expand(*shape, self.z.shape[-1]).reshape(-1, self.z.shape[-1])
        real = ~torch.isnan(x).any(-1)  # (N, T)
        x = torch.nan_to_num(x, nan=0.0)
        previous = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        h, _ = self.decoder(z, previous)
        log_p = self.step_distribution(self.decoder.logits(h)).log_prob(x).sum(-1)
        return log_p.masked_fill(~real, 0.0).sum(-1).reshape(shape)

    @property
    def mean(self) -> torch.Tensor:
        return self._generate(torch.Size(), mean=True)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        return self._generate(torch.Size(sample_shape), mean=False)

    @torch.no_grad()
    def _generate(self, sample_shape: torch.Size, *, mean: bool) -> torch.Tensor:
        z = self.z.expand(*sample_shape, *self.z.shape).reshape(-1, self.z.shape[-1])
        step = z.new_zeros(len(z), 1, self.channels)
        state, out = None, []
        for _ in range(self.steps):
            h, state = self.decoder(z, step, state)
            p = self.step_distribution(self.decoder.logits(h[:, -1]))
            value = p.mean if mean else p.sample()
            out.append(value)
            step = value[:, None].to(z.dtype)
        values = torch.stack(out, dim=1).to(self.z.dtype)
        return values.reshape(*sample_shape, *self.batch_shape, self.steps * self.channels)

"""Text: the vocabulary's round trip, the sequence likelihood against a float64 step-by-step
LSTM, padding that changes nothing, sampling and beam search against enumeration, and the
language model's exact log p(x)."""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest
import torch

from aevb import ConfigError, DataError, Trainer, log_px
from aevb.data import text
from aevb.distributions import sequence
from aevb.inference.objectives import kl_annealing
from aevb.models.sequence import text_vae
from aevb.training.aggressive import Aggressive

LINES = ["To be, or not to be: that is the question.", "Whether 'tis nobler in the mind"]


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def _lstm_log_p(vae, z: torch.Tensor, row: torch.Tensor) -> float:
    """log p(row | z) by the LSTM equations in float64, one step at a time."""
    body = vae.decoder.body
    weights = {name: p.detach().double().numpy() for name, p in body.named_parameters()}
    h = np.tanh(weights["init.weight"] @ z.double().numpy() + weights["init.bias"])
    c = np.zeros_like(h)
    total, previous = 0.0, sequence.BOS
    for token in row.long().tolist():
        if token == sequence.PAD:
            break
        u = np.concatenate([weights["embed.weight"][previous], z.double().numpy()])
        gates = (
            weights["rnn.weight_ih_l0"] @ u
            + weights["rnn.bias_ih_l0"]
            + weights["rnn.weight_hh_l0"] @ h
            + weights["rnn.bias_hh_l0"]
        )
        i, f, g, o = np.split(gates, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        logits = weights["out.weight"] @ h + weights["out.bias"]
        logits[[sequence.PAD, sequence.BOS]] = -np.inf  # never predicted
        total += logits[token] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        previous = token
    return total


def test_special_ids_agree_between_data_and_distribution() -> None:
    ids = [text.SPECIALS.index(t) for t in (text.PAD, text.UNK, text.BOS, text.EOS)]
    assert ids == [sequence.PAD, sequence.UNK, sequence.BOS, sequence.EOS]


def test_the_vocabulary_round_trip_and_its_file(tmp_path) -> None:
    vocab = text.Vocabulary.build(LINES, max_size=100)
    encoded = vocab.encode(LINES, max_length=20)
    assert encoded.ids.shape == (2, 21) and encoded.unknown == 0 and encoded.truncated == 0
    assert vocab.decode(encoded.ids) == [" ".join(vocab.tokens(line)) for line in LINES]
    assert vocab.tokens(LINES[0])[:4] == ["To", "be", ",", "or"]
    assert text.lengths(encoded.ids).tolist() == [len(vocab.tokens(x)) + 1 for x in LINES]
    vocab.save(tmp_path / "vocab.json")
    again = text.Vocabulary.load(tmp_path / "vocab.json")
    assert again == vocab and torch.equal(again.encode(LINES).ids, vocab.encode(LINES).ids)
    cut = vocab.encode(["to be or not to be , Hamlet"], max_length=3)
    assert cut.truncated == 1 and cut.unknown == 1  # "Hamlet", counted though cut off
    assert "1 lines cut to 3 words" in cut.report() and "read as <unk>" in cut.report()
    assert vocab.decode(cut.ids) == ["to be or"]
    assert vocab.decode(vocab.encode(["Hamlet is the question"]).ids) == ["<unk> is the question"]


def test_bad_text_is_refused_or_reported(tmp_path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match="no text"):
        text.read_lines(empty)
    with pytest.raises(DataError, match="no such file"):
        text.read_lines(tmp_path / "missing.txt")
    binary = tmp_path / "lines.txt.gz"
    binary.write_bytes(gzip.compress(b"\xff\xfe\x00 not utf-8"))
    with pytest.raises(DataError, match="not UTF-8"):
        text.read_lines(binary)
    gapped = tmp_path / "gapped.txt.gz"
    gapped.write_bytes(gzip.compress(b"one line\n\n two lines \n"))
    assert text.read_lines(gapped) == (["one line", "two lines"], 1)
    not_vocab = tmp_path / "vocab.json"
    not_vocab.write_text('{"hello": 1}')
    with pytest.raises(DataError, match="not a vocabulary"):
        text.Vocabulary.load(not_vocab)


def test_the_likelihood_is_the_lstm_step_by_step_and_padding_changes_nothing() -> None:
    torch.manual_seed(0)
    vae = text_vae(11, 6, 3, embed_dim=4, hidden_dim=5)
    z = torch.randn(2, 3)
    x = torch.tensor([[4.0, 7.0, 10.0, 3.0, 0.0, 0.0], [5.0, 3.0, 0.0, 0.0, 0.0, 0.0]])
    px = vae.decode(z)
    got = px.log_prob(x)
    expected = [_lstm_log_p(vae, z[i], x[i]) for i in range(2)]
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5)
    padded = torch.cat([x, torch.zeros(2, 4)], dim=1)
    assert torch.equal(px.log_prob(padded), got)  # padding: no step, no probability
    # broadcasting as IS uses it: (k, B) proposals against (B, T) data, in chunks or not
    zs = torch.randn(7, 2, 3)
    with torch.no_grad():
        chunked = sequence.TokenSequence(vae.decoder.body, zs, 6, chunk_rows=3).log_prob(x)
    np.testing.assert_allclose(chunked, vae.decode(zs).log_prob(x).detach(), rtol=1e-6)
    expanded = sequence.TokenSequence(vae.decoder.body, zs[:, :1], 6, chunk_rows=3).expand((7, 2))
    assert expanded.chunk_rows == 3 and expanded.batch_shape == (7, 2)


def test_dropout_acts_on_the_decoders_outputs_in_training_only() -> None:
    torch.manual_seed(0)
    vae = text_vae(11, 6, 3, embed_dim=4, hidden_dim=50, dropout=0.5)
    z, x = torch.randn(1, 3), torch.tensor([[4.0, 7.0, 10.0, 3.0, 0.0, 0.0]])
    h, _ = vae.decoder.body(z, x.long())
    assert 0.4 < float((h == 0).float().mean()) < 0.6  # the outputs, not only the inputs
    assert not torch.equal(vae.decode(z).log_prob(x), vae.decode(z).log_prob(x))
    vae.eval()  # evaluation is the plain LSTM
    got = vae.decode(z).log_prob(x).detach().numpy()
    np.testing.assert_allclose(got, [_lstm_log_p(vae, z[0], x[0])], rtol=1e-5)


def test_one_step_is_a_categorical_of_z() -> None:
    """A one-token row: the sequence model is Categorical(softmax(W h_1(z))) over the words
    and </s> (<pad> and <s> are never predicted)."""
    torch.manual_seed(1)
    vae = text_vae(9, 3, 2, embed_dim=3, hidden_dim=4)
    z = torch.randn(5, 2)
    x = torch.cat([torch.randint(3, 9, (5, 1)), torch.zeros(5, 2)], dim=1).float()
    body = vae.decoder.body
    h, _ = body.rnn(torch.cat([body.embed.weight[[sequence.BOS] * 5], z], -1)[:, None],
                    body.initial_state(z))  # fmt: skip
    logits = body.logits(h[:, 0]).index_fill(-1, torch.tensor([0, 2]), -torch.inf)
    expected = torch.distributions.Categorical(logits=logits).log_prob(x[:, 0].long())
    torch.testing.assert_close(vae.decode(z).log_prob(x), expected)


def _all_rows(vocab_size: int, length: int) -> torch.Tensor:
    """Every row of the support: up to length - 1 words (<unk> or ids 4..), </s>, padding."""
    rows = []
    for n in range(length):
        for words in itertools.product([sequence.UNK, *range(4, vocab_size)], repeat=n):
            rows.append([*words, sequence.EOS] + [sequence.PAD] * (length - n - 1))
    return torch.tensor(rows, dtype=torch.float32)


def test_sampling_greedy_and_beam_search_against_enumeration() -> None:
    torch.manual_seed(2)
    vae = text_vae(7, 3, 2, embed_dim=4, hidden_dim=8, cell="gru").eval()
    rows = _all_rows(7, 3)  # 1 + 4 + 16 sentences
    z = torch.randn(1, 2)
    px = vae.decode(z)
    with torch.no_grad():
        log_p = px.log_prob(rows[:, None, :])[:, 0]
    probs = log_p.exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)  # a proper distribution on rows
    best = rows[int(log_p.argmax())]
    assert torch.equal(px.beam_search(width=len(rows))[0], best)  # beam = every prefix
    assert torch.equal(px.beam_search(width=1)[0], px.mean[0])  # one beam is greedy
    draws = px.sample((4000,))[:, 0]
    index = {tuple(r.tolist()): i for i, r in enumerate(rows)}
    counts = np.bincount([index[tuple(r.tolist())] for r in draws], minlength=len(rows))
    expected = 4000 * probs.numpy()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.3  # 20 degrees of freedom: p = 0.001 here


def test_the_language_model_is_exact_and_a_vae_trains_on_shakespeare(shakespeare) -> None:
    lines = shakespeare[:3000]
    vocab = text.Vocabulary.build(lines, max_size=1500)
    x = vocab.encode(lines, max_length=16).ids
    torch.manual_seed(0)
    lm = text_vae(len(vocab), 17, 0, embed_dim=16, hidden_dim=32)
    terms = lm.elbo(x[:20])
    assert torch.equal(terms.kl, torch.zeros(20))
    np.testing.assert_allclose(log_px(lm, x[:20], 10).log_px, terms.elbo.detach(), rtol=1e-6)
    vae = text_vae(len(vocab), 17, 4, embed_dim=16, hidden_dim=32, word_dropout=0.5)
    history = Trainer(vae, max_epochs=2, progress=False).fit(x[:2700], x[2700:])
    assert history[-1]["valid_elbo"] > history[0]["valid_elbo"]
    estimate = log_px(vae.eval(), x[2700:2750], 50)
    assert (estimate.log_px.mean() >= vae.elbo(x[2700:2750]).elbo.mean().item() - 0.5).item()
    assert all(len(line.split()) <= 16 for line in vocab.decode(vae.sample(5)))


def test_kl_schedules() -> None:
    assert [kl_annealing(s, 100) for s in (0, 50, 100, 150)] == [0.0, 0.5, 1.0, 1.0]
    sigmoid = [kl_annealing(s, 100, "sigmoid") for s in (0, 50, 100)]
    assert sigmoid == pytest.approx([1 / (1 + np.exp(5)), 0.5, 1.0])
    cyclical = [kl_annealing(s, 100, "cyclical", cycles=2) for s in (0, 25, 50, 99, 100, 125, 200)]
    assert cyclical == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0])  # Fu et al., R = 0.5
    assert kl_annealing(7, 0, "cyclical") == 1.0
    with pytest.raises(ConfigError, match="kl_schedule"):
        Trainer(text_vae(9, 3, 2), kl_schedule="cosine")


def test_aggressive_steps_move_the_encoder_alone() -> None:
    torch.manual_seed(3)
    vae = text_vae(9, 4, 2, embed_dim=4, hidden_dim=8)
    x = torch.tensor([[4.0, 5.0, 3.0, 0.0], [6.0, 3.0, 0.0, 0.0]]).repeat(10, 1)
    aggressive = Aggressive(vae, max_steps=7, window=3)
    encoder = [p.detach().clone() for p in vae.encoder.parameters()]
    decoder = [p.detach().clone() for p in vae.decoder.parameters()]
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)

    def step(batch: torch.Tensor) -> torch.Tensor:
        loss = -vae.elbo(batch).elbo.mean()
        optimizer.zero_grad()
        loss.backward()
        aggressive.only_encoder()
        optimizer.step()
        return loss

    taken = aggressive.encoder_steps(step, x, 5, torch.Generator().manual_seed(0))
    assert 3 <= taken <= 7
    assert all(torch.equal(a, b) for a, b in zip(decoder, vae.decoder.parameters(), strict=True))
    assert not any(
        torch.equal(a, b) for a, b in zip(encoder, vae.encoder.parameters(), strict=True)
    )
    record = aggressive.end_epoch(vae, x)  # the first epoch's I(x; z) rises from -inf
    assert record["aggressive"] and record["valid_mutual_info"] == aggressive.mutual_info
    aggressive.mutual_info += 1.0  # as if the last epoch had more: the phase ends
    assert not aggressive.end_epoch(vae, x)["aggressive"] and not aggressive.active

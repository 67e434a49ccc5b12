"""Real-valued sequences: the step-by-step likelihood against a float64 GRU with scipy's
densities, padding that changes nothing, one step as a plain Gaussian of z, the three file
formats giving the same rows, the Student-t head against scipy, and runs from the command
line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from commands import aevb
from scipy import stats

from aevb import DataError, StudentTHead, load_series, log_px, series_vae
from aevb.distributions.sequence import RealSequence

NAN = float("nan")


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def _gru_log_p(vae, z: torch.Tensor, row: np.ndarray, channels: int, family: str) -> float:
    """log p(row | z) by the GRU equations in float64 and scipy's densities."""
    body = vae.decoder.body
    w = {name: p.detach().double().numpy() for name, p in body.named_parameters()}
    zz = z.double().numpy()
    h = np.tanh(w["init.weight"] @ zz + w["init.bias"])
    previous, total = np.zeros(channels), 0.0
    for step in row.reshape(-1, channels):
        if np.isnan(step).any():
            break
        u = np.concatenate([w["embed.weight"] @ previous + w["embed.bias"], zz])
        gi = w["rnn.weight_ih_l0"] @ u + w["rnn.bias_ih_l0"]
        gh = w["rnn.weight_hh_l0"] @ h + w["rnn.bias_hh_l0"]
        r = _sigmoid(gi[: len(h)] + gh[: len(h)])
        update = _sigmoid(gi[len(h) : 2 * len(h)] + gh[len(h) : 2 * len(h)])
        n = np.tanh(gi[2 * len(h) :] + r * gh[2 * len(h) :])
        h = (1 - update) * n + update * h
        params = w["out.weight"] @ h + w["out.bias"]
        loc, scale = params[:channels], np.logaddexp(0, params[channels : 2 * channels]) + 1e-3
        if family == "normal":
            total += stats.norm.logpdf(step, loc, scale).sum()
        else:
            df = 2 + np.logaddexp(0, params[2 * channels :])
            total += stats.t.logpdf(step, df, loc, scale).sum()
        previous = step
    return total


@pytest.mark.parametrize("family", ["normal", "student-t"])
def test_the_likelihood_is_the_gru_step_by_step_and_padding_changes_nothing(family) -> None:
    torch.manual_seed(0)
    vae = series_vae(2, 4, 3, family=family, embed_dim=5, hidden_dim=6, cell="gru")
    z = torch.randn(2, 3)
    x = torch.tensor(
        [[0.3, -1.0, 0.5, 2.0, NAN, NAN, NAN, NAN], [1.0, 0.0, 0.1, 0.2, 0.3, 0.4, -2, 1]]
    )
    got = vae.decode(z).log_prob(x).detach().numpy()
    expected = [_gru_log_p(vae, z[i], x[i].numpy(), 2, family) for i in range(2)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # the first row in a model of two steps: the same number (NaN steps take no part)
    short = RealSequence(vae.decoder.body, z[:1], 2, 2, family=family).log_prob(x[:1, :4])
    np.testing.assert_allclose(short.detach().numpy(), got[:1], rtol=1e-6)


def test_one_step_is_a_gaussian_of_z() -> None:
    torch.manual_seed(1)
    vae = series_vae(3, 1, 2, embed_dim=4, hidden_dim=5)
    z, x = torch.randn(4, 2), torch.randn(4, 3)
    body = vae.decoder.body
    h, _ = body(z, torch.zeros(4, 1, 3))
    params = body.logits(h[:, 0])
    scale = torch.nn.functional.softplus(params[:, 3:]) + 1e-3
    expected = torch.distributions.Normal(params[:, :3], scale).log_prob(x).sum(-1)
    torch.testing.assert_close(vae.decode(z).log_prob(x), expected)
    assert log_px(vae, x, 10).log_px.shape == (4,)


def test_the_three_formats_give_the_same_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lengths = [3, 1, 4]
    sequences = [rng.standard_normal((n, 2)).astype(np.float32) for n in lengths]
    padded = np.full((3, 4, 2), np.nan, np.float32)
    for i, s in enumerate(sequences):
        padded[i, : len(s)] = s
    np.save(tmp_path / "a.npy", padded)
    np.savez(tmp_path / "b.npz", values=np.concatenate(sequences), lengths=lengths)
    long = pd.DataFrame(
        [(f"s{i}", t, *s[t]) for i, s in enumerate(sequences) for t in range(len(s))],
        columns=["sequence", "time", "u", "v"],
    ).sample(frac=1, random_state=0)  # rows in any order: sorted by sequence and time
    long.to_csv(tmp_path / "c.csv", index=False)
    datasets = [load_series(tmp_path / name) for name in ("a.npy", "b.npz", "c.csv")]
    for dataset in datasets:
        assert dataset.sequence_shape == (4, 2)
        np.testing.assert_array_equal(dataset.x.numpy(), padded.reshape(3, 8))
    gap = padded.copy()
    gap[0, 1] = np.nan  # a NaN step with values after it
    np.save(tmp_path / "gap.npy", gap)
    with pytest.raises(DataError, match="after a NaN step"):
        load_series(tmp_path / "gap.npy")
    long.rename(columns={"time": "t"}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="no column 'time'"):
        load_series(tmp_path / "d.csv")


def test_the_student_t_head_against_scipy() -> None:
    torch.manual_seed(2)
    head = StudentTHead(4, 3)
    h, x = torch.randn(5, 4), torch.randn(5, 3)
    p = head(h).base_dist
    expected = stats.t.logpdf(x, p.df.detach(), p.loc.detach(), p.scale.detach()).sum(-1)
    np.testing.assert_allclose(head(h).log_prob(x).detach().numpy(), expected, rtol=1e-5)
    assert bool((p.df > 2).all())


def test_sequences_from_the_command_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        phase = rng.uniform(0, 6.28)
        for t in range(int(rng.integers(4, 12))):
            rows.append((i, t, np.sin(0.5 * t + phase), np.cos(0.5 * t + phase)))
    pd.DataFrame(rows, columns=["id", "t", "x", "y"]).to_csv(tmp_path / "s.csv", index=False)
    options = ["--data", tmp_path / "s.csv", "--sequences", "--sequence-column", "id"]
    options += ["--time-column", "t", "--body", "rnn", "--likelihood", "normal"]
    options += ["--latent-dim", "2", "--hidden-dims", "16", "--embed-dim", "8", "--epochs", "2"]
    run = tmp_path / "run"
    trained = aevb("train", *options, "--out", run)
    assert trained.returncode == 0, trained.stderr
    facts = json.loads((run / "run.json").read_text())
    assert facts["sequence_shape"] == [11, 2] and (run / "series.png").exists()
    assert aevb("sample", run, "--num", "3", "--out", tmp_path / "s.npy").returncode == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 22)
    evaluated = aevb(
        "evaluate", run, "--data", tmp_path / "s.csv", "--k", "10", "--out", tmp_path / "e.json"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["log_px"] > -200 and summary["num_examples"] == 120
    real_values = 2 * len(rows) / 120  # per sequence, not the padded 11 x 2
    expected_bits = -summary["log_px"] / (real_values * np.log(2))
    assert summary["bits_per_dim"] == pytest.approx(expected_bits, rel=1e-9)
    short = tmp_path / "short.csv"  # new sequences, shorter than the run's: padded with NaN
    table = pd.DataFrame([(0, 0, 0.1, 0.2), (0, 1, 0.3, 0.4)], columns=["id", "t", "x", "y"])
    table.to_csv(short, index=False)
    encoded = aevb("encode", run, "--data", short, "--out", tmp_path / "codes.csv")
    assert encoded.returncode == 0, encoded.stderr
    assert np.loadtxt(tmp_path / "codes.csv", delimiter=",", skiprows=1).shape == (4,)
    table.to_csv(short)  # the index written as a third column: named, not a shape error
    bad = aevb("encode", run, "--data", short, "--out", tmp_path / "codes.csv")
    assert bad.returncode == 2 and "sequences of 2 channels, these have 3" in bad.stderr
    bad = aevb(
        "train",
        *options[:-8],
        "--body",
        "rnn",
        "--likelihood",
        "bernoulli",
        "--out",
        tmp_path / "bad",
    )
    assert bad.returncode == 2 and "'normal' or 'student-t'" in bad.stderr
    bad = aevb("train", *options[:7], "--out", tmp_path / "bad")  # sequences, an MLP body
    assert bad.returncode == 2 and "body = 'rnn'" in bad.stderr
    assert not (tmp_path / "bad").exists()

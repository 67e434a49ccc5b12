"""Text runs from the command line: train on a file of lines, then sample, reconstruct,
encode, homotopies, evaluate in nats per line and perplexity per word, resume; bad text
and mismatched vocabularies refused with the fix."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from commands import aevb

from aevb import Vocabulary

WORDS = {"the", "a", "king", "queen", "lord", "lady", "speaks", "runs", "sleeps", "old", "young"}
WORDS |= {"good"}


def _corpus(path: Path, num: int = 400) -> list[str]:
    """Lines of a small grammar: "the old king speaks ." and the like, gzipped."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(num):
        subject = rng.choice(["king", "queen", "lord", "lady"])
        adjective = rng.choice(["old", "young", "good"])
        verb = rng.choice(["speaks", "runs", "sleeps"])
        lines.append(f"{rng.choice(['the', 'a'])} {adjective} {subject} {verb} .")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n\n").encode()))
    return lines


TRAIN = ["--body", "rnn", "--latent-dim", "4", "--hidden-dims", "32", "--embed-dim", "16"]
TRAIN += ["--max-length", "8", "--epochs", "3", "--kl-warmup-epochs", "1", "--free-bits", "0.5"]


def test_a_text_run_end_to_end(tmp_path: Path) -> None:
    lines = _corpus(tmp_path / "lines.txt.gz")
    run = tmp_path / "run"
    trained = aevb("train", "--data", tmp_path / "lines.txt.gz", *TRAIN, "--out", run)
    assert trained.returncode == 0, trained.stderr
    assert "1 empty lines skipped" in trained.stderr  # counted and said, not silent
    facts = json.loads((run / "run.json").read_text())
    vocabulary = Vocabulary.load(run / "vocab.json")
    assert facts["vocab_size"] == len(vocabulary) == 4 + len(WORDS) + 1  # specials, words, "."
    assert facts["num_train"] + facts["num_valid"] + facts["num_test"] == len(lines)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"valid_kl", "valid_active_units", "valid_mutual_info"} <= set(r) for r in history)
    sentences = (run / "sentences.txt").read_text()
    assert "Homotopies" in sentences and "-> " in sentences
    assert "Homotopies" in (run / "report.html").read_text()
    assert not (run / "marginals.png").exists()  # no histograms of token ids

    evaluated = aevb("evaluate", run, "--k", "20", "--quiet", "--out", tmp_path / "e.json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "perplexity per word" in evaluated.stdout
    summary = json.loads((tmp_path / "e.json").read_text())
    test_lines = facts["num_test"]
    tokens = summary["tokens"]  # every test line here has 5 tokens and </s>
    assert tokens == 6 * test_lines
    expected = math.exp(-summary["log_px"] * test_lines / tokens)
    assert summary["perplexity_per_word"] == pytest.approx(expected, rel=1e-9)
    assert 1 < summary["perplexity_per_word"] < len(vocabulary)  # learned something

    assert aevb("sample", run, "--num", "6").returncode == 0
    samples = (run / "samples.txt").read_text().splitlines()
    assert len(samples) == 6 and all(set(s.split()) <= WORDS | {".", "<unk>"} for s in samples)
    between = ["the old king speaks .", "a young lady sleeps ."]
    result = aevb("sample", run, "--between", *between, "--num", "5", "--out", tmp_path / "h.txt")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "h.txt").read_text().splitlines()) == 5
    assert (
        aevb("sample", run, "--beam", "3", "--num", "2", "--out", tmp_path / "b.txt").returncode
        == 0
    )
    assert aevb("reconstruct", run, "--num", "3").returncode == 0
    pairs = (run / "reconstructions.txt").read_text().splitlines()
    assert len(pairs) == 6 and pairs[1].startswith("  -> ")
    new = tmp_path / "new.txt"
    new.write_text("the good queen runs .\na hamlet speaks .\n")
    encoded = aevb("encode", run, "--data", new, "--out", tmp_path / "codes.csv")
    assert encoded.returncode == 0 and "not in the vocabulary" in encoded.stderr
    assert np.loadtxt(tmp_path / "codes.csv", delimiter=",", skiprows=1).shape == (2, 8)

    data = ["--data", tmp_path / "lines.txt.gz"]
    resumed = aevb("train", *data, *TRAIN, "--epochs", "4", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "run.json").read_text())["epochs_trained"] == 4

    other = Vocabulary.build(["entirely other words here"] * 3)
    other.save(run / "vocab.json")
    bad = aevb("sample", run)
    assert bad.returncode == 2 and "does not match the run" in bad.stderr


def test_bad_text_input_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    refused = {
        "holds no text": ["--data", empty, *TRAIN],
        "use body = 'rnn' with a text file": ["--data", tmp_path / "lines.txt", "--epochs", "1"],
        "they read only those": ["--data", "digits", "--body", "rnn"],
        "word_dropout must be in [0, 1)": ["--data", empty, *TRAIN, "--word-dropout", "1"],
        "equal widths": ["--data", tmp_path / "lines.txt.gz", *TRAIN, "--hidden-dims", "32,16"],
    }
    _corpus(tmp_path / "lines.txt.gz")
    (tmp_path / "lines.txt").write_text("a line\n")
    for message, options in refused.items():
        bad = aevb("train", *options, "--out", tmp_path / "bad")
        assert bad.returncode == 2 and message in bad.stderr, (message, bad.stderr)
        assert not (tmp_path / "bad").exists()

"""``aevb train --model m2|cvae``, ``aevb predict`` and label sources, as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_cli import _fails_cleanly, aevb

from aevb import load_dataset, load_run
from aevb.cli.data import load_run_data

TINY = ["--epochs", "2", "--hidden-dims", "64", "--latent-dim", "4", "--quiet"]
DIGITS = ["--data", "digits-binary", "--likelihood", "bernoulli"]


def train_m2(out: Path, data: Path, labels: Path | str, check: bool = True):
    """``aevb train --model m2`` of binary data with labels from ``labels``."""
    return aevb(
        "train",
        "--out",
        out,
        "--data",
        data,
        "--labels",
        labels,
        "--model",
        "m2",
        "--likelihood",
        "bernoulli",
        *TINY,
        check=check,
    )


@pytest.fixture(scope="module")
def m2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("m2") / "run"
    result = aevb("train", "--out", out, "--model", "m2", "--num-labelled", "50", *DIGITS, *TINY)
    assert "test error" in result.stdout and "50 of 1437 training labels" in result.stdout
    return out


def test_m2_run_folder_predictions_and_figures(m2_run: Path, tmp_path: Path) -> None:
    facts = json.loads((m2_run / "run.json").read_text())
    assert facts["num_labelled"] == 50 and facts["epochs_trained"] == 2
    for name in ("model.safetensors", "metrics.jsonl", "analogies.png", "conditional_samples.png"):
        assert (m2_run / name).exists(), name
    result = aevb("predict", m2_run, "--out", tmp_path / "p.csv")
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["label"] + [f"p_{c}" for c in range(10)]
    probabilities = table.iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert (table["label"].to_numpy() == probabilities.argmax(1)).all()
    # the printed error is the error of the written labels on the run's test split
    test = load_run_data(load_run(m2_run).config)[2]
    error = float((table["label"].to_numpy() != test.y.numpy()).mean())
    assert f"error rate {error:.2%}" in result.stdout
    assert facts["test_error"] == pytest.approx(error)
    aevb("sample", m2_run, "--label", "3", "--num", "8", "--out", tmp_path / "threes.png")
    aevb("plot", m2_run)
    _fails_cleanly(aevb("sample", m2_run, "--label", "12", check=False), "--label must be in 0..9")
    _fails_cleanly(aevb("encode", m2_run, check=False), "aevb predict")


def test_labels_from_a_csv_column_with_holes_and_from_a_file(tmp_path: Path) -> None:
    digits = load_dataset("digits-binary")
    x, y = digits.x.numpy()[:400], digits.y.numpy()[:400].astype(float)
    y[::3] = np.nan  # unlabelled rows: empty cells
    frame = pd.DataFrame(x, columns=[f"p{i}" for i in range(64)]).assign(digit=y)
    frame.to_csv(tmp_path / "digits.csv", index=False)
    out = tmp_path / "column"
    train_m2(out, tmp_path / "digits.csv", "digit")
    run = load_run(out)
    train = load_run_data(run.config)[0]
    assert train.x.shape[1] == 64  # the label column is not a feature
    assert run.metrics["num_labelled"] == int((train.y >= 0).sum())
    assert 0 < run.metrics["num_labelled"] < len(train)

    # text labels (a species-like column) are coded in sorted order and named in predictions
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    text = pd.Series(names[np.nan_to_num(y).astype(int)]).where(~np.isnan(y))
    frame.assign(digit=text).to_csv(tmp_path / "named.csv", index=False)
    named = tmp_path / "named"
    train_m2(named, tmp_path / "named.csv", "digit")
    assert load_run(named).metrics["label_names"] == sorted(names.tolist())
    aevb(
        "predict",
        named,
        "--data",
        tmp_path / "named.csv",
        "--labels",
        "digit",
        "--out",
        tmp_path / "named.csv.out.csv",
    )
    predicted = pd.read_csv(tmp_path / "named.csv.out.csv")
    codes = predicted["label"].to_numpy()
    assert (predicted["label_name"].to_numpy() == np.array(sorted(names))[codes]).all()

    np.save(tmp_path / "x.npy", x)
    codes = np.where(np.isnan(y), 255, y).astype(np.uint8)
    np.save(tmp_path / "y.npy", codes)
    out = tmp_path / "file"
    train_m2(out, tmp_path / "x.npy", tmp_path / "y.npy")
    assert load_run(out).metrics["num_labelled"] == run.metrics["num_labelled"]

    np.save(tmp_path / "short.npy", codes[:10])
    result = train_m2(tmp_path / "bad", tmp_path / "x.npy", tmp_path / "short.npy", check=False)
    _fails_cleanly(result, "but the data have 400 rows")
    np.save(tmp_path / "half.npy", codes + 0.5)
    result = train_m2(tmp_path / "bad2", tmp_path / "x.npy", tmp_path / "half.npy", check=False)
    _fails_cleanly(result, "must be whole numbers")


def test_conditional_vae_and_m1_plus_m2(tmp_path: Path) -> None:
    cvae = tmp_path / "cvae"
    result = aevb("train", "--out", cvae, "--model", "cvae", *DIGITS, *TINY)
    assert "test ELBO of log p(x|y)" in result.stdout and "test error" not in result.stdout
    _fails_cleanly(aevb("predict", cvae, check=False), "has no classifier")
    aevb("sample", cvae, "--out", tmp_path / "by_label.png")

    m1 = tmp_path / "m1"
    aevb("train", "--out", m1, *DIGITS, "--epochs", "3", "--latent-dim", "8", "--quiet")
    stacked = tmp_path / "m1m2"
    result = aevb(
        "train",
        "--out",
        stacked,
        "--model",
        "m2",
        "--m1",
        m1,
        "--num-labelled",
        "50",
        *DIGITS[:2],
        "--likelihood",
        "normal",
        *TINY,
    )
    run = load_run(stacked)
    assert run.metrics["feature_dim"] <= 8 and "test error" in result.stdout
    x = load_run_data(run.config)[2].x
    # predictions go through M1's encoder: raw images in, labels out
    assert run.model.predict(x).shape == (len(x),)
    analogies = run.model.analogies(x[:2])
    assert analogies.shape == (2, 10, 64) and bool(((analogies >= 0) & (analogies <= 1)).all())
    result = aevb(
        "train", "--out", tmp_path / "bad", "--model", "m2", "--m1", m1, *DIGITS, *TINY, check=False
    )
    _fails_cleanly(result, "set likelihood = normal")
    assert torch.isfinite(torch.tensor(run.metrics["test_conditional_elbo"]))

"""Real-valued sequences (time series of one or many channels) as rows of a :class:`Dataset`.

A sequence of ``T_i`` steps of ``C`` channels becomes a row of ``T * C`` values, step after
step, where ``T`` is the longest sequence and the steps after a sequence's end are NaN; the
Dataset's ``sequence_shape`` is ``(T, C)``. The likelihood
(:class:`aevb.distributions.sequence.RealSequence`) sums over real steps only.

Formats:

- ``.npy`` of shape ``(n, T)`` (one channel) or ``(n, T, C)``, NaN after each sequence's end;
- ``.npz`` holding ``values`` ``(total, C)`` (or ``(total,)``) and ``lengths`` ``(n,)``: the
  sequences one after another (ragged), or a single array as for ``.npy``;
- CSV in long format: one row per step, a ``sequence`` column naming the sequence, a ``time``
  column ordering its steps, every other column a channel (numbers).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from .dataset import Dataset

SERIES_SUFFIXES = (".npy", ".npz", ".csv")


def load_series(
    path: str | Path, *, sequence_column: str = "sequence", time_column: str = "time"
) -> Dataset:
    """Sequences from ``path`` (see the module for the formats) as NaN-padded rows.

    Raises:
        DataError: an unknown format, a NaN before a sequence's end, an infinite value, no
            sequence, or (CSV) a missing or non-numeric column, each named with its fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give sequences as .npy, .npz or long-format .csv")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        padded = _from_long_csv(path, sequence_column, time_column)
    elif suffix == ".npz":
        with np.load(path) as archive:
            if {"values", "lengths"} <= set(archive.files):
                padded = _from_ragged(archive["values"], archive["lengths"], path)
            elif len(archive.files) == 1:
                padded = _as_steps(archive[archive.files[0]], path)
            else:
                raise DataError(
                    f"{path} holds {archive.files}: give 'values' and 'lengths' (ragged "
                    "sequences) or a single (n, T[, C]) array"
                )
    elif suffix == ".npy":
        padded = _as_steps(np.load(path, allow_pickle=False), path)
    else:
        raise DataError(f"{path}: sequences are read from .npy, .npz or long-format .csv files")
    return _dataset(padded, path)


def _as_steps(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number) or not array.shape[0]:
        raise DataError(
            f"{path}: expected a numeric (n, T) or (n, T, C) array of sequences, got shape "
            f"{array.shape} and dtype {array.dtype}"
        )
    return array.astype(np.float32)


def _from_ragged(values: np.ndarray, lengths: np.ndarray, path: Path) -> np.ndarray:
    values = values[:, None] if values.ndim == 1 else values
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths < 1).any() or int(lengths.sum()) != len(values):
        raise DataError(
            f"{path}: 'lengths' must be positive and add up to the {len(values)} rows of "
            f"'values', got {int(lengths.sum())} in {len(lengths)} sequences"
        )
    padded = np.full((len(lengths), int(lengths.max()), values.shape[1]), np.nan, np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for i, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        padded[i, :length] = values[start : start + length]
    return padded


def _from_long_csv(path: Path, sequence_column: str, time_column: str) -> np.ndarray:
    table = pd.read_csv(path)
    missing = [c for c in (sequence_column, time_column) if c not in table.columns]
    if missing:
        raise DataError(
            f"{path} has no column {missing[0]!r} (columns: {list(table.columns)}): long format "
            f"needs a {sequence_column!r} column naming each sequence and a {time_column!r} "
            "column ordering its steps"
        )
    channels = [c for c in table.columns if c not in (sequence_column, time_column)]
    text = [c for c in channels if not pd.api.types.is_numeric_dtype(table[c])]
    if not channels or text:
        raise DataError(f"{path}: the channel columns must be numbers; {text or 'none'} are not")
    table = table.sort_values([sequence_column, time_column], kind="stable")
    groups = [group[channels].to_numpy(np.float32) for _, group in table.groupby(sequence_column)]
    lengths = np.array([len(g) for g in groups])
    return _from_ragged(np.concatenate(groups), lengths, path)


def _dataset(padded: np.ndarray, path: Path) -> Dataset:
    """Check that NaN only ends sequences and that values are finite; rows of T * C."""
    missing = np.isnan(padded).any(-1)  # (n, T)
    ended = np.maximum.accumulate(missing, axis=1)
    if (ended & ~missing).any():
        row, step = np.argwhere(ended & ~missing)[0]
        raise DataError(
            f"{path}: sequence {row} has values at step {step} after a NaN step: NaN marks the "
            "end of a sequence (every step after it NaN); fill or drop the gaps inside it"
        )
    if np.isinf(padded).any():
        row, step, _ = np.argwhere(np.isinf(padded))[0]
        raise DataError(f"{path}: sequence {row} has an infinite value at step {step}")
    if missing[:, 0].any():
        raise DataError(f"{path}: sequence {int(np.argmax(missing[:, 0]))} has no step")
    n, steps, channels = padded.shape
    x = torch.from_numpy(padded.reshape(n, steps * channels))
    return Dataset(x, name=path.name, sequence_shape=(steps, channels))


def pad_series(dataset: Dataset, steps: int, channels: int) -> Dataset:
    """``dataset``'s sequences as rows of ``steps`` steps (NaN after their ends), for a model
    trained on sequences of up to ``steps`` steps of ``channels`` values.

    Raises:
        DataError: a sequence is longer than ``steps``, or has other channels.
    """
    assert dataset.sequence_shape is not None
    have, given = dataset.sequence_shape
    if given != channels:
        raise DataError(
            f"{dataset.name}: the model reads sequences of {channels} channels, these have "
            f"{given} (in a CSV, every column but the sequence and time columns is a channel): "
            "give the channels it was trained on"
        )
    if have > steps:
        raise DataError(
            f"{dataset.name}: the model reads sequences of up to {steps} steps, these have up "
            f"to {have}: cut them to {steps} steps, or train on sequences this long"
        )
    x = torch.full((len(dataset), steps * channels), float("nan"), dtype=torch.float32)
    x[:, : have * channels] = torch.as_tensor(dataset.x[:])
    return replace(dataset, x=x, sequence_shape=(steps, channels))

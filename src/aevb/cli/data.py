"""The data of a run: read, scaled and binarized as configured, split by seed, labels
partly hidden for semi-supervised runs, lines of text encoded with the run's vocabulary."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..data.dataset import Dataset, split
from ..data.loaders import load_dataset, with_labels
from ..data.series import load_series
from ..data.text import Vocabulary, is_text
from ..models.semisupervised import UNLABELLED, labelled_subset
from .config import RunConfig
from .text import text_like, text_splits


def load_like(
    config: RunConfig,
    source: str,
    *,
    labels: str | None = None,
    stream: bool = False,
    vocabulary: Vocabulary | None = None,
) -> Dataset:
    """Data from ``source``, scaled and binarized as the run's own data were (``stream``:
    left on disk, see :mod:`aevb.data.ondisk`); a text run's lines encoded with its
    ``vocabulary``; real-valued sequences as NaN-padded rows (:mod:`aevb.data.series`)."""
    data = config.data
    if vocabulary is not None:
        return text_like(config, vocabulary, source)
    if data.sequences:
        return load_series(
            source, sequence_column=data.sequence_column, time_column=data.time_column
        )
    return load_dataset(
        source, binarize=data.binarize, scale=data.scale, labels=labels, stream=stream
    )


def load_run_data(
    config: RunConfig, vocabulary: Vocabulary | None = None
) -> tuple[Dataset, Dataset, Dataset]:
    """The run's data, binarized as configured, split into train, valid and test by seed.

    Semi-supervised and conditional runs carry labels (``data.labels``); ``num_labelled``
    then hides all but that many training labels, balanced over classes and drawn by seed.
    Text runs encode their lines with ``vocabulary`` (a trained run's), or with one built on
    the training lines.
    """
    data = config.data
    if is_text(data.source):
        return text_splits(config, vocabulary)
    labelled = config.model.kind != "vae"
    labels = data.labels if labelled else None
    dataset = load_like(config, data.source, labels=labels, stream=data.stream)
    if labelled and data.labels is None:
        dataset = with_labels(dataset, None)  # the dataset's own labels, or a clear error
    fractions = (data.valid_fraction, data.test_fraction)
    train, valid, test = split(dataset, fractions, seed=config.seed)
    if labelled and data.num_labelled is not None:
        assert train.y is not None
        per_class = data.num_labelled // num_classes(dataset)
        keep = labelled_subset(train.y, per_class, seed=config.seed)
        hidden = torch.full_like(train.y, UNLABELLED)
        hidden[keep] = train.y[keep]
        train = replace(train, y=hidden)
    return train, valid, test


def num_classes(*parts: Dataset) -> int:
    """Classes of labelled data: its label names, or the largest label seen plus one."""
    if parts[0].label_names:
        return len(parts[0].label_names)
    return max(int(part.y.max()) for part in parts if part.y is not None and len(part)) + 1

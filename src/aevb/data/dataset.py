"""The :class:`Dataset` every loader returns, and its train/valid/test split."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..errors import DataError
from .ondisk import DiskRows


@dataclass(frozen=True)
class Dataset:
    """Examples ``x (n, data_dim)``, optional labels ``y (n,)`` (-1: unknown), the ``(C, H, W)``
    of image data, ``splits``: sizes of a predefined (train, valid, test) split, rows in order, and
    the names of text labels."""

    x: torch.Tensor | DiskRows  # DiskRows: rows read from disk when indexed (stream=True)
    y: torch.Tensor | None = None
    image_shape: tuple[int, ...] | None = None
    name: str = "data"
    splits: tuple[int, int, int] | None = None
    label_names: tuple[str, ...] | None = None  # y = i means label_names[i] (text labels)
    rows: torch.Tensor | None = None  # each example's row in the source (None: 0, 1, ...)
    vocabulary: Any = None  # text: the aevb.data.text.Vocabulary the rows' ids index
    notes: tuple[str, ...] = ()  # what loading changed, counted (e.g. lines cut), to report
    sequence_shape: tuple[int, int] | None = None  # real sequences: (steps, channels) per row

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: torch.Tensor | slice) -> Dataset:
        """The rows at ``index``, in memory (rows on disk are read)."""
        y = None if self.y is None else self.y[index]
        return replace(self, x=self.x[index], y=y, splits=None, rows=self._rows(index))

    def subset(self, rows: torch.Tensor) -> Dataset:
        """The rows ``rows``: in memory as ``self[rows]``, still on disk for :class:`DiskRows`."""
        if isinstance(self.x, DiskRows):
            if self.x.blockwise:  # kept in file order (see DiskRows.subset)
                rows = rows.sort().values
            y = None if self.y is None else self.y[rows]
            return replace(self, x=self.x.subset(rows), y=y, splits=None, rows=self._rows(rows))
        return self[rows]

    def _rows(self, index: torch.Tensor | slice) -> torch.Tensor:
        # int32 while it fits: of the memory that grows with the rows, this is part
        dtype = torch.int32 if len(self) < 2**31 else torch.int64
        return (torch.arange(len(self), dtype=dtype) if self.rows is None else self.rows)[index]

    @property
    def in_memory(self) -> torch.Tensor:
        """``x`` as a tensor; data on disk (``stream=True``) are a :class:`DataError` here."""
        if isinstance(self.x, DiskRows):
            raise DataError(
                f"{self.name} is read from disk in batches (--stream), which this use does not "
                "support: load it into memory (drop --stream)"
            )
        return self.x


def split(
    dataset: Dataset, fractions: tuple[float, float], *, seed: int = 0
) -> tuple[Dataset, Dataset, Dataset]:
    """Shuffle with ``seed`` and cut into train, valid and test parts.

    A dataset with a predefined split (``dataset.splits``, e.g. binarized MNIST) keeps it:
    ``fractions`` and ``seed`` are then not used.

    Args:
        fractions: ``(valid_fraction, test_fraction)``; the rest is training data.
    """
    if dataset.splits is not None:
        num_train, num_valid, _ = dataset.splits
        rows = torch.arange(len(dataset))
        return (
            dataset.subset(rows[:num_train]),
            dataset.subset(rows[num_train : num_train + num_valid]),
            dataset.subset(rows[num_train + num_valid :]),
        )
    valid_fraction, test_fraction = fractions
    if valid_fraction < 0 or test_fraction < 0 or valid_fraction + test_fraction >= 1:
        raise DataError(f"valid and test fractions must be >= 0 and sum to < 1, got {fractions}")
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    num_valid, num_test = round(n * valid_fraction), round(n * test_fraction)
    valid = order[:num_valid]
    test = order[num_valid : num_valid + num_test]
    train = order[num_valid + num_test :]
    return dataset.subset(train), dataset.subset(valid), dataset.subset(test)

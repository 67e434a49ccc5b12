"""Data larger than memory: rows read from disk a batch at a time, and checks that stream.

:class:`DiskRows` stands in for an ``(n, d)`` float32 tensor wherever aevb reads data by
rows: the Trainer's samplers (``x[rows]``), evaluation and IS log p(x) (``x[a:b]``), and the
data checks (:func:`row_chunks`). It holds an index, not the values: every read returns a new
tensor of just the rows asked for, so resident memory does not grow with the file.

Sources (``load_dataset(path, stream=True)``, ``aevb train --stream``):

- ``.npy`` (:class:`~aevb.data.sources.NpyRows`): each run of consecutive rows read with
  ``os.preadv`` into the batch. Not ``mmap``: the pages of a memory map count in the
  process's resident memory once touched, so one epoch over a large file would grow it by
  the file's size; bytes read pass through the kernel's page cache, which the system
  reclaims.
- Parquet, one file or a folder of part files (:class:`~aevb.data.sources.ParquetRows`): a
  block is a row group.
- CSV (:class:`~aevb.data.sources.CsvRows`): a first pass notes the byte offset of every
  4096th row; a block is parsed when it is read.

Reading random rows of a block format would parse a whole block per row, so their epochs
are shuffled block-wise: the blocks in a new random order each epoch, and the rows of every
:data:`~aevb.data.sources.WINDOW` consecutive blocks shuffled together (the shuffle buffer
of streaming loaders); that many blocks are kept parsed. ``.npy`` rows are shuffled uniformly, as in
memory, so an ``.npy`` file trains exactly as the same array held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .sources import WINDOW, RowSource, open_source


class DiskRows:
    """``(n, data_dim)`` rows of a :class:`~aevb.data.sources.RowSource`, read on indexing.

    ``rows`` maps this object's positions to file rows (``None``: all, in file order);
    ``transform`` is applied to every tensor read (scaling, binarizing), which then has
    ``dtype``.
    """

    device = torch.device("cpu")
    ndim = 2

    def __init__(
        self,
        source: RowSource,
        rows: np.ndarray | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.source, self.rows, self.transform, self.dtype = source, rows, transform, dtype

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), self.source.data_dim))

    @property
    def blockwise(self) -> bool:
        return self.source.block_starts is not None

    def __len__(self) -> int:
        return self.source.num_rows if self.rows is None else len(self.rows)

    def __repr__(self) -> str:
        return f"DiskRows({self.source.name}, shape={tuple(self.shape)})"

    def dim(self) -> int:
        return 2

    def _file_rows(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            positions = np.arange(*index.indices(len(self)))
        else:
            positions = np.asarray(torch.as_tensor(index).cpu())
            if positions.dtype == np.bool_:
                positions = np.flatnonzero(positions)
            positions = positions.astype(np.int64).reshape(-1)
            if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
                raise IndexError(f"row index out of range for {len(self)} rows")
            positions = np.where(positions < 0, positions + len(self), positions)
        return positions if self.rows is None else self.rows[positions]

    def __getitem__(self, index: Any) -> torch.Tensor:
        """The rows at ``index`` (a slice, integer positions or a boolean mask) as a tensor."""
        rows = self._file_rows(index)
        order = np.argsort(rows, kind="stable")  # the file read in order, then put back
        values = np.empty((len(rows), self.source.data_dim), dtype=np.float32)
        values[order] = self.source.read(rows[order])
        x = torch.from_numpy(values)
        return (x if self.transform is None else self.transform(x)).to(self.dtype)

    def subset(self, positions: torch.Tensor | np.ndarray) -> DiskRows:
        """The rows at ``positions``, still on disk. A block format keeps file order (a
        sequential pass then reads each block once); ``.npy`` keeps the order given."""
        rows = self._file_rows(positions)
        rows = rows.astype(np.int32 if self.source.num_rows < 2**31 else np.int64)  # 4 B a row
        rows = np.sort(rows) if self.blockwise else rows
        return DiskRows(self.source, rows, self.transform, self.dtype)

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> DiskRows:
        """These rows with ``function`` applied to every tensor read (after any earlier one)."""
        first = self.transform
        combined = function if first is None else (lambda x: function(first(x)))
        return DiskRows(self.source, self.rows, combined, self.dtype)

    def to(self, dtype: torch.dtype) -> DiskRows:
        """These rows, read as ``dtype``."""
        return DiskRows(self.source, self.rows, self.transform, dtype)

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """A new random order of the positions for one epoch: uniform for ``.npy``; for a
        block format, random blocks and the rows of every :data:`WINDOW` blocks mixed."""
        if self.source.block_starts is None:
            return torch.randperm(len(self), generator=generator)
        starts = self.source.block_starts
        file_rows = np.arange(len(self)) if self.rows is None else self.rows
        block = torch.as_tensor(np.searchsorted(starts, file_rows, side="right") - 1)
        rank = torch.randperm(len(starts) - 1, generator=generator)  # blocks' place this epoch
        window = (rank[block] // WINDOW).double()
        return torch.argsort(
            window + torch.rand(len(self), generator=generator, dtype=torch.float64)
        )


Rows = torch.Tensor | DiskRows  # data by rows, in memory or on disk


CHUNK_VALUES = 2**22  # values per chunk of a streaming pass (16 MB of float32)


def row_chunks(x: Rows, size: int | None = None) -> Iterator[torch.Tensor]:
    """Consecutive blocks of ``size`` rows of ``x`` as tensors (``None``: about
    :data:`CHUNK_VALUES` values each): a streaming pass over memory or disk."""
    size = size or max(1, CHUNK_VALUES // max(1, x[:1].numel()))
    for begin in range(0, x.shape[0], size):
        yield x[begin : begin + size]


def check_finite(
    x: Rows, name: str = "data", *, allow_missing: bool = False, rows: torch.Tensor | None = None
) -> None:
    """Raise :class:`DataError` naming the rows with NaN or infinite entries (one pass, in
    chunks of rows, so data on disk are checked without loading them).

    ``allow_missing=True`` (likelihoods that mask missing entries) lets NaN through;
    ``rows``: the numbers to name the rows by (e.g. their rows in the file, for a split).
    """
    shown: list[int] = []  # the first few bad rows, by their numbers
    count, num_rows, has_nan, begin = 0, 0, False, 0
    for chunk in row_chunks(x):
        if not bool(torch.isfinite(chunk.sum())):  # NaN and inf propagate into the sum
            bad = torch.isinf(chunk) if allow_missing else ~torch.isfinite(chunk)
            count += int(bad.sum())
            has_nan |= not allow_missing and bool(torch.isnan(chunk).any())
            found = bad.reshape(chunk.shape[0], -1).any(-1).nonzero().flatten() + begin
            shown += (found if rows is None else rows[found])[: 5 - len(shown)].tolist()
            num_rows += len(found)
        begin += chunk.shape[0]
    if count:
        kind = "NaN" if has_nan else "infinite"
        listed = ", ".join(map(str, shown)) + (", ..." if num_rows > len(shown) else "")
        raise DataError(
            f"{name} has {count} {kind} entries in {num_rows} rows (rows {listed}): "
            "remove those rows or impute the missing values before training"
        )


def value_range(x: Rows) -> tuple[float, float]:
    """The smallest and largest value of ``x``, in one streaming pass."""
    low, high = math.inf, -math.inf
    for chunk in row_chunks(x):
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    return low, high


def open_rows(path: Path) -> DiskRows:
    """Rows of ``path`` on disk: ``.npy``, ``.csv``, ``.parquet`` or a folder of Parquet."""
    return DiskRows(open_source(path))

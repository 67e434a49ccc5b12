"""Files whose rows aevb reads without loading them: ``.npy``, CSV and Parquet.

A source (:class:`RowSource`) knows its row count, the values per row and how to read any
ascending set of rows; :class:`aevb.data.ondisk.DiskRows` builds on it. ``.npy`` rows are
read by ``os.pread`` at their offset (random rows cost one read each). CSV and Parquet rows
are read in blocks (Parquet: a row group; CSV: 4096 rows, located by one pass over the file
that notes their byte offsets), and the last :data:`WINDOW` parsed blocks are kept.
"""

from __future__ import annotations

import io
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..errors import DataError
from .images import image_shape_of

WINDOW = 4  # blocks shuffled together (DiskRows.order), and kept parsed, for block formats
CSV_BLOCK_ROWS = 4096


class RowSource(Protocol):
    """Rows of a file: ``read(rows)`` returns ``(len(rows), data_dim)`` float32 values of the
    ascending file rows ``rows``; ``block_starts`` is ``None`` when random rows are cheap to
    read, else the first row of every block and the row count, ``(num_blocks + 1,)``."""

    @property
    def name(self) -> str: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def data_dim(self) -> int: ...
    @property
    def image_shape(self) -> tuple[int, int, int] | None: ...
    @property
    def block_starts(self) -> np.ndarray | None: ...

    def read(self, rows: np.ndarray) -> np.ndarray: ...


# -- .npy ------------------------------------------------------------------------------------


def npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of an ``.npy`` file, after checking that
    the file holds the bytes its header promises (a damaged header could otherwise ask for
    any amount of memory, or reads past the end)."""
    with open(path, "rb") as file:
        major, _ = np.lib.format.read_magic(file)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(file)
        offset = file.tell()
    needed = math.prod(shape) * dtype.itemsize + offset
    size = path.stat().st_size
    if needed != size:
        raise DataError(
            f"{path} does not match its header: the header says shape {shape} of {dtype} "
            f"({needed / 2**30:.3g} GiB), the file holds {size / 2**30:.3g} GiB. It is "
            "truncated or was written in pieces; save it again with numpy.save"
        )
    return shape, fortran_order, dtype, offset


class NpyRows:
    """The rows of an ``(n, ...)`` ``.npy`` array, read by ``os.pread``; images as in
    :mod:`aevb.data.images` (channels-last rows are moved to (C, H, W) as they are read)."""

    block_starts = None

    def __init__(self, path: Path) -> None:
        shape, fortran_order, dtype, self.offset = npy_header(path)
        self.path, self.name, self.dtype = path, path.name, dtype
        if fortran_order and len(shape) > 1:
            raise DataError(
                f"{path} is stored column by column (Fortran order), so a row is not one "
                "read: save it with numpy.save(path, numpy.ascontiguousarray(x))"
            )
        if dtype.names or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
            raise DataError(f"{path}: expected an array of real numbers, got dtype {dtype}")
        if np.issubdtype(dtype, np.complexfloating):
            raise DataError(f"{path}: complex numbers ({dtype}) are not data aevb models")
        if not 2 <= len(shape) <= 4 or math.prod(shape) == 0:
            raise DataError(
                f"{path}: expected examples in rows, shape (n, features), (n, H, W), "
                f"(n, C, H, W) or (n, H, W, C) with n >= 1, got shape {shape}"
            )
        self.num_rows, self.row_shape = shape[0], tuple(shape[1:])
        self.data_dim = math.prod(self.row_shape)
        self.row_bytes = self.data_dim * dtype.itemsize
        self.image_shape: tuple[int, int, int] | None = None
        self._channels_last = False
        if len(shape) > 2:
            self.image_shape, self._channels_last = image_shape_of(shape, path.name)

    def read(self, rows: np.ndarray) -> np.ndarray:
        size = self.row_bytes
        raw = np.empty((len(rows), size), dtype=np.uint8)
        view, starts = memoryview(raw.data).cast("B"), rows.tolist()
        with open(self.path, "rb") as file:
            first = 0
            while first < len(starts):  # one read per run of consecutive rows, into raw
                last = first + 1
                while last < len(starts) and starts[last] == starts[last - 1] + 1:
                    last += 1
                where = self.offset + starts[first] * size
                _read_into(file.fileno(), view[first * size : last * size], where, self.path)
                first = last
        values = raw.view(self.dtype).reshape(len(rows), *self.row_shape)
        if self._channels_last:
            values = np.moveaxis(values, -1, 1)
        return values.reshape(len(rows), -1).astype(np.float32)


def _read_into(fd: int, view: memoryview, offset: int, path: Path) -> None:
    """Fill ``view`` from byte ``offset`` of the file (a long read may come in parts)."""
    while len(view):
        done = os.preadv(fd, [view], offset)
        if done == 0:
            raise DataError(f"{path} ended early: it was cut while being read; save it again")
        view, offset = view[done:], offset + done


# -- block formats ---------------------------------------------------------------------------


class _Blocks:
    """Random rows through whole parsed blocks, the last :data:`WINDOW` of them kept."""

    block_starts: np.ndarray
    data_dim: int
    image_shape = None

    def __init__(self) -> None:
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def read_block(self, block: int) -> np.ndarray:
        raise NotImplementedError

    def read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.data_dim), dtype=np.float32)
        blocks = np.searchsorted(self.block_starts, rows, side="right") - 1
        for block in np.unique(blocks):
            where = blocks == block
            out[where] = self._parsed(int(block))[rows[where] - self.block_starts[block]]
        return out

    def _parsed(self, block: int) -> np.ndarray:
        if block in self._cache:
            self._cache.move_to_end(block)
            return self._cache[block]
        values = self.read_block(block)
        self._cache[block] = values
        if len(self._cache) > WINDOW:
            self._cache.popitem(last=False)
        return values


def csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV file's first line, or ``None`` when it holds numbers."""
    with open(path) as file:
        cells = [cell.strip() for cell in file.readline().strip().split(",")]
    try:
        [float(cell) for cell in cells if cell]
        return None
    except ValueError:
        return cells


def numeric_values(frame: pd.DataFrame, where: str) -> np.ndarray:
    """A frame of numbers as float64 (empty cells NaN); text columns are a :class:`DataError`."""
    text = [
        str(name) for name, kind in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(kind)
    ]
    if text:
        raise DataError(
            f"{where} has non-numeric cells in column(s) {', '.join(text)}; aevb reads numeric "
            "CSV columns here: remove text columns or encode them as numbers (a text label "
            "column: --labels COLUMN; tables with text columns: aevb impute)"
        )
    return frame.to_numpy(dtype=np.float64)


class CsvRows(_Blocks):
    """A numeric CSV file, :data:`CSV_BLOCK_ROWS` rows per block, located by one pass."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.name = path, path.name
        header = csv_header(path)
        starts, offsets, rows, fields = [], [], 0, 0
        with open(path, "rb") as file:
            if header is not None:
                file.readline()
            offset = file.tell()
            for line in file:
                if line.strip():  # blank lines are skipped, as pandas does
                    fields = fields or line.count(b",") + 1
                    if rows % CSV_BLOCK_ROWS == 0:
                        starts.append(rows)
                        offsets.append(offset)
                    rows += 1
                offset += len(line)
        if rows == 0:
            raise DataError(f"{path} holds no rows of data: give at least one example")
        self.block_starts = np.array([*starts, rows], dtype=np.int64)
        self._offsets = [*offsets, offset]
        self.num_rows = rows
        self.data_dim = len(header) if header is not None else fields

    def read_block(self, block: int) -> np.ndarray:
        begin, end = self._offsets[block], self._offsets[block + 1]
        with open(self.path, "rb") as file:
            file.seek(begin)
            text = file.read(end - begin)
        first = int(self.block_starts[block])
        where = f"{self.path} (rows {first}-{int(self.block_starts[block + 1]) - 1})"
        try:
            frame = pd.read_csv(io.BytesIO(text), header=None)
        except (ValueError, pd.errors.ParserError) as error:
            raise DataError(f"could not read {where}: {error}") from None
        values = numeric_values(frame, where)
        if values.shape[1] != self.data_dim:
            raise DataError(
                f"{where} has {values.shape[1]} columns where the file's first row has "
                f"{self.data_dim}: every row needs the same columns"
            )
        return values.astype(np.float32)


class ParquetRows(_Blocks):
    """A Parquet file, or a folder of Parquet part files read as one table in name order;
    a block is a row group (write them at a size a few of which fit in memory, e.g.
    ``row_group_size=10_000``). Every part must have the first one's columns and types."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.name = path.name
        self.files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not self.files:
            raise DataError(f"{path} holds no .parquet files")
        try:
            parts = [pq.ParquetFile(file) for file in self.files]
        except (OSError, pa.ArrowException) as error:
            raise DataError(f"could not read {path} as Parquet: {error}") from None
        schema = parts[0].schema_arrow
        for file, part in zip(self.files, parts, strict=True):
            if not part.schema_arrow.equals(schema, check_metadata=False):
                raise DataError(
                    f"{file.name} has columns {_columns(part.schema_arrow)}, but "
                    f"{self.files[0].name} has {_columns(schema)}: every part of a Parquet "
                    "dataset needs the same columns and types; write them again with one schema"
                )
        # pandas' index, when stored as a column (a RangeIndex is stored as a dict, not a column)
        index = {
            name
            for name in (schema.pandas_metadata or {}).get("index_columns", [])
            if isinstance(name, str)
        }
        self.columns = [field.name for field in schema if field.name not in index]
        text = [
            f"{field.name} ({field.type})"
            for field in schema
            if field.name in self.columns
            and not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type))
            and not pa.types.is_boolean(field.type)
        ]
        if text:
            raise DataError(
                f"{path} has non-numeric columns: {', '.join(text)}; aevb streams numeric "
                "columns: drop or encode them (tables with text columns: aevb impute)"
            )
        self._groups = [
            (i, group)
            for i, part in enumerate(parts)
            for group in range(part.num_row_groups)
            if part.metadata.row_group(group).num_rows
        ]
        sizes = [parts[i].metadata.row_group(g).num_rows for i, g in self._groups]
        self.block_starts = np.cumsum([0, *sizes]).astype(np.int64)
        self.num_rows, self.data_dim = int(self.block_starts[-1]), len(self.columns)
        if self.num_rows == 0:
            raise DataError(f"{path} holds no rows of data: give at least one example")

    def read_block(self, block: int) -> np.ndarray:
        import pyarrow.parquet as pq

        file, group = self._groups[block]
        table = pq.ParquetFile(self.files[file]).read_row_group(group, columns=self.columns)
        # nulls become NaN, which the finiteness check reports by row
        columns = [column.to_numpy(zero_copy_only=False) for column in table.columns]
        return np.column_stack(columns).astype(np.float32)


def _columns(schema: Any) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


def open_source(path: Path) -> RowSource:
    """The source of ``path``: ``.npy``, ``.csv``, ``.parquet`` or a folder of Parquet parts."""
    if path.suffix == ".npy":
        return NpyRows(path)
    if path.suffix == ".csv":
        return CsvRows(path)
    if is_parquet(path):
        return ParquetRows(path)
    raise DataError(
        f"{path}: data read from disk as they are needed (--stream) must be .npy, .csv "
        "or Parquet (a file, or a folder of part files); convert it, e.g. "
        "numpy.save('data.npy', x), or load it into memory without --stream"
    )


def is_parquet(path: Path) -> bool:
    """A Parquet file, or a folder holding Parquet part files."""
    return path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))

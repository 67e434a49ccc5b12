"""Data: loaders returning tensors, splitting, and checks that fail early with a fix.

Formats: ``.npy``, ``.npz``, CSV, Parquet, MNIST IDX (``*-ubyte`` / ``*-ubyte.gz``),
Larochelle's ``.amat`` text, and a folder of PNG/JPEG images (:mod:`aevb.data.images`);
``.npy``, CSV and Parquet can also stay on disk, read a batch at a time (``stream=True``,
:mod:`aevb.data.ondisk`). Named datasets
(see :mod:`aevb.data.datasets`):

- ``digits``: scikit-learn's 1,797 8x8 handwritten digits, grey levels scaled to [0, 1];
- ``digits-binary``: the same, binarized at half intensity;
- ``binarized-mnist`` (or ``binarized-mnist:PATH``): the statically binarized MNIST benchmark
  with its fixed train/valid/test split, from a folder, the cache, or downloaded once.

Every loader returns a :class:`Dataset` with ``x`` of shape ``(n, data_dim)``: images are
flattened in (C, H, W) order and ``image_shape`` is their ``(C, H, W)``.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from .dataset import Dataset
from .datasets import load_binarized_mnist, load_digits
from .images import image_shape_of, load_image_folder
from .ondisk import DiskRows, check_finite, open_rows, value_range
from .sources import csv_header, is_parquet, npy_header, numeric_values

NAMED_DATASETS = ("digits", "digits-binary", "binarized-mnist")

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_dataset(
    source: str | Path,
    *,
    binarize: float | None = None,
    labels: str | None = None,
    scale: float | None = None,
    stream: bool = False,
) -> Dataset:
    """Load a named dataset, a file or a folder of images; check it is finite; optionally
    scale and binarize it.

    Args:
        source: a name from :data:`NAMED_DATASETS`, a path, or a folder of images (one
            subfolder per class gives labels); ``file.npz:key`` picks an array from an
            ``.npz`` archive.
        binarize: threshold t: ``x >= t`` becomes 1, the rest 0 (``None`` keeps values);
            applied after ``scale``.
        scale: divide every value by this (255: 8-bit pixels to [0, 1]); ``None`` keeps the
            values as read (8-bit images as counts 0..255).
        labels: where the labels are, see :func:`with_labels` (``None``: the dataset's own,
            if any; missing ones are then not an error).
        stream: leave the rows on disk and read them a batch at a time (``.npy``, ``.csv``,
            Parquet: :mod:`aevb.data.ondisk`); the checks, scaling and binarizing stream too.

    Raises:
        DataError: missing file, unknown format, wrong shape, NaN or infinite values.
    """
    name = str(source)
    if stream:
        dataset = _on_disk(name, labels)
    elif name in ("digits", "digits-binary"):
        x, y = load_digits(binary=name == "digits-binary")
        dataset = Dataset(x=x, y=y, image_shape=(1, 8, 8), name=name)
    elif name == "binarized-mnist" or name.startswith("binarized-mnist:"):
        path = name.partition(":")[2] or None
        x, own_labels, sizes = load_binarized_mnist(path)
        dataset = Dataset(x, own_labels, (1, 28, 28), "binarized-mnist", splits=sizes)
    elif Path(name).is_dir() and not is_parquet(Path(name)):
        dataset = _image_folder(Path(name))
    else:
        path, key = name.rsplit(":", 1) if ".npz:" in name else (name, None)
        if labels is not None and _csv_column(Path(path), labels) is not None:
            dataset, labels = _csv_with_labels(Path(path), labels), None
        else:
            dataset = _to_dataset(load_array(Path(path), key=key), Path(path).name)
    if labels is not None and not stream:
        dataset = with_labels(dataset, labels)
    check_finite(dataset.x, dataset.name)
    if scale is not None:
        if not (math.isfinite(scale) and scale > 0):
            raise DataError(f"scale must be a positive number, got {scale}: e.g. 255 for 8-bit")
        dataset = replace(dataset, x=_mapped(dataset.x, lambda x: x / scale))
    if binarize is not None:
        low, high = value_range(dataset.x)
        if not low < binarize <= high:
            raise DataError(
                f"binarize = {binarize} would turn every value of {dataset.name} into "
                f"{int(binarize <= low)}: the data range from {low:g} to {high:g}; choose a "
                "threshold above the smallest value and at most the largest (e.g. their middle)"
            )
        threshold = binarize
        dataset = replace(dataset, x=_mapped(dataset.x, lambda x: (x >= threshold).to(x.dtype)))
    return dataset


def _mapped(
    x: torch.Tensor | DiskRows, function: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor | DiskRows:
    """``function(x)``, or for rows on disk, ``function`` applied to every batch read."""
    return x.map(function) if isinstance(x, DiskRows) else function(x)


def _on_disk(name: str, labels: str | None) -> Dataset:
    if labels is not None:
        raise DataError(
            "labels are not read from data streamed from disk (--stream): models with labels "
            "(M2, conditional VAEs) train on data in memory; drop --stream"
        )
    path = Path(name)
    if not path.exists():
        raise DataError(f"no such data file: {path}. Give an existing .npy, .csv or Parquet path")
    x = open_rows(path)
    shape = x.source.image_shape or _square(x.shape[1])
    return Dataset(x=x, image_shape=shape, name=path.name)


def with_labels(dataset: Dataset, labels: str | None) -> Dataset:
    """Attach labels to ``dataset``: its own (``None``), a column of ``x``, or a file.

    Args:
        labels: ``None`` keeps the dataset's own labels (e.g. binarized MNIST's); a column
            index takes that column out of ``x``; otherwise a file with one label per row
            (``.npy``, ``.csv``, ``file.npz:key``). (A CSV data file's label column, by
            header name or index, numbers or text, is read by :func:`load_dataset`.)

    Labels are integers from 0; NaN, negative values and 255 (the uint8 marker of
    ``binarized_mnist.npz``) mean "unlabelled" and become -1.

    Raises:
        DataError: no labels at all, a length that does not match the rows, fractional labels.
    """
    if labels is None:
        if dataset.y is None:
            raise DataError(
                f"{dataset.name} carries no labels: pass --labels with a column of the data or "
                "a file holding one label per row"
            )
        return dataset
    if labels.isdigit():
        column = int(labels)
        if column >= dataset.x.shape[1]:
            raise DataError(f"label column {column} is outside the data's {dataset.x.shape[1]}")
        raw = dataset.x[:, column].double().numpy()
        x = torch.cat([dataset.x[:, :column], dataset.x[:, column + 1 :]], dim=1)
        return replace(dataset, x=x, y=_label_codes(raw, labels), image_shape=None)
    path, key = labels.rsplit(":", 1) if ".npz:" in labels else (labels, None)
    raw = load_array(Path(path), key=key).astype(np.float64)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.shape != (len(dataset),):
        raise DataError(
            f"{labels} holds labels of shape {raw.shape}, but the data have {len(dataset)} "
            f"rows: give one label per row, in the data's order"
        )
    return replace(dataset, y=_label_codes(raw, labels))


def _label_codes(raw: np.ndarray, where: str) -> torch.Tensor:
    unknown = np.isnan(raw) | (raw < 0) | (raw == 255)
    known = raw[~unknown]
    if np.any(known != np.round(known)):
        raise DataError(f"labels in {where} must be whole numbers 0, 1, ...; found fractions")
    return torch.as_tensor(np.where(unknown, -1, np.nan_to_num(raw)).astype(np.int64))


def _csv_column(path: Path, labels: str) -> str | int | None:
    """The label column of a CSV data file, by header name or index (``None``: not one)."""
    if path.suffix != ".csv" or not path.exists():
        return None
    header = csv_header(path)
    if header is not None and labels in header:
        return labels
    return int(labels) if labels.isdigit() else None


def _csv_with_labels(path: Path, labels: str) -> Dataset:
    """A CSV whose label column (numbers or text, empty cells unlabelled) becomes ``y``."""
    frame = pd.read_csv(path, header=0 if csv_header(path) is not None else None)
    column = _csv_column(path, labels)
    name = column if column in frame.columns else frame.columns[int(column)]  # type: ignore[arg-type]
    raw = frame.pop(name)
    names = None
    if pd.api.types.is_numeric_dtype(raw):
        y = _label_codes(raw.to_numpy(dtype=np.float64), f"column {name!r} of {path}")
    else:  # text labels: codes in sorted order
        categorical = pd.Categorical(raw)
        names = tuple(str(c) for c in categorical.categories)
        y = torch.as_tensor(categorical.codes.astype(np.int64))  # NaN -> -1
    x = torch.as_tensor(numeric_values(frame, str(path)), dtype=torch.float32)
    return Dataset(x=x, y=y, name=path.name, label_names=names)


def load_array(path: Path, *, key: str | None = None) -> np.ndarray:
    """Read one array from ``.npy``, ``.npz``, ``.csv``, IDX (``-ubyte[.gz]``) or ``.amat``."""
    if not path.exists():
        raise DataError(
            f"no such data file: {path}. Give an existing path, or one of the named datasets: "
            f"{', '.join(NAMED_DATASETS)}"
        )
    try:
        if path.suffix == ".npy":
            return _load_npy(path)
        if path.suffix == ".npz":
            return _load_npz(path, key)
        if path.suffix == ".csv":
            return _load_csv(path)
        if is_parquet(path):
            return open_rows(path)[:].numpy()
        if path.suffix == ".amat":
            return np.loadtxt(path, dtype=np.float32, ndmin=2)
        if "ubyte" in path.name or path.suffix == ".idx":
            return _load_idx(path)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, struct.error, zipfile.BadZipFile) as error:
        raise DataError(f"could not read {path}: {error}. Is the file complete?") from error
    raise DataError(
        f"unknown data format for {path}: use .npy, .npz, .csv, .parquet, .amat or an MNIST "
        "IDX file (*-ubyte or *-ubyte.gz)"
    )


def _load_npy(path: Path) -> np.ndarray:
    npy_header(path)  # the file holds the bytes its header promises (no huge allocation)
    return np.load(path, allow_pickle=False)


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    # our own handle: numpy leaves its file open when the archive is unreadable
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if key is None:
            if len(keys) == 1:
                key = keys[0]
            elif "x" in keys:
                key = "x"
            else:
                raise DataError(
                    f"{path} holds several arrays ({', '.join(keys)}): pick one as "
                    f"{path}:KEY, e.g. {path}:{keys[0]}"
                )
        if key not in keys:
            raise DataError(f"{path} has no array {key!r}; it holds: {', '.join(keys)}")
        return archive[key]


def _load_csv(path: Path) -> np.ndarray:
    frame = pd.read_csv(path, header=0 if csv_header(path) is not None else None)
    return numeric_values(frame, str(path))


def _load_idx(path: Path) -> np.ndarray:
    """The IDX format of LeCun's MNIST release: magic (0, 0, dtype, ndim), big-endian dims."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {dims} ({expected} bytes), "
            f"found {len(body)} bytes"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _to_dataset(array: np.ndarray, name: str) -> Dataset:
    if array.dtype.names:
        raise DataError(
            f"{name}: a structured array (fields {', '.join(array.dtype.names)}) is not a table "
            "of numbers aevb reads: save a plain numeric (n, features) array, or a CSV"
        )
    if array.ndim < 2 or array.ndim > 4:
        raise DataError(
            f"{name}: expected examples in rows, shape (n, features), (n, H, W), (n, C, H, W) "
            f"or (n, H, W, C), got shape {array.shape}: reshape it so the first axis indexes "
            "examples"
        )
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise DataError(f"{name}: expected numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise DataError(f"{name}: complex numbers ({array.dtype}) are not data aevb models")
    if array.size == 0:
        raise DataError(f"{name} holds no values (shape {array.shape}): give at least one example")
    image_shape: tuple[int, ...] | None = None
    if array.ndim > 2:
        image_shape, channels_last = image_shape_of(array.shape, name)
        if channels_last:
            array = np.moveaxis(array, -1, 1)
    else:
        image_shape = _square(array.shape[1])
    x = torch.as_tensor(
        np.ascontiguousarray(array).reshape(array.shape[0], -1), dtype=torch.float32
    )
    return Dataset(x=x, image_shape=image_shape, name=name)


def _image_folder(folder: Path) -> Dataset:
    images, labels, shape, names = load_image_folder(folder)
    x = torch.as_tensor(images.reshape(len(images), -1), dtype=torch.float32)
    y = None if labels is None else _label_codes(labels, str(folder))
    return Dataset(x=x, y=y, image_shape=shape, name=folder.name, label_names=names)


def _square(data_dim: int) -> tuple[int, int, int] | None:
    side = math.isqrt(data_dim)
    return (1, side, side) if side * side == data_dim and side > 1 else None

"""Data: loaders by format, named datasets, splits and checks, rows read from disk; no model
knowledge."""

from .dataset import Dataset, split
from .loaders import NAMED_DATASETS, load_dataset, with_labels
from .ondisk import DiskRows, check_finite, open_rows
from .series import load_series
from .text import EncodedText, Vocabulary, read_lines

__all__ = [
    "NAMED_DATASETS",
    "Dataset",
    "DiskRows",
    "EncodedText",
    "Vocabulary",
    "check_finite",
    "load_dataset",
    "load_series",
    "open_rows",
    "read_lines",
    "split",
    "with_labels",
]

"""Data: loaders by format, named datasets, splits and checks; no model knowledge."""

from .loaders import NAMED_DATASETS, Dataset, check_finite, load_dataset, split, with_labels

__all__ = ["NAMED_DATASETS", "Dataset", "check_finite", "load_dataset", "split", "with_labels"]

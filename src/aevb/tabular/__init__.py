"""Tables: a schema of per-column families, TabularVAE, and imputation."""

from .imputation import impute, multiple_imputations
from .schema import ColumnSpec, Schema
from .vae import TabularVAE, read_table, tabular_vae, write_table

__all__ = [
    "ColumnSpec",
    "Schema",
    "TabularVAE",
    "impute",
    "multiple_imputations",
    "read_table",
    "tabular_vae",
    "write_table",
]

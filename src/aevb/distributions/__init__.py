"""Distributions torch lacks, the per-column families of tables, and KL terms.

The lowest layer: everything else passes these around; they import nothing from aevb.
"""

from .columns import FAMILIES, Columns
from .core import ValueCategorical, detach
from .kl import has_closed_form, kl, kl_per_dim
from .planar import PlanarFlowNormal

__all__ = [
    "FAMILIES",
    "Columns",
    "PlanarFlowNormal",
    "ValueCategorical",
    "detach",
    "has_closed_form",
    "kl",
    "kl_per_dim",
]

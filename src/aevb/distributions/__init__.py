"""Distributions torch lacks, the per-column families of tables, and KL terms.

The lowest layer: everything else passes these around; they import nothing from aevb.
"""

from .chain import MarkovChain
from .columns import FAMILIES, Columns
from .core import ValueCategorical, detach
from .discretized import DiscretizedLogisticMixture
from .kl import has_closed_form, kl, kl_per_dim, kl_per_layer
from .planar import PlanarFlowNormal

__all__ = [
    "FAMILIES",
    "Columns",
    "DiscretizedLogisticMixture",
    "MarkovChain",
    "PlanarFlowNormal",
    "ValueCategorical",
    "detach",
    "has_closed_form",
    "kl",
    "kl_per_dim",
    "kl_per_layer",
]

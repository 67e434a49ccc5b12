"""Distributions torch lacks, the per-column families of tables, and KL terms.

The lowest layer: everything else passes these around; they import only aevb.errors.
"""

from .chain import MarkovChain
from .columns import FAMILIES, Columns
from .concat import Concatenated
from .core import ValueCategorical, detach
from .discrete import Bernoullis, Categoricals
from .discretized import DiscretizedLogisticMixture
from .kl import has_closed_form, kl, kl_per_dim, kl_per_layer
from .planar import PlanarFlowNormal
from .quantized import Codes, Quantized
from .sequence import TokenSequence

__all__ = [
    "FAMILIES",
    "Bernoullis",
    "Categoricals",
    "Codes",
    "Columns",
    "Concatenated",
    "DiscretizedLogisticMixture",
    "MarkovChain",
    "PlanarFlowNormal",
    "Quantized",
    "TokenSequence",
    "ValueCategorical",
    "detach",
    "has_closed_form",
    "kl",
    "kl_per_dim",
    "kl_per_layer",
]

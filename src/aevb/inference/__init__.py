"""Inference as functions: objectives (ELBO, IWAE, M2, semi-amortized, per-example) and
per-example q fitted with the decoder frozen."""

from .local import LOCAL_FAMILIES, LocalPosterior, fit_local, local_elbo, per_example_elbo, refine
from .objectives import (
    ELBOTerms,
    LatentVariableModel,
    VQTerms,
    elbo,
    iwae_bound,
    linear_warmup,
    vq_elbo,
)
from .semi_amortized import semi_amortized_elbo
from .semisupervised import SemiSupervisedTerms, semi_supervised_objective

__all__ = [
    "LOCAL_FAMILIES",
    "ELBOTerms",
    "LatentVariableModel",
    "LocalPosterior",
    "SemiSupervisedTerms",
    "VQTerms",
    "elbo",
    "fit_local",
    "iwae_bound",
    "linear_warmup",
    "local_elbo",
    "per_example_elbo",
    "refine",
    "semi_amortized_elbo",
    "semi_supervised_objective",
    "vq_elbo",
]

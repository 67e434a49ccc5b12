"""aevb: variational autoencoders as amortized variational inference.

Specify p(z), p(x|z) and q(z|x) from interchangeable parts, fit them by SGVB/AEVB
(Kingma & Welling 2014), evaluate them in nats, and use what was learned.
"""

__version__ = "0.1.0"

from .checkpoint import load_weights, save_weights
from .data import Dataset, load_dataset, split
from .distributions import ValueCategorical, detach
from .errors import AevbError, CheckpointError, ConfigError, DataError, TrainingDiverged
from .evaluation import (
    LogPx,
    Surgery,
    active_units,
    bits_per_dim,
    elbo_surgery,
    encode_means,
    evaluate,
    kl_per_dimension,
    log_px,
)
from .families import FAMILIES, Columns
from .flows import PlanarFlowHead, PlanarFlowNormal
from .heads import (
    BernoulliHead,
    CategoricalHead,
    ColumnsHead,
    ContinuousBernoulliHead,
    FullCovarianceNormalHead,
    LaplaceHead,
    NormalHead,
)
from .imputation import impute, multiple_imputations
from .kl import has_closed_form, kl, kl_per_dim
from .model import VAE, mlp_vae
from .networks import MLP, MaskedInput
from .objectives import ELBOTerms, elbo, iwae_bound, linear_warmup
from .priors import LearnedNormalPrior, MixturePrior, StandardNormalPrior, VampPrior
from .runs import Run, load_run, train_run
from .schema import ColumnSpec, Schema
from .semisupervised import (
    UNLABELLED,
    M1Features,
    SemiSupervisedVAE,
    error_rate,
    labelled_subset,
    mlp_m2,
)
from .semisupervised_train import fit_semi_supervised, semi_supervised_objective
from .tabular import TabularVAE, read_table, tabular_vae, write_table
from .train import LatentSnapshots, Trainer

__all__ = [
    "FAMILIES",
    "MLP",
    "UNLABELLED",
    "VAE",
    "AevbError",
    "BernoulliHead",
    "CategoricalHead",
    "CheckpointError",
    "ColumnSpec",
    "Columns",
    "ColumnsHead",
    "ConfigError",
    "ContinuousBernoulliHead",
    "DataError",
    "Dataset",
    "ELBOTerms",
    "FullCovarianceNormalHead",
    "LaplaceHead",
    "LatentSnapshots",
    "LearnedNormalPrior",
    "LogPx",
    "M1Features",
    "MaskedInput",
    "MixturePrior",
    "NormalHead",
    "PlanarFlowHead",
    "PlanarFlowNormal",
    "Run",
    "Schema",
    "SemiSupervisedVAE",
    "StandardNormalPrior",
    "Surgery",
    "TabularVAE",
    "Trainer",
    "TrainingDiverged",
    "ValueCategorical",
    "VampPrior",
    "active_units",
    "bits_per_dim",
    "detach",
    "elbo",
    "elbo_surgery",
    "encode_means",
    "error_rate",
    "evaluate",
    "fit_semi_supervised",
    "has_closed_form",
    "impute",
    "iwae_bound",
    "kl",
    "kl_per_dim",
    "kl_per_dimension",
    "labelled_subset",
    "linear_warmup",
    "load_dataset",
    "load_run",
    "load_weights",
    "log_px",
    "mlp_m2",
    "mlp_vae",
    "multiple_imputations",
    "read_table",
    "save_weights",
    "semi_supervised_objective",
    "split",
    "tabular_vae",
    "train_run",
    "write_table",
]

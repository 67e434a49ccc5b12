"""aevb: variational autoencoders as amortized variational inference.

Specify p(z), p(x|z) and q(z|x) from interchangeable parts, fit them by SGVB/AEVB
(Kingma & Welling 2014), evaluate them in nats, and use what was learned.

Names are imported on first use (PEP 562), so that ``import aevb`` and ``aevb --help`` do not
load torch; type checkers read the imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .cli.runs import Run, load_run, train_run
    from .data import Dataset, load_dataset, split
    from .distributions import (
        FAMILIES,
        Columns,
        PlanarFlowNormal,
        ValueCategorical,
        detach,
        has_closed_form,
        kl,
        kl_per_dim,
    )
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
    from .inference import (
        ELBOTerms,
        elbo,
        iwae_bound,
        linear_warmup,
        per_example_elbo,
        semi_amortized_elbo,
        semi_supervised_objective,
    )
    from .models import (
        UNLABELLED,
        VAE,
        BernoulliHead,
        CategoricalHead,
        ColumnsHead,
        ContinuousBernoulliHead,
        FullCovarianceNormalHead,
        LaplaceHead,
        LearnedNormalPrior,
        M1Features,
        MixturePrior,
        NegativeBinomialHead,
        NormalHead,
        PerExampleVAE,
        PlanarFlowHead,
        SemiSupervisedVAE,
        StandardNormalPrior,
        VampPrior,
        mlp_m2,
        mlp_vae,
    )
    from .models.semisupervised import error_rate, labelled_subset
    from .nn import MLP, MaskedInput
    from .tabular import (
        ColumnSpec,
        Schema,
        TabularVAE,
        impute,
        multiple_imputations,
        read_table,
        tabular_vae,
        write_table,
    )
    from .training import (
        LabelledMix,
        LatentSnapshots,
        Shuffled,
        Trainer,
        fit_mean_field,
        fit_semi_supervised,
        load_weights,
        save_weights,
    )

_LAZY = {
    "AevbError": "errors",
    "BernoulliHead": "models",
    "CategoricalHead": "models",
    "CheckpointError": "errors",
    "ColumnSpec": "tabular",
    "Columns": "distributions",
    "ColumnsHead": "models",
    "ConfigError": "errors",
    "ContinuousBernoulliHead": "models",
    "DataError": "errors",
    "Dataset": "data",
    "ELBOTerms": "inference",
    "FAMILIES": "distributions",
    "FullCovarianceNormalHead": "models",
    "LabelledMix": "training",
    "LaplaceHead": "models",
    "LatentSnapshots": "training",
    "LearnedNormalPrior": "models",
    "LogPx": "evaluation",
    "M1Features": "models",
    "MLP": "nn",
    "MaskedInput": "nn",
    "MixturePrior": "models",
    "NegativeBinomialHead": "models",
    "NormalHead": "models",
    "PerExampleVAE": "models",
    "PlanarFlowHead": "models",
    "PlanarFlowNormal": "distributions",
    "Run": "cli.runs",
    "Schema": "tabular",
    "SemiSupervisedVAE": "models",
    "Shuffled": "training",
    "StandardNormalPrior": "models",
    "Surgery": "evaluation",
    "TabularVAE": "tabular",
    "Trainer": "training",
    "TrainingDiverged": "errors",
    "UNLABELLED": "models",
    "VAE": "models",
    "ValueCategorical": "distributions",
    "VampPrior": "models",
    "active_units": "evaluation",
    "bits_per_dim": "evaluation",
    "detach": "distributions",
    "elbo": "inference",
    "elbo_surgery": "evaluation",
    "encode_means": "evaluation",
    "error_rate": "models.semisupervised",
    "evaluate": "evaluation",
    "fit_mean_field": "training",
    "fit_semi_supervised": "training",
    "has_closed_form": "distributions",
    "impute": "tabular",
    "iwae_bound": "inference",
    "kl": "distributions",
    "kl_per_dim": "distributions",
    "kl_per_dimension": "evaluation",
    "labelled_subset": "models.semisupervised",
    "linear_warmup": "inference",
    "load_dataset": "data",
    "load_run": "cli.runs",
    "load_weights": "training",
    "log_px": "evaluation",
    "mlp_m2": "models",
    "mlp_vae": "models",
    "multiple_imputations": "tabular",
    "per_example_elbo": "inference",
    "read_table": "tabular",
    "save_weights": "training",
    "semi_amortized_elbo": "inference",
    "semi_supervised_objective": "inference",
    "split": "data",
    "tabular_vae": "tabular",
    "train_run": "cli.runs",
    "write_table": "tabular",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'aevb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
    "LabelledMix",
    "LaplaceHead",
    "LatentSnapshots",
    "LearnedNormalPrior",
    "LogPx",
    "M1Features",
    "MaskedInput",
    "MixturePrior",
    "NegativeBinomialHead",
    "NormalHead",
    "PerExampleVAE",
    "PlanarFlowHead",
    "PlanarFlowNormal",
    "Run",
    "Schema",
    "SemiSupervisedVAE",
    "Shuffled",
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
    "fit_mean_field",
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
    "per_example_elbo",
    "read_table",
    "save_weights",
    "semi_amortized_elbo",
    "semi_supervised_objective",
    "split",
    "tabular_vae",
    "train_run",
    "write_table",
]

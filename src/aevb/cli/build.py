"""Names in a :class:`RunConfig` turned into objects: the model, the objective, the Trainer.

The registries map each name that :mod:`aevb.cli.config` accepts to its part.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..inference.objectives import elbo, iwae_bound
from ..inference.semi_amortized import semi_amortized_elbo
from ..models.flows import PlanarFlowHead
from ..models.heads import (
    BernoulliHead,
    CategoricalHead,
    ContinuousBernoulliHead,
    FullCovarianceNormalHead,
    LaplaceHead,
    NegativeBinomialHead,
    NormalHead,
)
from ..models.priors import LearnedNormalPrior, MixturePrior, StandardNormalPrior, VampPrior
from ..models.semisupervised import SemiSupervisedVAE, mlp_m2
from ..models.vae import VAE, mlp_vae
from ..nn.mlp import ACTIVATIONS
from ..training.samplers import BatchSampler
from ..training.trainer import Objective, Trainer
from .config import ModelConfig, RunConfig, TrainConfig

LIKELIHOODS: dict[str, Callable[[ModelConfig], Callable[[int, int], nn.Module]]] = {
    "bernoulli": lambda c: BernoulliHead,
    "continuous-bernoulli": lambda c: ContinuousBernoulliHead,
    "normal": lambda c: NormalHead,
    "normal-fixed": lambda c: functools.partial(NormalHead, scale=c.likelihood_scale),
    "laplace": lambda c: LaplaceHead,
    "negative-binomial": lambda c: NegativeBinomialHead,
    "categorical": lambda c: functools.partial(CategoricalHead, num_categories=c.num_categories),
}
# (config, data_dim, encoder) -> prior
PRIORS: dict[str, Callable[[ModelConfig, int, nn.Module], nn.Module]] = {
    "standard-normal": lambda c, d, e: StandardNormalPrior(c.latent_dim),
    "learned-normal": lambda c, d, e: LearnedNormalPrior(c.latent_dim),
    "mixture": lambda c, d, e: MixturePrior(c.latent_dim, c.prior_components or 10),
    "vamp": lambda c, d, e: VampPrior(e, d, c.prior_components or 500),
}
OBJECTIVES = {"elbo": elbo, "iwae": iwae_bound}
POSTERIORS: dict[str, Callable[[int, int], nn.Module]] = {
    "diagonal": NormalHead,
    "full": FullCovarianceNormalHead,
    "planar": PlanarFlowHead,
}
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def build_model(config: ModelConfig, data_dim: int) -> VAE:
    """The :class:`aevb.VAE` a :class:`ModelConfig` describes, for data of ``data_dim``."""
    model = mlp_vae(
        data_dim,
        config.latent_dim,
        config.hidden_dims,
        likelihood=LIKELIHOODS[config.likelihood](config),
        activation=ACTIVATIONS[config.activation],
        posterior=POSTERIORS[config.posterior],
    )
    model.prior = PRIORS[config.prior](config, data_dim, model.encoder)
    return model


def build_semi_supervised(
    config: ModelConfig, data_dim: int, num_classes: int, features: nn.Module | None = None
) -> SemiSupervisedVAE:
    """The M2 model (``kind = "m2"``) or conditional VAE (``"cvae"``) of a config; with
    ``features`` (M1+M2) ``data_dim`` is their size."""
    if features is not None and config.likelihood not in ("normal", "normal-fixed", "laplace"):
        raise ConfigError(
            f"M1 features are real numbers, but likelihood = {config.likelihood!r}: set "
            "likelihood = normal (--likelihood normal) for an m2 model over an m1 run"
        )
    return mlp_m2(
        data_dim,
        num_classes,
        config.latent_dim,
        config.hidden_dims,
        likelihood=LIKELIHOODS[config.likelihood](config),
        activation=ACTIVATIONS[config.activation],
        classifier=config.kind == "m2",
        features=features,
    )


def build_trainer(
    config: RunConfig,
    model: nn.Module,
    run_dir: str | Path | None,
    *,
    objective: Objective | None = None,
    sampler: BatchSampler | None = None,
    epoch_metrics: Callable[[Any], dict[str, float]] | None = None,
    progress: bool = True,
) -> Trainer:
    """The :class:`aevb.Trainer` of a run: options from ``config.train``; the objective too
    unless the model kind brings its own (M2, per-example q)."""
    train = config.train
    if objective is None:
        objective = build_objective(train)
    return Trainer(
        model,
        objective=objective,
        sampler=sampler,
        optimizer=OPTIMIZERS[train.optimizer],
        lr=train.lr,
        lr_decay=train.lr_decay,
        sparse_lr=train.local_lr,
        batch_size=train.batch_size,
        max_epochs=train.epochs,
        patience=train.patience,
        beta=train.beta,
        kl_warmup_epochs=train.kl_warmup_epochs,
        clip_grad_norm=train.clip_grad_norm,
        max_seconds=train.max_seconds,
        seed=config.seed,
        run_dir=run_dir,
        progress=progress,
        epoch_metrics=epoch_metrics,
    )


def build_objective(train: TrainConfig) -> Objective:
    """The ELBO, IWAE or semi-amortized objective that ``[train]`` describes."""
    if train.refine_steps > 0:
        return functools.partial(
            semi_amortized_elbo,
            steps=train.refine_steps,
            lr=train.refine_lr,
            differentiable=train.refine_differentiable,
        )
    if train.objective == "iwae":
        return functools.partial(iwae_bound, k=train.k, gradient=train.iwae_gradient)
    return functools.partial(
        elbo,
        num_samples=train.num_samples,
        analytic_kl=train.analytic_kl,
        stl=train.stl,
        free_bits=train.free_bits,
    )

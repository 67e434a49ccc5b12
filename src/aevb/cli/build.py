"""Names in a :class:`RunConfig` turned into objects: the model, the objective, the Trainer.

The registries map each name that :mod:`aevb.cli.config` accepts to its part.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..errors import ConfigError
from ..inference.objectives import elbo, iwae_bound, vq_elbo
from ..inference.semi_amortized import semi_amortized_elbo
from ..models.discrete import (
    BernoulliLatentHead,
    BernoulliPrior,
    CategoricalLatentHead,
    CategoricalPrior,
)
from ..models.flows import PlanarFlowHead
from ..models.heads import (
    BernoulliHead,
    CategoricalHead,
    ContinuousBernoulliHead,
    DiscretizedLogisticHead,
    FullCovarianceNormalHead,
    LaplaceHead,
    NegativeBinomialHead,
    NormalHead,
    StudentTHead,
)
from ..models.hierarchy import hierarchical_vae
from ..models.priors import LearnedNormalPrior, MixturePrior, StandardNormalPrior, VampPrior
from ..models.quantized import Codebook, CodePrior, VQHead
from ..models.semisupervised import SemiSupervisedVAE, mlp_m2
from ..models.sequence import series_vae, text_vae
from ..models.vae import VAE
from ..nn.conv import ConvDecoder, ConvEncoder
from ..nn.mlp import ACTIVATIONS, MLP
from ..nn.utils import out_dim
from ..training.callbacks import TemperatureSchedule
from ..training.optimizers import OptimizerFactory, adam
from ..training.samplers import BatchSampler
from ..training.trainer import Objective, Trainer
from .config import DISCRETE_POSTERIORS, ModelConfig, RunConfig, TrainConfig

LIKELIHOODS: dict[str, Callable[[ModelConfig], Callable[..., nn.Module]]] = {
    "bernoulli": lambda c: BernoulliHead,
    "continuous-bernoulli": lambda c: ContinuousBernoulliHead,
    "normal": lambda c: NormalHead,
    "normal-fixed": lambda c: functools.partial(NormalHead, scale=c.likelihood_scale),
    "laplace": lambda c: LaplaceHead,
    "student-t": lambda c: StudentTHead,
    "negative-binomial": lambda c: NegativeBinomialHead,
    "categorical": lambda c: functools.partial(CategoricalHead, num_categories=c.num_categories),
    "discretized-logistic": lambda c: functools.partial(
        DiscretizedLogisticHead, num_components=c.likelihood_components, num_bins=c.num_categories
    ),
}
# (config, data_dim, encoder) -> prior
PRIORS: dict[str, Callable[[ModelConfig, int, nn.Module], nn.Module]] = {
    "standard-normal": lambda c, d, e: StandardNormalPrior(c.latent_dim),
    "learned-normal": lambda c, d, e: LearnedNormalPrior(c.latent_dim),
    "mixture": lambda c, d, e: MixturePrior(c.latent_dim, c.prior_components or 10),
    "vamp": lambda c, d, e: VampPrior(e, d, c.prior_components or 500),
    "uniform": lambda c, d, e: _discrete_prior(c, e, learned=False),
    "learned-discrete": lambda c, d, e: _discrete_prior(c, e, learned=True),
    "autoregressive": lambda c, d, e: _discrete_prior(c, e, learned=True),
}
OBJECTIVES = {"elbo": elbo, "iwae": iwae_bound}
# (config, hidden size, size of z, **options) -> q(z|x) head; options: a spatial projection
POSTERIORS: dict[str, Callable[..., nn.Module]] = {
    "diagonal": lambda c, i, o, **p: NormalHead(i, o, **p),
    "full": lambda c, i, o: FullCovarianceNormalHead(i, o),
    "planar": lambda c, i, o: PlanarFlowHead(i, o),
    "categorical": lambda c, i, o: CategoricalLatentHead(
        i, o, c.latent_categories, straight_through=c.straight_through
    ),
    "bernoulli": lambda c, i, o: BernoulliLatentHead(i, o, straight_through=c.straight_through),
    "vq": lambda c, i, o, **p: VQHead(
        i, o, Codebook(c.codebook_size, c.code_dim, ema=c.codebook_ema), **p
    ),
}
OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def _discrete_prior(config: ModelConfig, encoder: nn.Module, *, learned: bool) -> nn.Module:
    """The uniform (or learned) prior of a categorical or Bernoulli latent, or over the codes
    of a VQ head (learned: autoregressive); ``latent_dim`` is the size of z (variables x
    categories for categorical latents, codes x code_dim for VQ)."""
    head = list(encoder.children())[-1]  # the q head, after the body
    if isinstance(head, VQHead):
        return CodePrior(head.codebook, head.num_codes, autoregressive=learned)
    if config.posterior == "categorical":
        num_vars = config.latent_dim // config.latent_categories
        return CategoricalPrior(num_vars, config.latent_categories, learned=learned)
    return BernoulliPrior(config.latent_dim, learned=learned)


def build_model(
    config: ModelConfig,
    data_dim: int,
    image_shape: tuple[int, ...] | None = None,
    vocab_size: int | None = None,
    sequence_shape: tuple[int, int] | None = None,
) -> VAE:
    """The :class:`aevb.VAE` a :class:`ModelConfig` describes, for data of ``data_dim``
    (images of ``image_shape`` ``(C, H, W)``, which convolutional bodies need; rows of
    ``data_dim`` token ids from a vocabulary of ``vocab_size``, or real-valued sequences of
    ``sequence_shape`` ``(steps, channels)``, which recurrent bodies need)."""
    if config.body == "rnn":
        return _sequence_model(config, data_dim, vocab_size, sequence_shape)
    activation = ACTIVATIONS[config.activation]
    likelihood = LIKELIHOODS[config.likelihood](config)
    if config.posterior in ("categorical", "vq"):  # latent_dim variables or codes
        values = config.latent_categories if config.posterior == "categorical" else config.code_dim
        config = dataclasses.replace(config, latent_dim=config.latent_dim * values)
    encoder_body, decoder_body, z1_size = _bodies(config, data_dim, image_shape)
    config = dataclasses.replace(config, latent_dim=z1_size)
    # (built before the likelihood head: the same initial weights as before hierarchies)
    posterior: nn.Module
    options = {}
    if config.spatial_latents:  # z_1 at each position of the encoder's last map
        options["projection"] = cast(ConvEncoder, encoder_body).projection
    posterior = POSTERIORS[config.posterior](
        config, out_dim(encoder_body), config.latent_dim, **options
    )
    projection = getattr(decoder_body, "projection", nn.Linear)
    decoder = nn.Sequential(
        decoder_body, likelihood(out_dim(decoder_body), data_dim, projection=projection)
    )
    if config.latent_layers:  # the chain's own Gaussian heads replace ``posterior``
        sizes = (config.latent_dim, *config.latent_layers)
        return hierarchical_vae(
            encoder_body,
            decoder,
            sizes,
            hidden_dims=config.layer_hidden_dims,
            activation=activation,
            inference=config.hierarchy,
            first_head=posterior if config.spatial_latents else None,
            vamp_components=(config.prior_components or 500) if config.prior == "vamp" else None,
        )
    encoder = nn.Sequential(encoder_body, posterior)
    return VAE(encoder, decoder, PRIORS[config.prior](config, data_dim, encoder))


def _sequence_model(
    config: ModelConfig,
    length: int,
    vocab_size: int | None,
    sequence_shape: tuple[int, int] | None,
) -> VAE:
    """A sentence VAE over rows of ``length`` ids (:func:`aevb.models.sequence.text_vae`), or
    a VAE over real-valued sequences (:func:`aevb.models.sequence.series_vae`)."""
    if vocab_size is None and sequence_shape is None:
        raise ConfigError(
            "body = 'rnn' reads sequences: give text (a .txt or .txt.gz file) or real-valued "
            "sequences (sequences = true)"
        )
    if len(set(config.hidden_dims)) > 1:
        raise ConfigError(
            f"body = 'rnn' stacks recurrent layers of one width; hidden_dims = "
            f"{list(config.hidden_dims)} differ: give equal widths, e.g. 256,256"
        )
    network: dict[str, Any] = {
        "embed_dim": config.embed_dim,
        "hidden_dim": config.hidden_dims[0],
        "layers": len(config.hidden_dims),
        "cell": config.cell,
        "bidirectional": config.bidirectional,
        "dropout": config.dropout,
        "prior": PRIORS[config.prior](config, length, nn.Identity()),  # Gaussian: no encoder
    }
    if sequence_shape is not None:
        steps, channels = sequence_shape
        family = "student-t" if config.likelihood == "student-t" else "normal"
        return series_vae(channels, steps, config.latent_dim, family=family, **network)
    assert vocab_size is not None
    word_dropout = config.word_dropout
    return text_vae(vocab_size, length, config.latent_dim, word_dropout=word_dropout, **network)


def _bodies(
    config: ModelConfig, data_dim: int, image_shape: tuple[int, ...] | None
) -> tuple[nn.Module, nn.Module, int]:
    """The encoder body ``x -> h`` and the decoder body ``z_1 -> h`` of ``config.body``, and
    the size of z_1: ``latent_dim``, or ``latent_dim`` channels at every position of a
    spatial latent."""
    activation = ACTIVATIONS[config.activation]
    if config.body == "mlp":
        decoder_widths = tuple(reversed(config.hidden_dims))
        return (
            MLP(data_dim, config.hidden_dims, activation),
            MLP(config.latent_dim, decoder_widths, activation),
            config.latent_dim,
        )
    if image_shape is None:
        raise ConfigError(
            f"body = {config.body!r} needs image data (a (C, H, W) shape); these data are flat "
            "vectors: use body = 'mlp', or give images (.npy of (n, H, W), a folder of PNGs)"
        )
    options: dict[str, Any] = {"norm": config.norm, "residual_blocks": int(config.body == "resnet")}
    encoder = ConvEncoder(image_shape, config.channels, activation, **options)
    latent_dim = config.latent_dim
    if config.spatial_latents:
        height, width = encoder.sizes[-1]
        latent_dim *= height * width
    decoder = ConvDecoder(
        latent_dim,
        image_shape,
        tuple(reversed(config.channels)),
        activation,
        spatial=config.spatial_latents,
        **options,
    )
    return encoder, decoder, latent_dim


def build_semi_supervised(
    config: ModelConfig,
    data_dim: int,
    num_classes: int,
    features: nn.Module | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> SemiSupervisedVAE:
    """The M2 model (``kind = "m2"``) or conditional VAE (``"cvae"``) of a config; with
    ``features`` (M1+M2) ``data_dim`` is their size. Convolutional bodies (``body``) see x as
    images of ``image_shape``."""
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
        image_bodies=_image_bodies(config, None if features is not None else image_shape),
    )


def _image_bodies(
    config: ModelConfig, image_shape: tuple[int, ...] | None
) -> Callable[[int], tuple[nn.Module, nn.Module, nn.Module]] | None:
    """M2's convolutional bodies (see :func:`aevb.models.semisupervised.mlp_m2`), or None."""
    if config.body == "mlp":
        return None
    if image_shape is None:
        raise ConfigError(
            f"body = {config.body!r} needs image data; M1 features and flat vectors are not: "
            "use body = 'mlp' for this m2 model (the m1 run may be convolutional)"
        )
    shape: tuple[int, ...] = image_shape
    activation = ACTIVATIONS[config.activation]
    options: dict[str, Any] = {"norm": config.norm, "residual_blocks": int(config.body == "resnet")}

    def bodies(width: int) -> tuple[nn.Module, nn.Module, nn.Module]:
        return (
            ConvEncoder(shape, config.channels, activation, **options),
            ConvEncoder(shape, config.channels, activation, **options),
            ConvDecoder(width, shape, tuple(reversed(config.channels)), activation, **options),
        )

    return bodies


def build_trainer(
    config: RunConfig,
    model: nn.Module,
    run_dir: str | Path | None,
    *,
    objective: Objective | None = None,
    sampler: BatchSampler | None = None,
    epoch_metrics: Callable[[Any], dict[str, float]] | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> Trainer:
    """The :class:`aevb.Trainer` of a run: options from ``config.train``; the objective too
    unless the model kind brings its own (M2, per-example q); discrete latents anneal their
    relaxation's temperature."""
    train = config.train
    if objective is None:
        objective = build_objective(train, config.model)
    callbacks = []
    if config.model.posterior in DISCRETE_POSTERIORS:
        temperatures = (train.temperature, train.temperature_min, train.temperature_rate)
        callbacks.append(TemperatureSchedule(*temperatures))
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
        kl_schedule=train.kl_schedule,
        kl_cycles=train.kl_cycles,
        aggressive_steps=train.aggressive_steps,
        clip_grad_norm=train.clip_grad_norm,
        max_seconds=train.max_seconds,
        seed=config.seed,
        run_dir=run_dir,
        progress=progress,
        verbose=verbose,
        precision=train.precision,
        compile=train.compile,
        device=train.device,
        epoch_metrics=epoch_metrics,
        callbacks=callbacks,
    )


def build_objective(train: TrainConfig, model: ModelConfig | None = None) -> Objective:
    """The ELBO, IWAE, semi-amortized or VQ-VAE objective that ``[train]`` (and the model's
    posterior) describe."""
    if model is not None and model.posterior == "vq":
        return functools.partial(vq_elbo, commitment=train.commitment)
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

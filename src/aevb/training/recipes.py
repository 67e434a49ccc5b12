"""The one :class:`Trainer` set up for two model kinds, as short recipes:

- :func:`fit_semi_supervised`: M2 and the conditional VAE (Kingma et al. 2014) with the M2
  objective and minibatches that mix labelled and unlabelled rows (:class:`LabelledMix`);
- :func:`fit_mean_field`: variational EM with a free q_i per example (seed 003), a
  :class:`aevb.PerExampleVAE` around the decoder, fitted with :func:`per_example_elbo`;
- :func:`fit_code_prior`: the autoregressive prior of a VQ-VAE refitted to the codes of its
  training set.

Each is a few lines over ``Trainer(...).fit(...)``; use the Trainer directly for callbacks
or anything else the recipe does not pass on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..data.ondisk import Rows
from ..errors import ConfigError
from ..evaluation.codes import code_indices
from ..inference.local import LocalPosterior, per_example_elbo
from ..inference.semisupervised import semi_supervised_objective
from ..models.per_example import PerExampleVAE
from ..models.quantized import CodePrior, CodeTransformer
from ..models.semisupervised import UNLABELLED, SemiSupervisedVAE, error_rate
from ..models.vae import VAE
from ..nn.utils import device_of
from .samplers import LabelledMix, Shuffled
from .trainer import Trainer


def fit_semi_supervised(
    model: SemiSupervisedVAE,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    valid: tuple[torch.Tensor, torch.Tensor] | None = None,
    epochs: int = 100,
    batch_size: int = 100,
    labelled_per_batch: int = 10,
    alpha: float = 1.0,
    labelled_share: float | None = None,
    lr: float = 1e-3,
    lr_decay: float = 1.0,
    num_samples: int = 1,
    beta: float = 1.0,
    clip_grad_norm: float | None = None,
    max_seconds: float | None = None,
    seed: int = 0,
    progress: bool = True,
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Fit M2 (or a conditional VAE) by Adam on mixed minibatches; return the history.

    Args:
        model: :class:`aevb.SemiSupervisedVAE`.
        x: ``(n, D)`` training data.
        y: ``(n,)`` long labels, :data:`aevb.UNLABELLED` (-1) where unknown.
        valid: ``(x, y)`` held-out data whose labelled rows give ``valid_error`` per epoch
            (recorded for the learning curve; the model returned is the last one).
        epochs: passes over the unlabelled rows (the labelled ones when all are labelled).
        batch_size: unlabelled rows per step (labelled rows when all are labelled).
        labelled_per_batch: labelled rows added to each step that has unlabelled rows.
        alpha: weight of the classification term, in units of the paper's alpha / N.
        labelled_share: weight of the labelled ELBO (the unlabelled one gets the rest);
            ``None``: N_l / N, the paper's objective.
        lr, lr_decay: Adam step size, multiplied by ``lr_decay`` after every epoch.
        beta: KL weight of z, see :func:`aevb.semi_supervised_objective`.
        max_seconds: wall-time budget: no epoch starts that would end past it.
        run_dir, resume: a folder for the Trainer's checkpoint after every epoch, and to
            continue from it (bit-identical to one uninterrupted run): long fits in pieces.

    Raises:
        DataError: labels or data that do not fit the model (no labelled row at all, a label
            out of range, values outside the likelihood's support).
        TrainingDiverged: the objective became NaN or infinite; the parameters are those
            from before the failing step.
    """
    trainer = Trainer(
        model,
        objective=m2_objective(y, alpha=alpha, labelled_share=labelled_share,
                               num_samples=num_samples),
        sampler=LabelledMix(batch_size, labelled_per_batch),
        lr=lr,
        lr_decay=lr_decay,
        max_epochs=epochs,
        beta=beta,
        clip_grad_norm=clip_grad_norm,
        max_seconds=max_seconds,
        seed=seed,
        progress=progress,
        epoch_metrics=validation_error(*valid) if valid is not None else None,
        run_dir=run_dir,
    )  # fmt: skip
    if valid is not None:
        model.check_data(*valid)
    return trainer.fit((x, y), resume=resume)


def m2_objective(
    y: torch.Tensor,
    *,
    alpha: float = 1.0,
    labelled_share: float | None = None,
    num_samples: int = 1,
) -> functools.partial[Any]:
    """The M2 objective for training labels ``y``: its labelled share defaults to N_l / N."""
    if labelled_share is None:
        labelled_share = float((y != UNLABELLED).double().mean())
    return functools.partial(
        semi_supervised_objective,
        labelled_share=labelled_share,
        alpha=alpha,
        num_samples=num_samples,
    )


def validation_error(x: torch.Tensor, y: torch.Tensor) -> Any:
    """``epoch_metrics`` for the Trainer: ``{"valid_error": ...}`` on the labelled rows."""

    def metrics(model: SemiSupervisedVAE) -> dict[str, float]:
        if model.classifier is None:
            return {}
        device = device_of(model)
        return {"valid_error": error_rate(model, x.to(device), y.to(device))}

    return metrics


def fit_mean_field(
    model: VAE,
    x: torch.Tensor,
    *,
    epochs: int = 100,
    batch_size: int = 100,
    lr: float = 1e-3,
    local_lr: float = 1e-2,
    max_seconds: float | None = None,
    seed: int = 0,
) -> tuple[LocalPosterior, list[dict[str, Any]]]:
    """Variational EM with local parameters (seed 003): decoder θ and every λ_i jointly.

    Each step draws a minibatch of examples, builds their q_i = N(μ_i, σ_i²) from the
    stored λ_i, and ascends the minibatch ELBO — an unbiased estimate of the full-data ELBO
    up to the factor n / batch_size, which Adam's scale invariance makes irrelevant — in
    both θ (``lr``) and the λ_i of the batch (``local_lr``, sparse updates). The encoder of
    ``model`` is not used.

    Returns:
        the fitted :class:`LocalPosterior` of the training data and the per-epoch history.
    """
    local = PerExampleVAE(model.decoder, model.prior, x.shape[0])
    trainer = Trainer(
        local,
        objective=per_example_elbo,
        sampler=Shuffled(batch_size, with_index=True),
        lr=lr,
        sparse_lr=local_lr,
        max_epochs=epochs,
        max_seconds=max_seconds,
        seed=seed,
        progress=False,
    )
    history = trainer.fit(x)
    model.eval()
    q = local.posterior()
    params = {name: value.detach().clone() for name, value in q.params.items()}
    return LocalPosterior("diagonal", params, steps=len(history)), history


@dataclass(frozen=True)
class _CodeTerms:
    """log p(c) of each datum's code indices under a :class:`aevb.CodeTransformer`."""

    log_p: torch.Tensor
    descriptions: ClassVar[dict[str, str]] = {"log_p": "log-probability of the codes"}

    @property
    def loss(self) -> torch.Tensor:
        return -self.log_p.mean()

    def per_example(self) -> dict[str, torch.Tensor]:
        return {"log_p": self.log_p.detach()}


def _code_log_likelihood(model: CodeTransformer, codes: torch.Tensor, **_: Any) -> _CodeTerms:
    return _CodeTerms(model.log_prob(codes.long()))


def fit_code_prior(
    model: VAE,
    x: Rows,
    valid: Rows | None = None,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 100,
    patience: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Fit the autoregressive prior over the codes of a trained VQ-VAE to its encoded
    training set, by maximum likelihood (the second stage of van den Oord et al. 2017); the
    encoder, decoder and codebook stay as they are. Early stopping on the validation codes'
    log-likelihood (``valid_score``, nats per datum) keeps the best prior.

    Args:
        model: a VAE whose prior is a :class:`aevb.CodePrior` with ``autoregressive=True``.
        x, valid: ``(n, *event)`` training and validation data (encoded here).

    Returns:
        The Trainer's per-epoch history.
    """
    prior = model.prior
    if not isinstance(prior, CodePrior) or prior.index_model is None:
        raise ConfigError(
            "fit_code_prior fits an autoregressive prior over VQ codes: build the model with "
            "CodePrior(codebook, num_codes, autoregressive=True)"
        )
    codes = code_indices(model, x).float()  # the Trainer's rows are floats; exact below 2^24
    valid_codes = None if valid is None else code_indices(model, valid)

    def validate(index_model: CodeTransformer) -> float:
        assert valid_codes is not None
        with torch.no_grad():
            parts = [index_model.log_prob(c.to(device_of(model))) for c in valid_codes.split(1000)]
        return float(torch.cat(parts).mean())

    trainer = Trainer(
        prior.index_model,
        objective=_code_log_likelihood,
        lr=lr,
        batch_size=batch_size,
        max_epochs=epochs,
        patience=patience,
        seed=seed,
        progress=progress,
        validate=validate if valid_codes is not None else None,
    )
    history = trainer.fit(codes)
    model.eval()
    return history

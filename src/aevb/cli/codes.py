"""The steps a VQ-VAE run (``posterior = 'vq'``) adds to the one Trainer's: the codebook
checked against the data, code usage recorded every epoch, and the autoregressive prior
refitted to the training set's codes once the VAE is trained (van den Oord et al. 2017's
second stage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..data.ondisk import Rows
from ..errors import ConfigError
from ..evaluation.codes import code_indices, code_usage
from ..models.quantized import CodePrior, VQHead
from ..models.vae import VAE
from ..training.distributed import rank_and_size
from ..training.recipes import fit_code_prior
from .config import RunConfig

USAGE_ROWS = 10_000  # rows whose codes measure the codebook's usage each epoch


def vq_steps(
    config: RunConfig, model: VAE, train: Rows, valid: Rows | None, test: Rows | None
) -> tuple[Callable[[Any], dict[str, float]], Callable[[], dict[str, Any]]]:
    """``(epoch_metrics, finish)`` of a VQ-VAE run: the codebook's usage on validation rows
    (training rows without them) after each epoch; after training, the prior's refit and the
    test codes' usage.

    Raises:
        ConfigError: a codebook with more codes than the training set has code vectors (most
            could never be used), or training over several processes (each would move its own
            codebook).
    """
    head = next(m for m in model.modules() if isinstance(m, VQHead))
    size = head.codebook.num_codes
    vectors = train.shape[0] * head.num_codes
    if size > vectors:
        raise ConfigError(
            f"codebook_size = {size} is larger than the data: the training set has "
            f"{train.shape[0]} rows x {head.num_codes} codes = {vectors} code vectors, so most "
            f"codes could never be used; give codebook_size <= {vectors} (e.g. 512) or more data"
        )
    if rank_and_size()[1] > 1:
        raise ConfigError(
            "a VQ-VAE's codebook follows its encoder by moving averages in each process, which "
            "data-parallel training would split: train it in one process (drop --nproc)"
        )
    watched = (valid if valid is not None and valid.shape[0] else train)[:USAGE_ROWS]

    def usage(model: VAE) -> dict[str, float]:
        return code_usage(code_indices(model, watched), size)

    def finish() -> dict[str, Any]:
        facts: dict[str, Any] = {}
        prior = model.prior
        if isinstance(prior, CodePrior) and prior.index_model is not None:
            history = fit_code_prior(
                model,
                train,
                valid,
                epochs=config.train.prior_epochs,
                lr=config.train.lr,
                batch_size=config.train.batch_size,
                seed=config.seed,
            )
            facts["prior_epochs"] = len(history)
            facts["prior_seconds"] = sum(record["seconds"] for record in history)
        if test is not None and test.shape[0]:
            used = code_usage(code_indices(model, test), size)
            facts.update({f"test_{name}": value for name, value in used.items()})
        return facts

    return usage, finish

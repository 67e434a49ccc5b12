"""Fitting M2 and the conditional VAE: the objective, and minibatches that mix labelled and
unlabelled rows.

An epoch is one pass over the unlabelled rows (over the labelled rows when every row has a
label). Every step also takes ``labelled_per_batch`` labelled rows from a reshuffled cycle
through the few labelled ones, so with 100 labels out of 50,000 each labelled example is
seen many times per epoch; :func:`semi_supervised_objective` weights the
two parts by their share of the whole training set, so the over-sampling changes the
variance of the gradient, not the objective (Kingma et al. 2014, eq. 9).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import DataError, TrainingDiverged
from .evaluation import device_of
from .semisupervised import UNLABELLED, SemiSupervisedVAE, error_rate


@dataclass(frozen=True)
class SemiSupervisedTerms:
    """One minibatch of the M2 objective (Kingma et al. 2014, eq. 9), per-example in nats.

    Attributes:
        labelled: ``(B_l,)`` L(x, y) of the labelled examples.
        unlabelled: ``(B_u,)`` U(x) of the unlabelled examples.
        log_qy: ``(B_l,)`` log q(y|x) of the labelled examples (empty without classifier).
        surrogate: ``()`` the objective to maximize.
    """

    labelled: torch.Tensor
    unlabelled: torch.Tensor
    log_qy: torch.Tensor
    surrogate: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return -self.surrogate


def semi_supervised_objective(
    model: SemiSupervisedVAE,
    x_labelled: torch.Tensor,
    y: torch.Tensor,
    x_unlabelled: torch.Tensor | None = None,
    *,
    labelled_share: float = 1.0,
    alpha: float = 1.0,
    num_samples: int = 1,
    beta: float = 1.0,
) -> SemiSupervisedTerms:
    """The M2 objective per example (Kingma et al. 2014, eq. 9, divided by N):

        labelled_share * mean_l L(x, y) + (1 - labelled_share) * mean_u U(x)
            + alpha * mean_l log q(y|x)

    Args:
        x_labelled, y: ``(B_l, D)`` labelled examples and their ``(B_l,)`` labels.
        x_unlabelled: ``(B_u, D)`` unlabelled examples (``None`` or empty: none).
        labelled_share: N_l / N, the labelled fraction of the whole training set, so that a
            minibatch that over-samples labelled data still estimates the paper's objective.
        alpha: weight of the classification term; the paper's alpha = 0.1 N is ``0.1`` here
            (0.1 N / N_l per labelled example). Ignored by a conditional VAE.
        num_samples: z samples per (x, y) pair.
        beta: weight of KL(q(z|x,y) || p(z)) in both bounds: 1 is the paper's objective;
            any other value makes the terms no longer bounds on log p.
    """
    labelled = model.labelled_elbo(x_labelled, y, num_samples=num_samples, beta=beta)
    surrogate = labelled_share * labelled.mean() if len(y) else labelled.sum()
    log_qy = labelled.new_zeros(0)
    if model.classifier is not None and len(y):
        log_qy = model.classify(x_labelled).log_prob(y)
        surrogate = surrogate + alpha * log_qy.mean()
    unlabelled = labelled.new_zeros(0)
    if x_unlabelled is not None and len(x_unlabelled):
        unlabelled = model.unlabelled_elbo(x_unlabelled, num_samples=num_samples, beta=beta)
        surrogate = surrogate + (1.0 - labelled_share) * unlabelled.mean()
    return SemiSupervisedTerms(labelled, unlabelled, log_qy, surrogate)


class _Cycle:
    """Endless reshuffled passes over ``rows``, ``size`` at a time."""

    def __init__(self, rows: torch.Tensor, generator: torch.Generator) -> None:
        self.rows, self.generator = rows, generator
        self.order, self.position = rows[:0], 0

    def take(self, size: int) -> torch.Tensor:
        taken = []
        while size > 0:
            if self.position == len(self.order):
                permutation = torch.randperm(len(self.rows), generator=self.generator)
                self.order, self.position = self.rows[permutation], 0
            part = self.order[self.position : self.position + size]
            self.position += len(part)
            size -= len(part)
            taken.append(part)
        return torch.cat(taken)


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
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Fit M2 (or a conditional VAE) by Adam on mixed minibatches; return the history.

    Args:
        model: :class:`aevb.semisupervised.SemiSupervisedVAE`.
        x: ``(n, D)`` training data.
        y: ``(n,)`` long labels, :data:`aevb.semisupervised.UNLABELLED` (-1) where unknown.
        valid: ``(x, y)`` held-out data whose labelled rows give ``valid_error`` per epoch
            (recorded for the learning curve; the model returned is the last one).
        epochs: passes over the unlabelled rows (the labelled ones when all are labelled).
        batch_size: unlabelled rows per step (labelled rows when all are labelled).
        labelled_per_batch: labelled rows added to each step that has unlabelled rows.
        alpha: weight of the classification term, in units of the paper's alpha / N.
        labelled_share: weight of the labelled ELBO (the unlabelled one gets the rest);
            ``None``: N_l / N, the paper's objective.
        lr, lr_decay: Adam step size, multiplied by ``lr_decay`` after every epoch.
        beta: KL weight of z, see :func:`semi_supervised_objective`.
        max_seconds: stop after the first epoch that ends past this wall time.
        on_epoch: called with each epoch's record (e.g. to print or save a curve).

    Raises:
        DataError: labels or data that do not fit the model (no labelled row at all, a label
            out of range, values outside the likelihood's support).
        TrainingDiverged: the objective became NaN or infinite; the parameters are those
            from before the failing step.
    """
    model.check_data(x, y)
    labelled_rows = (y != UNLABELLED).nonzero().flatten()
    unlabelled_rows = (y == UNLABELLED).nonzero().flatten()
    if len(labelled_rows) == 0:
        raise DataError("no row has a label: M2 needs at least one labelled example per class")
    if valid is not None:
        model.check_data(*valid)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = device_of(model)
    share = len(labelled_rows) / len(y) if labelled_share is None else labelled_share
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    labelled_cycle = _Cycle(labelled_rows, generator)
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        passing = unlabelled_rows if len(unlabelled_rows) else labelled_rows
        order = passing[torch.randperm(len(passing), generator=generator)]
        sums = torch.zeros(3, dtype=torch.float64)
        counts = torch.zeros(3)
        steps = math.ceil(len(order) / batch_size)
        bar = tqdm(total=steps, leave=False, disable=None if progress else True)
        for batch in order.split(batch_size):
            if len(unlabelled_rows):
                labelled = labelled_cycle.take(labelled_per_batch)
                x_u = x[batch].to(device)
            else:
                labelled, x_u = batch, None
            terms = semi_supervised_objective(
                model,
                x[labelled].to(device),
                y[labelled].to(device),
                x_u,
                labelled_share=share,
                alpha=alpha,
                num_samples=num_samples,
                beta=beta,
            )
            if not torch.isfinite(terms.loss):
                raise TrainingDiverged(
                    f"the M2 objective became {terms.loss.item()} at epoch {epoch}; the model "
                    "keeps the parameters from before this step. Try a lower lr, "
                    "clip_grad_norm, or a smaller alpha."
                )
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
            bar.update()
            with torch.no_grad():
                for i, part in enumerate((terms.unlabelled, terms.labelled, -terms.log_qy)):
                    sums[i] += float(part.double().sum())
                    counts[i] += len(part)
        bar.close()
        for group in optimizer.param_groups:
            group["lr"] *= lr_decay
        means = (sums / counts.clamp(min=1)).tolist()
        record: dict[str, Any] = {
            "epoch": epoch,
            "seconds": time.perf_counter() - started,
            "train_unlabelled_elbo": means[0] if counts[0] else None,
            "train_labelled_elbo": means[1],
            "train_classification_nll": means[2] if counts[2] else None,
        }
        model.eval()
        if valid is not None and model.classifier is not None:
            record["valid_error"] = error_rate(model, valid[0].to(device), valid[1].to(device))
        history.append(record)
        if progress:
            shown = {k: v for k, v in record.items() if isinstance(v, float) and k != "seconds"}
            tqdm.write(f"epoch {epoch:>4}  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        if on_epoch is not None:
            on_epoch(record)
        if max_seconds is not None and record["seconds"] > max_seconds:
            break
    model.eval()
    return history

"""The M2 objective (Kingma et al. 2014, eq. 9): labelled and unlabelled bounds and the
classification term, per example, as one record for the Trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:  # types only: models import inference, not the other way round
    from ..models.semisupervised import SemiSupervisedVAE


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

    descriptions: ClassVar[dict[str, str]] = {
        "labelled_elbo": "labelled bound L(x, y)",
        "unlabelled_elbo": "unlabelled bound U(x)",
        "classification_nll": "classification term -log q(y|x)",
    }

    @property
    def loss(self) -> torch.Tensor:
        return -self.surrogate

    def per_example(self) -> dict[str, torch.Tensor]:
        """The terms the Trainer averages per epoch (``train_<name>``), each ``(B_*,)``."""
        return {
            "unlabelled_elbo": self.unlabelled,
            "labelled_elbo": self.labelled,
            "classification_nll": -self.log_qy,
        }


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

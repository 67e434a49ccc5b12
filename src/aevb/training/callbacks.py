"""Training callbacks: called as ``callback(trainer)`` when ``fit`` starts and after every
optimizer step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from ..evaluation.metrics import encode_means
from ..models.vae import VAE
from .checkpoint import load_tensors, save_tensors

if TYPE_CHECKING:
    from .trainer import Trainer


class LatentSnapshots:
    """Posterior means E_q[z|x] of fixed data every ``every`` steps: a training callback.

    Shows how q(z|x) moves from the prior blob to separated clusters during training
    (seed 003); :func:`aevb.viz.plots.animate_latent` turns the snapshots into a GIF.

    Args:
        x: ``(n, *event)`` data to encode at each snapshot (a few hundred examples suffice).
        every: steps between snapshots; the state at the start of ``fit`` is the first one.
    """

    def __init__(self, x: torch.Tensor, every: int = 50) -> None:
        if every < 1:
            raise ValueError(f"LatentSnapshots needs every >= 1, got {every}")
        self.x, self.every = x, every
        self.steps: list[int] = []
        self.means: list[torch.Tensor] = []

    def __call__(self, trainer: Trainer) -> None:
        if trainer.step % self.every == 0:
            self.record(cast(VAE, trainer.model), trainer.step)

    def record(self, model: VAE, step: int) -> None:
        """Add the means of ``model`` at ``step`` (once per step)."""
        if self.steps and self.steps[-1] == step:
            return
        self.steps.append(step)
        self.means.append(encode_means(model, self.x))

    def save(self, path: str | Path, labels: torch.Tensor | None = None) -> None:
        """Write ``means (num_snapshots, n, latent_dim)``, ``steps`` and, if given, the
        ``(n,)`` labels of the examples (for colouring) to safetensors."""
        tensors = {"means": torch.stack(self.means), "steps": torch.tensor(self.steps)}
        if labels is not None:
            tensors["labels"] = labels.contiguous()
        save_tensors(tensors, path)

    def load(self, path: str | Path) -> LatentSnapshots:
        """Continue from snapshots saved by :meth:`save` (when resuming a run)."""
        tensors = load_tensors(path)
        self.means = list(tensors["means"].unbind(0))
        self.steps = tensors["steps"].tolist()
        return self

"""Training callbacks: called as ``callback(trainer)`` when ``fit`` starts and after every
optimizer step."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from ..errors import ConfigError
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


class TemperatureSchedule:
    """Anneal the relaxation temperature of discrete latent heads during training:
    tau = max(``minimum``, ``start`` * exp(-``rate`` * step)) (Jang et al. 2017 anneal from 1
    to 0.5 with rate 1e-5 to 1e-4, every 1,000 steps; here every step). Sets ``temperature``
    on every part of the model that has one (:mod:`aevb.models.discrete`); a function of the
    step alone, so a resumed run anneals as an uninterrupted one."""

    def __init__(self, start: float = 1.0, minimum: float = 0.5, rate: float = 1e-4) -> None:
        if not (start > 0 and 0 < minimum <= start and rate >= 0):
            raise ConfigError(
                f"need start >= minimum > 0 and rate >= 0, got {start}, {minimum}, {rate}"
            )
        self.start, self.minimum, self.rate = start, minimum, rate

    def temperature(self, step: int) -> float:
        return max(self.minimum, self.start * math.exp(-self.rate * step))

    def __call__(self, trainer: Trainer) -> None:
        tau = self.temperature(trainer.step)
        for module in trainer.model.modules():
            if isinstance(getattr(module, "temperature", None), float):
                setattr(module, "temperature", tau)  # noqa: B010 (any part that has one)

"""The callbacks a run's config asks the Trainer for: posterior means recorded during
training (``snapshots.safetensors``, drawn as ``latent.gif``) and TensorBoard event files."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..data.dataset import Dataset
from ..errors import ConfigError
from ..models.vae import VAE
from ..training.callbacks import LatentSnapshots
from ..training.tensorboard import TensorBoard
from ..viz.report import SNAPSHOTS, spread_subset
from .config import RunConfig
from .folders import TENSORBOARD

SNAPSHOT_POINTS = 500  # examples whose posterior means are recorded during training


def tensorboard_of(
    config: RunConfig, model: nn.Module, train: Dataset, valid: Dataset, out: Path
) -> TensorBoard | None:
    """``--tensorboard``: event files in ``RUN/tensorboard`` (VAEs; KL per dimension and
    reconstructions of up to 500 validation rows)."""
    if not config.train.tensorboard:
        return None
    if not isinstance(model, VAE) or config.train.inference != "amortized":
        raise ConfigError("--tensorboard logs amortized VAEs (kind = vae, inference = amortized)")
    data = valid if len(valid) else train
    return TensorBoard(out / TENSORBOARD, data.x[:500], image_shape=train.image_shape)


def snapshots_of(
    config: RunConfig, model: nn.Module, train: Dataset, valid: Dataset, out: Path, resume: bool
) -> tuple[LatentSnapshots, Dataset] | None:
    """Posterior means of a spread of validation examples during training (amortized VAEs)."""
    every = config.train.snapshot_every
    amortized = isinstance(model, VAE) and config.train.inference == "amortized"
    if every == 0 or not amortized:
        return None
    data = spread_subset(valid if len(valid) else train, SNAPSHOT_POINTS)
    snapshots = LatentSnapshots(data.in_memory, every)
    if resume and (out / SNAPSHOTS).exists():
        snapshots.load(out / SNAPSHOTS)
    return snapshots, data

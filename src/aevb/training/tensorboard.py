"""TensorBoard logging: a Trainer callback writing event files beside ``metrics.jsonl``.

Needs the ``tensorboard`` package (``pip install 'aevb[tensorboard]'``); view the logs
with ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from ..errors import ConfigError
from ..evaluation.metrics import kl_per_dimension
from ..models.vae import VAE
from ..nn.utils import device_of

if TYPE_CHECKING:
    from .trainer import Trainer


class TensorBoard:
    """Log each epoch to TensorBoard: the objective's terms, KL per latent dimension, the
    learning rate and KL weight, and image grids of reconstructions and prior samples.

    A training callback (``Trainer(callbacks=[TensorBoard(...)])``): the Trainer calls its
    ``epoch_end`` after every epoch. Scalars are the epoch's record (``train_elbo`` becomes
    ``train/elbo``, ``valid_kl`` ``valid/kl``), ``kl_per_dim/z03`` and ``optim/lr``; the x
    axis is the optimizer step.

    Args:
        log_dir: folder of the event files (created; a resumed run appends to it and drops
            events past the step it resumes from).
        x: ``(n, *event)`` fixed data whose KL per dimension (and, for images,
            reconstructions) are logged; a few hundred rows suffice.
        image_shape: ``(C, H, W)`` of one datum, to log image grids (``None``: no images).
        num_images: images per grid.
    """

    def __init__(
        self,
        log_dir: str | Path,
        x: torch.Tensor,
        *,
        image_shape: tuple[int, ...] | None = None,
        num_images: int = 16,
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ConfigError(
                "TensorBoard logging needs the tensorboard package: "
                "pip install 'aevb[tensorboard]' (or pip install tensorboard)"
            ) from error
        self._writer_class = SummaryWriter
        self.log_dir, self.x = Path(log_dir), x
        self.image_shape, self.num_images = image_shape, num_images
        self.writer: Any = None
        self._data_logged = False

    def __call__(self, trainer: Trainer) -> None:
        if self.writer is None:  # when fit starts: a resume drops events past its step
            self.writer = self._writer_class(str(self.log_dir), purge_step=trainer.step or None)

    def epoch_end(self, trainer: Trainer) -> None:
        """Write the epoch just recorded in ``trainer.history``."""
        self(trainer)
        record, step, writer = trainer.history[-1], trainer.step, self.writer
        for name, value in record.items():
            if isinstance(value, int | float) and name not in ("epoch", "step"):
                writer.add_scalar(_tag(name), value, step)
        model = cast(VAE, trainer.model)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            x = self.x.to(device_of(model))
            per_dim = kl_per_dimension(model, x)
            if per_dim is not None:
                for j, value in enumerate(per_dim.tolist()):
                    writer.add_scalar(f"kl_per_dim/z{j:02d}", value, step)
                writer.add_histogram("kl_per_dim", per_dim, step)
            if self.image_shape is not None:
                self._images(model, x[: self.num_images], step)
        model.train(was_training)
        writer.flush()

    def _images(self, model: VAE, x: torch.Tensor, step: int) -> None:
        assert self.image_shape is not None
        shape = (-1, *self.image_shape)
        reconstructed = model.decode(model.encode(x).mean).mean
        samples = model.decode(model.prior().sample((x.shape[0],))).mean
        grids = {"reconstructions": reconstructed, "samples": samples}
        if not self._data_logged:  # the data do not change: once
            grids["data"], self._data_logged = x, True
        for tag, images in grids.items():
            scaled = images.reshape(shape).float().cpu()
            low, high = float(scaled.min()), float(scaled.max())
            if low < 0 or high > 1:  # counts or standardized values: shown min to max
                scaled = (scaled - low) / max(high - low, 1e-12)
            self.writer.add_images(f"images/{tag}", scaled, step, dataformats="NCHW")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tag(name: str) -> str:
    """``train_log_px_z`` -> ``train/log_px_z``; ``lr`` -> ``optim/lr``."""
    prefix, _, rest = name.partition("_")
    if prefix in ("train", "valid", "test") and rest:
        return f"{prefix}/{rest}"
    return f"optim/{name}" if name in ("lr", "beta", "seconds") else f"metrics/{name}"

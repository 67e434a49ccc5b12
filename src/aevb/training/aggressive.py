"""Aggressive inference-network training against posterior collapse (He et al. 2019,
"Lagging inference networks and posterior collapse in variational autoencoders", Algorithm 1).

Early in training q(z|x) lags behind the true posterior, and the decoder learns to ignore z
before the encoder has caught up. While the aggressive phase lasts, before each decoder
step the encoder alone is updated on fresh minibatches until the bound stops improving (at
most ``max_steps``, judged every ``window`` steps); then the step updates the decoder and
prior alone. The phase ends at the first epoch whose mutual information I(x; z) (ELBO
surgery on validation rows) does not exceed the previous epoch's. An option of the one
:class:`aevb.Trainer` (``aggressive_steps=100``, He et al.'s limit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..data.ondisk import Rows
from ..errors import ConfigError
from ..evaluation.surgery import elbo_surgery

MI_ROWS = 1000  # validation rows whose I(x; z) decides when the phase ends


class Aggressive:
    """The state of the aggressive phase: on until the mutual information stops rising."""

    def __init__(self, model: nn.Module, *, max_steps: int = 100, window: int = 10) -> None:
        encoder = getattr(model, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise ConfigError("aggressive training needs a model with an .encoder (a VAE)")
        ids = {id(p) for p in encoder.parameters()}
        self.encoder = list(encoder.parameters())
        self.decoder = [p for p in model.parameters() if id(p) not in ids]
        self.max_steps, self.window = max_steps, window
        self.active, self.mutual_info = True, -float("inf")

    def restore(self, history: list[dict[str, Any]]) -> None:
        """Continue where a resumed run's history left off."""
        if history and "aggressive" in history[-1]:
            self.active = bool(history[-1]["aggressive"])
            self.mutual_info = float(history[-1]["valid_mutual_info"])

    def encoder_steps(
        self,
        step: Callable[[torch.Tensor], torch.Tensor],
        x: Rows,
        batch_size: int,
        generator: torch.Generator,
    ) -> int:
        """Update the encoder alone, ``step(batch) -> loss`` on random rows of ``x``, until
        the loss summed over a window of steps stops falling; returns the steps taken."""
        best, total = float("inf"), 0.0
        for i in range(self.max_steps):
            rows = torch.randint(x.shape[0], (batch_size,), generator=generator)
            loss = step(x[rows])
            total += float(loss.detach())
            if (i + 1) % self.window == 0:
                if total >= best:
                    return i + 1
                best, total = total, 0.0
        return self.max_steps

    def only_encoder(self) -> None:
        """Drop the decoder's and prior's gradients (the encoder's steps)."""
        for p in self.decoder:
            p.grad = None

    def only_decoder(self) -> None:
        """Drop the encoder's gradients (the decoder's step of the aggressive phase)."""
        for p in self.encoder:
            p.grad = None

    def end_epoch(self, model: nn.Module, valid: Rows) -> dict[str, Any]:
        """I(x; z) on validation rows; the phase ends when it did not rise."""
        was_active = self.active
        with torch.no_grad():
            rows = valid[:MI_ROWS]  # read here when on disk
            mutual_info = elbo_surgery(model, rows).mutual_info  # type: ignore[arg-type]
        if self.active and mutual_info <= self.mutual_info:
            self.active = False
        self.mutual_info = mutual_info
        # "aggressive": whether the phase goes on into the next epoch
        return {"valid_mutual_info": mutual_info, "aggressive": was_active and self.active}

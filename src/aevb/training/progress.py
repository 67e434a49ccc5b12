"""What the Trainer prints after each epoch: one line a person can read at a glance."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

# left out to keep the line short: the reconstruction term is the ELBO plus the KL
_IMPLIED = {"train_log_px_z", "valid_log_px_z", "valid_kl"}


def epoch_line(
    record: dict[str, Any],
    max_epochs: int,
    clock: tuple[float, int],
    examples: int,
    every_term: bool = False,
) -> str:
    """``epoch 13/200  0:12 elapsed, ETA 2:40  5,230 ex/s  train_elbo -31.204 ...``.

    ``clock`` is when and at which epoch this ``fit`` started; the ETA assumes every epoch
    left runs (early stopping may end sooner); ``examples`` are the rows of data seen in this
    epoch, ``record["seconds"]`` its duration; ``every_term`` keeps the terms implied by
    others (the reconstruction term: the bound plus the KL).
    """
    started, first_epoch = clock
    epoch = record["epoch"]
    elapsed = time.perf_counter() - started
    eta = elapsed / max(epoch - first_epoch, 1) * (max_epochs - epoch)
    rate = examples / max(record["seconds"], 1e-9)
    terms = "  ".join(
        f"{k} {v:.3f}"
        for k, v in record.items()
        if k.startswith(("train_", "valid_"))
        and isinstance(v, float)
        and (every_term or k not in _IMPLIED)
    )
    width = len(str(max_epochs))
    return (
        f"epoch {epoch:>{width}}/{max_epochs}  {_clock(elapsed)} elapsed, ETA {_clock(eta)}  "
        f"{rate:,.0f} ex/s  {terms}"
    )


def _clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


def diverged(terms: Any, epoch: int, step: int, run_dir: Path | None) -> str:
    """Why training stopped on a NaN/inf objective: the term that broke (by the record's
    ``descriptions``), where, the checkpoint kept, and what to try."""
    values = terms.per_example()
    descriptions: dict[str, str] = getattr(terms, "descriptions", {})
    bad = [
        text
        for name, text in descriptions.items()
        if name in values and not bool(torch.isfinite(values[name]).all())
    ]
    if run_dir is not None and (run_dir / "last.safetensors").exists():
        kept = f"the last good checkpoint is {run_dir / 'last.safetensors'}"
    else:
        kept = "no checkpoint was written yet"
    loss = terms.loss.item()
    # finite here: another process of a torchrun met the NaN/inf (all stop together)
    where = " on another process" if math.isfinite(loss) else ""
    return (
        f"the {bad[0] if bad else 'objective'} became {loss if not where else 'NaN or inf'}"
        f"{where} at epoch {epoch + 1}, step {step + 1}; {kept} (epoch {epoch}), and the model "
        "in memory still "
        "has the parameters from before this step. Try a lower learning rate, "
        "clip_grad_norm, KL warm-up, or a likelihood whose scale is bounded."
    )

"""Per-epoch and per-unit figures of training: learning curves (with posterior collapse
watched for text), KL and activity per latent dimension, a VQ codebook's usage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_path
from .plots import pyplot


def plot_learning_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """ELBO, reconstruction term and KL per epoch, training and validation, in nats; and
    I(x; z) with the active units where the history has them (text runs)."""
    plt = pyplot()
    epochs = [record["epoch"] for record in history]
    collapse = any("valid_mutual_info" in record for record in history)
    figure, panels = plt.subplots(1, 3 + collapse, figsize=(13 + 4 * collapse, 3.6), dpi=100)
    if collapse:  # what shows posterior collapse: I(x; z) and active units per epoch
        axes = panels[3]
        info = [record.get("valid_mutual_info", np.nan) for record in history]
        axes.plot(epochs, info, color="tab:green", label="I(x; z)")
        axes.set(title="collapse (validation)", xlabel="epoch", ylabel="I(x; z), nats")
        units = [record.get("valid_active_units", np.nan) for record in history]
        twin = axes.twinx()
        twin.plot(epochs, units, color="tab:red", linestyle="--", label="active units")
        twin.set(ylabel="active units")
        figure.legend(loc="upper right", fontsize="small")
    for axes, term, name in zip(
        panels[:3],
        ("elbo", "log_px_z", "kl"),
        ("ELBO", "E_q[log p(x|z)]", "KL(q(z|x) || p(z))"),
        strict=True,
    ):
        for split in ("train", "valid"):
            key = f"{split}_{term}"
            if any(key in record for record in history):
                axes.plot(epochs, [record.get(key, np.nan) for record in history], label=split)
        axes.set(title=name, xlabel="epoch", ylabel="nats per example")
        axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return Path(path)


def plot_kl_per_dimension(
    kl: torch.Tensor | None, activity: torch.Tensor, path: str | Path, threshold: float = 0.01
) -> Path:
    """Bars of the average KL per latent dimension (when defined) and of each unit's activity
    Cov_x(E_q[z_j|x]); active units (activity > ``threshold``) are drawn in colour."""
    plt = pyplot()
    dims = np.arange(len(activity))
    active = (activity > threshold).numpy()
    colours = np.where(active, "tab:blue", "lightgray")
    panels_count = 2 if kl is not None else 1
    figure, panels = plt.subplots(1, panels_count, figsize=(5 * panels_count, 3.4), dpi=100)
    panels = np.atleast_1d(panels)
    panels[-1].bar(dims, activity.numpy(), color=colours)
    panels[-1].axhline(threshold, color="k", linewidth=0.8, linestyle="--")
    panels[-1].set(
        title=f"activity: {int(active.sum())} of {len(dims)} units active",
        xlabel="latent dimension",
        ylabel="Cov_x(E_q[z_j|x])",
    )
    if kl is not None:
        panels[0].bar(dims, kl.numpy(), color=colours)
        panels[0].set(title="KL per dimension", xlabel="latent dimension", ylabel="nats")
    for axes in panels:
        axes.set_xticks(dims if len(dims) <= 20 else dims[:: math.ceil(len(dims) / 20)])
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return Path(path)


def plot_code_usage(
    counts: torch.Tensor, history: Sequence[dict[str, Any]], path: str | Path
) -> Path:
    """A VQ-VAE's codebook: the share of assignments of each code (``counts (K,)``), sorted,
    and the perplexity of the assignments per epoch (``code_perplexity`` in ``history``)."""
    plt = pyplot()
    shares = (counts.double() / counts.sum()).sort(descending=True).values.numpy()
    figure, panels = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    panels[0].bar(np.arange(len(shares)), shares, width=1.0, color="tab:blue")
    used = int((counts > 0).sum())
    panels[0].set(
        title=f"{used} of {len(shares)} codes used",
        xlabel="code (most used first)",
        ylabel="share of assignments",
    )
    epochs = [r["epoch"] for r in history if r.get("code_perplexity") is not None]
    values = [r["code_perplexity"] for r in history if r.get("code_perplexity") is not None]
    panels[1].plot(epochs, values, marker="." if len(values) < 30 else None)
    panels[1].axhline(len(shares), color="k", linewidth=0.8, linestyle="--")
    panels[1].set(title="perplexity of the code assignments", xlabel="epoch", ylabel="codes")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return Path(path)

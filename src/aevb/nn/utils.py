"""Helpers on modules."""

from __future__ import annotations

import torch
from torch import nn


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters live: batches are moved there (a no-op when already)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def out_dim(body: nn.Module) -> int:
    """The output size a body declares (``body.out_dim``: MLP, ConvEncoder, ConvDecoder)."""
    size = getattr(body, "out_dim", None)
    if not isinstance(size, int):
        raise TypeError(f"{type(body).__name__} has no integer out_dim; bodies must declare one")
    return size

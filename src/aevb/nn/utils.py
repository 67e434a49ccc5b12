"""Helpers on modules."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


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


def checked_device(name: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` as a device that exists here.

    Raises:
        ConfigError: naming the device and the devices there are.
    """
    try:
        device = torch.device(name)
    except RuntimeError as error:
        message = f"device {name!r} is not a device name: use cpu, cuda or cuda:N"
        raise ConfigError(message) from error
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(f"device {name!r}: this machine has no CUDA GPU; use cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device {name!r}: there are {count} GPUs, cuda:0 to cuda:{count - 1}"
            )
    elif device.type != "cpu":
        raise ConfigError(f"device {name!r}: aevb trains on cpu or cuda")
    return device

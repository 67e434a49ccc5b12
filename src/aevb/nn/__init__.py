"""Bodies: tensor -> tensor networks (no distributions here); heads turn their output into one."""

from .mlp import ACTIVATIONS, MLP, LabelConditionedMLP, MaskedInput
from .utils import device_of

__all__ = ["ACTIVATIONS", "MLP", "LabelConditionedMLP", "MaskedInput", "device_of"]

"""Bodies: tensor -> tensor networks (no distributions here); heads turn their output into one."""

from .conv import ConvDecoder, ConvEncoder, PixelProjection, ResidualBlock
from .mlp import ACTIVATIONS, MLP, LabelConditionedMLP, MaskedInput
from .recurrent import RNNDecoder, RNNEncoder
from .utils import device_of

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "LabelConditionedMLP",
    "MaskedInput",
    "PixelProjection",
    "RNNDecoder",
    "RNNEncoder",
    "ResidualBlock",
    "device_of",
]

"""Network bodies: tensor -> tensor, no distributions here.

The body is f_e / f_d of the "VAE anatomy" (seed 004); a head turns its output into a
distribution. Any ``nn.Module`` that maps ``(*batch, in_dim)`` to ``(*batch, out_dim)`` works.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Sequential):
    """Fully connected body: Linear -> activation, once per hidden width.

    Acts on the last dimension, so inputs may carry leading ``(k, batch)`` dimensions.

    Args:
        in_dim: input size.
        hidden_dims: widths of the hidden layers, e.g. ``(200, 200)``; the output size is the
            last width (``in_dim`` when empty: the identity body).
        activation: module class applied after every layer, e.g. ``nn.Tanh``.

    Example:
        >>> body = MLP(784, (200, 200), nn.Tanh)
        >>> body.out_dim
        200
    """

    def __init__(
        self, in_dim: int, hidden_dims: Sequence[int], activation: type[nn.Module] = nn.ReLU
    ) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, width

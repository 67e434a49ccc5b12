"""Convolutional and residual bodies for images, and the per-pixel projection of a head.

The bodies keep the rest of aevb unchanged: data stay flat vectors ``(*batch, C*H*W)`` in
(channels, height, width) order, and a body reshapes them to images inside. So every head,
prior and objective that works with an :class:`aevb.nn.MLP` works with these (the encoder of a
VampPrior sees its pseudo-inputs as images too).

- :class:`ConvEncoder`: strided 3x3 convolutions (each halves height and width, rounding up,
  so any H and W work), optional residual blocks, flat features out;
- :class:`ConvDecoder`: a linear map to the smallest feature map, transposed convolutions back
  to exactly H x W, per-pixel features out; its :meth:`ConvDecoder.projection` gives heads a
  1x1 convolution (:class:`PixelProjection`) in place of a dense layer over all pixels.

The layout follows the DCGAN-style VAEs of the literature (e.g. the convolutional models of
Tomczak & Welling 2018 and Kingma et al. 2016, residual blocks as in He et al. 2016).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError, DataError, require_positive

NORMS = ("none", "batch", "group", "layer")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "layer":  # over channels and pixels of each image
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose from {', '.join(NORMS)}")


def _as_images(x: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Size]:
    """``(*batch, prod(shape))`` -> ``(N, *shape)`` and the leading ``batch`` to restore."""
    batch = x.shape[:-1]
    size = shape[0] * shape[1] * shape[2]
    if x.shape[-1] != size:
        raise DataError(
            f"this convolutional body takes images of shape {shape} (flattened: {size} values), "
            f"got inputs with {x.shape[-1]} values: give data of that shape, or build the model "
            f"for the data's image shape"
        )
    return x.reshape(-1, *shape), batch


def downsampled(size: tuple[int, int], stages: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 stage, ``ceil(size / 2)`` each: ``stages + 1`` sizes."""
    sizes = [size]
    for _ in range(stages):
        height, width = sizes[-1]
        sizes.append(((height + 1) // 2, (width + 1) // 2))
    return sizes


class ResidualBlock(nn.Module):
    """x + f(x) with f = norm -> act -> conv3x3 -> norm -> act -> conv3x3 (He et al. 2016,
    pre-activation form); the last convolution starts at zero, so the block starts as the
    identity."""

    def __init__(self, channels: int, activation: type[nn.Module], norm: str) -> None:
        super().__init__()
        last = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        assert last.bias is not None
        nn.init.zeros_(last.bias)
        self.f = nn.Sequential(
            _norm(norm, channels),
            activation(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(norm, channels),
            activation(),
            last,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class ConvEncoder(nn.Module):
    """Image body of an encoder: ``(*batch, C*H*W) -> (*batch, out_dim)``.

    One stage per entry of ``channels``: a 3x3 convolution with stride 2 (H, W -> ceil(H/2),
    ceil(W/2)), a norm, the activation, then ``residual_blocks`` :class:`ResidualBlock`.
    The last feature map is flattened: ``out_dim = channels[-1] * h * w``.

    Args:
        image_shape: ``(C, H, W)`` of one datum.
        channels: output channels of each stage, e.g. ``(32, 64)`` (28x28 -> 14x14 -> 7x7).
        activation: module class, e.g. ``nn.ReLU``.
        norm: ``"none"``, ``"batch"``, ``"group"`` (8 groups) or ``"layer"``.
        residual_blocks: residual blocks after each stage (0: a plain convolutional body).

    Raises:
        DataError: an image too small for the stages (a side would fall below 2 before a stride).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        activation: type[nn.Module] = nn.ReLU,
        *,
        norm: str = "none",
        residual_blocks: int = 0,
    ) -> None:
        super().__init__()
        require_positive("ConvEncoder", **{f"channels[{i}]": c for i, c in enumerate(channels)})
        self.image_shape = _chw(image_shape)
        self.in_dim = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        self.sizes = _check_size(self.image_shape, len(channels))
        layers: list[nn.Module] = []
        width = self.image_shape[0]
        for out in channels:
            layers += [
                nn.Conv2d(width, out, 3, stride=2, padding=1),
                _norm(norm, out),
                activation(),
            ]
            layers += [ResidualBlock(out, activation, norm) for _ in range(residual_blocks)]
            width = out
        self.layers = nn.Sequential(*layers)
        height, width_px = self.sizes[-1]
        self.features = width
        self.out_dim = width * height * width_px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images, batch = _as_images(x, self.image_shape)
        return self.layers(images).reshape(*batch, self.out_dim)

    def projection(self, in_dim: int, out_dim: int) -> PixelProjection:
        """A posterior head's parameter layer for a *spatial* latent: ``out_dim / (h w)``
        latent channels at each position of the last feature map, each from that position's
        features (a 1x1 convolution), flattened in (channels, h, w) order."""
        height, width = self.sizes[-1]
        if in_dim != self.out_dim or out_dim % (height * width):
            raise ValueError(
                f"a spatial latent of this body has a multiple of {height}x{width} values, "
                f"got {out_dim}"
            )
        return PixelProjection(self.features, (out_dim // (height * width), height, width), out_dim)


class ConvDecoder(nn.Module):
    """Image body of a decoder: ``(*batch, in_dim) -> (*batch, features * H * W)``.

    The mirror of :class:`ConvEncoder`: a linear map to ``channels[0]`` maps of the encoder's
    smallest size, then per stage a 3x3 transposed convolution with stride 2 whose output
    padding lands exactly on the encoder's size of that stage (so odd H and W come back
    exact), a norm and the activation, then the residual blocks. The output is ``features``
    maps of H x W, flattened in (features, H, W) order; a head built with
    :meth:`projection` maps them to each pixel's parameters.

    Args:
        in_dim: size of z (or of the features before this body).
        image_shape: ``(C, H, W)`` of one datum.
        channels: channels of each stage, from the smallest map up, e.g. ``(64, 32)``.
        features: feature maps handed to the head (default: ``channels[-1]``).
        spatial: z is a spatial latent, ``in_dim / (h w)`` channels on the smallest map of
            h x w (:meth:`ConvEncoder.projection`): a 3x3 convolution replaces the linear map.
    """

    def __init__(
        self,
        in_dim: int,
        image_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        activation: type[nn.Module] = nn.ReLU,
        *,
        norm: str = "none",
        residual_blocks: int = 0,
        features: int | None = None,
        spatial: bool = False,
    ) -> None:
        super().__init__()
        self.image_shape = _chw(image_shape)
        sizes = _check_size(self.image_shape, len(channels))[::-1]  # smallest first
        self.in_dim, self.start = in_dim, (channels[0], *sizes[0])
        self.latent_shape: tuple[int, int, int] | None = None
        first: nn.Module
        if spatial:
            positions = sizes[0][0] * sizes[0][1]
            if in_dim % positions:
                raise ValueError(
                    f"a spatial z here has a multiple of {positions} values, got {in_dim}"
                )
            self.latent_shape = (in_dim // positions, *sizes[0])
            first = nn.Conv2d(self.latent_shape[0], channels[0], 3, padding=1)
        else:
            first = nn.Linear(in_dim, channels[0] * sizes[0][0] * sizes[0][1])
        self.linear = nn.Sequential(first, activation())
        layers: list[nn.Module] = []
        widths = [*channels, features or channels[-1]]
        for stage, (height, width) in enumerate(sizes[1:]):
            before = sizes[stage]
            padding = (height - (2 * before[0] - 1), width - (2 * before[1] - 1))
            layers += [
                nn.ConvTranspose2d(
                    widths[stage], widths[stage + 1], 3, stride=2, padding=1, output_padding=padding
                ),
                _norm(norm, widths[stage + 1]),
                activation(),
            ]
            layers += [
                ResidualBlock(widths[stage + 1], activation, norm) for _ in range(residual_blocks)
            ]
        self.layers = nn.Sequential(*layers)
        self.features = widths[-1]
        self.out_dim = self.features * self.image_shape[1] * self.image_shape[2]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        if self.latent_shape is not None:
            maps = self.linear(z.reshape(-1, *self.latent_shape))
        else:
            maps = self.linear(z).reshape(-1, *self.start)
        return self.layers(maps).reshape(*batch, self.out_dim)

    def projection(self, in_dim: int, out_dim: int) -> PixelProjection:
        """A head's parameter layer for this body: :class:`PixelProjection`."""
        if in_dim != self.out_dim:
            raise ValueError(
                f"the head's in_dim {in_dim} is not this body's out_dim {self.out_dim}"
            )
        return PixelProjection(self.features, self.image_shape, out_dim)


class PixelProjection(nn.Module):
    """The parameters of each pixel from that pixel's features: a 1x1 convolution.

    Stands in for a head's ``nn.Linear(in_dim, out_dim)`` on a convolutional decoder, where a
    dense map from every pixel's features to every pixel's parameters would be enormous
    (32 x 784 x 784 weights on MNIST) and would ignore locality.

    Args:
        features: feature maps per pixel of the body's output.
        image_shape: ``(C, H, W)`` of one datum, D = C*H*W values.
        out_dim: ``P * D`` outputs for P parameters per value, laid out value-major, parameter
            last (index ``d * P + p``), which is what the heads expect: ``P = 1`` gives one
            parameter per value in (C, H, W) order, a categorical head's ``unflatten(-1, (D,
            P))`` reads the P logits of value d.

    Shapes:
        ``(*batch, features*H*W) -> (*batch, out_dim)``.
    """

    def __init__(self, features: int, image_shape: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.image_shape = _chw(image_shape)
        channels, height, width = self.image_shape
        data_dim = channels * height * width
        if out_dim % data_dim:
            raise ValueError(f"out_dim {out_dim} is not a multiple of the {data_dim} pixel values")
        self.features, self.params = features, out_dim // data_dim
        self.conv = nn.Conv2d(features, channels * self.params, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.image_shape
        maps, batch = _as_images(h, (self.features, height, width))
        out = self.conv(maps).reshape(-1, channels, self.params, height, width)
        return out.permute(0, 1, 3, 4, 2).reshape(*batch, -1)


def _chw(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) or (H, W), got {tuple(image_shape)}")
    return shape[0], shape[1], shape[2]


def _check_size(shape: tuple[int, int, int], stages: int) -> list[tuple[int, int]]:
    if stages < 1:
        raise ConfigError("a convolutional body needs at least one stage of channels")
    sizes = downsampled(shape[1:], stages)
    if min(sizes[-2]) < 2:
        raise DataError(
            f"images of {shape[1]}x{shape[2]} are too small for {stages} stride-2 stages (each "
            f"halves the side): use fewer stages (--channels with fewer entries) or larger images"
        )
    return sizes

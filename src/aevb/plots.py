"""Figures. matplotlib is imported inside each function, so importing aevb stays fast."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def image_grid(
    images: torch.Tensor, image_shape: tuple[int, ...], *, num_columns: int | None = None
) -> np.ndarray:
    """Tile ``(n, data_dim)`` images into one ``(rows * h + pad, columns * w + pad)`` array.

    Values are clipped to [0, 1]; a one-pixel grey border separates the tiles.
    """
    if len(image_shape) != 2:
        raise ValueError(f"image_grid needs a (height, width) image shape, got {image_shape}")
    n = images.shape[0]
    height, width = image_shape
    columns = num_columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (height + 1) + 1, columns * (width + 1) + 1), 0.5, dtype=np.float32)
    tiles = images.detach().float().clamp(0, 1).reshape(n, height, width).cpu().numpy()
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = 1 + row * (height + 1), 1 + column * (width + 1)
        grid[top : top + height, left : left + width] = tile
    return grid


def save_image_grid(
    images: torch.Tensor,
    image_shape: tuple[int, ...],
    path: str | Path,
    *,
    num_columns: int | None = None,
    scale: int = 4,
) -> Path:
    """Write :func:`image_grid` of ``images`` to a PNG, each pixel drawn ``scale`` times."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    grid = image_grid(images, image_shape, num_columns=num_columns)
    grid = np.kron(grid, np.ones((scale, scale), dtype=grid.dtype))
    path = Path(path)
    plt.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)
    return path


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Images unchanged if already in [0, 1], else min-max scaled into it (for display)."""
    low, high = images.min(), images.max()
    if low >= 0 and high <= 1:
        return images
    return (images - low) / (high - low).clamp(min=1e-12)


def interleave(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Rows ``first[0], second[0], first[1], second[1], ...`` (inputs beside reconstructions)."""
    return torch.stack([first, second], dim=1).reshape(-1, *first.shape[1:])

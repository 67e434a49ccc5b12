"""Figures of what a model learned. matplotlib is imported inside the functions that draw,
so importing aevb stays fast; every figure function writes a PNG (or GIF) and returns its path.

- :func:`plot_latent`: posterior means coloured by label (PCA or t-SNE above two dimensions);
- :func:`animate_latent`: the same, frame by frame, from :class:`aevb.LatentSnapshots`;
- :func:`plot_prior_grid`: decoded latents on an even grid over [-3, 3]^2 (seed 003), or
  traversals of single dimensions for larger latent spaces;
- :func:`plot_interpolations`: decoded straight lines between encoded inputs;
- :func:`plot_marginals`: histograms of each column, data against samples (curves of training:
  :mod:`aevb.viz.curves`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_path
from ..models.vae import VAE


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


# -- image grids ----------------------------------------------------------------------------


def image_grid(
    images: torch.Tensor, image_shape: tuple[int, ...], *, num_columns: int | None = None
) -> np.ndarray:
    """Tile ``(n, data_dim)`` images into one ``(rows * (h + 1) + 1, columns * (w + 1) + 1)``
    array (with a last axis of 3 for colour); values are clipped to [0, 1] and a one-pixel
    grey border separates the tiles.

    ``image_shape`` is ``(C, H, W)`` (or ``(H, W)``): one channel is grey, three are RGB, four
    RGBA (shown without alpha); other channel counts show their first channel.
    """
    if len(image_shape) not in (2, 3):
        raise ValueError(f"image_grid needs a (C, H, W) or (H, W) image shape, got {image_shape}")
    n = images.shape[0]
    channels, height, width = image_shape if len(image_shape) == 3 else (1, *image_shape)
    columns = num_columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    tiles = images.detach().float().clamp(0, 1).reshape(n, channels, height, width).cpu().numpy()
    colour = channels in (3, 4)
    tiles = tiles[:, :3].transpose(0, 2, 3, 1) if colour else tiles[:, 0]
    grid_shape = (rows * (height + 1) + 1, columns * (width + 1) + 1) + ((3,) if colour else ())
    grid = np.full(grid_shape, 0.5, dtype=np.float32)
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
    grid = image_grid(to_unit_range(images), image_shape, num_columns=num_columns)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    with atomic_path(path) as tmp:  # cmap: grey grids only
        pyplot().imsave(tmp, grid, cmap="gray", vmin=0.0, vmax=1.0)
    return path


def plot_analogies(
    model: Any,
    x: torch.Tensor,
    image_shape: tuple[int, ...],
    path: str | Path,
    y: torch.Tensor | None = None,
) -> Path:
    """One row per example: the image, then its style z decoded with every label (M2/CVAE).

    The "analogies" figure of Kingma et al. (2014, fig. 1): style is fixed along a row and
    the class varies along the columns. ``model`` is a :class:`aevb.SemiSupervisedVAE`.
    """
    grid = model.analogies(x, y)  # (n, C, D)
    rows = torch.cat([x[:, None, :], grid], dim=1)
    return save_image_grid(rows.flatten(0, 1), image_shape, path, num_columns=rows.shape[1])


def plot_conditional_samples(
    model: Any, image_shape: tuple[int, ...], path: str | Path, per_class: int = 10
) -> Path:
    """Means of p(x|y, z) for ``per_class`` draws z ~ p(z), one row per label y."""
    labels = torch.arange(model.num_classes).repeat_interleave(per_class)
    images = model.sample(labels, mean=True)
    return save_image_grid(images, image_shape, path, num_columns=per_class)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Images unchanged if already in [0, 1], else min-max scaled into it (for display)."""
    low, high = images.min(), images.max()
    if low >= 0 and high <= 1:
        return images
    return (images - low) / (high - low).clamp(min=1e-12)


def interleave(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Rows ``first[0], second[0], first[1], second[1], ...`` (inputs beside reconstructions)."""
    return torch.stack([first, second], dim=1).reshape(-1, *first.shape[1:])


@torch.no_grad()
def plot_prior_grid(
    model: VAE,
    image_shape: tuple[int, ...],
    path: str | Path,
    *,
    num_steps: int = 15,
    dims: Sequence[int] | None = None,
    limit: float = 3.0,
) -> Path:
    """Decoded means of p(x|z) for z on an even grid over [-limit, limit]^2 (2-D latents), or
    one row per latent dimension in ``dims`` varied over [-limit, limit] with the others at
    the prior mean (traversals; default: the first eight dimensions)."""
    latent_dim = model.latent_dim
    values = torch.linspace(-limit, limit, num_steps)
    center = model.prior().mean.detach().cpu()
    if latent_dim == 2 and dims is None:
        second, first = torch.meshgrid(values.flip(0), values, indexing="ij")
        z = torch.stack([first.flatten(), second.flatten()], dim=-1)
    else:
        chosen = list(dims) if dims is not None else list(range(min(latent_dim, 8)))
        z = center.repeat(len(chosen) * num_steps, 1)
        for row, dim in enumerate(chosen):
            z[row * num_steps : (row + 1) * num_steps, dim] = values
    px = model.decode(z.to(center.dtype))
    return save_image_grid(px.mean, image_shape, path, num_columns=num_steps, scale=2)


@torch.no_grad()
def plot_interpolations(
    model: VAE,
    starts: torch.Tensor,
    ends: torch.Tensor,
    image_shape: tuple[int, ...],
    path: str | Path,
    *,
    num_steps: int = 10,
) -> Path:
    """Rows of decoded means along z = (1 - t) E_q[z|start] + t E_q[z|end], t in [0, 1]."""
    z_start, z_end = model.encode(starts).mean, model.encode(ends).mean  # (R, D)
    t = torch.linspace(0, 1, num_steps, dtype=z_start.dtype)[None, :, None]
    z = (1 - t) * z_start[:, None] + t * z_end[:, None]  # (R, num_steps, D)
    images = model.decode(z.reshape(-1, z.shape[-1])).mean
    return save_image_grid(images, image_shape, path, num_columns=num_steps)


# -- latent space ---------------------------------------------------------------------------


def project_2d(means: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(n, d)`` codes to ``(n, 2)``: unchanged for d <= 2, else PCA (or ``"tsne"``)."""
    if means.shape[1] == 1:
        return np.concatenate([means, np.zeros_like(means)], axis=1)
    if means.shape[1] == 2:
        return means
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, random_state=seed, init="pca").fit_transform(means)
    if method != "pca":
        raise ValueError(f"unknown projection {method!r}: use 'pca' or 'tsne'")
    return _principal_axes(means)(means)


def _principal_axes(points: np.ndarray) -> Any:
    """The projection onto the two leading principal axes of ``points (n, d)`` (an SVD of the
    centred points; scikit-learn's PCA costs a second of imports in every command)."""
    center = points.mean(0)
    _, _, vt = np.linalg.svd(points - center, full_matrices=False)
    axes = vt[:2] * np.where(vt[:2].sum(1, keepdims=True) < 0, -1.0, 1.0)  # a fixed sign
    return lambda x: (x - center) @ axes.T


def _scatter(axes: Any, points: np.ndarray, labels: np.ndarray | None) -> Any:
    if labels is None:
        return axes.scatter(points[:, 0], points[:, 1], c="tab:blue", s=6)
    return axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6, vmin=0, vmax=9)


def plot_latent(
    means: torch.Tensor,
    labels: torch.Tensor | None,
    path: str | Path,
    *,
    method: str = "pca",
    title: str = "posterior means E_q[z|x]",
) -> Path:
    """Scatter of ``(n, latent_dim)`` posterior means coloured by label."""
    plt = pyplot()
    points = project_2d(means.numpy(), method)
    figure, axes = plt.subplots(figsize=(5.5, 5), dpi=100)
    label_array = labels.numpy() if labels is not None else None
    artist = _scatter(axes, points, label_array)
    if label_array is not None:
        figure.colorbar(artist, ax=axes, ticks=range(10), label="label")
    suffix = "" if means.shape[1] <= 2 else f" ({method.upper()} of {means.shape[1]} dims)"
    axes.set(title=title + suffix, xlabel="z1", ylabel="z2")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return Path(path)


def animate_latent(
    snapshots: Sequence[torch.Tensor],
    steps: Sequence[int],
    labels: torch.Tensor | None,
    path: str | Path,
    *,
    fps: int = 5,
) -> Path:
    """GIF with one frame per snapshot ``(n, latent_dim)`` of posterior means, fixed axes.

    Codes with more than two dimensions are projected on the principal axes of the last
    snapshot, so the frames share one view.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    plt = pyplot()
    stacked = torch.stack(list(snapshots)).numpy()  # (S, n, d)
    if stacked.shape[-1] > 2:
        project = _principal_axes(stacked[-1])
        frames = np.stack([project(frame) for frame in stacked])
    else:
        frames = np.stack([project_2d(frame) for frame in stacked])
    low, high = frames.reshape(-1, 2).min(0), frames.reshape(-1, 2).max(0)
    pad = 0.05 * (high - low) + 1e-6
    figure, axes = plt.subplots(figsize=(5, 5), dpi=80)
    label_array = labels.numpy() if labels is not None else None
    axes.set(xlim=(low[0] - pad[0], high[0] + pad[0]), ylim=(low[1] - pad[1], high[1] + pad[1]))
    artist = _scatter(axes, frames[0], label_array)

    def draw(index: int) -> list[Any]:
        artist.set_offsets(frames[index])
        axes.set_title(f"q(z|x) means, step {steps[index]}")
        return [artist]

    animation = FuncAnimation(figure, draw, frames=len(frames), blit=False)
    with atomic_path(path) as tmp:
        animation.save(str(tmp), writer=PillowWriter(fps=fps))
    plt.close(figure)
    return Path(path)


# -- curves and bars ------------------------------------------------------------------------


def plot_marginals(
    data: torch.Tensor | np.ndarray,
    samples: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    max_columns: int = 12,
    densities: Sequence[Callable[[np.ndarray], np.ndarray] | None] | None = None,
) -> Path:
    """Per column: a histogram of the data and of samples x ~ p(x) from the fitted model.

    Args:
        data, samples: ``(n, columns)`` and ``(m, columns)`` numbers.
        densities: optional per-column true density ``grid -> density``, drawn as a curve
            (for synthetic data whose generating distribution is known).
    """
    plt = pyplot()
    data, samples = np.asarray(data, dtype=np.float64), np.asarray(samples, dtype=np.float64)
    count = min(data.shape[1], max_columns)
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    figure, panels = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 2.6 * rows), dpi=100, squeeze=False
    )
    for index, axes in enumerate(panels.flat):
        if index >= count:
            axes.axis("off")
            continue
        observed, generated = data[:, index], samples[:, index]
        observed, generated = observed[~np.isnan(observed)], generated[~np.isnan(generated)]
        low, high = np.percentile(np.concatenate([observed, generated]), [0.5, 99.5])
        bins = np.linspace(low, high + 1e-9, 40)
        axes.hist(observed, bins=bins, density=True, alpha=0.5, label="data")
        axes.hist(generated, bins=bins, density=True, histtype="step", label="model")
        density = densities[index] if densities is not None else None
        if density is not None:
            grid = np.linspace(low, high, 200)
            axes.plot(grid, density(grid), color="black", linewidth=1, label="true density")
        axes.set_title(names[index] if names else f"x{index + 1}")
    panels.flat[0].legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return Path(path)


def plot_series(
    data: torch.Tensor, samples: torch.Tensor, steps: int, channels: int, path: str | Path
) -> Path:
    """Real-valued sequences (rows of ``steps * channels``, NaN after each end): a few of
    ``data`` beside ``samples`` of the model, one panel per channel (at most three)."""
    plt = pyplot()
    shown = min(channels, 3)
    figure, panels = plt.subplots(shown, 2, figsize=(10, 2.6 * shown), dpi=100, squeeze=False)
    for column, (rows, title) in enumerate(((data, "data"), (samples, "samples of the model"))):
        series = rows[:5].reshape(-1, steps, channels).numpy()
        for c in range(shown):
            axes = panels[c, column]
            for sequence in series:
                axes.plot(np.arange(steps), sequence[:, c], linewidth=1)
            axes.set(title=f"{title}, channel {c}", xlabel="step")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return Path(path)

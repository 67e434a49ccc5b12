"""Images: their (C, H, W) shape from arrays and folders of PNG/JPEG files.

aevb stores an image datum flat, ``C*H*W`` values in (channels, height, width) order, with
the shape beside it (``Dataset.image_shape``); convolutional bodies reshape it back. Arrays
may come as:

- ``(n, H, W)``: grey images, one channel;
- ``(n, C, H, W)``: channels first (PyTorch), recognized when C is 1, 3 or 4 and W is not;
- ``(n, H, W, C)``: channels last (NumPy, PIL, TensorFlow), when C is 1, 3 or 4 and the
  second axis is not; moved to channels first.

An array whose layout both readings allow (e.g. ``(n, 3, 5, 3)``) is refused: transpose it to
``(n, C, H, W)`` and save it again. A folder holds one image per file (``.png``, ``.jpg``,
``.jpeg``, ``.bmp``, ``.gif``); with one subfolder per class, the subfolder names are the
labels. Every image must have the same size and mode; 8-bit values are kept as 0..255 unless
the data's ``scale`` divides them (``--scale 255`` gives [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_CHANNELS = (1, 3, 4)


def image_shape_of(array_shape: Sequence[int], name: str) -> tuple[tuple[int, int, int], bool]:
    """``(C, H, W)`` of an ``(n, ...)`` image array and whether it is channels-last.

    Raises:
        DataError: a 4-d layout that reads both ways.
    """
    shape = tuple(int(s) for s in array_shape[1:])
    if len(shape) == 2:
        return (1, shape[0], shape[1]), False
    first, last = shape[0] in _CHANNELS, shape[2] in _CHANNELS
    if first and not last:
        return (shape[0], shape[1], shape[2]), False
    if last and not first:
        return (shape[2], shape[0], shape[1]), True
    raise DataError(
        f"{name}: cannot tell the channel axis of images shaped {shape}: aevb reads "
        "(n, C, H, W) or (n, H, W, C) with C in 1, 3, 4 on exactly one side; transpose the "
        "array to (n, C, H, W) and save it again"
    )


def as_image_shape(shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    """A saved image shape as ``(C, H, W)``; ``(H, W)`` (runs before channels) is grey."""
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


def load_image_folder(
    folder: Path,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int, int], tuple[str, ...] | None]:
    """Read every image file under ``folder`` (sorted), as ``(n, C, H, W)`` uint8.

    Files directly in ``folder`` are unlabelled; with subfolders, each subfolder is a class
    (labels 0, 1, ... in sorted name order) and files directly in ``folder`` are refused.

    Returns:
        ``(images, labels or None, (C, H, W), class names or None)``.

    Raises:
        DataError: no images, a file that is not an image, images of mixed sizes or modes.
    """
    from PIL import Image, UnidentifiedImageError  # PIL only when a folder is read

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _image_files(folder)
    if classes and loose:
        raise DataError(
            f"{folder} has both class subfolders ({', '.join(classes[:3])}, ...) and loose images "
            f"({loose[0].name}, ...): put every image in a class subfolder, or none"
        )
    groups = [(i, _image_files(folder / c)) for i, c in enumerate(classes)] or [(-1, loose)]
    images, labels = [], []
    first: tuple[Path, str, tuple[int, int]] | None = None
    for label, files in groups:
        for path in files:
            try:
                with Image.open(path) as image:
                    image.load()
                    mode, size = image.mode, image.size
                    if mode not in ("L", "RGB", "RGBA"):
                        image = image.convert("RGBA" if "A" in mode else "RGB")
                        mode = image.mode
                    array = np.asarray(image, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError) as error:
                raise DataError(
                    f"{path} is not a readable image ({error}): remove it from {folder} or "
                    "replace it with a PNG or JPEG file"
                ) from error
            if first is None:
                first = (path, mode, size)
            elif (mode, size) != first[1:]:
                raise DataError(
                    f"images in {folder} differ: {first[0].name} is {first[2][0]}x{first[2][1]} "
                    f"{first[1]}, {path.name} is {size[0]}x{size[1]} {mode}; resize or convert "
                    "them to one size and mode (all grey or all colour)"
                )
            images.append(array if array.ndim == 3 else array[:, :, None])
            labels.append(label)
    if not images:
        raise DataError(
            f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): give a folder of image "
            "files, or one subfolder of them per class"
        )
    stacked = np.stack(images).transpose(0, 3, 1, 2)  # (n, C, H, W)
    names = tuple(classes) if classes else None
    y = np.asarray(labels, dtype=np.float64) if classes else None
    channels, height, width = (int(s) for s in stacked.shape[1:])
    return stacked, y, (channels, height, width), names


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

"""Named datasets: ``digits`` and ``digits-binary`` (shipped with scikit-learn) and the
statically binarized MNIST benchmark ``binarized-mnist`` (Larochelle & Murray 2011).

``binarized-mnist`` is read, in this order, from ``binarized-mnist:PATH`` (a folder holding
``binarized_mnist.npz`` or the three ``.amat`` files of the release, or the ``.npz`` itself),
or from the cache folder (``$AEVB_DATA``, else ``~/.cache/aevb``); when absent there, the
release is downloaded from its canonical location into the cache, each file checked against its
SHA-256 (a wrong checksum is an error and leaves no file behind). Rows keep the release's
fixed split: 50,000 train, 10,000 valid, 10,000 test.

:class:`ThreeVariables` generates seed 004's table of a Gamma, a Normal and a Normal whose
mean and spread are the other two, and gives its exact log-density (for tabular VAEs).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import DataError

BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist"
# SHA-256 of the release's files (as recorded by tensorflow-datasets' url_checksums).
BINARIZED_MNIST_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
SPLITS = ("train", "valid", "test")


def cache_dir() -> Path:
    """Where named datasets are looked for and downloaded: ``$AEVB_DATA`` or ~/.cache/aevb."""
    return Path(os.environ.get("AEVB_DATA") or Path.home() / ".cache" / "aevb")


def load_digits(*, binary: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits: grey levels in [0, 1] (or binarized at 1/2), labels."""
    # Read from scikit-learn's own file: importing sklearn.datasets takes a second or two.
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations is not None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = torch.as_tensor(np.loadtxt(path, delimiter=","), dtype=torch.float32)
    x = table[:, :-1] / 16.0  # counts 0..16 -> [0, 1]
    if binary:
        x = (x >= 0.5).to(torch.float32)
    return x, table[:, -1].long()


def load_binarized_mnist(
    path: str | Path | None = None,
    *,
    url: str | None = None,
    checksums: dict[str, str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
    """Statically binarized MNIST as ``(x (70000, 784), labels or None, split sizes)``.

    Args:
        path: a folder with ``binarized_mnist.npz`` or the ``.amat`` files, or the ``.npz``;
            ``None`` looks in :func:`cache_dir` and downloads there when missing.
        url: base address of the ``.amat`` files (default: the canonical release).
        checksums: SHA-256 per split (default: the release's).

    The ``.npz`` form (keys ``train_x``, ``valid_x``, ``test_x`` and optionally ``*_y`` with 255
    for an unknown label) carries labels; labels become -1 where unknown.
    """
    source = Path(path) if path is not None else cache_dir()
    npz = source if source.suffix == ".npz" else source / "binarized_mnist.npz"
    if npz.exists():
        return _from_npz(npz)
    if path is not None and not source.is_dir():
        raise DataError(f"no binarized MNIST at {source}: give a folder or a .npz file")
    files = {split: source / f"binarized_mnist_{split}.amat" for split in SPLITS}
    for split, file in files.items():
        if not file.exists():
            if path is not None:
                raise DataError(f"{file} is missing: the folder needs all three .amat files")
            address = f"{url or BINARIZED_MNIST_URL}/{file.name}"
            download(address, file, (checksums or BINARIZED_MNIST_SHA256)[split])
    parts = [np.loadtxt(files[split], dtype=np.uint8, ndmin=2) for split in SPLITS]
    sizes = tuple(len(part) for part in parts)
    x = torch.as_tensor(np.concatenate(parts), dtype=torch.float32)
    return x, None, (sizes[0], sizes[1], sizes[2])


def _from_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
    with np.load(path, allow_pickle=False) as archive:
        missing = [f"{s}_x" for s in SPLITS if f"{s}_x" not in archive]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)}: not a binarized MNIST archive")
        parts = [archive[f"{split}_x"] for split in SPLITS]
        labels = None
        if all(f"{split}_y" in archive for split in SPLITS):
            raw = np.concatenate([archive[f"{split}_y"] for split in SPLITS]).astype(np.int64)
            labels = torch.as_tensor(np.where(raw == 255, -1, raw))
    sizes = tuple(len(part) for part in parts)
    x = torch.as_tensor(np.concatenate(parts), dtype=torch.float32)
    return x, labels, (sizes[0], sizes[1], sizes[2])


def download(url: str, path: Path, sha256: str, *, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``path`` through a temporary file, keeping it only if its SHA-256 is
    ``sha256``; on any failure nothing is left at ``path`` or beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"could not download {url} ({error}); without network access, put the files in "
            f"{path.parent} or pass binarized-mnist:FOLDER"
        ) from error
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: got sha256 {digest.hexdigest()}, expected {sha256}; "
            "the download was discarded (a proxy page or a changed file?)"
        )
    os.replace(partial, path)
    return path


@dataclass(frozen=True)
class ThreeVariables:
    """Seed 004's table of three related variables, with its exact log-density:

        x1 ~ Gamma(shape, scale),  x2 ~ Normal(mu, sigma),  x3 | x1, x2 ~ Normal(x2, x1)

    (``Normal(mean, standard deviation)``). A VAE with one head per column must discover,
    through z, that x3 is centred on x2 with a spread set by x1.

    Example:
        >>> truth = ThreeVariables()
        >>> table = truth.sample(1000, seed=0)
        >>> truth.log_density(table).shape
        (1000,)
    """

    shape: float = 2.0
    scale: float = 1.0
    mu: float = 0.0
    sigma: float = 1.0

    def sample(self, num_rows: int, *, seed: int = 0) -> pd.DataFrame:
        """``num_rows`` rows with columns ``x1, x2, x3`` (float64), drawn with ``seed``."""
        rng = np.random.default_rng(seed)
        x1 = rng.gamma(self.shape, self.scale, num_rows)
        x2 = rng.normal(self.mu, self.sigma, num_rows)
        return pd.DataFrame({"x1": x1, "x2": x2, "x3": rng.normal(x2, x1)})

    def log_density(self, frame: pd.DataFrame) -> np.ndarray:
        """``(n,)`` exact log p(x1, x2, x3) of each row, in nats."""
        x1, x2, x3 = (frame[c].to_numpy(np.float64) for c in ("x1", "x2", "x3"))
        return (
            self.log_density_x1(x1) + _log_normal(x2, self.mu, self.sigma) + _log_normal(x3, x2, x1)
        )

    def marginal_density(self, column: str, grid: np.ndarray, num_draws: int = 20000) -> np.ndarray:
        """The true marginal density of one column on ``grid`` (x3's by Monte Carlo over x1)."""
        if column == "x1":
            return np.exp(self.log_density_x1(grid))
        if column == "x2":
            return np.exp(_log_normal(grid, self.mu, self.sigma))
        # x3 | x1 ~ Normal(mu, sqrt(sigma^2 + x1^2)): average over draws of x1.
        x1 = np.random.default_rng(0).gamma(self.shape, self.scale, num_draws)
        spread = np.sqrt(self.sigma**2 + x1**2)
        return np.exp(_log_normal(grid[:, None], self.mu, spread[None, :])).mean(1)

    def log_density_x1(self, x1: np.ndarray) -> np.ndarray:
        """log Gamma(x1; shape, scale)."""
        return (
            (self.shape - 1) * np.log(x1)
            - x1 / self.scale
            - math.lgamma(self.shape)
            - self.shape * math.log(self.scale)
        )


def _log_normal(x: np.ndarray, mean: np.ndarray | float, std: np.ndarray | float) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)

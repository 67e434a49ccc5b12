"""binarized MNIST: folders, archives, the cache, and a checked download from a local server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from aevb import DataError, load_dataset, split
from aevb.data.datasets import BINARIZED_MNIST_SHA256, SPLITS, download, load_binarized_mnist

SIZES = {"train": 6, "valid": 3, "test": 4}


def _amat(rows: np.ndarray) -> bytes:
    """The release's text format: '0 1 0 ...' per image, one line each."""
    return ("\n".join(" ".join(map(str, row)) for row in rows.tolist()) + "\n").encode()


@pytest.fixture
def release(tmp_path: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {s: _amat(rng.integers(0, 2, (n, 784))) for s, n in SIZES.items()}
    folder = tmp_path / "served"
    folder.mkdir()
    for split_name, content in files.items():
        (folder / f"binarized_mnist_{split_name}.amat").write_bytes(content)
    return files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, release) -> Iterator[str]:
    handler = partial(_QuietHandler, directory=str(tmp_path / "served"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _checksums(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}


def test_download_into_the_cache_with_checksums(server, release, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("AEVB_DATA", str(cache))
    x, labels, sizes = load_binarized_mnist(url=server, checksums=_checksums(release))
    assert sizes == (6, 3, 4) and x.shape == (13, 784) and labels is None
    expected = np.loadtxt(cache / "binarized_mnist_test.amat", dtype=np.uint8)
    assert torch.equal(x[9:], torch.as_tensor(expected, dtype=torch.float32))
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted(f"binarized_mnist_{s}.amat" for s in SPLITS)
    # Second time from the cache: the server is not needed.
    again, _, _ = load_binarized_mnist(url="http://127.0.0.1:9/unreachable")
    assert torch.equal(again, x)


def test_a_wrong_checksum_is_an_error_and_leaves_no_file(server, release, tmp_path) -> None:
    wrong = {**_checksums(release), "train": "0" * 64}
    target = tmp_path / "cache" / "binarized_mnist_train.amat"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(f"{server}/binarized_mnist_train.amat", target, wrong["train"])
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_unreachable_server_is_an_error_naming_the_offline_fix(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "f.amat"
    with pytest.raises(DataError, match="without network access"):
        download("http://127.0.0.1:9/nothing.amat", target, "0" * 64, timeout=5)
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_release_checksums_match_the_reference_data(shared_data: Path) -> None:
    """Rewriting ../shared/data's arrays in the release's format reproduces its SHA-256."""
    with np.load(shared_data / "binarized_mnist.npz") as archive:
        for split_name in ("valid", "test"):
            digest = hashlib.sha256(_amat(archive[f"{split_name}_x"])).hexdigest()
            assert digest == BINARIZED_MNIST_SHA256[split_name]


def test_folder_of_amat_files_and_predefined_split(tmp_path: Path, release) -> None:
    dataset = load_dataset(f"binarized-mnist:{tmp_path / 'served'}")
    assert dataset.splits == (6, 3, 4) and dataset.image_shape == (1, 28, 28)
    train, valid, test = split(dataset, (0.5, 0.2), seed=3)  # fractions ignored: fixed split
    assert (len(train), len(valid), len(test)) == (6, 3, 4)
    assert torch.equal(test.x, dataset.x[9:])


def test_npz_archive_with_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {f"{s}_x": rng.integers(0, 2, (n, 784), dtype=np.uint8) for s, n in SIZES.items()}
    arrays.update({f"{s}_y": np.full(n, 255, dtype=np.uint8) for s, n in SIZES.items()})
    arrays["test_y"] = np.arange(4, dtype=np.uint8)
    np.savez(tmp_path / "binarized_mnist.npz", **arrays)
    dataset = load_dataset(f"binarized-mnist:{tmp_path}")
    assert dataset.y is not None and dataset.y.tolist() == [-1] * 9 + [0, 1, 2, 3]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"binarized_mnist_train\.amat is missing"):
        load_dataset(f"binarized-mnist:{tmp_path / 'empty'}")


def test_real_binarized_mnist(shared_data: Path) -> None:
    dataset = load_dataset(f"binarized-mnist:{shared_data}")
    assert dataset.x.shape == (70000, 784) and dataset.splits == (50000, 10000, 10000)
    assert set(dataset.x[:1000].unique().tolist()) == {0.0, 1.0}
    assert dataset.y is not None and int((dataset.y[:50000] >= 0).sum()) == 4154

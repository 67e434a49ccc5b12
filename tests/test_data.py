"""Loaders on real files, splitting, and the checks that stop bad data before training."""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from aevb import DataError, load_dataset, mlp_vae, split
from aevb.cli.build import LIKELIHOODS, build_model
from aevb.cli.config import ModelConfig
from aevb.data.loaders import load_array


def _write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    """Write the IDX format by hand: magic (0, 0, type, ndim), big-endian sizes, data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as file:
        file.write(payload)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 4, 3)).astype(np.uint8)


@pytest.mark.parametrize("name", ["x-ubyte", "x-ubyte.gz"])
def test_idx_round_trip(tmp_path: Path, images: np.ndarray, name: str) -> None:
    _write_idx(tmp_path / name, images)
    dataset = load_dataset(tmp_path / name)
    assert dataset.image_shape == (1, 4, 3)
    assert torch.equal(dataset.x, torch.as_tensor(images.reshape(5, 12), dtype=torch.float32))


def test_idx_float_and_truncated_files(tmp_path: Path) -> None:
    values = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    _write_idx(tmp_path / "f-ubyte", values, code=0x0D)
    np.testing.assert_array_equal(load_array(tmp_path / "f-ubyte"), values)
    raw = (tmp_path / "f-ubyte").read_bytes()
    (tmp_path / "cut-ubyte").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(tmp_path / "cut-ubyte")
    (tmp_path / "bad-ubyte").write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset(tmp_path / "bad-ubyte")


def test_real_mnist_idx_files(shared_data: Path) -> None:
    images = load_dataset(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = load_array(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert images.x.shape == (10000, 784) and images.image_shape == (1, 28, 28)
    assert images.x.min() == 0 and images.x.max() == 255
    assert labels.shape == (10000,) and labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_npy_npz_csv_and_amat(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((6, 3))
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "one.npz", data=x)
    np.savez(tmp_path / "two.npz", train=x, other=x[:2])
    np.savetxt(tmp_path / "plain.csv", x, delimiter=",")
    np.savetxt(tmp_path / "header.csv", x, delimiter=",", header="a,b,c", comments="")
    np.savetxt(tmp_path / "b.amat", x)
    for name in ("a.npy", "one.npz", "two.npz:train", "plain.csv", "header.csv", "b.amat"):
        loaded = load_dataset(f"{tmp_path}/{name}").x
        np.testing.assert_allclose(loaded.numpy(), x, rtol=1e-6, err_msg=name)
    with pytest.raises(DataError, match=r"several arrays.*train"):
        load_dataset(tmp_path / "two.npz")


def test_named_digits() -> None:
    digits = load_dataset("digits-binary")
    grey = load_dataset("digits")
    assert digits.x.shape == (1797, 64) and digits.image_shape == (1, 8, 8)
    assert set(digits.x.unique().tolist()) == {0.0, 1.0}
    assert grey.x.min() == 0 and grey.x.max() == 1 and len(grey.x.unique()) == 17
    assert torch.equal(digits.x, (grey.x >= 0.5).float())
    assert digits.y is not None and set(digits.y.tolist()) == set(range(10))


def test_binarize_option() -> None:
    assert torch.equal(load_dataset("digits", binarize=0.5).x, load_dataset("digits-binary").x)


def test_bad_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such data file.*digits"):
        load_dataset(tmp_path / "missing.npy")
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(DataError, match=r"shape \(10,\)"):
        load_dataset(tmp_path / "flat.npy")
    (tmp_path / "text.csv").write_text("a,b\n1,x\n")
    with pytest.raises(DataError, match="non-numeric"):
        load_dataset(tmp_path / "text.csv")
    (tmp_path / "data.xyz").write_text("1")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(tmp_path / "data.xyz")


def test_nan_rows_are_named(tmp_path: Path) -> None:
    x = np.zeros((8, 2))
    x[3, 1] = x[6, 0] = np.nan
    np.save(tmp_path / "holes.npy", x)
    with pytest.raises(DataError, match=r"2 NaN entries in 2 rows \(rows 3, 6\)"):
        load_dataset(tmp_path / "holes.npy")


def test_split_is_seeded_disjoint_and_complete() -> None:
    data = load_dataset("digits")
    train, valid, test = split(data, (0.1, 0.2), seed=3)
    again, _, _ = split(data, (0.1, 0.2), seed=3)
    assert (len(train), len(valid), len(test)) == (1258, 180, 359)
    assert torch.equal(train.x, again.x) and torch.equal(train.y, again.y)
    rows = torch.cat([train.x, valid.x, test.x])
    assert rows.shape == data.x.shape and torch.equal(rows.sum(0), data.x.sum(0))
    with pytest.raises(DataError, match="sum to < 1"):
        split(data, (0.5, 0.5))


@pytest.mark.parametrize(
    ("likelihood", "data", "message"),
    [
        ("bernoulli", torch.full((3, 4), 0.25), r"Bernoulli.*binarize.*continuous-bernoulli"),
        ("continuous-bernoulli", torch.full((3, 4), 1.5), r"ContinuousBernoulli.*\[0, 1\]"),
        ("categorical", torch.full((3, 4), 2.5), r"integers 0..255"),
        ("normal", torch.full((3, 5), 0.0), r"shape \(4,\), got data of shape \(3, 5\)"),
        ("normal", torch.tensor([[0.0, float("nan"), 0, 0]]), r"NaN entries in 1 rows"),
    ],
)
def test_data_outside_the_likelihood_support_is_refused(likelihood, data, message) -> None:
    model = build_model(ModelConfig(likelihood=likelihood, latent_dim=2, hidden_dims=(8,)), 4)
    with pytest.raises(DataError, match=message):
        model.check_data(data)


def test_every_configured_likelihood_accepts_data_in_its_support() -> None:
    binary = (torch.rand(5, 4) > 0.5).float()
    for name in LIKELIHOODS:
        model = build_model(ModelConfig(likelihood=name, latent_dim=2, hidden_dims=(8,)), 4)
        model.check_data(binary)  # {0, 1} lies in every support


def test_custom_head_factory_is_checked_too() -> None:
    from aevb import CategoricalHead

    model = mlp_vae(4, 2, (8,), likelihood=functools.partial(CategoricalHead, num_categories=3))
    with pytest.raises(DataError, match=r"integers 0\.\.2"):
        model.check_data(torch.full((2, 4), 3.0))

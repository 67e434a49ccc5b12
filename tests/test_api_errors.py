"""User errors through the Python API are aevb errors (reliability class 5): each names the
argument and the fix, and inputs that are data in another type are converted, not refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import aevb
from aevb.errors import AevbError, ConfigError, DataError


@pytest.fixture
def model() -> aevb.VAE:
    torch.manual_seed(0)
    return aevb.mlp_vae(64, 2, (16,), likelihood=aevb.BernoulliHead)


def _binary(n: int = 40) -> torch.Tensor:
    return (torch.rand(n, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.double(),
        lambda x: x.bool(),
        lambda x: x.long(),
        lambda x: x.numpy(),
        lambda x: x.numpy().astype(np.uint8),
    ],
    ids=["float64", "bool", "int64", "numpy", "uint8"],
)
def test_data_of_another_type_are_converted_to_the_same_numbers(model, convert) -> None:
    x = _binary()
    torch.manual_seed(2)
    expected = model.elbo(x).elbo
    torch.manual_seed(2)
    torch.testing.assert_close(model.elbo(convert(x)).elbo, expected)
    aevb.Trainer(model, max_epochs=1, progress=False).fit(convert(x), valid=convert(x[:8]))
    assert math.isfinite(aevb.log_px(model, convert(x[:4]), 10).mean)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: m.elbo(_binary()[:, :60]), DataError, r"shape \(64,\).*\(n, 64\)"),
        (lambda m: m.elbo(_binary()[0]), DataError, r"one example per row.*x\[None\]"),
        (lambda m: m.elbo(_binary()[:0]), DataError, "n >= 1"),
        (lambda m: m.elbo(torch.zeros(3, 64, dtype=torch.complex64)), DataError, "real numbers"),
        (lambda m: m.elbo(np.array([["a"] * 64])), DataError, "real numbers|array of numbers"),
        (lambda m: m.elbo(_binary(), num_samples=-1), ConfigError, "num_samples must be >= 1"),
        (lambda m: aevb.iwae_bound(m, _binary(), k=0), ConfigError, "k must be >= 1"),
        (lambda m: aevb.log_px(m, _binary(), 0), ConfigError, "k = 0"),
        (lambda m: aevb.Trainer(m, lr=math.nan), ConfigError, "lr > 0"),
        (lambda m: aevb.Trainer(m, batch_size=0), ConfigError, "batch_size >= 1"),
        (lambda m: aevb.Trainer(m, progress=False).fit(_binary()[:0]), DataError, "n >= 1"),
        (lambda m: aevb.Trainer(m, progress=False).fit(_binary() * 3), DataError, "support"),
        (lambda m: aevb.mlp_vae(64, 0), ConfigError, "latent_dim = 0 must be positive"),
        (lambda m: aevb.MLP(64, (16, 0)), ConfigError, r"hidden_dims\[1\] = 0"),
        (lambda m: aevb.MixturePrior(2, 0), ConfigError, "num_components = 0"),
        (lambda m: aevb.ConvEncoder((1, 8, 8), (8, -1)), ConfigError, r"channels\[1\] = -1"),
        (lambda m: aevb.ConvEncoder((1, 3, 3), (8, 8, 8)), DataError, "too small"),
    ],
)
def test_mistakes_are_aevb_errors_naming_the_fix(model, call, error, message) -> None:
    with pytest.raises(error, match=message) as raised:
        call(model)
    assert isinstance(raised.value, AevbError)

"""Convolutional bodies: exact shapes for odd image sizes, gradients, the per-pixel projection
against a direct computation, and every registered head and prior over a convolutional body."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from registry import HEADS, PRIORS, HeadCase, PriorCase
from torch import nn

from aevb import (
    VAE,
    BernoulliHead,
    ConvDecoder,
    ConvEncoder,
    NormalHead,
    PixelProjection,
    VampPrior,
    elbo,
)
from aevb.errors import DataError

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 17, 23), (2, 5, 9)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("residual_blocks", [0, 1])
def test_bodies_keep_any_image_size_and_pass_gradients(
    shape: tuple[int, int, int], residual_blocks: int
) -> None:
    torch.manual_seed(0)
    channels = (8, 16) if min(shape[1:]) >= 4 else (8,)
    encoder = ConvEncoder(shape, channels, residual_blocks=residual_blocks, norm="group")
    decoder = ConvDecoder(3, shape, channels[::-1], residual_blocks=residual_blocks)
    x = torch.rand(2, 5, int(np.prod(shape)))  # leading (k, batch) dimensions
    h = encoder(x)
    assert h.shape == (2, 5, encoder.out_dim)
    out = decoder(torch.randn(2, 5, 3, requires_grad=True))
    assert out.shape == (2, 5, decoder.features * shape[1] * shape[2])
    (h.square().sum() + out.square().sum()).backward()
    for module in (encoder, decoder):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0  # type: ignore[union-attr]


def test_pixel_projection_is_one_linear_map_per_pixel() -> None:
    """Output index d * P + p holds parameter p of value d = (c, i, j) in (C, H, W) order,
    computed from that pixel's features alone, with numpy."""
    torch.manual_seed(1)
    features, shape, params = 4, (3, 5, 7), 2
    projection = PixelProjection(features, shape, int(np.prod(shape)) * params).double()
    h = torch.randn(6, features * 5 * 7, dtype=torch.float64)
    out = projection(h).detach().numpy().reshape(6, 3, 5, 7, params)
    maps = h.numpy().reshape(6, features, 5, 7)
    weight = projection.conv.weight.detach().numpy()[:, :, 0, 0]  # (C * P, features)
    bias = projection.conv.bias.detach().numpy()
    direct = np.einsum("of,bfij->boij", weight, maps) + bias[None, :, None, None]
    direct = direct.reshape(6, 3, params, 5, 7).transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(out, direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", HEADS, ids=lambda c: c.name)
def test_every_likelihood_head_runs_on_a_convolutional_decoder(case: HeadCase) -> None:
    torch.manual_seed(2)
    shape = (3, 9, 11)
    data_dim = int(np.prod(shape))
    body = ConvDecoder(4, shape, (16, 8))
    head = case.make(body.out_dim, data_dim, projection=body.projection)  # type: ignore[call-arg]
    x = torch.as_tensor(case.sample_data(np.random.default_rng(0), (5, data_dim)))
    px = head(body(torch.randn(2, 5, 4)))
    log_px = px.log_prob(x.float())
    assert log_px.shape == (2, 5) and bool(torch.isfinite(log_px).all())
    assert px.mean.shape == (2, 5, data_dim)
    log_px.sum().backward()
    assert body.linear[0].weight.grad is not None


@pytest.mark.parametrize("case", PRIORS, ids=lambda c: c.name)
def test_every_prior_trains_with_a_convolutional_encoder(case: PriorCase) -> None:
    torch.manual_seed(3)
    shape, latent_dim = (1, 12, 12), 3
    body = ConvEncoder(shape, (8, 16))
    encoder = nn.Sequential(body, NormalHead(body.out_dim, latent_dim))
    decoder_body = ConvDecoder(latent_dim, shape, (16, 8))
    decoder = nn.Sequential(
        decoder_body, BernoulliHead(decoder_body.out_dim, 144, projection=decoder_body.projection)
    )
    # VampPrior: image-shaped pseudo-inputs through the convolutional encoder.
    prior = VampPrior(encoder, 144, 7) if case.name == "vamp" else case.make(latent_dim)
    model = VAE(encoder, decoder, prior)
    patterns = (torch.rand(2, 144) > 0.5).float()
    x = patterns[torch.arange(8) % 2]  # two images: structure to learn
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(4)
    with torch.no_grad():
        before = float(elbo(model, x, num_samples=50, analytic_kl=False).elbo.mean())
    for _ in range(80):
        optimizer.zero_grad()
        elbo(model, x, analytic_kl=False).loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(elbo(model, x, num_samples=50, analytic_kl=False).elbo.mean())
    assert after > before + 10.0


def test_bad_image_inputs_are_named() -> None:
    with pytest.raises(DataError, match="too small"):
        ConvEncoder((1, 3, 3), (8, 16, 32))
    encoder = ConvEncoder((1, 8, 8), (4,))
    with pytest.raises(DataError, match=r"\(1, 8, 8\).*192 values"):
        encoder(torch.zeros(2, 192))  # 3-channel 8x8 data into a grey model


@pytest.mark.parametrize("latent_layers", [None, (3,)])
def test_spatial_latents_are_maps_on_the_smallest_feature_map(latent_layers) -> None:
    from aevb.cli.build import build_model
    from aevb.cli.config import ModelConfig

    torch.manual_seed(5)
    config = ModelConfig(
        body="conv", channels=(8, 16), spatial_latents=True, latent_dim=2,
        likelihood="bernoulli", latent_layers=latent_layers, hierarchy="ladder",
    )  # fmt: skip
    model = build_model(config, 17 * 23, (1, 17, 23))  # maps 17x23 -> 9x12 -> 5x6
    x = (torch.rand(4, 17 * 23) > 0.5).float()
    z1 = model.encode(x).rsample()[:, : 2 * 5 * 6]
    assert z1.shape == (4, 60)  # 2 channels at each of 5 x 6 positions
    assert model.decode(model.encode(x).rsample()).log_prob(x).shape == (4,)
    assert model.latent_dim == 60 + (3 if latent_layers else 0)
    elbo(model, x, analytic_kl=False).loss.backward()

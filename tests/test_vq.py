"""VQ-VAE: nearest codes against brute force, the straight-through gradient, the EMA update
against its formula, dead-code restarts, the autoregressive prior against a step-by-step
computation and enumeration, the bound log p(x|z_q) + log p(z_q), and training end to end."""

from __future__ import annotations

import functools
import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch import nn

from aevb import (
    Codebook,
    CodePrior,
    CodeTransformer,
    ConfigError,
    ConvDecoder,
    ConvEncoder,
    Quantized,
    Trainer,
    VQHead,
    code_indices,
    code_usage,
    fit_code_prior,
    kl,
    load_dataset,
    log_px,
    mlp_vae,
    split,
    vq_elbo,
)
from aevb.distributions.quantized import as_flat, as_vectors, nearest
from aevb.models.heads import BernoulliHead
from aevb.models.vae import VAE


def _vq_vae(num_codes: int = 4, code_dim: int = 3, size: int = 16, **prior: bool) -> VAE:
    codebook = Codebook(size, code_dim)
    return mlp_vae(
        12,
        num_codes * code_dim,
        (20,),
        posterior=functools.partial(VQHead, codebook=codebook),
        prior=CodePrior(codebook, num_codes, width=16, layers=1, heads=2, **prior),
    )


def test_nearest_codes_and_the_layout() -> None:
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(50, 3, generator=generator)
    codebook = torch.randn(7, 3, generator=generator)
    expected = cdist(vectors.numpy(), codebook.numpy()).argmin(1)
    np.testing.assert_array_equal(nearest(vectors, codebook).numpy(), expected)
    z = torch.arange(24.0).reshape(2, 12)  # channel-major: value d * n + i is entry d of code i
    vectors = as_vectors(z, 3)
    assert vectors.shape == (2, 4, 3) and vectors[0, 1].tolist() == [1.0, 5.0, 9.0]
    assert torch.equal(as_flat(vectors), z)


def test_the_straight_through_gradient_reaches_the_encoder_unchanged() -> None:
    torch.manual_seed(0)
    z_e = torch.randn(5, 6, requires_grad=True)
    codebook = torch.randn(8, 2)
    index = nearest(as_vectors(z_e.detach(), 2), codebook)
    qz = Quantized(z_e, codebook, index)
    z = qz.rsample()
    assert torch.equal(z, qz.z_q)  # the value is the codes ...
    decoder = nn.Linear(6, 4)
    decoder(z).square().sum().backward()
    z_q = qz.z_q.detach().requires_grad_()
    decoder(z_q).square().sum().backward()
    assert z_e.grad is not None and z_q.grad is not None
    torch.testing.assert_close(z_e.grad, z_q.grad, rtol=0, atol=0)  # ... the gradient the decoder's


def test_the_ema_update_follows_its_formula() -> None:
    torch.manual_seed(0)
    codebook = Codebook(4, 2, decay=0.9, dead_fraction=0.0)
    before = codebook.embedding.clone().double()
    vectors = torch.randn(10, 2)
    index = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 0])
    codebook.update(vectors, index)
    counts = np.bincount(index.numpy(), minlength=4).astype(float)
    sums = np.zeros((4, 2))
    np.add.at(sums, index.numpy(), vectors.double().numpy())
    ema_count = 0.1 * counts
    ema_sum = 0.9 * before.numpy() + 0.1 * sums
    total = ema_count.sum()
    smoothed = (ema_count + 1e-5) / (total + 4e-5) * total
    np.testing.assert_allclose(codebook.embedding.numpy(), ema_sum / smoothed[:, None], rtol=1e-5)
    np.testing.assert_allclose(codebook.ema_count.numpy(), ema_count, rtol=1e-6)


def test_a_code_that_no_input_uses_is_restarted() -> None:
    torch.manual_seed(0)
    codebook = Codebook(3, 2, ema=False)
    with torch.no_grad():
        codebook.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]))
        codebook.ema_count.fill_(1.0)
    data = torch.randn(30, 2) * 0.1 + torch.tensor([0.5, 0.5]) * torch.randint(2, (30, 1))
    for _ in range(400):  # code 2 is never nearest: its count decays below the threshold
        codebook.update(data, nearest(data, codebook.embedding))
    moved = codebook.embedding[2].detach()
    assert float(moved.abs().max()) < 2  # restarted at one of the data
    assert float(cdist(moved[None].numpy(), data.numpy()).min()) < 1e-6
    assert code_usage(nearest(data, codebook.embedding), 3)["codes_used"] > 0.5


def test_the_autoregressive_prior_against_step_by_step_and_enumeration() -> None:
    torch.manual_seed(0)
    model = CodeTransformer(3, 4, width=16, layers=2, heads=2).eval()
    with torch.no_grad():
        model.positions.normal_()  # not all zero, so each place's conditional differs
        codes = torch.randint(3, (6, 4))
        whole = model.log_prob(codes)
        stepwise = torch.zeros(6)
        for i in range(4):  # each conditional from the prefix alone: nothing sees the future
            logits = model.logits(codes[:, : i + 1])[:, i]
            stepwise += torch.log_softmax(logits, -1).gather(-1, codes[:, i : i + 1]).squeeze(-1)
        torch.testing.assert_close(whole, stepwise, rtol=1e-5, atol=1e-5)
        every = torch.tensor(list(itertools.product(range(3), repeat=4)))
        probs = model.log_prob(every).exp()
        assert abs(float(probs.sum()) - 1) < 1e-5  # a distribution over all 81 tuples
        drawn = model.sample(torch.Size((20000,)))
    keys = (drawn * torch.tensor([27, 9, 3, 1])).sum(-1)
    frequencies = torch.bincount(keys, minlength=81).double() / 20000
    assert float((frequencies - probs.double()).abs().max()) < 0.015


def test_the_bound_is_log_p_x_given_codes_plus_log_p_codes() -> None:
    torch.manual_seed(0)
    model = _vq_vae().eval()
    x = torch.rand(8, 12).round()
    with torch.no_grad():
        qz = model.encode(x)
        p = model.prior()
        uniform = kl(qz, p)
        torch.testing.assert_close(uniform, torch.full((8,), 4 * math.log(16)))
        direct = model.decode(qz.z_q).log_prob(x) + p.log_prob(qz.z_q)
        terms = vq_elbo(model, x)
        torch.testing.assert_close(terms.elbo, direct)
        estimate = log_px(model, x, k=7)
        torch.testing.assert_close(estimate.log_px.float(), direct, rtol=1e-5, atol=1e-4)
        assert torch.equal(p.index_of(qz.z_q), qz.index)
        learned = _vq_vae(autoregressive=True).eval()
        qz, p = learned.encode(x), learned.prior()
        torch.testing.assert_close(kl(qz, p), -p.index_model.log_prob(qz.index))


def test_a_spatial_grid_of_codes_with_convolutional_bodies() -> None:
    torch.manual_seed(0)
    encoder = ConvEncoder((1, 17, 23), (8, 8))  # a 5 x 6 map
    codebook = Codebook(32, 4)
    head = VQHead(encoder.out_dim, 4 * 30, codebook, projection=encoder.projection)
    decoder = ConvDecoder(4 * 30, (1, 17, 23), (8, 8), spatial=True)
    model = VAE(
        nn.Sequential(encoder, head),
        nn.Sequential(decoder, BernoulliHead(decoder.out_dim, 391, projection=decoder.projection)),
        CodePrior(codebook, 30, autoregressive=True, width=16, layers=1, heads=2),
    )
    x = torch.rand(3, 391).round()
    terms = vq_elbo(model, x)
    assert model.encode(x).index.shape == (3, 30)
    terms.loss.backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert model.sample(2).shape == (2, 391)


def test_bad_vq_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="codebook_size >= 1"):
        Codebook(0, 4)
    with pytest.raises(ConfigError, match="codes x code_dim"):
        VQHead(10, 10, Codebook(8, 3))
    model = mlp_vae(12, 4, (20,))
    with pytest.raises(ConfigError, match="VQ head"):
        vq_elbo(model, torch.zeros(2, 12))
    with pytest.raises(ConfigError, match="not vector-quantized"):
        code_indices(model, torch.zeros(2, 12))
    with pytest.raises(ConfigError, match="autoregressive"):
        fit_code_prior(_vq_vae(), torch.zeros(2, 12))


def test_a_vq_vae_trains_and_its_learned_prior_beats_the_uniform_one() -> None:
    """The binary digits: the bound rises, the codebook is used, and the refitted prior
    gives the validation codes more probability than the uniform n log K."""
    train, valid, _ = split(load_dataset("digits-binary"), (0.2, 0.0), seed=0)
    torch.manual_seed(0)
    codebook = Codebook(32, 4)
    model = mlp_vae(
        64,
        8 * 4,
        (128,),
        posterior=functools.partial(VQHead, codebook=codebook),
        prior=CodePrior(codebook, 8, autoregressive=True, width=32, layers=1, heads=2),
    )
    history = Trainer(model, objective=vq_elbo, max_epochs=10, progress=False).fit(train.x, valid.x)
    assert history[-1]["valid_elbo"] > history[0]["valid_elbo"] + 5
    usage = code_usage(code_indices(model, train.x), 32)
    assert usage["codes_used"] >= 0.4 and usage["code_perplexity"] > 4
    codes = model.encode(valid.x).z_q.detach()
    before = float(model.prior().log_prob(codes).detach().mean())
    history = fit_code_prior(model, train.x, valid.x, epochs=5)
    after = float(model.prior().log_prob(codes).detach().mean())
    assert after == pytest.approx(max(r["valid_score"] for r in history), abs=1e-4)
    assert after > before > -8 * math.log(32) + 5  # far better than uniform codes


def test_a_vq_vae_from_the_command_line(tmp_path) -> None:
    from commands import aevb

    options = ["--data", "digits-binary", "--likelihood", "bernoulli", "--epochs", "3"]
    vq = ["--posterior", "vq", "--prior", "uniform", "--latent-dim", "8", "--code-dim", "4"]
    vq += ["--codebook-size", "32"]
    run = tmp_path / "run"
    extra = ["--prior", "autoregressive", "--prior-epochs", "2", "--out", run]
    result = aevb("train", *options, *vq, *extra)
    assert result.returncode == 0, result.stderr
    facts = json.loads((run / "run.json").read_text())
    assert facts["prior_epochs"] == 2 and 0 < facts["test_codes_used"] <= 1
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(1 <= r["code_perplexity"] <= 32 for r in history)
    assert (run / "code_usage.png").exists() and (run / "samples.png").exists()
    assert not (run / "prior_grid.png").exists()  # no straight lines between codes
    assert aevb("encode", run, "--out", tmp_path / "codes.csv").returncode == 0
    codes = np.loadtxt(tmp_path / "codes.csv", delimiter=",", skiprows=1)
    assert codes.shape == (facts["num_train"] + facts["num_valid"] + facts["num_test"], 8)
    assert (codes == codes.round()).all() and codes.min() >= 0 and codes.max() < 32
    evaluated = aevb("evaluate", run, "--k", "5", "--quiet", "--out", tmp_path / "e.json")
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["log_px"] == pytest.approx(summary["elbo"], abs=1e-3)  # q is a point mass
    assert summary["log_px"] == pytest.approx(facts["test_elbo"], abs=1e-3)
    refused = {
        "Gaussian-latent models only": ["encode", run, "--refine", "5"],
        "Gaussian-latent models only ": ["evaluate", run, "--gaps"],
    }
    for message, command in refused.items():
        bad = aevb(*command)
        assert bad.returncode == 2 and message.strip() in bad.stderr, (message, bad.stderr)
    refused = {
        "codebook_size must be positive": [*vq, "--codebook-size", "0"],
        "larger than the data": [*vq[:-1], "100000"],
        "do not go together": ["--prior", "autoregressive"],
        "no free_bits": [*vq, "--objective", "iwae"],
    }
    for message, extra in refused.items():
        bad = aevb("train", *options, *extra, "--out", tmp_path / "bad")
        assert bad.returncode == 2 and message in bad.stderr, (message, bad.stderr)
        assert not (tmp_path / "bad").exists()

"""Categorical and Bernoulli latents: exact KL and log-probabilities against enumeration,
exact draws, relaxations that approach one-hot codes as the temperature falls, the
straight-through gradient, and IS log p(x) of a one-binary-latent model equal to the sum over
its two values."""

from __future__ import annotations

import functools
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from aevb import (
    BernoulliHead,
    BernoulliLatentHead,
    BernoulliPrior,
    Bernoullis,
    CategoricalLatentHead,
    CategoricalPrior,
    Categoricals,
    Concatenated,
    ConcatenatedHead,
    ConcatenatedPrior,
    ConfigError,
    NormalHead,
    StandardNormalPrior,
    TemperatureSchedule,
    Trainer,
    evaluate,
    kl,
    load_dataset,
    log_px,
    mlp_vae,
    split,
)
from aevb.models.vae import VAE


def _codes(num_vars: int, num_categories: int) -> torch.Tensor:
    """Every configuration of the variables as concatenated one-hot codes."""
    eye = torch.eye(num_categories, dtype=torch.float64)
    return torch.stack(
        [
            torch.cat([eye[i] for i in values])
            for values in itertools.product(range(num_categories), repeat=num_vars)
        ]
    )


def test_categorical_kl_and_log_prob_against_enumeration() -> None:
    generator = torch.Generator().manual_seed(0)
    q = Categoricals(torch.randn(4, 2, 3, generator=generator, dtype=torch.float64))
    p = Categoricals(torch.randn(2, 3, generator=generator, dtype=torch.float64))
    z = _codes(2, 3)[:, None]  # (9, 1, 6): every configuration, for each of 4 examples
    log_q, log_p = q.log_prob(z), p.log_prob(z)
    assert torch.allclose(log_q.exp().sum(0), torch.ones(4, dtype=torch.float64))
    enumerated = (log_q.exp() * (log_q - log_p)).sum(0)
    torch.testing.assert_close(kl(q, p), enumerated)
    torch.testing.assert_close(q.entropy(), -(log_q.exp() * log_q).sum(0))


def test_bernoulli_kl_and_log_prob_against_enumeration() -> None:
    generator = torch.Generator().manual_seed(1)
    q = Bernoullis(torch.randn(5, 3, generator=generator, dtype=torch.float64))
    p = Bernoullis(torch.randn(3, generator=generator, dtype=torch.float64))
    z = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)), dtype=torch.float64)[:, None]
    log_q, log_p = q.log_prob(z), p.log_prob(z)
    assert torch.allclose(log_q.exp().sum(0), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(kl(q, p), (log_q.exp() * (log_q - log_p)).sum(0))


def test_draws_are_exact() -> None:
    """sample() and the straight-through rsample() draw with the stated probabilities."""
    torch.manual_seed(0)
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    n = 200_000
    for draws in (
        Categoricals(probs.log()).sample((n,)),
        Categoricals(probs.log(), hard=True).rsample((n,)).detach(),
    ):
        assert set(draws.unique().tolist()) == {0.0, 1.0} and bool((draws.sum(-1) == 1).all())
        error = (draws.mean(0) - probs[0]).abs() / (probs[0] * (1 - probs[0]) / n).sqrt()
        assert float(error.max()) < 4
    bits = Bernoullis(torch.tensor([math.log(0.3 / 0.7)])).sample((n,))
    assert abs(float(bits.mean()) - 0.3) < 4 * math.sqrt(0.21 / n)


def test_relaxed_codes_approach_one_hot_as_the_temperature_falls() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1000, 5, 4)
    largest = [
        Categoricals(logits, t).rsample().unflatten(-1, (5, 4)).max(-1).values
        for t in (5.0, 0.5, 0.01)
    ]
    means = [float(m.mean()) for m in largest]
    assert means[0] < means[1] < means[2] and means[0] < 0.5 and means[2] > 0.99
    binary = Bernoullis(torch.randn(1000, 5), temperature=0.01).rsample()
    assert float(torch.minimum(binary, 1 - binary).mean()) < 0.01
    with pytest.raises(ConfigError, match="temperature must be positive"):
        Categoricals(logits, 0.0)


def test_straight_through_has_the_relaxed_gradient() -> None:
    """hard=True: exact one-hot values, and the gradient of the relaxed draw with the same
    noise (Jang et al. 2017, straight-through Gumbel-softmax)."""
    logits = torch.randn(3, 2, 4, requires_grad=True)
    weights = torch.randn(3, 8)
    gradients, values = [], []
    for hard in (False, True):
        torch.manual_seed(5)
        z = Categoricals(logits, 0.7, hard).rsample()
        (gradient,) = torch.autograd.grad((weights * z).sum(), logits)
        gradients.append(gradient)
        values.append(z.detach())
    torch.testing.assert_close(gradients[0], gradients[1])
    codes = values[0].unflatten(-1, (2, 4))
    expected = torch.nn.functional.one_hot(codes.argmax(-1), 4).float().flatten(-2)
    assert torch.equal(values[1], expected)


@pytest.mark.parametrize("latent", ["bernoulli", "categorical"])
def test_importance_sampling_equals_enumeration(latent: str) -> None:
    """log p(x) = log sum_z p(z) p(x|z) over the latent's few values, against IS with the
    exact discrete q (no relaxation at test time)."""
    torch.manual_seed(0)
    if latent == "bernoulli":
        head, prior, size = BernoulliLatentHead(16, 1), BernoulliPrior(1, probs=0.3), 1
        values = torch.tensor([[0.0], [1.0]])
    else:
        head, size = CategoricalLatentHead(16, 3, num_categories=3), 3
        prior = CategoricalPrior(1, 3, probs=torch.tensor([0.2, 0.3, 0.5]))
        values = torch.eye(3)
    encoder = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), head)
    decoder = nn.Sequential(nn.Linear(size, 16), nn.Tanh(), BernoulliHead(16, 6))
    model = VAE(encoder, decoder, prior).eval()
    x = (torch.rand(5, 6) < 0.5).float()
    with torch.no_grad():
        log_joint = decoder(values[:, None]).log_prob(x) + prior().log_prob(values)[:, None]
    exact = log_joint.logsumexp(0)  # (5,)
    estimate = log_px(model, x, k=4000)
    assert torch.all((estimate.log_px - exact).abs() < 5 * estimate.stderr + 1e-4)


def test_a_categorical_vae_trains_with_an_annealed_temperature() -> None:
    """20 variables of 10 categories on the binary digits: the exact discrete ELBO (eval
    mode) improves, sits below IS log p(x), and the temperature follows the schedule."""
    train, valid, _ = split(load_dataset("digits-binary"), (0.2, 0.0), seed=0)
    torch.manual_seed(0)
    vae = mlp_vae(
        64, 200, (128,),
        posterior=functools.partial(CategoricalLatentHead, num_categories=10),
        prior=CategoricalPrior(20, 10),
    )  # fmt: skip
    before = evaluate(vae, valid.x)["elbo"]
    schedule = TemperatureSchedule(start=1.0, minimum=0.5, rate=1e-3)
    trainer = Trainer(vae, max_epochs=15, progress=False, callbacks=[schedule])
    trainer.fit(train.x, valid.x)
    head = vae.encoder[-1]
    assert head.temperature == pytest.approx(max(0.5, math.exp(-1e-3 * trainer.step)))
    after = evaluate(vae, valid.x)
    assert after["elbo"] > before + 5 and after["kl"] > 0.5  # the codes carry information
    estimate = log_px(vae, valid.x[:100], k=500)
    assert estimate.mean > evaluate(vae, valid.x[:100])["elbo"]
    samples = vae.sample(16)
    assert samples.shape == (16, 64)


def test_bad_discrete_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="sum to one"):
        CategoricalPrior(2, 3, probs=torch.tensor([0.5, 0.4, 0.3]))
    with pytest.raises(ConfigError, match="variables x categories"):
        CategoricalLatentHead(8, 25, num_categories=10)
    with pytest.raises(ConfigError, match=r"P\(1\)"):
        BernoulliPrior(3, probs=1.5)
    with pytest.raises(ConfigError, match="minimum"):
        TemperatureSchedule(start=1.0, minimum=0.0)


def test_discrete_latents_from_the_command_line(tmp_path) -> None:
    from commands import aevb

    options = ["--data", "digits-binary", "--likelihood", "bernoulli", "--epochs", "3"]
    discrete = ["--posterior", "categorical", "--latent-dim", "5", "--latent-categories", "4"]
    run = tmp_path / "run"
    result = aevb("train", *options, *discrete, "--prior", "uniform", "--out", run)
    assert result.returncode == 0, result.stderr
    trainer = json.loads((run / "trainer.json").read_text())
    assert trainer["step"] == 45  # 3 epochs of 15 steps, annealed: tau = exp(-1e-4 * step)
    codes = aevb("encode", run, "--out", tmp_path / "codes.npy")
    assert codes.returncode == 0, codes.stderr
    probs = torch.as_tensor(np.load(tmp_path / "codes.npy"))
    assert probs.shape[1] == 20  # q(z|x) probabilities of 5 variables x 4 values
    assert torch.allclose(probs.unflatten(-1, (5, 4)).sum(-1), torch.ones(1), atol=1e-5)
    refused = {
        "must not exceed": [*discrete, "--prior", "uniform", "--temperature-min", "2"],
        "prior = 'uniform'": [*discrete],  # a Gaussian prior for discrete latents
        "objective = 'elbo'": [*discrete, "--prior", "uniform", "--objective", "iwae"],
        "temperature must be positive": [*discrete, "--prior", "uniform", "--temperature", "0"],
        "latent_categories must be >= 2": [
            *discrete,
            "--prior",
            "uniform",
            "--latent-categories",
            "1",
        ],
    }
    for message, extra in refused.items():
        bad = aevb("train", *options, *extra, "--out", tmp_path / "bad")
        assert bad.returncode == 2 and message in bad.stderr, (message, bad.stderr)
        assert not (tmp_path / "bad").exists()


def test_mixed_latents_against_quadrature_and_enumeration() -> None:
    """z = [a Gaussian coordinate, one bit]: log p(x) = log sum_b int p(z_g) p(b) p(x|z_g, b)
    dz_g by Gauss-Hermite quadrature (80 nodes) and enumeration of b, against IS log p(x) with
    the product q; the product's KL is the sum of its blocks' closed forms."""
    from numpy.polynomial.hermite_e import hermegauss

    torch.manual_seed(0)
    head = ConcatenatedHead(16, [(NormalHead, 1), (BernoulliLatentHead, 1)])
    prior = ConcatenatedPrior([StandardNormalPrior(1), BernoulliPrior(1, probs=0.4)])
    encoder = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), head)
    decoder = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), BernoulliHead(16, 6))
    model = VAE(encoder, decoder, prior).eval()
    x = (torch.rand(4, 6) < 0.5).float()
    nodes, weights = (torch.as_tensor(a, dtype=torch.float32) for a in hermegauss(80))
    log_terms = []
    for bit, p_bit in ((0.0, 0.6), (1.0, 0.4)):
        z = torch.stack([nodes, torch.full_like(nodes, bit)], -1)  # (80, 2)
        with torch.no_grad():
            log_lik = decoder(z[:, None]).log_prob(x)  # (80, 4)
        # int N(z; 0, 1) f(z) dz = sum_i w_i f(z_i) / sqrt(2 pi) for the HermiteE weights
        log_w = (weights / math.sqrt(2 * math.pi)).log()[:, None] + math.log(p_bit)
        log_terms.append(log_lik + log_w)
    exact = torch.cat(log_terms).logsumexp(0)
    estimate = log_px(model, x, k=4000)
    assert torch.all((estimate.log_px - exact).abs() < 5 * estimate.stderr + 1e-3)
    qz = model.encode(x)
    assert isinstance(qz, Concatenated) and qz.event_shape == (2,)
    blocks = [kl(a, b) for a, b in zip(qz.parts, model.prior().parts, strict=True)]
    torch.testing.assert_close(kl(qz, model.prior()), blocks[0] + blocks[1])

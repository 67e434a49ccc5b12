"""M2 and the conditional VAE: objectives against hand-written references, and learning."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from aevb import DataError, M1Features, NormalHead, mlp_vae
from aevb.inference import semi_supervised_objective
from aevb.models.semisupervised import UNLABELLED, error_rate, labelled_subset, mlp_m2
from aevb.nn.mlp import LabelConditionedMLP
from aevb.training import fit_semi_supervised

D, C, LATENT = 12, 3, 2


def _data(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, D, generator=generator) < 0.4).float()
    y = torch.randint(0, C, (n,), generator=generator)
    return x, y


def _hidden(layer: LabelConditionedMLP, inputs: torch.Tensor, label: int) -> torch.Tensor:
    """The body as a plain MLP on [inputs, onehot(label)]: weights laid side by side."""
    onehot = F.one_hot(torch.full(inputs.shape[:-1], label), layer.num_classes).float()
    weight = torch.cat([layer.first.weight, layer.label_weight.T], dim=1)
    h = torch.tanh(F.linear(torch.cat([inputs, onehot], -1), weight, layer.first.bias))
    return layer.rest(h)


def _labelled_elbo_by_hand(model, x, label, eps):
    """L(x, y) for one class from the raw weights: Gaussian q, Bernoulli p, closed-form KL."""
    encoder, decoder = model.encoder, model.decoder
    h = _hidden(encoder.body, x, label)
    loc = encoder.head.loc(h)
    scale = F.softplus(encoder.head.raw_scale(h)) + encoder.head.min_scale
    z = loc + scale * eps
    logits = decoder.head.logits(_hidden(decoder.body, z, label))
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    return log_px_z.sum(-1) - kl - math.log(model.num_classes)


def test_label_conditioned_mlp_equals_linear_on_concatenation():
    torch.manual_seed(0)
    layer = LabelConditionedMLP(D, C, (7, 5), nn.Tanh)
    x = torch.randn(4, D)
    for label in range(C):
        expected = _hidden(layer, x, label)
        torch.testing.assert_close(layer(x, torch.full((4,), label)), expected)
    # every class at once, broadcast (C, B) against (B, D)
    every = torch.arange(C)[:, None].expand(C, 4)
    stacked = torch.stack([_hidden(layer, x, c) for c in range(C)])
    torch.testing.assert_close(layer(x, every), stacked)


def test_unlabelled_bound_equals_brute_force_sum_over_classes():
    torch.manual_seed(1)
    model = mlp_m2(D, C, LATENT, (16,), activation=nn.Tanh)
    x, _ = _data()
    torch.manual_seed(5)
    bound = model.unlabelled_elbo(x)
    torch.manual_seed(5)
    eps = torch.randn(1, C, len(x), LATENT)  # the same draws rsample takes for (1, C, B)
    qy = F.softmax(model.classifier(x).logits, -1)  # (B, C)
    per_class = torch.stack(
        [_labelled_elbo_by_hand(model, x, c, eps[0, c]) for c in range(C)], dim=1
    )
    entropy = -(qy * qy.log()).sum(-1)
    torch.testing.assert_close(bound, (qy * per_class).sum(-1) + entropy)
    # U(x) is a bound on log p(x) below every class's L(x, y) + log(1 / q(y|x)) mixture
    assert torch.all(bound <= torch.logsumexp(per_class, dim=1) + 1e-4)


def test_all_labels_observed_m2_loss_is_cvae_loss_plus_classification():
    torch.manual_seed(2)
    m2 = mlp_m2(D, C, LATENT, (16,), activation=nn.Tanh)
    cvae = mlp_m2(D, C, LATENT, (16,), activation=nn.Tanh, classifier=False)
    cvae.load_state_dict(m2.state_dict(), strict=False)
    x, y = _data(8)
    alpha = 0.7
    torch.manual_seed(9)
    m2_terms = semi_supervised_objective(m2, x, y, None, alpha=alpha)
    torch.manual_seed(9)
    cvae_terms = semi_supervised_objective(cvae, x, y, None, alpha=alpha)
    torch.manual_seed(9)
    eps = torch.randn(1, len(x), LATENT)
    by_hand = torch.stack(
        [_labelled_elbo_by_hand(m2, x[i : i + 1], int(y[i]), eps[:, i]) for i in range(len(x))]
    ).flatten()
    cross_entropy = F.cross_entropy(m2.classifier(x).logits, y)
    torch.testing.assert_close(cvae_terms.loss, -by_hand.mean())
    torch.testing.assert_close(m2_terms.loss, cvae_terms.loss + alpha * cross_entropy)
    # the conditional ELBO is the labelled ELBO without log p(y)
    torch.manual_seed(9)
    conditional = cvae.conditional_elbo(x, y)
    torch.testing.assert_close(conditional - math.log(C), by_hand)


def test_two_gaussians_recovered_from_a_handful_of_labels():
    """Two elongated clusters; 3 labels per class, 600 unlabelled points. The Bayes error is
    known; M2's classifier must come close to it."""
    rng = np.random.default_rng(0)
    n = 800
    labels = rng.integers(0, 2, n)
    centers = np.array([[-1.5, 0.0], [1.5, 0.0]])
    x = centers[labels] + rng.normal(size=(n, 2)) * np.array([0.5, 3.0])
    bayes_error = stats.norm.cdf(-1.5 / 0.5)
    x_t, y_t = torch.tensor(x, dtype=torch.float32), torch.tensor(labels)
    train, test = slice(0, 600), slice(600, n)
    y = torch.full((600,), UNLABELLED)
    shown = labelled_subset(y_t[train], 3, seed=0)
    y[shown] = y_t[train][shown]
    torch.manual_seed(0)
    model = mlp_m2(2, 2, latent_dim=1, hidden_dims=(32,), likelihood=NormalHead)
    history = fit_semi_supervised(
        model,
        x_t[train],
        y,
        epochs=40,
        batch_size=50,
        labelled_per_batch=6,
        alpha=1.0,
        lr=3e-3,
        progress=False,
    )
    error = error_rate(model, x_t[test], y_t[test])
    supervised_only = _nearest_mean_error(
        x_t[train][shown], y_t[train][shown], x_t[test], y_t[test]
    )
    # the unlabelled points do the work: 6 labels alone (nearest class mean) err 3 %
    assert error <= bayes_error + 0.01, (error, bayes_error)
    assert error < supervised_only
    assert history[-1]["train_unlabelled_elbo"] > history[0]["train_unlabelled_elbo"]


def test_a_fit_in_two_pieces_equals_one_fit(tmp_path: Path) -> None:
    """Long M2 fits run in pieces: 3 epochs, then 2 more resumed from the run folder, end
    with the same weights and history as 5 epochs in one go (the resumed call's own seed and
    initial weights are replaced by the checkpoint's)."""
    x, labels = torch.rand(120, 6).round(), torch.randint(0, 3, (120,))
    y = torch.full_like(labels, UNLABELLED)
    y[:12] = labels[:12]

    def fit(epochs: int, seed: int = 0, **options):
        torch.manual_seed(seed)
        model = mlp_m2(6, 3, latent_dim=2, hidden_dims=(8,))
        history = fit_semi_supervised(
            model, x, y, epochs=epochs, batch_size=20, labelled_per_batch=4, seed=seed,
            progress=False, **options,
        )  # fmt: skip
        return model, history

    whole, whole_history = fit(5)
    fit(3, run_dir=tmp_path / "run")
    pieces, history = fit(5, seed=1, run_dir=tmp_path / "run", resume=True)
    for a, b in zip(whole.state_dict().values(), pieces.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    terms = ["train_unlabelled_elbo", "train_labelled_elbo"]
    assert [[r[t] for t in terms] for r in history] == [
        [r[t] for t in terms] for r in whole_history
    ]


def test_m1_features_are_draws_of_q_while_training_and_its_mean_otherwise():
    torch.manual_seed(0)
    m1 = mlp_vae(6, 3, (8,), likelihood=NormalHead)
    x = torch.randn(200, 6)
    features = M1Features(m1, x, threshold=0.0)
    with torch.no_grad():
        qz = m1.encode(x[:2])
    standardized_mean = (qz.mean - features.loc) / features.scale
    features.eval()
    assert torch.equal(features(x[:2]), standardized_mean)
    features.train()
    assert not m1.training  # M1 itself stays frozen in eval mode
    draws = torch.stack([features(x[:2]) for _ in range(4000)])
    sd = qz.stddev / features.scale
    assert ((draws.mean(0) - standardized_mean).abs() < 4 * sd / 4000**0.5).all()
    torch.testing.assert_close(draws.std(0), sd, atol=0, rtol=0.05)
    assert torch.equal(M1Features(m1, x, threshold=0.0, sample=False)(x[:2]), standardized_mean)


def _nearest_mean_error(x, y, x_test, y_test) -> float:
    means = torch.stack([x[y == c].mean(0) for c in range(2)])
    predicted = torch.cdist(x_test, means).argmin(1)
    return float((predicted != y_test).float().mean())


def test_conditional_sampling_and_analogies_use_the_label():
    torch.manual_seed(3)
    model = mlp_m2(D, C, LATENT, (16,))
    x, y = _data(4)
    grid = model.analogies(x, y)
    assert grid.shape == (4, C, D)
    z = model.encode(x, y).mean
    for c in range(C):
        torch.testing.assert_close(grid[:, c], model.decode(z, torch.full((4,), c)).mean)
    samples = model.sample(torch.tensor([0, 1, 2, 2]))
    assert samples.shape == (4, D) and set(samples.unique().tolist()) <= {0.0, 1.0}
    assert model.predict_proba(x).sum(-1).allclose(torch.ones(4))


def test_labelled_subset_is_balanced_seeded_and_never_unlabelled():
    y = torch.tensor([0, 1, -1, 2, 0, 1, 2, -1, 0, 1, 2, 0])
    rows = labelled_subset(y, 2, seed=4)
    assert len(rows) == 6 and bool((y[rows] != UNLABELLED).all())
    assert torch.bincount(y[rows]).tolist() == [2, 2, 2]
    assert torch.equal(rows, labelled_subset(y, 2, seed=4))
    with pytest.raises(DataError, match="class 1 has 3 labelled rows"):
        labelled_subset(y, 4)


def test_bad_labels_and_data_are_named():
    model = mlp_m2(D, C, LATENT, (16,))
    cvae = mlp_m2(D, C, LATENT, (16,), classifier=False)
    x, y = _data(5)
    with pytest.raises(DataError, match=r"label 7 at row 1 is outside 0\.\.2"):
        model.check_data(x, torch.tensor([0, 7, 1, 1, 1]))
    with pytest.raises(DataError, match="one integer per example"):
        model.check_data(x, y[:3])
    with pytest.raises(DataError, match="conditional VAE needs every label"):
        cvae.check_data(x, torch.tensor([0, -1, 1, 1, 1]))
    with pytest.raises(DataError, match="outside the support"):
        model.check_data(x * 3, y)
    with pytest.raises(DataError, match="no row has a label"):
        fit_semi_supervised(model, x, torch.full((5,), UNLABELLED), epochs=1, progress=False)
    with pytest.raises(ValueError, match="no classifier"):
        cvae.predict(x)

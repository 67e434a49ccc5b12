"""log p(x), the IWAE bound and ELBO surgery on probabilistic PCA, whose answers are exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ppca import PPCA, encoder_gradients

from aevb import active_units, elbo, elbo_surgery, iwae_bound, log_px
from aevb.evaluation.surgery import _aggregate_log_prob


@pytest.fixture
def ppca(float64) -> PPCA:
    return PPCA(data_dim=5, latent_dim=2, noise=0.5, seed=0)


def _poor_model(ppca: PPCA):
    """The exact posterior's encoder, perturbed: a q(z|x) like a trained amortized one."""
    torch.manual_seed(3)
    model = ppca.model(ppca.exact_encoder())
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def test_importance_sampling_converges_to_the_exact_log_px(ppca: PPCA) -> None:
    x = ppca.sample(8)
    model, exact = _poor_model(ppca), ppca.log_px(x)
    errors = []
    for k in (1, 10, 100, 1000, 20_000):
        estimate = log_px(model, x, k, batch_size=4, max_rows=4096)
        errors.append(np.abs(estimate.log_px.numpy() - exact).mean())
        assert estimate.log_px.shape == (8,) and estimate.k == k
    assert errors[-1] < errors[0] / 10 and errors[-1] < 0.02
    # At large k the estimate is within 3 of its own standard errors of the truth.
    assert (np.abs(estimate.log_px.numpy() - exact) < 3 * estimate.stderr.numpy() + 1e-3).all()


def test_standard_error_matches_the_spread_of_repeated_estimates(ppca: PPCA) -> None:
    x = ppca.sample(3)
    model = _poor_model(ppca)
    runs = [log_px(model, x, 200) for _ in range(150)]
    spread = torch.stack([run.log_px for run in runs]).std(0)
    reported = torch.stack([run.stderr for run in runs]).mean(0)
    assert ((reported / spread) > 0.7).all() and ((reported / spread) < 1.4).all()


def test_exact_posterior_gives_log_px_with_zero_error(ppca: PPCA) -> None:
    x = ppca.sample(6)
    estimate = log_px(ppca.model(ppca.exact_encoder()), x, 50)
    np.testing.assert_allclose(estimate.log_px.numpy(), ppca.log_px(x), rtol=1e-10)
    assert estimate.stderr.abs().max() < 1e-6


def test_chunked_estimate_equals_a_direct_logsumexp(ppca: PPCA) -> None:
    x = ppca.sample(5)
    model = _poor_model(ppca)
    torch.manual_seed(11)
    estimate = log_px(model, x, 300, batch_size=5, max_rows=10**6)  # one chunk
    torch.manual_seed(11)
    qz = model.encode(x)
    z = qz.sample((300,))
    log_w = model.decode(z).log_prob(x) + model.prior().log_prob(z) - qz.log_prob(z)
    direct = torch.logsumexp(log_w, 0) - math.log(300)
    torch.testing.assert_close(estimate.log_px, direct.detach())


def _expected_bound(model, x, k: int, repeats: int = 400) -> tuple[np.ndarray, np.ndarray]:
    values = torch.stack([iwae_bound(model, x, k=k).elbo.detach() for _ in range(repeats)])
    return values.mean(0).numpy(), (values.std(0) / math.sqrt(repeats)).numpy()


def test_elbo_below_iwae_below_log_px_and_rising_with_k(ppca: PPCA) -> None:
    x = ppca.sample(4)
    model = _poor_model(ppca)
    qz = model.encode(x)
    closed_elbo = ppca.closed_form_elbo(x, qz.mean.detach().numpy(), qz.stddev.detach().numpy())
    bounds = {k: _expected_bound(model, x, k) for k in (1, 5, 50)}
    assert (np.abs(bounds[1][0] - closed_elbo) < 4 * bounds[1][1]).all()  # IWAE_1 = ELBO
    for low, high in ((1, 5), (5, 50)):
        gap = bounds[high][0] - bounds[low][0]
        assert (gap > -3 * np.hypot(bounds[low][1], bounds[high][1])).all()
        assert gap.mean() > 0
    assert (bounds[50][0] < ppca.log_px(x) + 3 * bounds[50][1]).all()


def test_iwae_with_one_sample_is_the_monte_carlo_elbo(ppca: PPCA) -> None:
    x = ppca.sample(5)
    model = _poor_model(ppca)
    torch.manual_seed(5)
    iwae = iwae_bound(model, x, k=1)
    torch.manual_seed(5)
    plain = elbo(model, x, analytic_kl=False)
    torch.testing.assert_close(iwae.elbo, plain.elbo.detach())
    torch.testing.assert_close(iwae.surrogate, plain.surrogate)


def test_dreg_gradient_is_unbiased_with_lower_variance(ppca: PPCA) -> None:
    x = ppca.sample(6)
    model = _poor_model(ppca)
    standard = encoder_gradients(iwae_bound, model, x, 400, k=16)
    dreg = encoder_gradients(iwae_bound, model, x, 400, k=16, gradient="dreg")
    stderr = (standard.var(0) / 400 + dreg.var(0) / 400).sqrt()
    assert ((standard.mean(0) - dreg.mean(0)).abs() < 5 * stderr + 1e-9).all()
    assert dreg.var(0).sum() < 0.5 * standard.var(0).sum()


def test_dreg_matches_its_definition_computed_by_hand(ppca: PPCA) -> None:
    """DReG's encoder gradient: sum_i w~_i^2 d log w_i / dz_i dz_i / dphi (Tucker et al. 2019)."""
    x = ppca.sample(3)
    model = _poor_model(ppca)
    torch.manual_seed(0)
    model.zero_grad()
    iwae_bound(model, x, k=4, gradient="dreg").loss.backward()
    fast = torch.cat([p.grad.flatten() for p in model.encoder.parameters()])

    torch.manual_seed(0)
    model.zero_grad()
    qz = model.encode(x)
    z = qz.rsample((4,))
    frozen = torch.distributions.Independent(
        torch.distributions.Normal(qz.mean.detach(), qz.stddev.detach()), 1
    )
    log_w = model.decode(z).log_prob(x) + model.prior().log_prob(z) - frozen.log_prob(z)
    weights = torch.softmax(log_w.detach(), 0)
    (-(weights**2 * log_w).sum(0).mean()).backward()
    by_hand = torch.cat([p.grad.flatten() for p in model.encoder.parameters()])
    torch.testing.assert_close(fast, by_hand)


def test_surgery_terms_add_up_and_match_the_closed_form_mutual_information(ppca: PPCA) -> None:
    x = ppca.sample(4000)
    model = ppca.model(ppca.exact_encoder())
    surgery = elbo_surgery(model, x, num_samples=2)
    assert surgery.mutual_info + surgery.marginal_kl == pytest.approx(surgery.average_kl, abs=1e-12)
    # With the exact posterior, q(z) = p(z) and I[x; z] = -1/2 log det(sigma^2 M^-1).
    _, cov = ppca.posterior(x[:1])
    exact_mi = -0.5 * np.linalg.slogdet(cov)[1]
    assert surgery.mutual_info == pytest.approx(exact_mi, abs=0.03 + 3 * surgery.stderr)
    assert abs(surgery.marginal_kl) < 0.05
    # The average KL is the closed-form expectation of KL(p(z|x) || p(z)) over the data.
    assert surgery.average_kl == pytest.approx(exact_mi, abs=0.05)


def test_surgery_against_loops_over_the_aggregate_posterior(ppca: PPCA) -> None:
    x = ppca.sample(30)
    model = _poor_model(ppca)
    torch.manual_seed(2)
    surgery = elbo_surgery(model, x, num_samples=3, max_elements=50)  # many small blocks
    torch.manual_seed(2)
    with torch.no_grad():
        qz = model.encode(x)
    z = qz.sample((3,))
    total = 0.0
    for s in range(3):
        for n in range(30):
            log_q_each = [qz.log_prob(z[s, n])[m] for m in range(30)]  # q(z|x_m) for every m
            log_aggregate = torch.logsumexp(torch.stack(log_q_each), 0) - math.log(30)
            total += float(qz.log_prob(z[s, n])[n] - log_aggregate)
    assert surgery.mutual_info == pytest.approx(total / 90, rel=1e-10)
    assert surgery.mutual_info <= math.log(30)


def test_active_units_see_a_collapsed_dimension(ppca: PPCA) -> None:
    model = ppca.model(ppca.exact_encoder())
    with torch.no_grad():
        model.encoder.A[1].zero_()  # the second code no longer depends on x: collapsed
    activity, active = active_units(model, ppca.sample(500))
    assert active.tolist() == [True, False] and activity[1] == 0


def test_bfloat16_and_compiled_decoders_agree_with_float32() -> None:
    from torch import nn

    from aevb import mlp_vae

    model = mlp_vae(20, 3, (16,), activation=nn.Tanh)
    x = (torch.rand(6, 20) > 0.5).float()
    torch.manual_seed(0)
    reference = log_px(model, x, 64)
    torch.manual_seed(0)
    compiled = log_px(model, x, 64, compile=True)
    torch.manual_seed(0)
    low = log_px(model, x, 64, matmul_dtype=torch.bfloat16)
    torch.testing.assert_close(compiled.log_px, reference.log_px, rtol=0, atol=1e-4)
    assert (low.log_px - reference.log_px).abs().max() < 0.05


def test_aggregate_posterior_of_diagonal_and_general_gaussians_agree() -> None:
    """The matrix-product mixture density (diagonal q) equals the general (N, M, D) path."""
    torch.manual_seed(0)
    loc, scale = torch.randn(40, 3).double(), (0.1 + torch.rand(40, 3)).double()
    diagonal = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
    general = torch.distributions.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    z = diagonal.sample((2,)).reshape(-1, 3)
    fast = _aggregate_log_prob(diagonal, z, max_elements=100)
    direct = _aggregate_log_prob(general, z, max_elements=100)
    torch.testing.assert_close(fast, direct, rtol=1e-10, atol=1e-10)


def test_effective_sample_size_is_reported_and_a_small_one_warned() -> None:
    from aevb import mlp_vae
    from aevb.evaluation import summarize

    torch.manual_seed(0)
    model = mlp_vae(16, 2, (8,))
    x = torch.rand(30, 16)
    estimate = log_px(model, x, 1)
    torch.testing.assert_close(estimate.ess, torch.ones(30, dtype=torch.float64))
    estimate = log_px(model, x, 40)
    assert bool(((estimate.ess >= 1) & (estimate.ess <= 40 + 1e-9)).all())
    summary = summarize(model, x, k=40, surgery_points=30)
    assert summary["ess_median"] <= 40
    assert any("effective sample size" in warning for warning in summary["warnings"])


def test_log_normal_column_density_is_minus_infinity_at_zero() -> None:
    from scipy import stats

    from aevb.distributions.columns import ZeroSafeLogNormal

    dist = ZeroSafeLogNormal(torch.tensor(0.3), torch.tensor(0.7))
    x = torch.tensor([0.0, -1.0, 0.5, 2.0])
    expected = stats.lognorm.logpdf(x.numpy(), 0.7, scale=np.exp(0.3))
    np.testing.assert_allclose(dist.log_prob(x).numpy(), expected, rtol=1e-6)


def test_bfloat16_importance_sampling_keeps_the_likelihood_in_float32() -> None:
    """784 binary pixels (the digits, enlarged): with the likelihood's terms and sum in
    bfloat16 the estimate was biased by +1.9 nats per image here; the same proposals in
    bfloat16 and float32 must agree, and float32 must agree with float64."""
    import copy

    import torch.nn.functional as F
    from torch import nn

    from aevb import load_dataset, mlp_vae
    from aevb.distributions.core import upcast

    torch.manual_seed(0)
    digits = load_dataset("digits-binary").x.reshape(-1, 1, 8, 8)
    x = F.pad(digits.repeat_interleave(3, 2).repeat_interleave(3, 3), (2, 2, 2, 2))
    x = x.reshape(-1, 784)
    model = mlp_vae(784, 20, (200,), activation=nn.Tanh)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(3):  # a fitted model: its weights concentrate, so a bias shows
        for rows in torch.randperm(len(x)).split(100):
            loss = -model.elbo(x[rows]).elbo.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test = x[:40]
    torch.manual_seed(1)
    reference = log_px(model, test, 200)
    torch.manual_seed(1)
    low = log_px(model, test, 200, matmul_dtype=torch.bfloat16)
    gap = float((low.log_px - reference.log_px).mean())
    assert abs(gap) < 0.05, gap  # the same z: only the decoder's matrix products differ
    # where the bias came from: log p(x|z) against float64 at the same z, through the
    # model (whose parts return float32 distributions under autocast) and through a bare
    # copy of its decoder without that hook
    z = model.encode(test).sample((50,))
    bare = copy.deepcopy(model.decoder)
    bare._forward_hooks.clear()
    with torch.no_grad():
        exact = copy.deepcopy(model).double().decode(z.double()).log_prob(test.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            px, raw_px = model.decode(z), bare(z)
        fixed = (px.log_prob(test) - exact).mean()
        upcasted = (upcast(raw_px).log_prob(test) - exact).mean()
        raw = (raw_px.log_prob(test).float() - exact).mean()
    assert max(abs(float(fixed)), abs(float(upcasted))) < 0.05 < abs(float(raw)), (fixed, raw)

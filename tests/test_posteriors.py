"""Richer posteriors q(z|x): full-covariance Gaussian and planar flows, against references
computed apart from the library (numpy/scipy from the heads' own weights, a numerical inverse
of the flow and autograd Jacobians)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from registry import affine, softplus
from scipy import stats
from torch.distributions import Normal

from aevb import (
    FullCovarianceNormalHead,
    PlanarFlowHead,
    PlanarFlowNormal,
    StandardNormalPrior,
    kl,
)

IN_DIM, LATENT, BATCH = 5, 3, 16


# --- full-covariance Gaussian -----------------------------------------------------------------


def _full_reference(head: FullCovarianceNormalHead, h: torch.Tensor):
    """Mean (B, D) and Cholesky factor (B, D, D) in numpy, from the head's weights."""
    loc = affine(head.loc, h)
    raw = affine(head.raw_tril, h)
    d = head.out_dim
    tril = np.zeros((*raw.shape[:-1], d, d))
    rows, cols = np.tril_indices(d)  # row-major lower triangle: (0,0), (1,0), (1,1), ...
    tril[..., rows, cols] = raw
    diag = np.arange(d)
    tril[..., diag, diag] = softplus(tril[..., diag, diag]) + head.min_scale
    return loc, tril


@pytest.mark.parametrize("seed", [0, 1])
def test_full_covariance_log_prob_matches_scipy(seed: int) -> None:
    torch.manual_seed(seed)
    head = FullCovarianceNormalHead(IN_DIM, LATENT).double()
    h = 2.0 * torch.randn(BATCH, IN_DIM, dtype=torch.float64)
    qz = head(h)
    assert qz.batch_shape == (BATCH,) and qz.event_shape == (LATENT,)
    loc, tril = _full_reference(head, h)
    z = loc + np.random.default_rng(seed).standard_normal((BATCH, LATENT))
    expected = [
        stats.multivariate_normal.logpdf(z[n], loc[n], tril[n] @ tril[n].T) for n in range(BATCH)
    ]
    actual = qz.log_prob(torch.as_tensor(z)).detach().numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(qz.mean.detach().numpy(), loc, rtol=1e-12)


def test_full_covariance_shapes_and_gradients() -> None:
    head = FullCovarianceNormalHead(IN_DIM, LATENT)
    h = torch.randn(2, BATCH, IN_DIM)  # leading sample dimension
    qz = head(h)
    assert qz.batch_shape == (2, BATCH) and qz.event_shape == (LATENT,)
    z = qz.rsample((4,))
    assert z.shape == (4, 2, BATCH, LATENT)
    assert qz.log_prob(z).shape == (4, 2, BATCH)
    z.square().sum().backward()
    for parameter in head.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_full_covariance_diagonal_strictly_positive() -> None:
    head = FullCovarianceNormalHead(IN_DIM, LATENT, min_scale=0.01)
    with torch.no_grad():
        head.raw_tril.bias.fill_(-1e4)  # every raw entry to -infinity
    tril = head(torch.zeros(3, IN_DIM)).scale_tril
    assert tril.diagonal(0, -2, -1).min().item() == pytest.approx(0.01)
    assert torch.equal(tril.triu(1), torch.zeros_like(tril))


# --- planar flows: an independent implementation ----------------------------------------------


def _u_hat(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """û = u + (m(wᵀu) - wᵀu) w / ||w||², m(a) = -1 + softplus(a) (Rezende & Mohamed, A.1)."""
    wu = (w * u).sum(-1, keepdims=True)
    return u + (-1 + softplus(wu) - wu) * w / (w * w).sum(-1, keepdims=True)


def _forward(z: torch.Tensor, u_hat, w, b) -> torch.Tensor:
    """One example's flow: z (L,) with u_hat, w (K, L), b (K,) as tensors."""
    for k in range(len(b)):
        z = z + u_hat[k] * torch.tanh(w[k] @ z + b[k])
    return z


def _forward_at(flow: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    return _forward(z, *flow)


def _inverse(z: np.ndarray, u_hat: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Invert one example's flow by bisection on s = wᵀz_{k-1} (monotone since wᵀû > -1)."""
    for k in reversed(range(len(b))):
        c, target = w[k] @ u_hat[k], w[k] @ z
        lo, hi = target - abs(c) - 1.0, target + abs(c) + 1.0  # |tanh| <= 1
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid + c * np.tanh(mid + b[k]) < target:
                lo = mid
            else:
                hi = mid
        z = z - u_hat[k] * np.tanh(0.5 * (lo + hi) + b[k])
    return z


def _random_flow(batch: tuple[int, ...], latent: int, num_flows: int, spread: float = 1.0):
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.float64)

    loc = rand(*batch, latent)
    scale = 0.5 + rand(*batch, latent).exp()
    u = spread * rand(*batch, num_flows, latent)
    w = spread * rand(*batch, num_flows, latent)
    b = rand(*batch, num_flows)
    return loc, scale, u, w, b


@pytest.mark.parametrize("num_flows", [1, 5])
def test_planar_log_density_matches_inverse_and_jacobian(num_flows: int) -> None:
    loc, scale, u, w, b = params = _random_flow((4,), LATENT, num_flows)
    qz = PlanarFlowNormal(*params)
    z = qz.sample((2,))  # (2, 4, L)
    log_q = qz.log_prob(z)
    assert z.shape == (2, 4, LATENT) and log_q.shape == (2, 4)
    for s in range(2):
        for n in range(4):
            p = [t[n].numpy() for t in (loc, scale, u, w, b)]
            u_hat = _u_hat(p[2], p[3])
            z0 = _inverse(z[s, n].numpy(), u_hat, p[3], p[4])
            flow = [torch.as_tensor(a) for a in (u_hat, p[3], p[4])]
            z0_t = torch.as_tensor(z0)
            np.testing.assert_allclose(_forward(z0_t, *flow), z[s, n], atol=1e-12)
            jacobian = torch.autograd.functional.jacobian(
                functools.partial(_forward_at, flow), z0_t
            )
            log_det = np.linalg.slogdet(jacobian.numpy())[1]
            expected = stats.norm.logpdf(z0, p[0], p[1]).sum() - log_det
            assert log_q[s, n].item() == pytest.approx(expected, abs=1e-8, rel=1e-10)


def test_planar_constraint_keeps_maps_invertible() -> None:
    params = _random_flow((64,), 4, 3, spread=3.0)  # w^T u from about -40 to 40
    qz = PlanarFlowNormal(*params)
    u, w = params[2], params[3]
    w_u_hat = (w * qz.u_hat).sum(-1)
    assert (w_u_hat >= -1 - 1e-12).all()  # equal to -1 up to rounding where w^T u << 0
    assert (w * u).sum(-1).min() < -5  # the raw u would break invertibility
    z = qz.sample((10,))
    assert torch.isfinite(qz.log_prob(z)).all()  # 1 + w^T û kept positive there
    expected = -1 + softplus((w * u).sum(-1).numpy())
    np.testing.assert_allclose(w_u_hat.numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(qz.u_hat.numpy(), _u_hat(u.numpy(), w.numpy()), rtol=1e-10)


def test_planar_without_flows_is_the_diagonal_normal() -> None:
    loc, scale, _, _, _ = _random_flow((BATCH,), LATENT, 0)
    empty = torch.zeros(BATCH, 0, LATENT, dtype=torch.float64)
    qz = PlanarFlowNormal(loc, scale, empty, empty, torch.zeros(BATCH, 0, dtype=torch.float64))
    z = qz.rsample((3,))
    expected = Normal(loc, scale).log_prob(z).sum(-1)
    torch.testing.assert_close(qz.log_prob(z), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(qz.mean, loc)


def test_planar_log_prob_of_foreign_tensor_raises() -> None:
    qz = PlanarFlowNormal(*_random_flow((BATCH,), LATENT, 2))
    message = "no closed-form inverse.*draw z with rsample/sample first"
    with pytest.raises(ValueError, match=message):
        qz.log_prob(torch.zeros(BATCH, LATENT, dtype=torch.float64))  # nothing drawn yet
    z = qz.rsample()
    assert qz.log_prob(z).shape == (BATCH,)
    with pytest.raises(ValueError, match=message):
        qz.log_prob(z.clone())  # equal values, different tensor
    z_new, log_q = qz.rsample_and_log_prob()
    assert qz.log_prob(z_new) is log_q
    with pytest.raises(ValueError, match=message):
        qz.log_prob(z)  # only the last draw is cached


def test_planar_density_is_normalized() -> None:
    """E_q[p(z) / q(z)] = integral of p = 1 for any density p: checks q's normalization."""
    loc = torch.tensor([0.3, -0.2], dtype=torch.float64)
    scale = torch.tensor([1.4, 1.6], dtype=torch.float64)  # wider than p: bounded ratio
    u = torch.tensor([[1.5, -0.5], [-1.0, 2.0], [0.5, 0.5]], dtype=torch.float64)
    w = torch.tensor([[2.0, 1.0], [0.5, -1.5], [-3.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([0.5, -0.3, 0.0], dtype=torch.float64)
    z, log_q = PlanarFlowNormal(loc, scale, u, w, b).rsample_and_log_prob((200_000,))
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    ratio = (log_p - log_q).exp()
    error = ratio.std() / math.sqrt(len(ratio))
    assert error < 0.01  # the check has power
    assert abs(ratio.mean().item() - 1.0) < 4 * error.item()


def test_planar_rsample_gradients() -> None:
    params = tuple(t.requires_grad_() for t in _random_flow((3,), LATENT, 2))

    def draw(*params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)  # the same eps on every call
        return PlanarFlowNormal(*params).rsample_and_log_prob((2,))

    z, log_q = draw(*params)
    (z.sum() + log_q.sum()).backward()
    for name, param in zip(["loc", "scale", "u", "w", "b"], params, strict=True):
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert torch.autograd.gradcheck(draw, params)


def test_planar_head_shapes_and_sampling() -> None:
    head = PlanarFlowHead(IN_DIM, LATENT, num_flows=3)
    h = torch.randn(BATCH, IN_DIM)
    qz = head(h)
    assert isinstance(qz, PlanarFlowNormal)
    assert qz.batch_shape == (BATCH,) and qz.event_shape == (LATENT,)
    assert qz.u.shape == qz.w.shape == (BATCH, 3, LATENT) and qz.b.shape == (BATCH, 3)
    assert qz.mean.shape == (BATCH, LATENT)
    z = qz.rsample((7,))
    assert z.shape == (7, BATCH, LATENT)
    log_q = qz.log_prob(z)
    assert log_q.shape == (7, BATCH) and torch.isfinite(log_q).all()
    (z.sum() + log_q.sum()).backward()
    for parameter in head.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert head(torch.randn(2, BATCH, IN_DIM)).batch_shape == (2, BATCH)


def test_planar_head_starts_near_identity() -> None:
    head = PlanarFlowHead(IN_DIM, LATENT, num_flows=4)
    qz = head(torch.randn(BATCH, IN_DIM))
    assert qz.u_hat.abs().max() < 0.1  # f_k(z) - z = û_k tanh(.) is small
    # each map's Jacobian determinant 1 + (1 - t^2) w^T û lies within 1 +- 0.05
    assert (qz.w * qz.u_hat).sum(-1).abs().max() < 0.05
    torch.testing.assert_close(qz.mean, qz.loc, atol=0.1, rtol=0)


def test_planar_kl_falls_back_to_monte_carlo_on_cached_samples() -> None:
    qz = PlanarFlowHead(IN_DIM, LATENT, num_flows=2)(torch.randn(BATCH, IN_DIM))
    pz = StandardNormalPrior(LATENT)()
    z, log_q = qz.rsample_and_log_prob((4,))
    torch.testing.assert_close(kl(qz, pz, z), (log_q - pz.log_prob(z)).mean(0))

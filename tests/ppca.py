"""Probabilistic PCA, the exact reference model (Tipping & Bishop 1999).

p(z) = N(0, I_d), p(x|z) = N(W z + b, sigma^2 I_D), so that
log p(x) = log N(x; b, W W^T + sigma^2 I) and
p(z|x) = N(M^-1 W^T (x - b), sigma^2 M^-1) with M = W^T W + sigma^2 I,
all computed here with numpy/scipy, apart from aevb.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from aevb import VAE, NormalHead, StandardNormalPrior


class PPCA:
    def __init__(
        self,
        data_dim: int = 5,
        latent_dim: int = 2,
        noise: float = 0.5,
        *,
        seed: int = 0,
        orthogonal: bool = True,
    ) -> None:
        rng = np.random.default_rng(seed)
        if orthogonal:  # orthogonal columns: the exact posterior has diagonal covariance
            basis, _ = np.linalg.qr(rng.standard_normal((data_dim, latent_dim)))
            self.W = basis * rng.uniform(0.8, 2.5, latent_dim)
        else:
            self.W = rng.standard_normal((data_dim, latent_dim))
        self.b = rng.standard_normal(data_dim)
        self.noise = noise
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.M = self.W.T @ self.W + noise**2 * np.eye(latent_dim)
        self.rng = rng

    def sample(self, n: int) -> torch.Tensor:
        z = self.rng.standard_normal((n, self.latent_dim))
        x = z @ self.W.T + self.b + self.noise * self.rng.standard_normal((n, self.data_dim))
        return torch.as_tensor(x)

    def log_px(self, x: torch.Tensor) -> np.ndarray:
        cov = self.W @ self.W.T + self.noise**2 * np.eye(self.data_dim)
        return stats.multivariate_normal(self.b, cov).logpdf(x.numpy())

    def posterior(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(n, d)`` and covariance ``(d, d)`` of p(z|x)."""
        M_inv = np.linalg.inv(self.M)
        mean = (x.numpy() - self.b) @ (M_inv @ self.W.T).T
        return mean, self.noise**2 * M_inv

    def decoder(self) -> nn.Module:
        head = NormalHead(self.latent_dim, self.data_dim, scale=self.noise).double()
        with torch.no_grad():
            head.loc.weight.copy_(torch.as_tensor(self.W))
            head.loc.bias.copy_(torch.as_tensor(self.b))
        return head

    def model(self, encoder: nn.Module) -> VAE:
        return VAE(encoder, self.decoder(), StandardNormalPrior(self.latent_dim).double())

    def exact_encoder(self) -> LinearGaussianEncoder:
        """q(z|x) equal to p(z|x) (needs ``orthogonal=True`` for a diagonal covariance)."""
        M_inv = np.linalg.inv(self.M)
        A = M_inv @ self.W.T
        encoder = LinearGaussianEncoder(self.data_dim, self.latent_dim)
        with torch.no_grad():
            encoder.A.copy_(torch.as_tensor(A))
            encoder.c.copy_(torch.as_tensor(-A @ self.b))
            variance = np.diag(self.noise**2 * M_inv)
            encoder.log_scale.copy_(torch.as_tensor(0.5 * np.log(variance)))
        return encoder

    def closed_form_elbo(self, x: torch.Tensor, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """ELBO of q = N(loc, diag scale^2): E_q log p(x|z) - KL(q || N(0, I)), exactly."""
        residual = x.numpy() - loc @ self.W.T - self.b
        spread = (scale**2) @ (self.W**2).sum(0)  # tr(W S W^T)
        expected_log_lik = (
            -0.5 * self.data_dim * np.log(2 * np.pi * self.noise**2)
            - 0.5 * ((residual**2).sum(-1) + spread) / self.noise**2
        )
        kl = 0.5 * (scale**2 + loc**2 - 1 - np.log(scale**2)).sum(-1)
        return expected_log_lik - kl


def encoder_gradients(objective, model, x: torch.Tensor, repeats: int, **options) -> torch.Tensor:
    """``(repeats, num_encoder_params)``: the encoder's gradient of ``objective`` per seed."""
    grads = []
    for seed in range(repeats):
        torch.manual_seed(seed)
        model.zero_grad()
        objective(model, x, **options).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.encoder.parameters()]))
    return torch.stack(grads)


class LinearGaussianEncoder(nn.Module):
    """q(z|x) = N(A x + c, diag exp(log_scale)^2): any module returning a distribution
    is an encoder."""

    def __init__(self, data_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.A = nn.Parameter(0.3 * torch.randn(latent_dim, data_dim, dtype=torch.float64))
        self.c = nn.Parameter(torch.zeros(latent_dim, dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.zeros(latent_dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> Distribution:
        loc = x @ self.A.T + self.c
        return Independent(Normal(loc, self.log_scale.exp().expand_as(loc)), 1)

"""Per-example q: fitted for given x with the decoder frozen, refined from the encoder's
output (semi-amortized), or trained jointly with the decoder (mean-field variational EM).

Seed 003's variational EM gives every data point its own variational parameters
λ_i = (μ_i, σ_i); the VAE's encoder instead predicts them for all x at once (amortization).
Here both can be run on one decoder:

- :func:`fit_local` fits q(z) for given x with the decoder frozen, per example, to
  convergence (q* of a family: ``"diagonal"``, ``"full"`` covariance, ``"planar"`` flow);
  started from the encoder's q it is the semi-amortized refinement (Kim et al. 2018; Marino
  et al. 2018) used at evaluation time (:func:`refine`).
- :func:`per_example_elbo` is the training objective of mean-field variational EM (seed
  003): the decoder and every λ_i of :class:`aevb.PerExampleVAE` by the one Trainer
  (:func:`aevb.fit_mean_field` sets it up).
- :func:`aevb.semi_amortized_elbo` (:mod:`aevb.inference.semi_amortized`) is the training
  objective with K gradient steps on λ from the encoder's output;
  :func:`aevb.evaluation.gaps.inference_gaps` uses these fits to split
  log p(x) − ELBO[q_amortized] into the approximation and amortization gaps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from ..distributions.discrete import Bernoullis, Categoricals
from ..distributions.planar import PlanarFlowNormal
from ..distributions.quantized import Codes
from ..errors import ConfigError
from .objectives import ELBOTerms, elbo

if TYPE_CHECKING:  # types only: models import inference, not the other way round
    from ..models.vae import VAE

LOCAL_FAMILIES = ("diagonal", "full", "planar")
_MIN_SCALE = 1e-4


class PerExampleModel(Protocol):
    """A model whose q is looked up by example: ``encode(x, index)``, ``decode``, ``prior``."""

    def encode(self, x: torch.Tensor, index: torch.Tensor) -> Distribution: ...
    def decode(self, z: torch.Tensor) -> Distribution: ...
    def prior(self) -> Distribution: ...


class _WithPosterior:
    """The model with q(z) given: what the objectives need (encode, decode, prior)."""

    def __init__(self, model: VAE | PerExampleModel, qz: Distribution) -> None:
        self.model, self.qz = model, qz

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.qz

    def decode(self, z: torch.Tensor) -> Distribution:
        return self.model.decode(z)

    def prior(self) -> Distribution:
        return self.model.prior()


def _inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    value = (value - _MIN_SCALE).clamp(min=1e-6)
    return value + torch.log(-torch.expm1(-value))


def _loc_and_scale(qz: Distribution) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and marginal standard deviations of an encoder's q (diagonal or full Gaussian)."""
    if isinstance(qz, Independent) and isinstance(qz.base_dist, Normal):
        return qz.base_dist.loc, qz.base_dist.scale
    if isinstance(qz, MultivariateNormal):
        return qz.loc, qz.variance.sqrt()
    if isinstance(qz, PlanarFlowNormal):  # start from the flow's base Gaussian
        return qz.loc, qz.scale
    raise TypeError(
        f"starting from the encoder needs a Gaussian q(z|x), got {type(qz).__name__}; "
        "use init='prior'"
    )


@dataclass
class LocalPosterior:
    """Per-example variational parameters (leaf tensors, first axis = example).

    Attributes:
        family: ``"diagonal"``, ``"full"`` or ``"planar"``.
        params: ``loc (n, L)``, ``raw_scale (n, L)``; ``raw_tril (n, L, L)`` for ``"full"``;
            ``u, w (n, K, L)`` and ``b (n, K)`` for ``"planar"``.
        elbo: ``(n,)`` the final ELBO per example (set by :func:`fit_local`).
        steps: optimizer steps taken.
    """

    family: str
    params: dict[str, torch.Tensor]
    elbo: torch.Tensor | None = None
    steps: int = 0
    seconds: float = 0.0

    @classmethod
    def init(
        cls,
        family: str,
        n: int,
        latent_dim: int,
        *,
        start: Distribution | None = None,
        num_flows: int = 4,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> LocalPosterior:
        """Parameters at ``start`` (an encoder's q, batch ``(n,)``) or at the prior N(0, I)."""
        if family not in LOCAL_FAMILIES:
            raise ValueError(f"family must be one of {LOCAL_FAMILIES}, got {family!r}")
        if start is not None:
            loc, scale = (t.detach().to(dtype) for t in _loc_and_scale(start))
        else:
            loc = torch.zeros(n, latent_dim, dtype=dtype, device=device)
            scale = torch.ones_like(loc)
        params = {"loc": loc.clone(), "raw_scale": _inverse_softplus(scale)}
        if family == "full":
            params = {"loc": loc.clone(), "raw_tril": torch.diag_embed(params["raw_scale"])}
            if isinstance(start, MultivariateNormal):  # keep the encoder's correlations
                tril = start.scale_tril.detach().to(dtype)
                raw = tril.tril(-1) + torch.diag_embed(_inverse_softplus(tril.diagonal(0, -2, -1)))
                params["raw_tril"] = raw
        if family == "planar":
            # Random unit w and u = log(e - 1) w / |w|^2 make every map the identity (û = 0).
            generator = torch.Generator().manual_seed(0)
            w = torch.randn(n, num_flows, latent_dim, generator=generator, dtype=dtype)
            w = (w / w.norm(dim=-1, keepdim=True)).to(loc.device)
            params.update(u=math.log(math.e - 1) * w, w=w)
            params["b"] = torch.zeros(n, num_flows, dtype=dtype, device=loc.device)
        return cls(family, {k: v.clone().requires_grad_(True) for k, v in params.items()})

    def distribution(self, rows: slice | torch.Tensor = slice(None)) -> Distribution:
        """q(z) of the examples ``rows`` (all by default), batch ``(len(rows),)``."""
        p = {k: v[rows] for k, v in self.params.items()}
        if self.family == "full":
            raw = p["raw_tril"].tril(-1)
            diagonal = F.softplus(p["raw_tril"].diagonal(0, -2, -1)) + _MIN_SCALE
            tril = raw + torch.diag_embed(diagonal)
            return MultivariateNormal(p["loc"], scale_tril=tril, validate_args=False)
        scale = F.softplus(p["raw_scale"]) + _MIN_SCALE
        if self.family == "planar":
            return PlanarFlowNormal(p["loc"], scale, p["u"], p["w"], p["b"])
        return Independent(Normal(p["loc"], scale, validate_args=False), 1)

    def detached(self) -> LocalPosterior:
        params = {k: v.detach() for k, v in self.params.items()}
        return LocalPosterior(self.family, params, self.elbo, self.steps, self.seconds)


def _elbo_of(
    model: VAE, x: torch.Tensor, qz: Distribution, num_samples: int, analytic: bool = True
) -> ELBOTerms:
    analytic = analytic and not isinstance(qz, PlanarFlowNormal)
    return elbo(_WithPosterior(model, qz), x, num_samples=num_samples, analytic_kl=analytic)


@torch.no_grad()
def local_elbo(
    model: VAE, x: torch.Tensor, q: LocalPosterior | None = None, *, num_samples: int = 100
) -> torch.Tensor:
    """``(n,)`` ELBO of the per-example q (the encoder's q(z|x) when ``q`` is None), averaged
    over ``num_samples`` z each.

    The estimate is the mean of log p(x, z) - log q(z) (Monte Carlo KL), whose variance
    vanishes as q approaches the posterior, so small gaps are measured precisely.
    """
    model.eval()
    out = []
    for begin in range(0, x.shape[0], 100):
        rows = slice(begin, begin + 100)
        dist = q.distribution(rows) if q is not None else model.encode(x[rows])
        out.append(_elbo_of(model, x[rows], dist, num_samples, analytic=False).elbo)
    return torch.cat(out)


def require_continuous_latents(model: VAE | PerExampleModel) -> None:
    """Refuse a model whose latent is discrete: a per-example q(z) is a Gaussian family fitted
    by gradient steps in a continuous z, which a categorical, Bernoulli or VQ latent is not.

    Raises:
        ConfigError: the prior is :class:`Categoricals`, :class:`Bernoullis` or :class:`Codes`.
    """
    prior = model.prior()
    if isinstance(prior, Categoricals | Bernoullis | Codes):
        raise ConfigError(
            f"a per-example q(z) is a Gaussian family fitted by gradient steps in a continuous "
            f"z, and this model's latent is discrete ({type(prior).__name__} prior): fitting "
            "q per example (--refine, --gaps, mean-field inference) works for Gaussian-latent "
            "models only; use the model's own encoder (aevb encode without --refine)"
        )


def fit_local(
    model: VAE,
    x: torch.Tensor,
    *,
    family: str = "diagonal",
    init: str | LocalPosterior = "encoder",
    steps: int = 2000,
    lr: float = 1e-2,
    num_samples: int = 4,
    tol: float | None = 1e-3,
    check_every: int = 100,
    num_flows: int = 4,
    eval_samples: int = 100,
) -> LocalPosterior:
    """Fit q(z) for each row of ``x`` with the decoder and prior frozen: λ_i = argmax ELBO_i.

    Every example has its own parameters; all are optimized together by Adam on the sum of
    the per-example ELBOs (each example's gradient is its own), estimated with
    ``num_samples`` reparameterized z per example per step.

    Args:
        x: ``(n, *event)`` data.
        family: ``"diagonal"`` Gaussian, ``"full"``-covariance Gaussian, or ``"planar"``
            flow (diagonal Gaussian through ``num_flows`` planar maps).
        init: ``"encoder"`` starts at the encoder's q(z|x) (semi-amortized; K = ``steps``),
            ``"prior"`` at N(0, I) (pure mean-field), or a previous :class:`LocalPosterior`.
        steps: most optimizer steps.
        tol: stopping rule: every ``check_every`` steps the mean ELBO of the last
            ``check_every`` steps is compared with the best earlier window; when it rose by
            less than ``tol`` nats per example the step size is cut to 0.3x, and after four
            cuts the fit stops (the noise of the stochastic gradient then sits well below
            ``tol``). ``None``: run all ``steps`` at ``lr``.
        eval_samples: z samples per example for the final ELBO (``.elbo``).

    Returns:
        :class:`LocalPosterior` with the fitted parameters, final ``elbo`` and ``steps``.
    """
    started = time.perf_counter()
    model.eval()
    require_continuous_latents(model)
    if isinstance(init, LocalPosterior):
        params = {k: v.detach().clone().requires_grad_(True) for k, v in init.params.items()}
        q = LocalPosterior(init.family, params)
    else:
        with torch.no_grad():
            start = model.encode(x) if init == "encoder" else None
        q = LocalPosterior.init(
            family, x.shape[0], model.latent_dim, start=start, num_flows=num_flows,
            dtype=x.dtype, device=x.device,
        )  # fmt: skip
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        optimizer = torch.optim.Adam(q.params.values(), lr=lr)
        window: list[float] = []
        previous = -math.inf
        step = 0
        for step in range(1, steps + 1):
            terms = _elbo_of(model, x, q.distribution(), num_samples)
            optimizer.zero_grad(set_to_none=True)
            (-terms.elbo.sum()).backward()
            optimizer.step()
            window.append(float(terms.elbo.detach().mean()))
            if tol is not None and step % check_every == 0:
                current = sum(window) / len(window)
                if current - previous < tol:  # a plateau: smaller steps, or done
                    if optimizer.param_groups[0]["lr"] < lr * 0.01:
                        break
                    for group in optimizer.param_groups:
                        group["lr"] *= 0.3
                previous, window = max(previous, current), []
    finally:
        for p in frozen:
            p.requires_grad_(True)
    q = q.detached()
    q.steps = step
    q.elbo = local_elbo(model, x, q, num_samples=eval_samples)
    q.seconds = time.perf_counter() - started
    return q


def refine(
    model: VAE,
    x: torch.Tensor,
    steps: int,
    *,
    lr: float = 1e-2,
    family: str = "diagonal",
    eval_samples: int = 100,
) -> LocalPosterior:
    """Semi-amortized q: the encoder's q(z|x) refined by ``steps`` Adam steps on each ELBO_i."""
    return fit_local(
        model, x, family=family, init="encoder", steps=steps, lr=lr, tol=None,
        eval_samples=eval_samples,
    )  # fmt: skip


def per_example_elbo(
    model: PerExampleModel,
    x: torch.Tensor,
    index: torch.Tensor,
    *,
    num_samples: int = 1,
    beta: float = 1.0,
) -> ELBOTerms:
    """The ELBO of examples ``index`` under their own q_i(z) (mean-field, seed 003).

    Args:
        model: has ``encode(x, index)`` returning q_i(z) for the rows ``index`` (e.g.
            :class:`aevb.PerExampleVAE`), ``decode`` and ``prior``.
        x: ``(B, *event)`` the examples; ``index``: their ``(B,)`` rows in the training set.

    Use it as the objective of the Trainer with a sampler that passes the rows:
    ``Trainer(model, objective=per_example_elbo, sampler=Shuffled(100, with_index=True))``.
    """
    qz = model.encode(x, index)
    return elbo(_WithPosterior(model, qz), x, num_samples=num_samples, beta=beta)


__all__ = [
    "LOCAL_FAMILIES",
    "LocalPosterior",
    "fit_local",
    "local_elbo",
    "per_example_elbo",
    "refine",
]

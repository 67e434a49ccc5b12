"""Inference beyond one encoder pass: per-example (mean-field) q, semi-amortized refinement,
and the gaps between them.

Seed 003's variational EM gives every data point its own variational parameters
λ_i = (μ_i, σ_i); the VAE's encoder instead predicts them for all x at once (amortization).
Here both can be run on one decoder:

- :func:`fit_local` fits q(z) for given x with the decoder frozen, per example, to
  convergence (q* of a family: ``"diagonal"``, ``"full"`` covariance, ``"planar"`` flow);
  started from the encoder's q it is the semi-amortized refinement (Kim et al. 2018; Marino
  et al. 2018) used at evaluation time (:func:`refine`).
- :func:`semi_amortized_elbo` is a training objective: K gradient steps on λ from the
  encoder's output, with or without gradients through the steps.
- :func:`aevb.gaps.inference_gaps` uses them to split log p(x) − ELBO[q_amortized] into the
  approximation and amortization gaps (Cremer, Li & Duvenaud 2018).
- :func:`fit_mean_field` trains a decoder jointly with local λ_i (variational EM, seed 003).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal
from torch.func import functional_call

from .errors import TrainingDiverged
from .evaluation import device_of
from .flows import PlanarFlowNormal
from .model import VAE
from .objectives import ELBOTerms, elbo

LOCAL_FAMILIES = ("diagonal", "full", "planar")
_MIN_SCALE = 1e-4


class _WithPosterior:
    """The model with q(z) given: what the objectives need (encode, decode, prior)."""

    def __init__(self, model: VAE, qz: Distribution) -> None:
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


def semi_amortized_elbo(
    model: VAE,
    x: torch.Tensor,
    *,
    steps: int = 5,
    lr: float = 0.1,
    differentiable: bool = False,
    beta: float = 1.0,
) -> ELBOTerms:
    """Training objective: the ELBO at λ_K, after K gradient-ascent steps from the encoder's λ_0.

    λ = (μ, log σ) of a diagonal Gaussian; each step is λ ← λ + lr ∇_λ ELBO(λ) (one z sample).
    With ``differentiable=True`` the steps are unrolled and the encoder is trained through
    them (SA-VAE, Kim et al. 2018). Otherwise λ_0 is detached: the decoder learns from the
    refined ELBO and the encoder from its own ELBO, which then does not train the decoder
    (Krishnan et al. 2018).

    Use it as ``Trainer(model, objective=functools.partial(semi_amortized_elbo, steps=5))``.
    """
    qz = model.encode(x)
    loc, scale = _loc_and_scale(qz)
    lam = [loc, scale.log()]
    if not differentiable:
        lam = [t.detach().requires_grad_(True) for t in lam]
    for _ in range(steps):
        q_step = Independent(Normal(lam[0], lam[1].exp(), validate_args=False), 1)
        value = elbo(_WithPosterior(model, q_step), x).elbo.sum()
        grads = torch.autograd.grad(value, lam, create_graph=differentiable)
        lam = [t + lr * g for t, g in zip(lam, grads, strict=True)]
        if not differentiable:
            lam = [t.detach().requires_grad_(True) for t in lam]
    refined = Independent(Normal(lam[0], lam[1].exp(), validate_args=False), 1)
    terms = elbo(_WithPosterior(model, refined), x, beta=beta)
    if differentiable:
        return terms
    # The encoder's own ELBO, through a copy of the decoder's weights cut from the graph.
    weights = {k: v.detach() for k, v in model.decoder.named_parameters()}
    decoder = _DetachedDecoder(model, weights)
    encoder_terms = elbo(decoder, x, beta=beta)
    surrogate = terms.surrogate + encoder_terms.surrogate
    return ELBOTerms(terms.elbo, terms.log_px_z, terms.kl, surrogate)


class _DetachedDecoder:
    def __init__(self, model: VAE, weights: dict[str, torch.Tensor]) -> None:
        self.model, self.weights = model, weights

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.model.encode(x)

    def decode(self, z: torch.Tensor) -> Distribution:
        return functional_call(self.model.decoder, self.weights, (z,))

    def prior(self) -> Distribution:
        return self.model.prior()


def fit_mean_field(
    model: VAE,
    x: torch.Tensor,
    *,
    epochs: int = 100,
    batch_size: int = 100,
    lr: float = 1e-3,
    local_lr: float = 1e-2,
    max_seconds: float | None = None,
    seed: int = 0,
) -> tuple[LocalPosterior, list[dict[str, float]]]:
    """Variational EM with local parameters (seed 003): decoder θ and every λ_i jointly.

    Each step draws a minibatch of examples, builds their q_i = N(μ_i, σ_i²) from the
    stored λ_i, and ascends the minibatch ELBO — an unbiased estimate of the full-data ELBO
    up to the factor n / batch_size, which Adam's scale invariance makes irrelevant — in
    both θ (``lr``) and the λ_i of the batch (``local_lr``, sparse updates). The encoder of
    ``model`` is not used.

    Returns:
        the fitted :class:`LocalPosterior` of the training data and the per-epoch history.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    device = device_of(model)
    start = LocalPosterior.init("diagonal", n, model.latent_dim, dtype=x.dtype, device=device)
    # λ_i as sparse embeddings: SparseAdam moves only the rows of the current batch (dense Adam
    # would keep moving every λ_i by its stale momentum).
    local = nn.ModuleDict(
        {
            name: nn.Embedding.from_pretrained(value.detach(), freeze=False, sparse=True)
            for name, value in start.params.items()
        }
    )
    decoder_params = [*model.decoder.parameters(), *model.prior.parameters()]
    global_opt = torch.optim.Adam(decoder_params, lr=lr)
    local_opt = torch.optim.SparseAdam(list(local.parameters()), lr=local_lr)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for begin in range(0, n, batch_size):
            rows = order[begin : begin + batch_size]
            batch = x[rows.cpu()].to(device)
            params = {name: table(rows) for name, table in local.items()}
            terms = _elbo_of(model, batch, LocalPosterior("diagonal", params).distribution(), 1)
            if not torch.isfinite(terms.loss):
                raise TrainingDiverged(
                    f"the mean-field ELBO became {terms.loss.item()} at epoch {epoch + 1}; "
                    "try a lower lr or local_lr"
                )
            global_opt.zero_grad(set_to_none=True)
            local_opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            global_opt.step()
            local_opt.step()
            total += float(terms.elbo.detach().sum())
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch + 1, "train_elbo": total / n, "seconds": seconds})
        if max_seconds is not None and seconds > max_seconds:
            break
    model.eval()
    params = {name: table.weight.detach().clone() for name, table in local.items()}  # type: ignore[operator]
    return LocalPosterior("diagonal", params, steps=len(history)), history


__all__ = [
    "LOCAL_FAMILIES",
    "LocalPosterior",
    "fit_local",
    "fit_mean_field",
    "local_elbo",
    "refine",
    "semi_amortized_elbo",
]

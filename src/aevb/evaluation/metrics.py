"""Evaluation in nats: the ELBO and its terms, importance-sampled log p(x), codes, active
units, KL per dimension, and ELBO surgery.

All functions take a model with ``encode``, ``decode`` and ``prior`` (e.g. :class:`aevb.VAE`)
and data ``x`` of shape ``(n, *event)``; they work in batches under ``torch.no_grad`` and
return CPU tensors or floats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Distribution
from tqdm.auto import tqdm

from ..data.ondisk import Rows
from ..distributions.core import upcast
from ..distributions.kl import kl_per_dim, kl_per_layer
from ..distributions.quantized import Codes
from ..distributions.sequence import RealSequence, TokenSequence
from ..errors import ConfigError
from ..inference.objectives import ELBOTerms, elbo
from ..models.vae import VAE, as_rows
from ..nn.utils import device_of
from .codes import code_indices, code_usage
from .surgery import elbo_surgery


def batches(model: VAE, x: Rows, batch_size: int) -> Iterator[torch.Tensor]:
    """``x`` in consecutive batches of ``batch_size`` rows, on the model's device."""
    device = device_of(model)
    for begin in range(0, x.shape[0], batch_size):
        yield x[begin : begin + batch_size].to(device)


@torch.no_grad()
def evaluate(
    model: VAE,
    x: Rows,
    batch_size: int = 1000,
    objective: Callable[..., ELBOTerms] = elbo,
) -> dict[str, float]:
    """Mean bound, reconstruction term and KL over ``x``, in nats per example.

    ``objective`` gives the bound: the ELBO with one z sample by default, or e.g.
    ``functools.partial(iwae_bound, k=5)`` to select an IWAE-trained model by its own bound.
    """
    x = as_rows(model, x)
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    for batch in batches(model, x, batch_size):
        terms = objective(model, batch)
        totals += torch.stack([terms.elbo.sum(), terms.log_px_z.sum(), terms.kl.sum()]).cpu()
    model.train(was_training)
    means = (totals / x.shape[0]).tolist()
    return {"elbo": means[0], "log_px_z": means[1], "kl": means[2]}


@torch.no_grad()
def encode_means(model: VAE, x: Rows, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means E_q[z|x], ``(n, latent_dim)``: the codes of the data."""
    parts = [model.encode(batch).mean.cpu() for batch in batches(model, x, batch_size)]
    return torch.cat(parts)


def active_units(model: VAE, x: Rows, threshold: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Activity Cov_x(E_q[z_j|x]) of each latent dimension and which exceed ``threshold``.

    A unit is active when its posterior mean varies across the data (Burda et al. 2015,
    section 5.2); inactive units have collapsed to the prior.

    Returns:
        ``(activity (latent_dim,), active (latent_dim,) bool)``.
    """
    means = encode_means(model, x).double()
    activity = means.var(0) if means.shape[0] > 1 else torch.zeros(means.shape[1])
    return activity, activity > threshold


@torch.no_grad()
def kl_per_dimension(
    model: VAE, x: Rows, batch_size: int = 1000, num_samples: int = 16
) -> torch.Tensor | None:
    """Average KL(q(z_j|x) || p(z_j)) over ``x`` for each latent dimension, ``(latent_dim,)``.

    Closed form where registered, else a Monte Carlo estimate with ``num_samples`` draws;
    ``None`` when q or p does not factorize over dimensions (e.g. a mixture prior).
    """
    total: torch.Tensor | None = None
    for batch in batches(model, x, batch_size):
        qz, pz = model.encode(batch), model.prior()
        per_dim = kl_per_dim(qz, pz, qz.sample((num_samples,)))
        if per_dim is None:
            return None
        part = per_dim.sum(0).double().cpu()
        total = part if total is None else total + part
    return None if total is None else total / x.shape[0]


@torch.no_grad()
def layer_summary(
    model: VAE,
    x: Rows,
    activity: torch.Tensor,
    threshold: float = 0.01,
    num_samples: int = 16,
) -> dict[str, list[float]] | None:
    """Per latent layer of a hierarchy: its average KL (Monte Carlo, ``num_samples`` draws;
    the layers' KLs add up to the total) and its active units; ``None`` for one layer.

    Args:
        activity: ``(latent_dim,)`` from :func:`active_units`, layers concatenated z_1 first.
    """
    qz = model.encode(x[:1])
    sizes = getattr(qz, "sizes", None)
    if sizes is None or len(sizes) < 2:
        return None
    total = torch.zeros(len(sizes), dtype=torch.float64)
    for batch in batches(model, x, 1000):
        qz, pz = model.encode(batch), model.prior()
        per_layer = kl_per_layer(qz, pz, qz.sample((num_samples,)))
        assert per_layer is not None
        total += per_layer.sum(0).double().cpu()
    active = [int((part > threshold).sum()) for part in activity.split(list(sizes))]
    return {
        "layer_sizes": list(sizes),
        "kl_per_layer": (total / x.shape[0]).tolist(),
        "active_units_per_layer": active,
    }


# -- log p(x) by importance sampling --------------------------------------------------------


@dataclass(frozen=True)
class LogPx:
    """Importance-sampled log p(x) per example, in nats.

    Attributes:
        log_px: ``(n,)`` log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x).
        stderr: ``(n,)`` delta-method standard error of each estimate (Monte Carlo error only).
        k: proposals per example.
        ess: ``(n,)`` effective sample size (sum w)^2 / sum w^2 of each example's weights.
            When it is small (a few dozen of k), a handful of weights carry the estimate and
            both it and its standard error are unreliable (the error is understated); the
            proposal q is far from the posterior there.
    """

    log_px: torch.Tensor
    stderr: torch.Tensor
    k: int
    ess: torch.Tensor | None = None

    @property
    def mean(self) -> float:
        return float(self.log_px.double().mean())

    @property
    def mean_stderr(self) -> float:
        """Monte Carlo standard error of :attr:`mean` (the estimates are independent)."""
        return float(self.stderr.double().square().sum().sqrt() / len(self.stderr))


@torch.no_grad()
def log_px(
    model: VAE,
    x: Rows,
    k: int = 5000,
    *,
    batch_size: int = 16,
    max_rows: int = 4096,
    compile: bool = False,
    matmul_dtype: torch.dtype = torch.float32,
    proposal: Callable[[slice], Distribution] | None = None,
    progress: bool = False,
) -> LogPx:
    """log p(x) ~= logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k.

    The estimate is a stochastic lower bound that converges to log p(x) as k grows (Burda et
    al. 2015); k = 5000 is the convention for published numbers. Proposals are drawn in equal
    chunks of at most ``max_rows // batch_size`` (the last chunk's surplus is dropped, so a
    compiled step sees one shape) and reduced with a running log-sum-exp, so peak memory is
    about ``max_rows * (sum of decoder widths + data_dim) * 4`` bytes whatever k (the default
    4,096 rows of a 784-200-200-50 decoder: ~32 MB, compiled 10% faster than 1,024 rows), and
    time is linear in k and n.

    Args:
        x: ``(n, *event)`` data.
        k: proposals z_i ~ q(z|x) per example.
        batch_size: examples encoded together.
        max_rows: samples times examples decoded at once.
        compile: ``torch.compile`` one step (sampling, log p(x|z), log p(z), log q(z|x)): its
            elementwise work fuses into a few loops; about 2x faster on CPU after 5-20 s of
            compilation.
        matmul_dtype: ``torch.bfloat16`` runs the decoder under bfloat16 autocast (matrix
            units; fp32 accumulation and log-likelihood); check its error against float32 on
            a subset before publishing figures computed with it.
        proposal: ``rows -> q(z)`` for the examples ``x[rows]``, used instead of the encoder
            (e.g. per-example fits, :meth:`aevb.inference.LocalPosterior.distribution`).
        progress: show a bar of the examples done, with the rate and the time left (on a
            terminal only).

    Returns:
        :class:`LogPx` with per-example estimates and standard errors.
    """
    if not (isinstance(k, int) and k >= 1) or batch_size < 1 or max_rows < 1:
        raise ConfigError(f"k, batch_size and max_rows must be whole numbers >= 1, got k = {k}")
    x = as_rows(model, x)
    # Filled in place: small results kept between the large chunks would fragment the heap
    # (resident memory grew by ~2 GB over 10,000 images when they were appended to a list).
    estimates = torch.empty(x.shape[0], dtype=torch.float64)
    errors, ess = torch.empty_like(estimates), torch.empty_like(estimates)
    chunks = -(-k // max(1, max_rows // batch_size))
    chunk = -(-k // chunks)  # equal chunks, the last one's surplus dropped (one shape to compile)
    log_weights = _log_weights(model, matmul_dtype)
    if compile:
        log_weights = torch.compile(log_weights, dynamic=False)
    bar = tqdm(
        total=x.shape[0],
        desc=f"log p(x), IS k={k}",
        unit="ex",
        leave=False,
        disable=None if progress else True,  # None: no bar when not a terminal
    )
    for begin, batch in enumerate(batches(model, x, batch_size)):
        bar.update(batch.shape[0])
        rows = slice(begin * batch_size, begin * batch_size + batch.shape[0])
        qz, pz = (proposal(rows) if proposal else model.encode(batch)), model.prior()
        peak = torch.full((batch.shape[0],), -math.inf, dtype=torch.float64, device=batch.device)
        sum_w = torch.zeros_like(peak)  # sum_i exp(log_w_i - peak)
        sum_w2 = torch.zeros_like(peak)  # sum_i exp(2 (log_w_i - peak))
        for drawn in range(0, k, chunk):
            log_w = log_weights(qz, pz, batch, chunk)[: k - drawn].double()  # (c, b)
            new_peak = torch.maximum(peak, log_w.max(0).values)
            shift = torch.exp(peak - new_peak)
            scaled = torch.exp(log_w - new_peak)
            sum_w = sum_w * shift + scaled.sum(0)
            sum_w2 = sum_w2 * shift.square() + scaled.square().sum(0)
            peak = new_peak
        mean_w = sum_w / k
        variance = (sum_w2 / k - mean_w.square()).clamp(min=0)
        estimates[rows] = peak + mean_w.log()
        errors[rows] = (variance / k).sqrt() / mean_w
        ess[rows] = (sum_w.square() / sum_w2).cpu()
    bar.close()
    return LogPx(estimates, errors, k, ess)


def _log_weights(model: VAE, matmul_dtype: torch.dtype):
    """``(q(z|x), p(z), x, c) -> (c, b)`` log importance weights of ``c`` fresh proposals:
    log p(x|z) + log p(z) - log q(z|x), the decoder's matrix products in ``matmul_dtype``
    and everything else, the likelihood's terms and sums included, in float32. One
    function, so that ``torch.compile`` fuses sampling, both densities and the likelihood
    into one graph."""

    def log_weights(qz: Distribution, pz: Distribution, x: torch.Tensor, c: int) -> torch.Tensor:
        z = qz.sample((c,))
        if matmul_dtype == torch.float32 or matmul_dtype == x.dtype:
            log_px_z = model.decode(z).log_prob(x)
        else:
            with torch.autocast(z.device.type, dtype=matmul_dtype):
                px = model.decode(z)
            log_px_z = upcast(px).log_prob(x)  # the density in float32, not bfloat16
        return log_px_z + pz.log_prob(z) - qz.log_prob(z)

    return log_weights


def bits_per_dim(log_px_nats: float, data_dim: float) -> float:
    """-log2 p(x) / data_dim: the negative log-likelihood in bits per dimension (``data_dim``
    an average where rows have different lengths)."""
    return -log_px_nats / (data_dim * math.log(2))


MIN_ESS = 50.0  # below this median effective sample size, IS estimates get a warning


def collapse_metrics(model: VAE, x: torch.Tensor, threshold: float = 0.01) -> dict[str, float]:
    """What shows posterior collapse as it happens: active units (Burda et al. 2015) and the
    mutual information I(x; z) of ELBO surgery on ``x`` (an epoch metric; a thousand rows
    suffice). Keys ``valid_active_units`` and ``valid_mutual_info``."""
    _, active = active_units(model, x, threshold)
    return {
        "valid_active_units": float(active.sum()),
        "valid_mutual_info": elbo_surgery(model, x).mutual_info,
    }


def summarize(
    model: VAE,
    x: Rows,
    *,
    k: int = 5000,
    surgery_points: int = 10_000,
    threshold: float = 0.01,
    seed: int = 0,
    compile: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Every evaluation figure of ``model`` on ``x``, as a JSON-ready dict (nats per example).

    log p(x) by importance sampling with ``k`` proposals (and its Monte Carlo standard error),
    the ELBO with its reconstruction (distortion = -E_q log p(x|z)) and KL (rate) terms, the
    gap log p(x) - ELBO, bits per dimension, active units and KL per dimension, and ELBO surgery
    on at most ``surgery_points`` examples. ``warnings`` names collapsed latent units.
    ``compile`` is :func:`log_px`'s (float32 throughout; worth its 5-20 s for large n * k);
    ``progress`` shows its bar. For a VQ-VAE (a :class:`Codes` prior) q(z|x) is a point mass,
    so log p(x) is the bound log p(x|z_q) + log p(z_q) at ``k = 1``, and the codebook's usage
    is added.
    """
    torch.manual_seed(seed)
    prior = model.prior()
    if isinstance(prior, Codes):  # q is a point mass: every proposal is the same z_q
        k = 1
    started = time.perf_counter()
    estimate = log_px(model, x, k, compile=compile, progress=progress)
    seconds = time.perf_counter() - started
    terms = evaluate(model, x)
    activity, active = active_units(model, x, threshold)
    per_dim = kl_per_dimension(model, x)
    layers = layer_summary(model, x, activity, threshold)
    surgery = elbo_surgery(model, x[:surgery_points])
    data_dim = x[0].numel()
    summary: dict[str, Any] = {
        "num_examples": x.shape[0],
        "k": k,
        "log_px": estimate.mean,
        "log_px_stderr": estimate.mean_stderr,
        "ess_median": float(estimate.ess.median()) if estimate.ess is not None else None,
        "nll": -estimate.mean,
        "bits_per_dim": bits_per_dim(estimate.mean, data_dim),
        "elbo": terms["elbo"],
        "log_px_z": terms["log_px_z"],
        "kl": terms["kl"],
        "rate": terms["kl"],
        "distortion": -terms["log_px_z"],
        "gap": estimate.mean - terms["elbo"],
        "active_units": int(active.sum()),
        "latent_dim": len(activity),
        "activity": activity.tolist(),
        "kl_per_dim": per_dim.tolist() if per_dim is not None else None,
        "average_kl": surgery.average_kl,
        "mutual_info": surgery.mutual_info,
        "marginal_kl": surgery.marginal_kl,
        "surgery_stderr": surgery.stderr,
        "surgery_points": surgery.num_data,
        "log_px_seconds": seconds,
        **(layers or {}),
        "warnings": [],
    }
    px = model.decode(prior.sample((1,)))
    if isinstance(px, RealSequence):  # per real value: NaN after each end is no dimension
        real_values = int((~torch.isnan(x[:])).sum()) / x.shape[0]  # held in memory
        summary["bits_per_dim"] = bits_per_dim(estimate.mean, real_values)
    if isinstance(px, TokenSequence):  # sentences: per word
        tokens = int((x[:] != 0).sum())  # text is held in memory
        summary["tokens"] = tokens  # words and </s>
        summary["perplexity_per_word"] = math.exp(-estimate.mean * x.shape[0] / tokens)
        summary["bits_per_dim"] = None  # the padded row's length is no dimension of the text
    if isinstance(prior, Codes):  # a VQ-VAE: usage of the codebook, not of latent units
        summary.update(code_usage(code_indices(model, x), len(prior.codebook)))
        summary["warnings"] = [
            "q(z|x) is a point mass at the codes: log p(x) here is the bound "
            "log p(x|z_q) + log p(z_q) (k = 1), and active units count code dimensions"
        ]
        return summary
    ess = summary["ess_median"]
    if ess is not None and ess < MIN_ESS:
        summary["warnings"].append(
            f"importance sampling is unreliable here: the median effective sample size is "
            f"{ess:.1f} of k = {k}, so a few proposals carry each estimate and the standard "
            "error understates the spread; raise k, or train a richer q(z|x) (--posterior "
            "full or planar) whose proposals sit closer to the posterior"
        )
    inactive = (~active).nonzero().flatten().tolist()
    if inactive:
        summary["warnings"].append(
            f"posterior collapse: {len(inactive)} of {len(activity)} latent units are inactive "
            f"(Cov_x E_q[z_j|x] <= {threshold}): dimensions {inactive[:20]}"
        )
    return summary

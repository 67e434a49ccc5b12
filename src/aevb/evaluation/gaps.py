"""The inference gaps (Cremer, Li & Duvenaud 2018), per example and averaged:

    log p(x) − ELBO[q_amortized] = (log p(x) − ELBO[q*]) + (ELBO[q*] − ELBO[q_amortized])
                                 =   approximation gap   +     amortization gap,

with q* the best member of a variational family fitted per example
(:func:`aevb.inference.fit_local`), and the share of the amortization gap that K
semi-amortized refinement steps close.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..inference.local import fit_local, local_elbo, refine, require_continuous_latents
from ..models.vae import VAE
from .metrics import log_px


@dataclass
class Gaps:
    """Per-example inference gaps (Cremer, Li & Duvenaud 2018), in nats.

    Attributes:
        log_px: ``(n,)`` log p(x): the largest of the importance-sampled estimates with the
            amortized q and with each fitted q* as proposal (each a stochastic lower bound).
        elbo_amortized: ``(n,)`` ELBO of the encoder's q(z|x).
        elbo_refined: ``{K: (n,)}`` ELBO after K semi-amortized refinement steps.
        elbo_optimal: ``{family: (n,)}`` ELBO of q* fitted per example.
        seconds: wall time of each part.
    """

    log_px: torch.Tensor
    elbo_amortized: torch.Tensor
    elbo_refined: dict[int, torch.Tensor] = field(default_factory=dict)
    elbo_optimal: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def approximation_gap(self, family: str = "diagonal") -> torch.Tensor:
        """log p(x) − ELBO[q*]: what the family cannot represent."""
        return self.log_px - self.elbo_optimal[family]

    def amortization_gap(self, family: str = "diagonal") -> torch.Tensor:
        """ELBO[q*] − ELBO[q_amortized]: what one encoder loses against per-example fits."""
        return self.elbo_optimal[family] - self.elbo_amortized

    def summary(self) -> dict[str, Any]:
        """Means over the examples, JSON-ready."""
        out: dict[str, Any] = {
            "num_examples": len(self.log_px),
            "log_px": float(self.log_px.mean()),
            "elbo_amortized": float(self.elbo_amortized.mean()),
            "seconds": self.seconds,
        }
        gap = float((self.log_px - self.elbo_amortized).mean())
        out["total_gap"] = gap
        for steps, value in self.elbo_refined.items():
            out[f"elbo_refined_{steps}"] = float(value.mean())
        for family, value in self.elbo_optimal.items():
            out[f"elbo_optimal_{family}"] = float(value.mean())
            out[f"approximation_gap_{family}"] = float(self.approximation_gap(family).mean())
            out[f"amortization_gap_{family}"] = float(self.amortization_gap(family).mean())
        if "diagonal" in self.elbo_optimal:
            amortization = float(self.amortization_gap("diagonal").mean())
            for steps, value in self.elbo_refined.items():
                closed = float((value - self.elbo_amortized).mean())
                out[f"amortization_gap_closed_by_{steps}"] = (
                    closed / amortization if amortization > 0 else float("nan")
                )
        return out


def inference_gaps(
    model: VAE,
    x: torch.Tensor,
    *,
    families: Sequence[str] = ("diagonal",),
    refine_steps: Sequence[int] = (10, 100),
    k: int = 5000,
    fit_steps: int = 2000,
    lr: float = 1e-2,
    eval_samples: int = 100,
) -> Gaps:
    """Measure log p(x), ELBO[amortized], ELBO[semi-amortized K], ELBO[q*] per family.

    q* of each family is fitted per example by :func:`fit_local` started from the encoder
    (the best member found; the approximation gap is then an upper estimate). ELBOs use
    ``eval_samples`` z per example; log p(x) uses ``k`` importance samples.
    """
    require_continuous_latents(model)  # before the long log p(x), not after it
    timings: dict[str, float] = {}
    start = time.perf_counter()
    amortized = log_px(model, x, k)
    timings["log_px_amortized"] = time.perf_counter() - start
    start = time.perf_counter()
    elbo_amortized = local_elbo(model, x, num_samples=eval_samples)
    timings["elbo_amortized"] = time.perf_counter() - start
    refined = {}
    for steps in refine_steps:
        fitted = refine(model, x, steps, lr=lr, eval_samples=eval_samples)
        assert fitted.elbo is not None
        refined[steps] = fitted.elbo
        timings[f"refine_{steps}"] = fitted.seconds
    optimal, best_log_px = {}, amortized.log_px
    for family in families:
        fitted = fit_local(
            model, x, family=family, steps=fit_steps, lr=lr, eval_samples=eval_samples
        )
        assert fitted.elbo is not None
        optimal[family] = fitted.elbo
        timings[f"fit_{family}"] = fitted.seconds
        start = time.perf_counter()
        with_q = log_px(model, x, k, proposal=fitted.distribution).log_px
        timings[f"log_px_{family}"] = time.perf_counter() - start
        best_log_px = torch.maximum(best_log_px, with_q)
    return Gaps(best_log_px, elbo_amortized, refined, optimal, timings)

"""``aevb evaluate``: log p(x) in nats with diagnostics, or the inference gaps, of a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ..evaluation.gaps import inference_gaps
from ..evaluation.metrics import summarize
from ..training.checkpoint import save_json
from ..viz.report import write_report
from .data import load_like, load_run_data
from .runs import Run, load_run


def evaluate(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    vocabulary = run.vocabulary
    if args.data:
        data = load_like(
            run.config, args.data, stream=run.config.data.stream, vocabulary=vocabulary
        )
    else:
        parts = load_run_data(run.config, vocabulary)
        data = dict(zip(("train", "valid", "test"), parts, strict=True))[args.split]
    x = data.x[: args.num] if args.num else data.x  # rows on disk stay there unless cut
    run.vae.check_data(x)
    if args.gaps:
        return _gaps(args, run, x if isinstance(x, torch.Tensor) else data.in_memory)
    summary = summarize(
        run.vae, x, k=args.k, seed=args.seed, compile=args.compile, progress=not args.quiet
    )
    summary["data"] = args.data or f"{run.config.data.source} ({args.split} split)"
    out = Path(args.out or run.path / "evaluation.json")
    save_json(summary, out)
    _print_summary(summary)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {out}; report: {write_report(run)}")
    return 0


def _gaps(args: argparse.Namespace, run: Run, x: torch.Tensor) -> int:
    torch.manual_seed(args.seed)
    families = [f for f in args.families.split(",") if f]
    steps = [int(k) for k in args.refine_steps.split(",") if k]
    gaps = inference_gaps(
        run.vae, x, families=families, refine_steps=steps, k=args.k, fit_steps=args.fit_steps
    )
    summary = gaps.summary()
    print(f"inference gaps on {len(x)} examples, nats per example (Cremer et al. 2018)")
    print(f"  log p(x), IS k={args.k}{summary['log_px']:>28.3f}")
    print(f"  ELBO, amortized q(z|x){summary['elbo_amortized']:>26.3f}")
    for k in steps:
        closed = summary.get(f"amortization_gap_closed_by_{k}", float("nan"))
        value = summary[f"elbo_refined_{k}"]
        print(f"  ELBO, semi-amortized K={k:<5}{value:>20.3f}   ({closed:.0%} of the gap)")
    for family in families:
        print(f"  ELBO, q* {family:<16}{summary[f'elbo_optimal_{family}']:>24.3f}")
        print(f"    approximation gap{summary[f'approximation_gap_{family}']:>31.3f}")
        print(f"    amortization gap{summary[f'amortization_gap_{family}']:>32.3f}")
    out = Path(args.out or run.path / "gaps.json")
    save_json(summary, out)
    print(f"wrote {out}")
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    rows = [
        (
            f"log p(x), IS k={summary['k']}",
            f"{summary['log_px']:.3f} ± {summary['log_px_stderr']:.3f}",
        ),
        ("  effective sample size, median", f"{summary['ess_median']:.1f} of {summary['k']}"),
        ("negative log-likelihood", f"{summary['nll']:.3f}"),
        *(
            [("perplexity per word (</s> counted)", f"{summary['perplexity_per_word']:.2f}")]
            if "perplexity_per_word" in summary
            else [("bits per dimension", f"{summary['bits_per_dim']:.4f}")]
        ),
        ("ELBO", f"{summary['elbo']:.3f}"),
        ("  E_q[log p(x|z)] (-distortion)", f"{summary['log_px_z']:.3f}"),
        ("  KL(q(z|x) || p(z)) (rate)", f"{summary['kl']:.3f}"),
        ("gap log p(x) - ELBO", f"{summary['gap']:.3f}"),
        ("active units", f"{summary['active_units']} of {summary['latent_dim']}"),
        *(
            (f"  layer z_{i + 1}: KL, active units", f"{kl:.3f}, {active} of {size}")
            for i, (kl, active, size) in enumerate(
                zip(
                    summary.get("kl_per_layer", ()),
                    summary.get("active_units_per_layer", ()),
                    summary.get("layer_sizes", ()),
                    strict=True,
                )
            )
        ),
        ("ELBO surgery: average KL", f"{summary['average_kl']:.3f}"),
        (
            "  = mutual information I[n;z]",
            f"{summary['mutual_info']:.3f} ± {summary['surgery_stderr']:.3f}",
        ),
        ("  + KL(q(z) || p(z))", f"{summary['marginal_kl']:.3f}"),
    ]
    print(f"{summary['data']}, {summary['num_examples']} examples, nats per example")
    for name, value in rows:
        print(f"  {name:<34} {value:>18}")

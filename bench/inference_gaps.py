"""Amortized, semi-amortized and per-example inference on binarized MNIST, and their gaps.

Part 1 (gaps, Cremer, Li & Duvenaud 2018): for a trained VAE (default: the 784-200-200-50
tanh VAE of bench/binarized_mnist.py), on 1,000 test images drawn with a fixed seed, prints
log p(x) (IS, k=5000), ELBO of the encoder's q, after K=10 and K=100 refinement steps, and of
q* fitted per image in the diagonal, full-covariance and planar-flow families, with the
approximation and amortization gaps and the share of the amortization gap that K steps close.

Part 2 (mean-field vs amortized, seed 003): the same decoder size trained for the same wall
time with per-example parameters (variational EM) and with an encoder (AEVB); train and test
ELBO, where the mean-field model must fit q for every test image (timed).

    .venv/bin/python bench/inference_gaps.py --run bench-runs/binarized-mnist/vae
    .venv/bin/python bench/inference_gaps.py --skip-gaps --minutes 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from aevb import Trainer, evaluate, load_run, mlp_vae
from aevb.data import load_dataset, split
from aevb.evaluation.gaps import inference_gaps
from aevb.inference import LocalPosterior, fit_local, local_elbo
from aevb.training import fit_mean_field

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def gaps_table(args: argparse.Namespace) -> dict:
    run = load_run(args.run)
    data = load_dataset(f"binarized-mnist:{SHARED}")
    _, _, test = split(data, (0.1, 0.1))
    rows = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.num]
    x = test.x[rows]
    torch.manual_seed(0)
    gaps = inference_gaps(
        run.model,
        x,
        families=args.families.split(","),
        refine_steps=(10, 100),
        k=args.k,
        fit_steps=args.fit_steps,
    )
    summary = gaps.summary()
    print(f"\n{args.run}: {len(x)} test images, nats per image")
    print(f"  log p(x), IS k={args.k}                 {summary['log_px']:9.3f}")
    print(f"  ELBO amortized q(z|x)                {summary['elbo_amortized']:9.3f}")
    for k in (10, 100):
        print(
            f"  ELBO semi-amortized K={k:<4}           {summary[f'elbo_refined_{k}']:9.3f}"
            f"   closes {summary.get(f'amortization_gap_closed_by_{k}', float('nan')):.0%} "
            "of the diagonal amortization gap"
        )
    for family in args.families.split(","):
        print(
            f"  ELBO q* {family:<10}                   {summary[f'elbo_optimal_{family}']:9.3f}"
            f"   approximation gap {summary[f'approximation_gap_{family}']:7.3f}"
            f"   amortization gap {summary[f'amortization_gap_{family}']:7.3f}"
        )
    print("  seconds:", {k: round(v, 1) for k, v in summary["seconds"].items()})
    return summary


def mean_field_vs_amortized(args: argparse.Namespace) -> dict:
    data = load_dataset(f"binarized-mnist:{SHARED}")
    train, _, test = split(data, (0.1, 0.1))
    x_train, x_test = train.x[: args.num_train], test.x
    rows = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(0))[: args.num]
    x_test = x_test[rows]
    seconds = 60 * args.minutes
    results = {}
    torch.manual_seed(0)
    amortized = mlp_vae(784, 50, (200, 200), activation=nn.Tanh)
    start = time.perf_counter()
    Trainer(amortized, max_epochs=10_000, max_seconds=seconds, progress=False).fit(x_train)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    test_fit = evaluate(amortized, x_test)
    results["amortized"] = {
        "train_seconds": trained,
        "train_elbo": evaluate(amortized, x_train[:10_000])["elbo"],
        "test_elbo": test_fit["elbo"],
        "test_inference_seconds": time.perf_counter() - start,
    }
    torch.manual_seed(0)
    mean_field = mlp_vae(784, 50, (200, 200), activation=nn.Tanh)
    q, history = fit_mean_field(
        mean_field, x_train, epochs=10_000, max_seconds=seconds, local_lr=args.local_lr
    )
    learned = LocalPosterior("diagonal", {k: v[:10_000] for k, v in q.params.items()})
    test_q = fit_local(mean_field, x_test, init="prior", steps=args.fit_steps)
    assert test_q.elbo is not None
    results["mean-field"] = {
        "train_seconds": sum(r["seconds"] for r in history),
        "epochs": len(history),
        "train_elbo": float(local_elbo(mean_field, x_train[:10_000], learned).mean()),
        "test_elbo": float(test_q.elbo.mean()),
        "test_inference_seconds": test_q.seconds,
        "test_fit_steps": test_q.steps,
    }
    print(f"\nsame decoder (50-200-200-784 tanh), {args.minutes} min of training each")
    for name, r in results.items():
        print(f"  {name:<11} " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("bench-runs/binarized-mnist/vae"))
    parser.add_argument("--num", type=int, default=1000, help="test images")
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--families", default="diagonal,full,planar")
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per model")
    parser.add_argument("--num-train", type=int, default=50_000)
    parser.add_argument("--local-lr", type=float, default=0.03)
    parser.add_argument("--skip-gaps", action="store_true")
    parser.add_argument("--skip-mean-field", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench-runs/inference-gaps.json"))
    args = parser.parse_args()
    results = {}
    if not args.skip_gaps:
        results["gaps"] = gaps_table(args)
    if not args.skip_mean_field:
        results["mean_field_vs_amortized"] = mean_field_vs_amortized(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Training throughput: aevb's Trainer against a hand-written PyTorch loop, same model.

Model: 784-500-500-50 MLP VAE, Bernoulli likelihood, diagonal Gaussian q(z|x), N(0, I)
prior, Adam, batch 100, on statically binarized MNIST (``../shared/data``). The two loops
alternate, one epoch at a time, in this one process; the script prints samples/s of each,
their medians and the median of the per-repeat ratios (aevb / hand-written; >= 0.9 is the bar).

    python bench/train_throughput.py [--repeats 5] [--num-train 50000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aevb import Trainer, mlp_vae

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist.npz"
HIDDEN, LATENT, BATCH = (500, 500), 50, 100


class HandWrittenVAE(nn.Module):
    """The usual tutorial VAE: tensors in, loss out, no distributions objects."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU())
        self.loc, self.raw_scale = nn.Linear(500, LATENT), nn.Linear(500, LATENT)
        self.dec = nn.Sequential(
            nn.Linear(LATENT, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 784)
        )

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        loc, scale = self.loc(h), F.softplus(self.raw_scale(h)) + 1e-3
        z = loc + scale * torch.randn_like(loc)
        logits = self.dec(z)
        log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (scale**2 + loc**2 - 1).sum(-1) - scale.log().sum(-1)
        return -(log_lik - kl).mean()


def hand_written_epoch(model: HandWrittenVAE, optimizer, x: torch.Tensor) -> None:
    order = torch.randperm(x.shape[0])
    for begin in range(0, x.shape[0], BATCH):
        loss = model.loss(x[order[begin : begin + BATCH]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-train", type=int, default=50_000)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not found (reference data lives beside the project)")
        return 0
    torch.set_num_threads(2)
    with np.load(DATA) as archive:
        x = torch.as_tensor(archive["train_x"][: args.num_train], dtype=torch.float32)
    torch.manual_seed(0)
    aevb_model = mlp_vae(784, LATENT, HIDDEN, activation=nn.ReLU)
    baseline = HandWrittenVAE()
    baseline_optimizer = torch.optim.Adam(baseline.parameters(), lr=1e-3)
    trainer = Trainer(aevb_model, max_epochs=0, batch_size=BATCH, lr=1e-3, progress=False)
    print(f"{x.shape[0]} binarized MNIST images, batch {BATCH}, 784-500-500-{LATENT}, 2 threads")

    rates: dict[str, list[float]] = {"aevb": [], "hand-written": []}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for name in ("aevb", "hand-written") if repeat % 2 else ("hand-written", "aevb"):
            start = time.perf_counter()
            if name == "aevb":  # one more epoch; each fit() also re-checks the data
                trainer.max_epochs += 1
                trainer.fit(x)
            else:
                hand_written_epoch(baseline, baseline_optimizer, x)
            seconds = time.perf_counter() - start
            if repeat:
                rates[name].append(x.shape[0] / seconds)
                print(f"  repeat {repeat} {name:>12}: {x.shape[0] / seconds:8.0f} samples/s")
    ratios = [a / b for a, b in zip(rates["aevb"], rates["hand-written"], strict=True)]
    print(f"median aevb          {statistics.median(rates['aevb']):8.0f} samples/s")
    print(f"median hand-written  {statistics.median(rates['hand-written']):8.0f} samples/s")
    print(f"median ratio aevb / hand-written: {statistics.median(ratios):.3f} (bar: >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

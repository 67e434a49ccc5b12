"""Training throughput: aevb's Trainer (float32, and its fast path) against hand-written
PyTorch loops, Pyro SVI and pythae, on the same model, data and batch.

Model: 784-500-500-50 MLP VAE, Bernoulli likelihood, diagonal Gaussian q(z|x), N(0, I)
prior, Adam, on statically binarized MNIST (``../shared/data``). The variants take turns, one
epoch each per round, in this one process (the first round warms up and compiles, and is not
counted); the script prints the median samples/s of each and the median of the per-round
ratios to the hand-written float32 loop, at each batch size, and the machine's bfloat16 /
float32 matrix-product speed ratio beside them (machines differ: AMX, AVX-512 bf16, none).

    python bench/train_throughput.py [--repeats 5] [--num-train 10000] [--batches 100,500]
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

from aevb import Shuffled, Trainer, mlp_vae

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist.npz"
HIDDEN, LATENT = (500, 500), 50


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


def hand_written_epoch(step, optimizer, x: torch.Tensor, batch: int) -> None:
    order = torch.randperm(x.shape[0])
    for begin in range(0, x.shape[0], batch):
        loss = step(x[order[begin : begin + batch]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def hand_written(low: bool):
    """The tutorial loop in float32, or in bfloat16 autocast with the loss compiled."""
    model = HandWrittenVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    if not low:
        return lambda x, batch: hand_written_epoch(model.loss, optimizer, x, batch)
    compiled = torch.compile(model.loss)

    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return compiled(x)

    return lambda x, batch: hand_written_epoch(step, optimizer, x, batch)


def aevb_trainer(**options):
    trainer = Trainer(
        mlp_vae(784, LATENT, HIDDEN, activation=nn.ReLU), max_epochs=0, progress=False, **options
    )

    def epoch(x: torch.Tensor, batch: int) -> None:
        trainer.sampler = Shuffled(batch)
        trainer.max_epochs += 1  # one more epoch; each fit() also re-checks the data
        trainer.fit(x)

    return epoch


def pyro_svi(loss_name: str):
    import pyro

    from aevb.pyro import to_pyro

    vae = mlp_vae(784, LATENT, HIDDEN, activation=nn.ReLU)
    model, guide = to_pyro(vae, name=f"vae-{loss_name}")
    loss = getattr(pyro.infer, loss_name)()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss)

    def epoch(x: torch.Tensor, batch: int) -> None:
        for rows in torch.randperm(x.shape[0]).split(batch):
            svi.step(x[rows])

    return epoch


def pythae_trainer(lr: float = 1e-3):
    """pythae's VAE with the hand-written networks, trained by its own ``BaseTrainer`` (its
    data loader, loss and optimizer step), one ``train_step`` per epoch; and the model."""
    import tempfile

    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    networks = HandWrittenVAE()

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.enc, self.loc, self.log_var = networks.enc, networks.loc, networks.raw_scale

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = self.enc(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.loc(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.dec = networks.dec

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.dec(z)))

    config = VAEConfig(input_dim=(784,), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    trainers: dict[int, BaseTrainer] = {}

    def epoch(x: torch.Tensor, batch: int) -> None:
        if batch not in trainers:
            options = BaseTrainerConfig(
                output_dir=tempfile.mkdtemp(),
                per_device_train_batch_size=batch,
                learning_rate=lr,
                num_epochs=1,
                no_cuda=True,
            )
            data = BaseDataset(x, torch.zeros(len(x)))
            trainers[batch] = BaseTrainer(model, data, training_config=options)
            trainers[batch].prepare_training()
        trainers[batch].train_step(1)

    return epoch, model


def matmul_ratio(size: int = 1024, repeats: int = 20) -> float:
    """How much faster a bfloat16 matrix product runs than a float32 one, here."""
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        times[dtype] = time.perf_counter() - start
    return times[torch.float32] / times[torch.bfloat16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--batches", default="100,500")
    parser.add_argument("--no-pyro", action="store_true", help="leave Pyro SVI out")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not found (reference data lives beside the project)")
        return 0
    torch.set_num_threads(2)
    with np.load(DATA) as archive:
        x = torch.as_tensor(archive["train_x"][: args.num_train], dtype=torch.float32)
    print(f"{x.shape[0]} binarized MNIST images, 784-500-500-{LATENT}, 2 threads; "
          f"bfloat16 matmul {matmul_ratio():.2f}x float32 here")  # fmt: skip
    for batch in map(int, args.batches.split(",")):
        torch.manual_seed(0)
        variants = {
            "hand-written fp32": hand_written(low=False),
            "hand-written bf16 compiled": hand_written(low=True),
            "aevb fp32": aevb_trainer(),
            "aevb bf16": aevb_trainer(precision="bfloat16"),
            "aevb bf16 compiled": aevb_trainer(precision="bfloat16", compile=True),
        }
        if not args.no_pyro:
            variants |= {f"pyro {n}": pyro_svi(n) for n in ("Trace_ELBO", "TraceMeanField_ELBO")}
        try:
            variants["pythae"] = pythae_trainer()[0]
        except ImportError:
            print("pythae is not installed (pip install -e '.[bench]'): its row is left out")
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for repeat in range(args.repeats + 1):
            names = list(variants) if repeat % 2 else list(reversed(variants))
            for name in names:
                start = time.perf_counter()
                variants[name](x, batch)
                if repeat:
                    rates[name].append(x.shape[0] / (time.perf_counter() - start))
        base = rates["hand-written fp32"]
        print(f"batch {batch}: median samples/s, median ratio to hand-written fp32")
        for name, values in rates.items():
            ratio = statistics.median(a / b for a, b in zip(values, base, strict=True))
            print(f"  {name:<30} {statistics.median(values):8.0f}  {ratio:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

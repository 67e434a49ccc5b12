"""Statically binarized MNIST: train, evaluate with k = 5000, print beside published figures.

Models (784-200-200-50 tanh MLPs, Bernoulli likelihood; Burda et al. 2015's architecture):

    vae      ELBO, N(0, I) prior                       published 88.71 (Burda et al. 2015)
    iwae5    IWAE k=5, DReG gradient, from scratch
    iwae50   IWAE k=50, DReG gradient, from the VAE     published 87.10 (Burda et al., k=50)
    vamp     ELBO, VampPrior with K=500 pseudo-inputs   published 85.57 (Tomczak & Welling 2018)
             started at random training images
    hvae2    two latent layers, bottom-up inference (Burda et al.'s 2-layer model:
             784-200-200-z1(100)-100-100-z2(50), tanh), ELBO
    hiwae2   the same, IWAE k=50, from hvae2            published 85.32 (Burda et al., k=50)
    ladder   convolutional ladder VAE: residual conv body (32, 64 channels), z1 (32) and
             z2 (16) with top-down inference, ELU, ELBO with 0.5 free bits per layer
    hvamp    MLP ladder VAE (784-300-300, z1 = z2 = 40) with a VampPrior (500 pseudo-inputs
             from training images) on z2; Tomczak & Welling's HVAE + VampPrior: 83.19
    cat20x10 20 categorical latents of 10 values, uniform prior, Gumbel-softmax (temperature
             1 -> 0.5), 784-512-256 ReLU (Jang et al. 2017)  published 101.5 (k = 1000)
    bern200  200 Bernoulli latents, the same networks      published 105.0 (ibid.)
    gauss20  the Gaussian VAE of the same networks, 20 latent dimensions: the baseline
    vq       VQ-VAE on the same networks: 20 codes of a 128-vector codebook, transformer prior
             over the codes; its bound log p(x|z_q) + log p(z_q) (q is a point mass)
    m1       Kingma et al. (2014)'s M1 for M1+M2: 784-500-500-50 softplus, ELBO

All train with Adam (lr 1e-3 decayed per epoch, batch 100) and a 100-epoch KL warm-up (50 for
the slower VampPrior), each for at most ``--minutes`` of wall time on this machine; early
stopping on the validation bound (the objective's own: ELBO or IWAE_k) selects the weights.
Then log p(x) is importance-sampled with ``--k`` proposals on the test set (float32, compiled
decoder). ``--threads 1`` lets two models train side by side on two cores; ``--train-only``
defers the evaluation. ``--timing`` times log p(x) for the VAE (compiled, float32 and
bfloat16, with the peak growth of resident memory) and, when pythae is installed
(``pip install -e '.[bench]'``), times pythae's ``get_nll`` on 200 test images against aevb on
the same images and weights. Results accumulate in ``--out``/results.json.

    python bench/binarized_mnist.py --models vae,iwae5,iwae50,vamp --minutes 55
    python bench/binarized_mnist.py --models "" --timing                           # speed
    python bench/binarized_mnist.py --models vae --minutes 2 --num-test 500 --k 500  # smoke
    python bench/binarized_mnist.py --models hvae2 --minutes 50 --resume  # one more piece
    python bench/binarized_mnist.py --models cat20x10,gauss20 --minutes 45 --also-k 1000
    python bench/binarized_mnist.py --models hvae2,hiwae2 --minutes 4 --device cuda  # a GPU

``--resume`` continues each named run that exists for another ``--minutes`` of training (the
Trainer's own resume: bit-exact), so a model can be trained in pieces across sessions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from aevb import load_run, log_px, train_run
from aevb.cli.config import config_from_dict
from aevb.cli.data import load_run_data
from aevb.evaluation import summarize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PUBLISHED = {  # MISSION.md; issue 16 for the hierarchies
    "vae": 88.71,
    "iwae5": None,
    "iwae50": 87.10,
    "vamp": 85.57,
    "hvae2": None,
    "hiwae2": 85.32,
    "ladder": None,
    "hvamp": 83.19,
    "cat20x10": 101.5,  # Jang et al. 2017, Table 1: Gumbel-softmax, 1000-sample bound
    "bern200": 105.0,  # ibid., 200 Bernoulli latents
    "gauss20": None,  # the Gaussian VAE of the same networks, 20 latent dimensions
    "vq": None,  # VQ-VAE + autoregressive prior: the bound log p(x|z_q) + log p(z_q)
    "m1": None,  # Kingma et al. (2014) publish no NLL for their M1
}
BASE = {
    "data": {"source": f"binarized-mnist:{DATA}"},
    "model": {
        "likelihood": "bernoulli",
        "latent_dim": 50,
        "hidden_dims": [200, 200],
        "activation": "tanh",
    },
    "train": {
        "epochs": 5000,
        "batch_size": 100,
        "lr": 1e-3,
        "lr_decay": 0.9977,  # 1e-3 -> 1e-4 over 1,000 epochs
        "patience": 100,
        "kl_warmup_epochs": 100,
        "snapshot_every": 0,
    },
}
MODELS: dict[str, dict[str, Any]] = {
    "vae": {},
    # From scratch, ~2.5x slower per epoch than the VAE: lr 1e-3 -> 1e-4 over ~400 epochs.
    "iwae5": {"train": {"objective": "iwae", "k": 5, "iwae_gradient": "dreg", "lr_decay": 0.9943}},
    # Fine-tuning the VAE (~50 s per epoch on one core) at its final learning rate.
    "iwae50": {
        "train": {
            "objective": "iwae",
            "k": 50,
            "iwae_gradient": "dreg",
            "lr": 1e-4,
            "lr_decay": 0.99,
            "patience": 20,
        }
    },
    "vamp": {  # ~3x slower per epoch than the VAE: a shorter warm-up and a faster decay
        "model": {"prior": "vamp", "prior_components": 500, "pseudo_inputs": "data"},
        "train": {"kl_warmup_epochs": 50, "lr_decay": 0.993},
    },
}
MODELS["hvae2"] = {
    "model": {"latent_dim": 100, "latent_layers": [50], "layer_hidden_dims": [100, 100]},
    "train": {"analytic_kl": False},
}
MODELS["hiwae2"] = {
    "model": MODELS["hvae2"]["model"],
    # DReG needs q rebuilt with detached parameters, which a chain of layers is not: standard.
    "train": {"objective": "iwae", "k": 50, "lr": 1e-4, "lr_decay": 0.99, "patience": 20},
}
MODELS["ladder"] = {
    "model": {
        "body": "resnet",
        "channels": [32, 64],
        "activation": "elu",
        "latent_dim": 32,
        "latent_layers": [16],
        "layer_hidden_dims": [256],
        "hierarchy": "ladder",
    },
    "train": {"analytic_kl": False, "free_bits": 0.5, "lr_decay": 0.99},
}
MODELS["hvamp"] = {
    "model": {
        "hidden_dims": [300, 300],
        "latent_dim": 40,
        "latent_layers": [40],
        "layer_hidden_dims": [300],
        "hierarchy": "ladder",
        "prior": "vamp",
        "prior_components": 500,
        "pseudo_inputs": "data",
    },
    "train": {"analytic_kl": False, "kl_warmup_epochs": 50, "lr_decay": 0.993},
}
# Discrete latents as in Jang et al. (2017): 512-256 ReLU MLPs, temperature annealed from 1
# to 0.5; no KL warm-up (the KL of 20 categoricals of 10 values is at most 46 nats).
JANG = {"hidden_dims": [512, 256], "activation": "relu"}
JANG_TRAIN = {"kl_warmup_epochs": 0, "temperature_rate": 1e-4, "lr_decay": 0.99}
MODELS["cat20x10"] = {
    "model": {**JANG, "posterior": "categorical", "latent_dim": 20, "latent_categories": 10,
              "prior": "uniform"},
    "train": JANG_TRAIN,
}  # fmt: skip
MODELS["bern200"] = {
    "model": {**JANG, "posterior": "bernoulli", "latent_dim": 200, "prior": "uniform"},
    "train": JANG_TRAIN,
}
MODELS["gauss20"] = {"model": {**JANG, "latent_dim": 20}, "train": JANG_TRAIN}
# VQ-VAE on the same networks: 20 codes from a codebook of 128 (EMA, dead-code restarts), a
# causal transformer prior over the 20 codes trained alongside and refitted to the training
# set's codes afterwards. q is a point mass, so log p(x) is reported as its bound.
MODELS["vq"] = {
    "model": {**JANG, "posterior": "vq", "latent_dim": 20, "codebook_size": 128, "code_dim": 8,
              "prior": "autoregressive"},
    "train": {"kl_warmup_epochs": 0, "lr_decay": 0.99, "prior_epochs": 10},
}  # fmt: skip
# Kingma et al. (2014)'s M1 for M1+M2 (bench/semi_supervised.py --m1): 500-500 softplus.
MODELS["m1"] = {
    "model": {"hidden_dims": [500, 500], "activation": "softplus"},
    "train": {"kl_warmup_epochs": 50, "lr_decay": 0.99},
}
WARM_START = {"iwae50": "vae", "hiwae2": "hvae2"}


def _config(name: str, out: Path, minutes: float, device: str = "cpu") -> Any:
    raw = json.loads(json.dumps(BASE))
    for section, values in MODELS[name].items():
        raw[section].update(values)
    raw["train"]["max_minutes"] = minutes
    raw["train"]["device"] = device
    if name in WARM_START:
        raw["train"]["init_from"] = str(out / WARM_START[name])
        raw["train"]["kl_warmup_epochs"] = 0
    return config_from_dict(raw)


def _resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _time_log_px(model, x: torch.Tensor, k: int, **options: Any) -> tuple[float, float, float]:
    """Seconds, mean log p(x) and the peak growth of resident memory (MB) while estimating."""
    log_px(model, x[:16], k, **options)  # compile / warm up outside the timing
    baseline, peak, done = _resident_mb(), [0.0], threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _resident_mb() - baseline)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    estimate = log_px(model, x, k, **options)
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    return seconds, estimate.mean, peak[0]


def _pythae_comparison(run, x: torch.Tensor, k: int) -> dict[str, float] | None:
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError:
        print("pythae not installed: skipping its comparison (pip install pythae)")
        return None

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.inner = run.model.encoder

        def forward(self, x: torch.Tensor) -> ModelOutput:
            qz = self.inner(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=qz.mean, log_covariance=2 * qz.stddev.log())

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.inner = run.model.decoder

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.inner(z).mean)

    config = VAEConfig(input_dim=(784,), latent_dim=50, reconstruction_loss="bce")
    peer = VAE(config, encoder=Encoder(), decoder=Decoder()).eval()
    with torch.no_grad():
        started = time.perf_counter()
        peer_log_px = float(peer.get_nll(x, n_samples=k, batch_size=100))
        peer_seconds = time.perf_counter() - started
    ours_seconds, ours_log_px, _ = _time_log_px(run.model, x, k, compile=True)
    return {
        "images": len(x),
        "pythae_seconds_per_image": peer_seconds / len(x),
        "aevb_seconds_per_image": ours_seconds / len(x),
        "speedup": peer_seconds / ours_seconds,
        "pythae_log_px": peer_log_px,
        "aevb_log_px": ours_log_px,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vae,iwae5,iwae50,vamp")
    parser.add_argument("--minutes", type=float, default=55.0, help="training budget per model")
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--also-k", default="", help="more k for log p(x), e.g. 1000")
    parser.add_argument("--num-test", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("bench-runs/binarized-mnist"))
    parser.add_argument("--threads", type=int, default=2, help="1: two runs side by side")
    parser.add_argument("--timing", action="store_true", help="time log p(x), compare pythae")
    parser.add_argument("--train-only", action="store_true", help="train, evaluate later")
    parser.add_argument("--resume", action="store_true", help="train existing runs further")
    parser.add_argument("--device", default="cpu", help="cuda: train and evaluate on a GPU")
    args = parser.parse_args()
    if not (DATA / "binarized_mnist.npz").exists():
        print(f"skipped: {DATA / 'binarized_mnist.npz'} not found")
        return 0
    torch.set_num_threads(args.threads)
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    computed: list[str] = []
    for name in [name for name in args.models.split(",") if name]:
        out = args.out / name
        config = _config(name, args.out, args.minutes, args.device)
        if (out / "trainer.json").exists() and args.resume:
            print(f"{name}: training the run in {out} for up to {args.minutes} more minutes")
            run = train_run(config, out, resume=True, progress=False)
            history = json.loads((out / "trainer.json").read_text())["history"]
            train_seconds = sum(record["seconds"] for record in history)
        elif (out / "trainer.json").exists():
            print(f"{name}: reusing the trained run in {out}")
            run = load_run(out)
            history = json.loads((out / "trainer.json").read_text())["history"]
            train_seconds = sum(record["seconds"] for record in history)
        else:
            started = time.perf_counter()
            run = train_run(config, out, progress=False)
            train_seconds = time.perf_counter() - started
        run.model.to(args.device)  # a reused run loads on the CPU
        if args.train_only:
            continue
        test = load_run_data(config)[2].x[: args.num_test]
        started = time.perf_counter()
        summary = summarize(run.model, test, k=args.k, compile=True)
        summary.update(
            model=name,
            train_minutes=train_seconds / 60,
            evaluation_seconds=time.perf_counter() - started,
            epochs=run.metrics.get("epochs_trained"),
            published_nll=PUBLISHED[name],
        )
        for k in [int(k) for k in args.also_k.split(",") if k and summary["k"] > 1]:
            estimate = log_px(run.model, test, k, compile=True)
            summary[f"nll (k={k})"] = -estimate.mean
            summary[f"nll_stderr (k={k})"] = estimate.mean_stderr
            print(f"{name}: test NLL {-estimate.mean:.2f} ± {estimate.mean_stderr:.2f} (k={k})")
        results[name] = summary
        computed.append(name)
        print(
            f"{name}: test NLL {summary['nll']:.2f} ± {summary['log_px_stderr']:.2f} "
            f"(k={summary['k']}), "
            f"-ELBO {-summary['elbo']:.2f}, "
            f"active units {summary['active_units']}/{summary['latent_dim']}, "
            f"trained {summary['train_minutes']:.1f} min ({summary['epochs']} epochs)",
            flush=True,
        )
    if args.timing:
        run = load_run(args.out / "vae")
        test = load_run_data(run.config)[2].x[: args.num_test]
        for label, options in (
            ("float32, compiled", {"compile": True}),
            ("bfloat16, compiled", {"compile": True, "matmul_dtype": torch.bfloat16}),
        ):
            seconds, value, memory = _time_log_px(run.model, test, args.k, **options)
            results["vae"][f"log_px_seconds ({label})"] = seconds
            results["vae"][f"log_px_peak_memory_mb ({label})"] = memory
            print(
                f"log p(x), k={args.k}, {len(test)} images, {label}: {seconds:.0f} s, "
                f"{value:.3f}, resident memory +{memory:.0f} MB at the peak"
            )
        computed.append("vae")
        comparison = _pythae_comparison(run, test[:200], args.k)
        if comparison:
            results["pythae_comparison"] = comparison
            computed.append("pythae_comparison")
            print(f"pythae get_nll vs aevb log_px on 200 images: {comparison}")
    print(f"\n{'model':<8} {'NLL (nats)':>12} {'published':>10} {'-ELBO':>8} {'AU':>4} {'min':>6}")
    for name, summary in results.items():
        if name == "pythae_comparison":
            continue
        published = summary["published_nll"]
        shown = f"{published:.2f}" if published is not None else "-"
        print(
            f"{name:<8} {summary['nll']:>12.2f} {shown:>10} {-summary['elbo']:>8.2f} "
            f"{summary['active_units']:>4} {summary['train_minutes']:>6.1f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    # Re-read before writing: another run of this script (--threads 1) may have saved meanwhile.
    saved = json.loads(results_path.read_text()) if results_path.exists() else {}
    saved.update({name: results[name] for name in computed})
    results_path.write_text(json.dumps(saved, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

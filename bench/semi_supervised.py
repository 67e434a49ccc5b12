"""Semi-supervised MNIST with 100 labels: M2, M1+M2 (Kingma et al. 2014) and Pyro's M2.

For each seed, 100 labels (10 per class) are drawn from the labelled rows of the binarized
MNIST training split (``labelled_subset(train_y, 10, seed)``); every other training image is
unlabelled. Test error is measured on the 10,000 labelled test images; the learning curve
records the error on the validation split's 846 labelled images after every epoch (no model
selection: the last model is scored).

- M2: ``mlp_m2(784, 10)`` (500 softplus units, 50 latent dimensions, Bernoulli likelihood).
- M1+M2: M2 with a Gaussian likelihood on the standardized latent features of a trained M1
  VAE (``--m1``, e.g. ``bench/binarized_mnist.py``'s ``m1``, Kingma et al.'s 500-500 softplus
  VAE, or its 200-200 tanh ``vae``), drawn from q(z1|x) at every step as Kingma et al.'s code
  does (``--m1-means``: the posterior means instead).
- Pyro: the M2 of Pyro's ``ss-vae`` example written with ``TraceEnum_ELBO`` (the label
  enumerated in parallel, the auxiliary classification loss x46, Adam 4.2e-4), same networks,
  same split. Epoch counts (not wall time) fix each run, so results do not depend on load.

Writes ``results.json``, per-seed learning curves, and for seed 0 the analogies grid and
conditional samples of M2 into ``--out``.

    .venv/bin/python bench/semi_supervised.py --seeds 0 1 2 --m2-epochs 50 --m1m2-epochs 30

Every M2 and M1+M2 fit keeps its checkpoint in ``--out``/trainer-<model>-<seed> after
each epoch; ``--resume`` goes on from it (bit-exact), so a fit can run in pieces across
sessions: ``--m2-epochs`` / ``--m1m2-epochs`` count every epoch, ``--max-minutes`` this
piece's. Seeds can run side by side, one core each, into separate ``--out`` folders
(``--seeds 0 --threads 1 --out bench-runs/ss-0`` beside ``--seeds 1 ...``). M1+M2 reaches
Kingma et al.'s figure only after ~250 epochs (3.89 ± 0.40 % over 3 seeds, README):

    .venv/bin/python bench/semi_supervised.py --seeds 0 --threads 1 --m2-epochs 0 \
        --pyro-epochs 0 --m1m2-epochs 300 --max-minutes 100 --m1 bench-runs/binarized-mnist/m1
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from aevb import ConvDecoder, ConvEncoder, M1Features, NormalHead, load_run, save_weights
from aevb.data import load_dataset, split
from aevb.models.semisupervised import UNLABELLED, error_rate, labelled_subset, mlp_m2
from aevb.training import fit_semi_supervised
from aevb.viz.plots import plot_analogies, plot_conditional_samples

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def hide_labels(y: torch.Tensor, seed: int) -> torch.Tensor:
    shown = labelled_subset(y, 10, seed=seed)
    hidden = torch.full_like(y, UNLABELLED)
    hidden[shown] = y[shown]
    return hidden


def first_of_each_class(data):
    return data[torch.stack([(data.y == c).nonzero()[0, 0] for c in range(10)])]


def fit(model, train, valid, y, seed: int, epochs: int, args, name: str) -> tuple[list, float]:
    """Fit one model on the split (or go on with it: ``--resume``); its per-epoch history and
    training time over every piece."""
    run_dir = args.out / f"trainer-{name.replace('+', '')}-{seed}"  # checkpoint per epoch
    history = fit_semi_supervised(
        model,
        train.x,
        y,
        valid=(valid.x, valid.y),
        epochs=epochs,
        lr=1e-3,
        alpha=args.alpha,
        labelled_share=args.labelled_share,
        beta=args.beta,
        max_seconds=60 * args.max_minutes,
        seed=seed,
        progress=True,  # one line per epoch, with the validation error
        run_dir=run_dir,
        resume=args.resume and (run_dir / "trainer.json").exists(),
    )
    return history, sum(record["seconds"] for record in history)


def run_m2(train, valid, test, y, seed: int, args: argparse.Namespace, out: Path | None) -> dict:
    torch.manual_seed(seed)
    model = mlp_m2(784, 10, image_bodies=_conv_bodies(args.m2_body))
    history, seconds = fit(model, train, valid, y, seed, args.m2_epochs, args, "M2")
    if out is not None:
        firsts = first_of_each_class(test)
        plot_analogies(model, firsts.x, (28, 28), out / "analogies.png", firsts.y)
        plot_conditional_samples(model, (28, 28), out / "conditional_samples.png")
        save_weights(model, out / "m2.safetensors")
    return _result(error_rate(model, test.x, test.y), seconds, history)


def _conv_bodies(body: str):
    """``mlp_m2``'s ``image_bodies`` for ``--m2-body`` (None: MLPs)."""
    if body == "mlp":
        return None
    shape, channels = (1, 28, 28), (32, 64)

    def bodies(width: int):
        decoder = ConvDecoder(width, shape, channels[::-1]) if body == "conv" else None
        return ConvEncoder(shape, channels), ConvEncoder(shape, channels), decoder

    return bodies


def run_m1m2(train, valid, test, y, seed: int, args: argparse.Namespace, out: Path | None) -> dict:
    # active units, standardized; drawn from q(z1|x) at every step unless --m1-means
    features = M1Features(load_run(args.m1).vae, train.x, sample=not args.m1_means)
    torch.manual_seed(seed)
    model = mlp_m2(features.out_dim, 10, likelihood=NormalHead, features=features)
    history, seconds = fit(model, train, valid, y, seed, args.m1m2_epochs, args, "M1+M2")
    if out is not None:  # drawn back to pixels through M1's decoder
        firsts = first_of_each_class(test)
        plot_analogies(model, firsts.x, (28, 28), out / "m1m2_analogies.png", firsts.y)
        save_weights(model, out / "m1m2.safetensors")
    return _result(error_rate(model, test.x, test.y), seconds, history)


def run_pyro(train, valid, test, y, seed: int, epochs: int) -> dict:
    """Pyro's M2 recipe on the same split (label enumerated, auxiliary loss x46)."""
    import warnings

    import pyro
    import pyro.distributions as dist
    from pyro import poutine
    from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
    from pyro.optim import Adam

    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites")
    z_dim, hidden, classes, aux = 50, 500, 10, 46.0
    decoder = nn.Sequential(
        nn.Linear(z_dim + classes, hidden), nn.Softplus(), nn.Linear(hidden, 784)
    )
    encoder_z = nn.Sequential(
        nn.Linear(784 + classes, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim)
    )
    encoder_y = nn.Sequential(nn.Linear(784, hidden), nn.Softplus(), nn.Linear(hidden, classes))
    networks = nn.ModuleList([decoder, encoder_z, encoder_y])

    def joined(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        batch = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        return torch.cat([a.expand(*batch, -1), b.expand(*batch, -1)], -1)

    def model(xs, ys=None):
        pyro.module("m2", networks)
        with pyro.plate("data", xs.shape[0]):
            z = pyro.sample("z", dist.Normal(xs.new_zeros(z_dim), 1.0).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(logits=xs.new_zeros(classes)), obs=ys)
            pyro.sample("x", dist.Bernoulli(logits=decoder(joined(z, ys))).to_event(1), obs=xs)

    def guide(xs, ys=None):
        with pyro.plate("data", xs.shape[0]):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(logits=encoder_y(xs)))
            loc, raw = encoder_z(joined(xs, ys)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))

    def model_classify(xs, ys):
        pyro.module("m2", networks)
        with pyro.plate("data", xs.shape[0]), poutine.scale(scale=aux):
            pyro.sample("y_aux", dist.OneHotCategorical(logits=encoder_y(xs)), obs=ys)

    def guide_classify(xs, ys):
        pass

    optimizer = Adam({"lr": 4.2e-4, "betas": (0.9, 0.999)})
    enumerated = config_enumerate(guide, "parallel")
    elbo = SVI(model, enumerated, optimizer, loss=TraceEnum_ELBO(max_plate_nesting=1))
    classify = SVI(model_classify, guide_classify, optimizer, loss=Trace_ELBO())
    labelled = (y != UNLABELLED).nonzero().flatten()
    unlabelled = (y == UNLABELLED).nonzero().flatten()
    onehot = nn.functional.one_hot(y.clamp(min=0), classes).float()
    generator = torch.Generator().manual_seed(seed)
    history, started = [], time.perf_counter()
    for _ in range(epochs):
        # Pyro's example: each epoch, the labelled rows once in small batches spread among
        # the unlabelled batches.
        order = unlabelled[torch.randperm(len(unlabelled), generator=generator)].split(100)
        sup = labelled[torch.randperm(len(labelled), generator=generator)].split(10)
        every = len(order) // len(sup)
        for step, rows in enumerate(order):
            elbo.step(train.x[rows])
            if step % every == 0 and step // every < len(sup):
                rows_l = sup[step // every]
                elbo.step(train.x[rows_l], onehot[rows_l])
                classify.step(train.x[rows_l], onehot[rows_l])
        with torch.no_grad():
            valid_error = float((encoder_y(valid.x).argmax(-1) != valid.y).float().mean())
        seconds = time.perf_counter() - started - sum(r["seconds"] for r in history)
        record = {"epoch": len(history) + 1, "seconds": seconds}
        history.append({**record, "valid_error": valid_error})
        _show("Pyro M2", seed)(history[-1])
    with torch.no_grad():
        test_error = float((encoder_y(test.x).argmax(-1) != test.y).float().mean())
    return _result(test_error, time.perf_counter() - started, history)


def _result(test_error: float, seconds: float, history: list[dict]) -> dict:
    elapsed = list(itertools.accumulate(r["seconds"] for r in history))
    curve = [
        (r["epoch"], round(s, 1), r.get("valid_error"))
        for r, s in zip(history, elapsed, strict=True)
    ]
    return {"test_error": test_error, "seconds": seconds, "epochs": len(history), "curve": curve}


def _show(name: str, seed: int):
    def show(record: dict) -> None:
        error = record.get("valid_error")
        print(
            f"  {name} seed {seed} epoch {record['epoch']:>3} {record['seconds']:7.0f} s  "
            f"valid error {error:.4f}",
            flush=True,
        )

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED), help="folder with binarized_mnist.npz")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--m2-epochs", type=int, default=50, help="0: skip (~18 s each)")
    parser.add_argument("--m1m2-epochs", type=int, default=30, help="0: skip (~10 s each)")
    parser.add_argument("--pyro-epochs", type=int, default=40, help="0: skip (~23 s each)")
    parser.add_argument("--pyro-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--alpha", type=float, default=1.0, help="classification weight")
    parser.add_argument(
        "--m2-body",
        choices=("mlp", "conv-encoder", "conv"),
        default="mlp",
        help="M2's networks of x: MLPs, convolutional encoder and classifier (32, 64 channels) "
        "with the MLP decoder, or convolutional everywhere",
    )
    parser.add_argument(
        "--labelled-share", type=float, default=None, help="weight of the labelled ELBO (N_l/N)"
    )
    parser.add_argument("--max-minutes", type=float, default=55.0, help="per model and seed")
    parser.add_argument(
        "--resume", action="store_true", help="go on with the fits checkpointed in --out"
    )
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight of z (paper: 1)")
    parser.add_argument("--m1", default="bench-runs/binarized-mnist/vae", help="M1 run folder")
    parser.add_argument("--threads", type=int, default=0, help="1: seeds side by side (0: all)")
    parser.add_argument("--m1-means", action="store_true", help="M1+M2 on E[z1|x], no draws")
    parser.add_argument("--out", type=Path, default=Path("bench-runs/semi-supervised"))
    args = parser.parse_args()
    npz = Path(args.data) / "binarized_mnist.npz"
    if not npz.exists():
        print(f"skipped: {npz} is absent (see ../shared/data/README.md)")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or max(torch.get_num_threads(), 1))
    train, valid, test = split(load_dataset(f"binarized-mnist:{args.data}"), (0.1, 0.1))
    known = valid.y != UNLABELLED
    valid = valid[known.nonzero().flatten()]
    results: dict[str, dict[int, dict]] = {"M2": {}, "M1+M2": {}, "Pyro M2": {}}
    for seed in args.seeds:
        y = hide_labels(train.y, seed)
        out = args.out if seed == args.seeds[0] else None
        if args.m2_epochs > 0:
            results["M2"][seed] = run_m2(train, valid, test, y, seed, args, out)
        if args.m1m2_epochs > 0 and Path(args.m1).is_dir():
            results["M1+M2"][seed] = run_m1m2(train, valid, test, y, seed, args, out)
        if args.pyro_epochs > 0 and seed in args.pyro_seeds:
            results["Pyro M2"][seed] = run_pyro(train, valid, test, y, seed, args.pyro_epochs)
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        record = {"options": options, **results}
        (args.out / "results.json").write_text(json.dumps(record, indent=1))
    print(f"\nbinarized MNIST, 100 labels, test error on {len(test)} images (last epoch)")
    published = {"M2": "11.97 (paper); Pyro example 6.8", "M1+M2": "3.33 (paper)", "Pyro M2": ""}
    for name, per_seed in results.items():
        if not per_seed:
            continue
        errors = [100 * r["test_error"] for r in per_seed.values()]
        spread = statistics.stdev(errors) if len(errors) > 1 else 0.0
        minutes = statistics.median(r["seconds"] for r in per_seed.values()) / 60
        epochs = statistics.median(r["epochs"] for r in per_seed.values())
        print(
            f"  {name:<8} {statistics.mean(errors):6.2f} ± {spread:.2f} %  over seeds "
            f"{list(per_seed)}  ({epochs:.0f} epochs, {minutes:.1f} min each)   published: "
            f"{published[name]}"
        )
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()

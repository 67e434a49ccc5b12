"""The ``aevb`` commands train, sample, encode, reconstruct, plot and predict (evaluate and
impute: :mod:`aevb.cli.evaluate`, :mod:`aevb.cli.tabular`); the parser is in
:mod:`aevb.cli.parser`.

Every option of ``aevb train`` is also a key of the TOML config (``--latent-dim 8`` is
``[model] latent_dim = 8``); flags override the file, the file overrides the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.series import pad_series
from ..distributions.discrete import Bernoullis, Categoricals
from ..distributions.quantized import Quantized
from ..errors import ConfigError, DataError
from ..files import atomic_path
from ..inference.local import fit_local
from ..models.semisupervised import UNLABELLED, SemiSupervisedVAE, error_rate
from ..nn.utils import checked_device
from ..training.distributed import leave, rank_and_size
from ..viz.plots import interleave, save_image_grid
from ..viz.report import draw_figures, draw_label_figures, write_report
from .config import SECTIONS, RunConfig, describe_config, load_config, override
from .data import load_like, load_run_data
from .folders import check_out_folder
from .runs import Run, load_run, train_run
from .text import text_samples, write_lines

# -- commands -------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else RunConfig()
    given = {
        name: getattr(args, name)
        for section in SECTIONS.values()
        for name in (f.name for f in dataclasses.fields(section))
        if getattr(args, name) is not None
    }
    if args.seed is not None:
        given["seed"] = args.seed
    config = override(config, given)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"{Path(config.data.source).stem}-{stamp}"
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(args, config, out)
    if args.verbose:
        print(describe_config(config))
    try:
        run = train_run(
            config,
            out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.quiet,
            verbose=args.verbose,
        )
        if rank_and_size()[0] > 0:  # another process of the same run: rank 0 reports
            return 0
    finally:
        leave()
    metrics = run.metrics
    print(f"run folder: {run.path}")
    if "num_classes" in metrics:  # m2 / cvae
        print(
            f"{metrics['kind']}: {metrics['num_labelled']} of {metrics['num_train']} training "
            f"labels used, {metrics['epochs_trained']} epochs in {metrics['train_seconds']:.0f} s"
        )
    if "test_error" in metrics:
        print(f"test error {metrics['test_error']:.2%} on {metrics['num_test']} held-out examples")
    if "test_conditional_elbo" in metrics:
        print(f"test ELBO of log p(x|y) {metrics['test_conditional_elbo']:.3f} nats")
    if "test_kl" in metrics:
        print(
            f"test ELBO {metrics['test_elbo']:.3f} nats "
            f"(reconstruction {metrics['test_log_px_z']:.3f}, KL {metrics['test_kl']:.3f}) "
            f"on {metrics['num_test']} held-out examples"
        )
    elif "test_elbo" in metrics:  # mean-field: q fitted for each test example
        print(
            f"test ELBO {metrics['test_elbo']:.3f} nats on {metrics['num_test']} held-out "
            f"examples, q fitted per example in {metrics['test_fit_seconds']:.1f} s"
        )
    if (run.path / "report.html").exists():
        print(f"report: {run.path / 'report.html'}")
    return 0


def _launch(args: argparse.Namespace, config: RunConfig, out: Path) -> int:
    """``train --nproc N``: the same command in N processes under ``torchrun`` (one
    machine; for several, run ``torchrun --nnodes ... -m aevb.cli train`` yourself)."""
    cores = os.cpu_count() or 1
    if config.train.device == "cpu" and args.nproc > cores:
        raise ConfigError(f"--nproc {args.nproc} is more than this machine's {cores} cores")
    check_out_folder(out, resume=args.resume, overwrite=args.overwrite)  # before starting any
    checked_device(config.train.device)
    argv, skip = [], False
    for item in args.argv:  # the same options, less --nproc, with the one --out
        if skip or item.startswith("--nproc"):
            skip = item == "--nproc"
            continue
        argv.append(item)
    if args.out is None:
        argv += ["--out", str(out)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command = [*launcher, f"--nproc-per-node={args.nproc}", "-m", "aevb.cli", *argv]
    return subprocess.run(command, check=False).returncode


def sample(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    torch.manual_seed(args.seed)
    model, columns = run.model, None
    if isinstance(model, SemiSupervisedVAE):  # x ~ p(x|y, z): a row per label, or one label
        if args.label is not None and not 0 <= args.label < model.num_classes:
            raise DataError(f"--label must be in 0..{model.num_classes - 1}, got {args.label}")
        labels = (
            torch.arange(model.num_classes) if args.label is None else torch.tensor([args.label])
        )
        columns = max(args.num // len(labels), 1)
        x = model.sample(labels.repeat_interleave(columns), mean=args.mean)
    elif args.label is not None:
        raise DataError(f"{run.path} is an unconditional VAE: --label needs an m2 or cvae run")
    elif run.vocabulary is not None:
        x = text_samples(run, args.num, greedy=args.mean, beam=args.beam, between=args.between)
    elif args.beam or args.between:
        raise DataError(f"{run.path} is not a text run: --beam and --between decode sentences")
    else:
        x = model.sample(args.num, mean=args.mean)
    default = "samples.txt" if run.vocabulary is not None else "samples.png"
    path = _write(x, args.out or run.path / default, run, num_columns=columns)
    print(f"wrote {len(x)} samples to {path}")
    return 0


def encode(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    model = run.vae
    x = _run_input(run, args.data)
    if args.refine or run.metrics.get("inference") == "mean-field":
        # semi-amortized: K steps from the encoder; a mean-field run fits q from the prior
        mean_field = run.metrics.get("inference") == "mean-field"
        fitted = fit_local(
            model,
            x,
            init="prior" if mean_field else "encoder",
            steps=args.refine or 2000,
            tol=1e-3 if mean_field and not args.refine else None,
            lr=args.refine_lr,
        )
        qz = fitted.distribution()
        assert fitted.elbo is not None
        print(f"fitted q(z) per example: {fitted.steps} steps, ELBO {fitted.elbo.mean():.3f}")
    else:
        with torch.no_grad():
            qz = model.encode(x)
    out = Path(args.out or run.path / "latents.csv")
    if isinstance(qz, Quantized):  # a VQ-VAE: the code at each place
        names = [f"code_{j}" for j in range(qz.index.shape[1])]
        _save_array(qz.index.numpy(), out, header=names)
        print(f"wrote the code indices of {len(x)} examples to {out}")
        return 0
    if isinstance(qz, Categoricals | Bernoullis):  # discrete: the probability of each value
        names = [f"p_{j}" for j in range(model.latent_dim)]
        _save_array(qz.mean.detach().numpy(), out, header=names)
        print(f"wrote q(z|x) probabilities of {len(x)} examples to {out}")
        return 0
    with torch.no_grad():
        table = torch.cat([qz.mean, qz.stddev], dim=1)
    names = [f"loc_{j}" for j in range(model.latent_dim)]
    names += [f"scale_{j}" for j in range(model.latent_dim)]
    _save_array(table.numpy(), out, header=names)
    print(f"wrote q(z|x) means and standard deviations of {len(x)} examples to {out}")
    return 0


def reconstruct(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    x = _run_input(run, args.data)[: args.num]
    reconstruction = run.vae.reconstruct(x)
    default = "reconstructions.txt" if run.vocabulary is not None else "reconstructions.png"
    out = args.out or run.path / default
    if Path(out).suffix == ".txt":  # each line, then its reconstruction
        path = write_lines(run, interleave(x, reconstruction), Path(out), pairs=True)
    elif Path(out).suffix == ".png":
        path = _write(interleave(x, reconstruction), out, run, num_columns=8)
    else:
        path = _write(reconstruction, out, run)
    print(f"wrote reconstructions of {len(x)} examples to {path}")
    return 0


def plot(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    if args.data:
        data = load_like(run.config, args.data, vocabulary=run.vocabulary)
    else:
        train, _, test = load_run_data(run.config, run.vocabulary)
        data = test if len(test) else train
    if isinstance(run.model, SemiSupervisedVAE):
        if run.image_shape is None:
            raise DataError(f"{run.path} holds no image data: its figures are images")
        for name, path in draw_label_figures(run, data).items():
            print(f"{name:>19}: {path}")
        return 0
    run.vae.check_data(data.x)
    what = args.what.split(",") if args.what else None
    figures = draw_figures(run, data, what=what, method=args.method)
    report = write_report(run)
    for name, path in figures.items():
        print(f"{name:>17}: {path}")
    print(f"report: {report}")
    return 0


def predict(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    model = run.model
    if not isinstance(model, SemiSupervisedVAE) or model.classifier is None:
        raise DataError(f"{run.path} has no classifier q(y|x): aevb predict needs an m2 run")
    if args.data:
        data = load_like(run.config, args.data, labels=args.labels)
    else:
        data = load_run_data(run.config)[2]
    y = data.y if data.y is not None else torch.full((len(data),), UNLABELLED)
    x = data.in_memory
    model.check_data(x, y)
    proba = model.predict_proba(x)
    names = ["label"] + [f"p_{c}" for c in range(model.num_classes)]
    table = pd.DataFrame(proba.numpy(), columns=names[1:])
    table.insert(0, "label", proba.argmax(1).numpy())
    label_names = run.metrics.get("label_names")
    if label_names:  # text labels: their names beside the codes
        table.insert(1, "label_name", [label_names[i] for i in table["label"]])
    out = Path(args.out or run.path / "predictions.csv")
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    known = y != UNLABELLED
    if bool(known.any()):
        error = error_rate(model, x, y)
        print(f"error rate {error:.2%} on the {int(known.sum())} labelled examples")
    print(f"wrote q(y|x) and the predicted label of {len(data)} examples to {out}")
    return 0


def _run_input(run: Run, source: str | None) -> torch.Tensor:
    """The data to encode: ``source``, or the run's own data; checked against the model."""
    dataset = load_like(run.config, source or run.config.data.source, vocabulary=run.vocabulary)
    if dataset.sequence_shape is not None:  # shorter sequences than the run's: padded
        dataset = pad_series(dataset, *run.metrics["sequence_shape"])
    run.vae.check_data(dataset.x)
    return dataset.in_memory


def _write(x: torch.Tensor, out: str | Path, run: Run, num_columns: int | None = None) -> Path:
    out = Path(out)
    if out.suffix == ".txt":
        return write_lines(run, x, out)
    if out.suffix == ".png":
        if run.image_shape is None:
            raise DataError(f"{run.path} holds no image data: write .npy or .csv instead of .png")
        return save_image_grid(x, run.image_shape, out, num_columns=num_columns)
    if out.suffix not in (".npy", ".csv"):
        raise DataError(f"unknown output format {out.suffix!r}: use .png, .npy, .csv or .txt")
    _save_array(x.numpy(), out)
    return out


def _save_array(array: np.ndarray, out: Path, header: list[str] | None = None) -> None:
    """``.npy``, or CSV (with ``header``) for any other suffix, written whole."""
    with atomic_path(out) as tmp:
        if out.suffix == ".npy":
            np.save(tmp, array)
        else:
            names = ",".join(header) if header else ""
            integers = np.issubdtype(array.dtype, np.integer)
            fmt = "%d" if integers else "%.18e"
            np.savetxt(tmp, array, delimiter=",", header=names, comments="", fmt=fmt)

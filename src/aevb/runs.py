"""Run folders: train a model from a :class:`RunConfig` into a folder, and load it back.

A run folder holds ``config.json`` (the validated config: ``aevb train --config`` accepts it),
``run.json`` (data facts and final metrics), the checkpoints and ``metrics.jsonl`` written by
:class:`aevb.Trainer`, ``snapshots.safetensors`` (posterior means during training), the
figures of :mod:`aevb.report` and ``report.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import load_json, load_weights, save_json, save_weights
from .config import RunConfig, build_model, build_trainer, config_from_dict, config_to_dict
from .data import Dataset, load_dataset, split
from .errors import CheckpointError, ConfigError
from .evaluation import evaluate
from .inference import fit_local, fit_mean_field
from .model import VAE
from .report import SNAPSHOTS, draw_figures, spread_subset, write_report
from .train import LatentSnapshots

SNAPSHOT_POINTS = 500  # examples whose posterior means are recorded during training


@dataclass
class Run:
    """A trained model with the config and data facts of its run folder."""

    path: Path
    config: RunConfig
    model: VAE
    image_shape: tuple[int, ...] | None
    metrics: dict[str, Any]

    @property
    def data_dim(self) -> int:
        return int(self.metrics["data_dim"])


def load_run_data(config: RunConfig) -> tuple[Dataset, Dataset, Dataset]:
    """The run's data, binarized as configured, split into train, valid and test by seed."""
    dataset = load_dataset(config.data.source, binarize=config.data.binarize)
    fractions = (config.data.valid_fraction, config.data.test_fraction)
    return split(dataset, fractions, seed=config.seed)


def train_run(
    config: RunConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> Run:
    """Train the model ``config`` describes into the folder ``out``; return the run.

    With ``resume=True`` training continues from ``out``'s last checkpoint; only the
    ``train`` section may differ from the saved config (e.g. more epochs).
    """
    out = Path(out)
    if resume:
        saved = _read_config(out)
        if (saved.data, saved.model, saved.seed) != (config.data, config.model, config.seed):
            raise ConfigError(
                f"{out} was trained with other data/model options; resume it with the same "
                "ones (only [train] options may change), or train into a new --out folder"
            )
    elif (out / "trainer.json").exists():
        raise ConfigError(
            f"{out} already holds a run: continue it with --resume, or choose another --out"
        )
    train, valid, test = load_run_data(config)
    torch.manual_seed(config.seed)
    model = build_model(config.model, train.x.shape[1])
    model.check_data(train.x)  # before anything is written
    if config.train.init_from and not resume:
        load_weights(model, Path(config.train.init_from) / "model.safetensors")
    out.mkdir(parents=True, exist_ok=True)
    save_json(config_to_dict(config), out / "config.json")
    facts = {
        "aevb_version": __version__,
        "data_dim": train.x.shape[1],
        "image_shape": list(train.image_shape) if train.image_shape else None,
        "num_train": len(train),
        "num_valid": len(valid),
        "num_test": len(test),
    }
    save_json(facts, out / "run.json")
    if config.train.inference == "mean-field":
        if resume:
            raise ConfigError("mean-field runs cannot be resumed; train into a new --out folder")
        return _train_mean_field(config, model, out, train, test, facts)
    trainer = build_trainer(config, model, out, progress=progress)
    snapshot_data = spread_subset(valid if len(valid) else train, SNAPSHOT_POINTS)
    snapshots = _snapshots(config, snapshot_data, out, resume)
    if snapshots is not None:
        trainer.callbacks.append(snapshots)
    trainer.fit(train.x, valid.x if len(valid) else None, resume=resume)
    if snapshots is not None:
        snapshots.record(model, trainer.step)
        snapshots.save(out / SNAPSHOTS, labels=snapshot_data.y)
    if len(test):
        facts.update({f"test_{k}": v for k, v in evaluate(model, test.x).items()})
    facts["epochs_trained"] = trainer.epoch
    save_json(facts, out / "run.json")
    run = Run(out, config, model, train.image_shape, facts)
    draw_figures(run, test if len(test) else train)
    write_report(run)
    return run


def _train_mean_field(
    config: RunConfig, model: VAE, out: Path, train: Dataset, test: Dataset, facts: dict
) -> Run:
    """Variational EM with per-example q (seed 003); test examples get q fitted afresh."""
    options = config.train
    _, history = fit_mean_field(
        model,
        train.x,
        epochs=options.epochs,
        batch_size=options.batch_size,
        lr=options.lr,
        local_lr=options.local_lr,
        max_seconds=None if options.max_minutes is None else 60 * options.max_minutes,
        seed=config.seed,
    )
    save_weights(model, out / "model.safetensors")
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    facts.update(inference="mean-field", epochs_trained=len(history))
    facts["train_seconds"] = history[-1]["seconds"] if history else 0.0
    if len(test):  # new data need their own fit: the cost amortization avoids
        fitted = fit_local(model, test.x, init="prior", steps=2000, lr=options.local_lr)
        assert fitted.elbo is not None
        facts.update(test_elbo=float(fitted.elbo.mean()), test_fit_seconds=fitted.seconds)
    save_json(facts, out / "run.json")
    return Run(out, config, model.eval(), train.image_shape, facts)


def _snapshots(config: RunConfig, data: Dataset, out: Path, resume: bool) -> LatentSnapshots | None:
    every = config.train.snapshot_every
    if every == 0:
        return None
    snapshots = LatentSnapshots(data.x, every)
    if resume and (out / SNAPSHOTS).exists():
        snapshots.load(out / SNAPSHOTS)
    return snapshots


def load_run(path: str | Path, *, checkpoint: str = "model.safetensors") -> Run:
    """Rebuild a run's model from its ``config.json`` and load ``checkpoint`` into it."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no run folder at {path}: pass the --out folder of aevb train")
    config = _read_config(path)
    facts = load_json(path / "run.json")
    model = build_model(config.model, int(facts["data_dim"]))
    load_weights(model, path / checkpoint)
    model.eval()
    shape = tuple(facts["image_shape"]) if facts.get("image_shape") else None
    return Run(path, config, model, shape, facts)


def _read_config(path: Path) -> RunConfig:
    raw = load_json(path / "config.json")
    try:
        return config_from_dict(raw, where=str(path / "config.json"))
    except ConfigError as error:
        raise CheckpointError(f"the run's config does not load: {error}") from error

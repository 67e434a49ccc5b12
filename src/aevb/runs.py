"""Run folders: train a model from a :class:`RunConfig` into a folder, and load it back.

A run folder holds ``config.json`` (the validated config: ``aevb train --config`` accepts it),
``run.json`` (data facts and final metrics), the checkpoints and ``metrics.jsonl`` written by
:class:`aevb.Trainer`, ``snapshots.safetensors`` (posterior means during training), the
figures of :mod:`aevb.report` and ``report.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import load_json, load_weights, save_json, save_weights
from .config import (
    RunConfig,
    build_model,
    build_semi_supervised,
    build_trainer,
    config_from_dict,
    config_to_dict,
)
from .data import Dataset, load_dataset, split, with_labels
from .errors import CheckpointError, ConfigError
from .evaluation import evaluate
from .inference import fit_local, fit_mean_field
from .model import VAE
from .priors import VampPrior
from .report import SNAPSHOTS, draw_figures, draw_label_figures, spread_subset, write_report
from .semisupervised import (
    UNLABELLED,
    M1Features,
    SemiSupervisedVAE,
    error_rate,
    labelled_subset,
)
from .semisupervised_train import fit_semi_supervised
from .train import LatentSnapshots

SNAPSHOT_POINTS = 500  # examples whose posterior means are recorded during training


@dataclass
class Run:
    """A trained model with the config and data facts of its run folder."""

    path: Path
    config: RunConfig
    model: VAE | SemiSupervisedVAE
    image_shape: tuple[int, ...] | None
    metrics: dict[str, Any]

    @property
    def data_dim(self) -> int:
        return int(self.metrics["data_dim"])

    @property
    def vae(self) -> VAE:
        """The model as a :class:`aevb.VAE`; an M2 or conditional-VAE run is an error."""
        if not isinstance(self.model, VAE):
            raise ConfigError(
                f"{self.path} holds a {self.config.model.kind} model (labels and style): use "
                "aevb predict, aevb sample or aevb plot with it"
            )
        return self.model


def load_run_data(config: RunConfig) -> tuple[Dataset, Dataset, Dataset]:
    """The run's data, binarized as configured, split into train, valid and test by seed.

    Semi-supervised and conditional runs carry labels (``data.labels``); ``num_labelled``
    then hides all but that many training labels, balanced over classes and drawn by seed.
    """
    data = config.data
    labelled = config.model.kind != "vae"
    dataset = load_dataset(
        data.source, binarize=data.binarize, labels=data.labels if labelled else None
    )
    if labelled and data.labels is None:
        dataset = with_labels(dataset, None)  # the dataset's own labels, or a clear error
    fractions = (data.valid_fraction, data.test_fraction)
    train, valid, test = split(dataset, fractions, seed=config.seed)
    if labelled and data.num_labelled is not None:
        assert train.y is not None
        per_class = data.num_labelled // _num_classes(dataset)
        keep = labelled_subset(train.y, per_class, seed=config.seed)
        hidden = torch.full_like(train.y, UNLABELLED)
        hidden[keep] = train.y[keep]
        train = replace(train, y=hidden)
    return train, valid, test


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
    if config.model.kind != "vae":
        if resume:
            raise ConfigError(f"{config.model.kind} runs cannot be resumed; train into a new --out")
        return _train_semi_supervised(config, out, train, valid, test, progress)
    torch.manual_seed(config.seed)
    model = build_model(config.model, train.x.shape[1])
    model.check_data(train.x)  # before anything is written
    if config.model.pseudo_inputs == "data" and isinstance(model.prior, VampPrior):
        model.prior.initialize_from(train.x)
    if config.train.init_from and not resume:
        load_weights(model, Path(config.train.init_from) / "model.safetensors")
    facts = _start_run_folder(config, out, train, valid, test)
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
        max_seconds=options.max_seconds,
        seed=config.seed,
    )
    _save_fitted(model, out, history)
    facts.update(inference="mean-field", epochs_trained=len(history))
    facts["train_seconds"] = history[-1]["seconds"] if history else 0.0
    if len(test):  # new data need their own fit: the cost amortization avoids
        fitted = fit_local(model, test.x, init="prior", steps=2000, lr=options.local_lr)
        assert fitted.elbo is not None
        facts.update(test_elbo=float(fitted.elbo.mean()), test_fit_seconds=fitted.seconds)
    save_json(facts, out / "run.json")
    return Run(out, config, model.eval(), train.image_shape, facts)


def _train_semi_supervised(
    config: RunConfig, out: Path, train: Dataset, valid: Dataset, test: Dataset, progress: bool
) -> Run:
    """M2 or a conditional VAE (:mod:`aevb.semisupervised`): fit, test error, figures."""
    assert train.y is not None and valid.y is not None and test.y is not None
    num_classes = _num_classes(train, valid, test)
    torch.manual_seed(config.seed)
    features = _m1_features(config, train.x)
    data_dim = train.x.shape[1] if features is None else features.out_dim
    model = build_semi_supervised(config.model, data_dim, num_classes, features)
    model.check_data(train.x, train.y)
    facts = _start_run_folder(
        config,
        out,
        train,
        valid,
        test,
        kind=config.model.kind,
        num_classes=num_classes,
        label_names=list(train.label_names) if train.label_names else None,
        feature_dim=data_dim,
        num_labelled=int((train.y != UNLABELLED).sum()),
    )
    options = config.train
    history = fit_semi_supervised(
        model,
        train.x,
        train.y,
        valid=(valid.x, valid.y) if len(valid) and model.classifier is not None else None,
        epochs=options.epochs,
        batch_size=options.batch_size,
        labelled_per_batch=options.labelled_per_batch,
        alpha=options.alpha,
        beta=options.beta,
        lr=options.lr,
        lr_decay=options.lr_decay,
        clip_grad_norm=options.clip_grad_norm,
        max_seconds=options.max_seconds,
        seed=config.seed,
        progress=progress,
    )
    _save_fitted(model, out, history)
    facts.update(epochs_trained=len(history), train_seconds=history[-1]["seconds"])
    known = test.y != UNLABELLED
    if model.classifier is not None and bool(known.any()):
        facts["test_error"] = error_rate(model, test.x, test.y)
    if bool(known.any()):
        with torch.no_grad():
            bound = torch.cat(
                [
                    model.conditional_elbo(x, y)
                    for x, y in zip(
                        test.x[known].split(1000), test.y[known].split(1000), strict=True
                    )
                ]
            )
        facts["test_conditional_elbo"] = float(bound.mean())
    save_json(facts, out / "run.json")
    run = Run(out, config, model.eval(), train.image_shape, facts)
    if train.image_shape is not None and len(train.image_shape) == 2:
        draw_label_figures(run, test if len(test) else train)
    return run


def _start_run_folder(
    config: RunConfig, out: Path, train: Dataset, valid: Dataset, test: Dataset, **extra: Any
) -> dict[str, Any]:
    """Create ``out`` with ``config.json`` and ``run.json`` (data facts, plus ``extra``)."""
    out.mkdir(parents=True, exist_ok=True)
    save_json(config_to_dict(config), out / "config.json")
    facts = {
        "aevb_version": __version__,
        "data_dim": train.x.shape[1],
        "image_shape": list(train.image_shape) if train.image_shape else None,
        "num_train": len(train),
        "num_valid": len(valid),
        "num_test": len(test),
        **extra,
    }
    save_json(facts, out / "run.json")
    return facts


def _save_fitted(model: torch.nn.Module, out: Path, history: list[dict[str, Any]]) -> None:
    """The weights of a run fitted outside :class:`aevb.Trainer`, and its per-epoch metrics."""
    save_weights(model, out / "model.safetensors")
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))


def _num_classes(*parts: Dataset) -> int:
    """Classes of labelled data: its label names, or the largest label seen plus one."""
    if parts[0].label_names:
        return len(parts[0].label_names)
    return max(int(part.y.max()) for part in parts if part.y is not None and len(part)) + 1


def _m1_features(config: RunConfig, x: torch.Tensor | None = None) -> M1Features | None:
    """M1+M2: the posterior means of the VAE run ``[model] m1`` (standardized on ``x``)."""
    if config.model.m1 is None:
        return None
    m1 = load_run(config.model.m1)
    if not isinstance(m1.model, VAE):
        raise ConfigError(f"[model] m1 = {config.model.m1} must be a VAE run (kind = vae)")
    return M1Features(m1.model, x)


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
    model: VAE | SemiSupervisedVAE
    if config.model.kind == "vae":
        model = build_model(config.model, int(facts["data_dim"]))
    else:
        features = _m1_features(config)
        dim, classes = facts["feature_dim"], facts["num_classes"]
        model = build_semi_supervised(config.model, dim, classes, features)
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

"""Run folders: train a model from a :class:`RunConfig` into a folder, and load it back.

A run folder holds ``config.json`` (the validated config: ``aevb train --config`` accepts it),
``run.json`` (data facts and final metrics), the checkpoints and ``metrics.jsonl`` written by
:class:`aevb.Trainer`, ``snapshots.safetensors`` (posterior means during training), the
figures of :mod:`aevb.viz.report` and ``report.html``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from .._version import __version__
from ..data.dataset import Dataset
from ..data.images import as_image_shape
from ..data.ondisk import Rows
from ..data.text import Vocabulary
from ..errors import CheckpointError, ConfigError
from ..evaluation.metrics import collapse_metrics, evaluate
from ..inference.local import fit_local, per_example_elbo
from ..models.per_example import PerExampleVAE
from ..models.priors import VampPrior
from ..models.semisupervised import (
    UNLABELLED,
    M1Features,
    SemiSupervisedVAE,
    error_rate,
)
from ..models.vae import VAE
from ..nn.utils import checked_device
from ..training.checkpoint import (
    load_json,
    load_state_into,
    load_tensors,
    load_weights,
    save_json,
    save_weights,
    verify,
    write_manifest,
)
from ..training.distributed import join_from_environment, rank_and_size
from ..training.recipes import m2_objective, validation_error
from ..training.samplers import BatchSampler, LabelledMix, Shuffled
from ..training.trainer import Objective, Trainer
from ..viz.report import SNAPSHOTS, draw_figures, draw_label_figures, write_report
from .build import build_model, build_semi_supervised, build_trainer
from .callbacks import snapshots_of, tensorboard_of
from .codes import vq_steps
from .config import RunConfig, config_from_dict, config_to_dict
from .data import load_run_data, num_classes
from .folders import check_out_folder, clear_run, locked
from .text import VOCABULARY, run_vocabulary, vocabulary_digest


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

    @functools.cached_property
    def vocabulary(self) -> Vocabulary | None:
        """A text run's vocabulary (``None`` for other data), checked against the run."""
        return run_vocabulary(self.path, self.metrics.get("vocab_sha256"))

    @property
    def vae(self) -> VAE:
        """The model as a :class:`aevb.VAE`; an M2 or conditional-VAE run is an error."""
        if not isinstance(self.model, VAE):
            raise ConfigError(
                f"{self.path} holds a {self.config.model.kind} model (labels and style): use "
                "aevb predict, aevb sample or aevb plot with it"
            )
        return self.model


@dataclass
class _Plan:
    """What one model kind hands the one Trainer, and what it reports after training."""

    model: VAE | SemiSupervisedVAE  # what the run holds (Run.model)
    trainable: nn.Module  # what the Trainer fits: the model, or per-example q around it
    train: tuple[Rows, ...]
    valid: Rows | None = None
    objective: Objective | None = None  # None: the ELBO / IWAE / semi-amortized of [train]
    sampler: BatchSampler | None = None
    epoch_metrics: Callable[[Any], dict[str, float]] | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # kind-specific data facts
    finish: Callable[[], dict[str, Any]] | None = None  # after training: more facts


def train_run(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> Run:
    """Train the model ``config`` describes into the folder ``out``; return the run.

    Every kind (VAE, M2, conditional VAE, mean-field, semi-amortized) is fitted by the one
    :class:`aevb.Trainer`. With ``resume=True`` training continues from ``out``'s last
    checkpoint; only the ``train`` section may differ from the saved config (e.g. more
    epochs), and ``config.json`` and ``run.json`` change only once it has finished.
    ``out`` must be new or empty unless ``overwrite=True`` (see :mod:`aevb.cli.folders`);
    one process at a time trains into it.
    """
    out = Path(out)
    check_out_folder(out, resume=resume, overwrite=overwrite)
    device = checked_device(config.train.device)  # before anything is written
    join_from_environment(device)  # under torchrun: one of WORLD_SIZE processes
    if resume:
        saved = _read_config(out)
        if (saved.data, saved.model, saved.seed) != (config.data, config.model, config.seed):
            raise ConfigError(
                f"{out} was trained with other data/model options; resume it with the same "
                "ones (only [train] options may change), or train into a new --out folder"
            )
    digest = load_json(out / "run.json").get("vocab_sha256") if resume else None
    vocabulary = run_vocabulary(out, digest) if resume else None
    train, valid, test = load_run_data(config, vocabulary)
    torch.manual_seed(config.seed)
    plan = _plan(config, train, valid, test, resume)  # checks the data: nothing written yet
    if rank_and_size()[0] > 0:  # another process of a torchrun: trains its share, writes nothing
        _trainer(config, plan, out, False, False).fit(plan.train, plan.valid, resume=resume)
        return Run(out, config, plan.model.eval(), train.image_shape, {})
    with locked(out):
        if overwrite:
            clear_run(out)
        return _fit(config, out, plan, (train, valid, test), resume, progress, verbose)


def _trainer(config: RunConfig, plan: _Plan, out: Path, progress: bool, verbose: bool) -> Trainer:
    """The Trainer of ``plan``: the same on every rank (records with the same keys)."""
    return build_trainer(
        config,
        plan.trainable,
        out,
        objective=plan.objective,
        sampler=plan.sampler,
        epoch_metrics=plan.epoch_metrics,
        progress=progress,
        verbose=verbose,
    )


def _fit(
    config: RunConfig,
    out: Path,
    plan: _Plan,
    data: tuple[Dataset, Dataset, Dataset],
    resume: bool,
    progress: bool,
    verbose: bool,
) -> Run:
    """Train ``plan`` into ``out`` (locked), then test, draw and report."""
    train, valid, test = data
    facts = _run_facts(train, valid, test, **plan.facts)
    if train.vocabulary is not None:  # a resumed run reads its own (run_vocabulary)
        if not resume:
            train.vocabulary.save(out / VOCABULARY)
        facts["vocab_sha256"] = vocabulary_digest(out / VOCABULARY)
    if not resume:  # a resumed run's files change only once it has finished
        save_json(config_to_dict(config), out / "config.json")
        save_json(facts, out / "run.json")
    trainer = _trainer(config, plan, out, progress, verbose)
    snapshots = snapshots_of(config, plan.model, train, valid, out, resume)
    if snapshots is not None:
        trainer.callbacks.append(snapshots[0])
    board = tensorboard_of(config, plan.model, train, valid, out)
    if board is not None:
        trainer.callbacks.append(board)
    try:
        trainer.fit(plan.train, plan.valid, resume=resume)
    finally:
        if board is not None:
            board.close()
    if snapshots is not None:
        snapshots[0].record(cast(VAE, plan.model), trainer.step)
        snapshots[0].save(out / SNAPSHOTS, labels=snapshots[1].y)
    facts["epochs_trained"] = trainer.epoch
    if plan.finish is not None:  # e.g. a VQ-VAE's prior refitted to its codes
        facts.update(plan.finish())
        save_weights(plan.model, out / "model.safetensors")
        write_manifest(out, trainer.epoch)  # what load_run verifies the weights against
    facts["train_seconds"] = sum(record["seconds"] for record in trainer.history)
    if len(test):
        facts.update(_test_metrics(config, plan.model, test))
    save_json(config_to_dict(config), out / "config.json")
    save_json(facts, out / "run.json")
    run = Run(out, config, plan.model.eval(), train.image_shape, facts)
    _draw(run, test if len(test) else train)
    return run


def _plan(config: RunConfig, train: Dataset, valid: Dataset, test: Dataset, resume: bool) -> _Plan:
    """Build the model of ``config`` and what the Trainer needs to fit it."""
    if config.model.kind != "vae":
        return _semi_supervised_plan(config, train, valid, num_classes(train, valid, test))
    vocab_size = len(train.vocabulary) if train.vocabulary is not None else None
    shapes = (train.image_shape, vocab_size, train.sequence_shape)
    model = build_model(config.model, train.x.shape[1], *shapes)
    for part in (train, valid, test):  # all before training (bad rows named as in the file),
        model.check_data(part.x, rows=part.rows)  # and before the pseudo-inputs draw
    vamp = [m for m in model.prior.modules() if isinstance(m, VampPrior)]  # a hierarchy's top
    if config.model.pseudo_inputs == "data" and vamp:
        vamp[0].initialize_from(train.x)
    if config.train.init_from and not resume:
        load_weights(model, Path(config.train.init_from) / "model.safetensors")
    if config.train.inference == "mean-field":  # variational EM with a q_i per example
        return _Plan(
            model,
            PerExampleVAE(model.decoder, model.prior, len(train)),
            (train.x,),
            objective=per_example_elbo,
            sampler=Shuffled(config.train.batch_size, with_index=True),
            facts={"inference": "mean-field"},
        )
    plan = _Plan(model, model, (train.x,), valid.x if len(valid) else None)
    if config.model.body == "rnn":  # collapse is the question of sequence VAEs: watch it
        watched = (valid if len(valid) else train).in_memory[:1000]
        plan.epoch_metrics = lambda model: collapse_metrics(model, watched)
    if config.model.posterior == "vq":
        plan.epoch_metrics, plan.finish = vq_steps(config, model, train.x, plan.valid, test.x)
    return plan


def _semi_supervised_plan(
    config: RunConfig, train: Dataset, valid: Dataset, num_classes: int
) -> _Plan:
    """M2 or a conditional VAE (:mod:`aevb.models.semisupervised`) on mixed minibatches."""
    assert train.y is not None and valid.y is not None
    x = train.in_memory
    features = _m1_features(config, x)
    data_dim = x.shape[1] if features is None else features.out_dim
    model = build_semi_supervised(config.model, data_dim, num_classes, features, train.image_shape)
    model.check_data(x, train.y)
    options = config.train
    return _Plan(
        model,
        model,
        (x, train.y),
        objective=m2_objective(train.y, alpha=options.alpha, num_samples=options.num_samples),
        sampler=LabelledMix(options.batch_size, options.labelled_per_batch),
        epoch_metrics=validation_error(valid.in_memory, valid.y) if len(valid) else None,
        facts={
            "kind": config.model.kind,
            "num_classes": num_classes,
            "label_names": list(train.label_names) if train.label_names else None,
            "feature_dim": data_dim,
            "num_labelled": int((train.y != UNLABELLED).sum()),
        },
    )


def _test_metrics(config: RunConfig, model: nn.Module, test: Dataset) -> dict[str, Any]:
    """Held-out figures of each kind, in nats (and the test error of M2)."""
    if isinstance(model, SemiSupervisedVAE):
        assert test.y is not None
        known = test.y != UNLABELLED
        facts: dict[str, Any] = {}
        if model.classifier is not None and bool(known.any()):
            facts["test_error"] = error_rate(model, test.in_memory, test.y)
        if bool(known.any()):
            with torch.no_grad():
                x = test.in_memory[known].split(1000)
                parts = zip(x, test.y[known].split(1000), strict=True)
                bound = torch.cat([model.conditional_elbo(x, y) for x, y in parts])
            facts["test_conditional_elbo"] = float(bound.mean())
        return facts
    assert isinstance(model, VAE)
    if config.train.inference == "mean-field":  # new data need their own fit: what
        fitted = fit_local(  # amortization saves
            model,
            test.in_memory,
            init="prior",
            steps=config.train.local_steps,
            lr=config.train.local_lr,
        )
        assert fitted.elbo is not None
        return {"test_elbo": float(fitted.elbo.mean()), "test_fit_seconds": fitted.seconds}
    return {f"test_{k}": v for k, v in evaluate(model, test.x).items()}


def _draw(run: Run, data: Dataset) -> None:
    """The run's figures and report (none yet for mean-field runs)."""
    if isinstance(run.model, SemiSupervisedVAE):
        if run.image_shape is not None:
            draw_label_figures(run, data)
    elif run.config.train.inference != "mean-field":
        draw_figures(run, data)
        write_report(run)


def _run_facts(train: Dataset, valid: Dataset, test: Dataset, **extra: Any) -> dict[str, Any]:
    """What ``run.json`` records of the data (plus ``extra``), before training."""
    return {
        "aevb_version": __version__,
        "data_dim": train.x.shape[1],
        "image_shape": list(train.image_shape) if train.image_shape else None,
        "num_train": len(train),
        "num_valid": len(valid),
        "num_test": len(test),
        **({"vocab_size": len(train.vocabulary)} if train.vocabulary is not None else {}),
        **({"sequence_shape": list(train.sequence_shape)} if train.sequence_shape else {}),
        **({"data_notes": notes} if (notes := [*train.notes, *valid.notes, *test.notes]) else {}),
        **extra,
    }


def _m1_features(config: RunConfig, x: torch.Tensor | None = None) -> M1Features | None:
    """M1+M2: the posterior means of the VAE run ``[model] m1`` (standardized on ``x``)."""
    if config.model.m1 is None:
        return None
    m1 = load_run(config.model.m1)
    if not isinstance(m1.model, VAE):
        raise ConfigError(f"[model] m1 = {config.model.m1} must be a VAE run (kind = vae)")
    return M1Features(m1.model, x)


def load_run(path: str | Path, *, checkpoint: str = "model.safetensors") -> Run:
    """Rebuild a run's model from its ``config.json`` and load ``checkpoint`` into it."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no run folder at {path}: pass the --out folder of aevb train")
    config = _read_config(path)
    facts = load_json(path / "run.json")
    model: VAE | SemiSupervisedVAE
    shape = as_image_shape(facts.get("image_shape"))
    with torch.random.fork_rng(devices=[]):  # weights not in the checkpoint: seeded, as trained
        torch.manual_seed(config.seed)
        if config.model.kind == "vae":
            vocab_size, steps = facts.get("vocab_size"), facts.get("sequence_shape")
            sequence_shape = tuple(steps) if steps else None
            model = build_model(
                config.model, int(facts["data_dim"]), shape, vocab_size, sequence_shape
            )
        else:
            features = _m1_features(config)
            dim, classes = facts["feature_dim"], facts["num_classes"]
            model = build_semi_supervised(config.model, dim, classes, features, shape)
    verify(path / checkpoint)
    state = load_tensors(path / checkpoint)
    saved: torch.nn.Module = model
    if "loc.weight" in state and isinstance(model, VAE):
        # mean-field: the decoder, the prior and the q_i of the training examples
        saved = PerExampleVAE(model.decoder, model.prior, int(facts["num_train"]))
    load_state_into(saved, state, path / checkpoint)
    model.eval()
    return Run(path, config, model, as_image_shape(facts.get("image_shape")), facts)


def _read_config(path: Path) -> RunConfig:
    raw = load_json(path / "config.json")
    try:
        return config_from_dict(raw, where=str(path / "config.json"))
    except ConfigError as error:
        raise CheckpointError(f"the run's config does not load: {error}") from error

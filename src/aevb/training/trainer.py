"""The one training loop: minibatch stochastic gradient ascent on an objective (Kingma &
Welling 2014, Algorithm 1) for every model kind.

What varies between models is passed in, not subclassed: the **objective**
(``objective(model, *batch, beta=...) -> record`` with ``.loss`` and ``.per_example()``:
:func:`aevb.elbo`, :func:`aevb.iwae_bound`, :func:`aevb.semi_amortized_elbo`, the M2
objective, :func:`aevb.per_example_elbo`) and the **batch sampler** (what an epoch of
minibatches is: :class:`~aevb.training.samplers.Shuffled`, M2's
:class:`~aevb.training.samplers.LabelledMix`). Checkpoints, bit-exact resume, the NaN guard,
early stopping, callbacks, progress and data parallelism over processes
(:mod:`aevb.training.distributed`) are written once, here; ``bench/train_throughput.py``
measures its speed against hand-written loops.

A run folder holds ``model.safetensors`` (the best validation score, or the last epoch),
``last.safetensors``, ``trainer.safetensors`` (all that resume reads, in one file: weights,
optimizers, sampler, random states, counters), ``trainer.json`` and ``metrics.jsonl``.

Longer than 400 lines because the loop, its checkpoints and resume share the trainer's
state; splitting them would pass that state around instead.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.ondisk import Rows
from ..errors import ConfigError, TrainingDiverged
from ..evaluation.metrics import evaluate
from ..inference.objectives import KL_SCHEDULES, ELBOTerms, Terms, elbo, kl_annealing
from ..models.vae import VAE, checked_inputs
from ..nn.utils import checked_device, device_of
from .aggressive import Aggressive
from .checkpoint import (
    load_json,
    load_metadata,
    load_state_into,
    load_tensors,
    load_weights,
    optimizer_from_files,
    optimizer_to_files,
    save_json,
    save_jsonl,
    save_tensors,
    save_weights,
    section,
    write_manifest,
)
from .distributed import (
    average_gradients,
    from_rank_zero,
    local_device,
    rank_and_size,
    sum_over_ranks,
)
from .optimizers import OptimizerFactory, adam, make_optimizers
from .progress import diverged, epoch_line
from .samplers import BatchSampler, Data, Shuffled

Objective = Callable[..., Terms]
PRECISIONS = ("float32", "bfloat16")
# checkpoint names of the optimizer of dense parameters and of sparse per-example ones
_OPTIMIZER_NAMES = ("optimizer", "sparse_optimizer")


class Trainer:
    """Fit a model by stochastic gradient ascent on an objective, with validation.

    Args:
        model: e.g. :class:`aevb.VAE`, :class:`aevb.SemiSupervisedVAE` or
            :class:`aevb.PerExampleVAE`; whatever ``objective`` takes.
        objective: ``objective(model, *batch, beta=...)`` returning a record with ``.loss``
            and ``.per_example()`` (e.g. :class:`aevb.ELBOTerms`); configure variants with
            ``functools.partial(aevb.elbo, stl=True, num_samples=5)``.
        sampler: what one epoch of minibatches is (``None``: every example once, in a new
            random order, ``batch_size`` at a time); see :mod:`aevb.training.samplers`.
        optimizer: optimizer class or factory, called as ``optimizer(params, lr=lr)`` (default:
            :func:`aevb.training.optimizers.adam`, Adam with the fused kernel).
        lr: learning rate; ``lr_decay`` multiplies it after every epoch.
        sparse_lr: learning rate of parameters with sparse gradients (per-example tables,
            ``nn.Embedding(sparse=True)``), which ``torch.optim.SparseAdam`` updates row by
            row (``None``: ``lr``).
        batch_size: examples per gradient step of the default sampler.
        max_epochs: passes over the training data.
        patience: stop after this many epochs without a better validation score (the
            objective's own bound on ``valid``: the ELBO, or IWAE_k for ``iwae_bound``; or
            ``validate``'s score; ``None``: never stop early). The best weights are restored
            at the end.
        beta: KL weight; ``kl_warmup_epochs`` anneals it from 0 over that many epochs, by
            ``kl_schedule``: ``"linear"``, ``"sigmoid"`` or ``"cyclical"`` (``kl_cycles``
            cycles of that length; :func:`aevb.inference.objectives.kl_annealing`).
        aggressive_steps: aggressive inference-network training (He et al. 2019: 100): up to
            this many encoder steps before each decoder step, until I(x; z) on ``valid``
            stops rising (:mod:`aevb.training.aggressive`); 0: off.
        clip_grad_norm: clip the gradient's global norm to this value (``None``: no clipping).
        max_seconds: wall-time budget of ``fit``: no epoch starts that would end past it,
            judged by the length of the last epoch (the first one always runs); in a
            multi-process run rank 0's clock decides for every rank.
        seed: seeds parameter-free randomness (shuffling, z samples) for reproducible runs.
        run_dir: folder for checkpoints and metrics (``None``: keep nothing on disk).
        progress: show a live bar with the batch terms, and one line per epoch.
        verbose: the epoch lines show every term (also those implied by the others).
        precision: ``"bfloat16"``: the objective under bfloat16 autocast (matrix products in
            bfloat16, densities and sums in float32: :func:`aevb.models.vae.float32_outputs`).
        compile: ``torch.compile`` the objective, forward and backward (10-20 s once).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``None``: where the model is).
        callbacks: called as ``callback(trainer)`` when ``fit`` starts and after every
            optimizer step (e.g. :class:`LatentSnapshots`); one with an ``epoch_end(trainer)``
            method is also called after every epoch, once its record is in ``history``
            (e.g. :class:`aevb.training.tensorboard.TensorBoard`).
        validate: ``validate(model) -> float``, a score to maximize computed after every
            epoch (recorded as ``valid_score``); when given, it replaces the validation
            bound for early stopping and model selection (e.g. the predictive likelihood of
            held-out table entries, :func:`aevb.tabular.imputation.heldout_log_likelihood`).
        epoch_metrics: ``epoch_metrics(model) -> {name: value}``, recorded after every epoch
            but not used to select the model (e.g. M2's validation error).

    Example:
        >>> trainer = Trainer(model, lr=1e-3, max_epochs=50, patience=5)  # doctest: +SKIP
        >>> history = trainer.fit(train_x, valid_x)                          # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        objective: Objective = elbo,
        sampler: BatchSampler | None = None,
        optimizer: OptimizerFactory = adam,
        lr: float = 1e-3,
        lr_decay: float = 1.0,
        sparse_lr: float | None = None,
        batch_size: int = 100,
        max_epochs: int = 100,
        patience: int | None = None,
        beta: float = 1.0,
        kl_warmup_epochs: int = 0,
        kl_schedule: str = "linear",
        kl_cycles: int = 4,
        aggressive_steps: int = 0,
        clip_grad_norm: float | None = None,
        max_seconds: float | None = None,
        seed: int = 0,
        run_dir: str | Path | None = None,
        progress: bool = True,
        verbose: bool = False,
        precision: str = "float32",
        compile: bool = False,
        device: str | torch.device | None = None,
        eval_batch_size: int = 1000,
        callbacks: Sequence[Callable[[Trainer], None]] = (),
        validate: Callable[[Any], float] | None = None,
        epoch_metrics: Callable[[Any], dict[str, float]] | None = None,
    ) -> None:
        if not (batch_size >= 1 and max_epochs >= 0 and lr > 0):  # written so that NaN fails
            raise ConfigError(f"need batch_size >= 1, max_epochs >= 0, lr > 0: {batch_size}, {lr}")
        if kl_schedule not in KL_SCHEDULES or kl_cycles < 1:
            raise ConfigError(
                f"kl_schedule must be one of {KL_SCHEDULES} and kl_cycles >= 1, got "
                f"{kl_schedule!r}, {kl_cycles}"
            )
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if device is not None:
            model.to(local_device(checked_device(device)))
        self.precision = precision
        self.model, self.objective = model, objective
        self._step_objective = torch.compile(objective) if compile else objective
        self.sampler: BatchSampler = sampler if sampler is not None else Shuffled(batch_size)
        self.optimizers = make_optimizers(model, optimizer, lr, sparse_lr)
        self.learning_rates = (lr, sparse_lr or lr)  # as asked; the optimizers decay them
        self.lr_decay, self.batch_size, self.max_epochs = lr_decay, batch_size, max_epochs
        self.patience, self.beta, self.kl_warmup_epochs = patience, beta, kl_warmup_epochs
        self.kl_schedule, self.kl_cycles = kl_schedule, kl_cycles
        self._aggressive = (
            Aggressive(model, max_steps=aggressive_steps) if aggressive_steps > 0 else None
        )
        self.rank, self.world = rank_and_size()  # one process: (0, 1)
        if self.world > 1 and len(self.optimizers) > 1:
            raise ConfigError("per-example (sparse) parameters are not trained over processes")
        # only rank 0 prints and writes
        self.clip_grad_norm, self.seed, self.progress = (
            clip_grad_norm,
            seed,
            progress and not self.rank,
        )
        self.verbose = verbose
        self.max_seconds = max_seconds
        self.eval_batch_size, self.callbacks = eval_batch_size, list(callbacks)
        self.validate, self.epoch_metrics = validate, epoch_metrics
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.epoch = self.step = self.bad_epochs = 0
        self.best_valid = -math.inf
        self.history: list[dict[str, Any]] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self._generator = torch.Generator()
        self._clock = (time.perf_counter(), 0)
        self._examples = 0

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of the dense parameters (all of them, for most models)."""
        return self.optimizers[0]

    # -- the loop ---------------------------------------------------------------------------

    def fit(
        self,
        train: Rows | Data,
        valid: Rows | None = None,
        *,
        resume: bool = False,
    ) -> list[dict[str, Any]]:
        """Train until ``max_epochs`` or early stopping; return the per-epoch history.

        Args:
            train: ``(n, *event)`` training data, or a tuple of tensors with examples in rows
                that the sampler reads (M2: ``(x, y)`` with -1 for unknown labels).
            valid: ``(m, *event)`` validation data for early stopping and model selection.
            resume: continue from the state saved in ``run_dir`` (bit-identical to an
                uninterrupted run on the same machine and thread count).

        Raises:
            DataError: the data do not fit the model's likelihood (shape, NaN, support).
            TrainingDiverged: a term became NaN/inf; the last good checkpoint is kept.
        """
        data: Data = train if isinstance(train, tuple) else (train,)
        if valid is not None and (len(data) > 1 or getattr(self.sampler, "with_index", False)):
            raise ConfigError(
                "valid= is scored by the objective on x alone (ELBO, IWAE); this objective "
                "needs labels or example indices: pass epoch_metrics= or validate= instead "
                "(e.g. aevb.training.recipes.validation_error(x, y) for M2)"
            )
        data, valid = checked_inputs(self.model, data, valid)
        if self._aggressive is not None and (valid is None or self.world > 1):
            raise ConfigError(
                "aggressive training ends when I(x; z) on the validation data stops rising: "
                "give valid data, and train it in one process"
            )
        steps_per_epoch = self.sampler.num_steps(data)
        if resume:
            self._load_state()
            if self._aggressive is not None:
                self._aggressive.restore(self.history)
        else:
            torch.manual_seed(self.seed)
            self._generator.manual_seed(self.seed)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        warmup_steps = self.kl_warmup_epochs * steps_per_epoch
        for callback in self.callbacks:
            callback(self)
        started = time.perf_counter()
        self._clock = (started, self.epoch)  # for the elapsed time and ETA of progress lines
        if self.progress and (valid is not None or self.validate is not None):
            kept = self.run_dir / "model.safetensors" if self.run_dir is not None else "memory"
            tqdm.write(f"(* marks a new best validation score; its weights are kept in {kept})")
        while self.epoch < self.max_epochs and not self._should_stop(valid):
            if self._out_of_time(started):
                break
            start = time.perf_counter()
            record = self._train_epoch(data, warmup_steps, steps_per_epoch)
            if valid is not None:
                # validation needs an ELBO-like record (.elbo, .log_px_z, .kl) and a VAE-like model
                objective = cast(Callable[..., ELBOTerms], self.objective)
                scores = evaluate(cast(VAE, self.model), valid, self.eval_batch_size, objective)
                record.update(_prefixed("valid", scores))
                if self._aggressive is not None:
                    record.update(self._aggressive.end_epoch(self.model, valid))
            self.model.eval()
            if self.validate is not None:
                record["valid_score"] = self.validate(self.model)
            if self.epoch_metrics is not None:
                record.update(self.epoch_metrics(self.model))
            if self.world > 1:  # rank 0's figures decide early stopping everywhere
                floats = sorted(k for k, v in record.items() if isinstance(v, float))
                agreed = from_rank_zero(
                    torch.tensor([record[k] for k in floats], dtype=torch.float64)
                )
                record.update(zip(floats, agreed.tolist(), strict=True))
            record["seconds"] = time.perf_counter() - start
            self.epoch += 1
            for optimizer in self.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] *= self.lr_decay
            self._end_epoch(record)
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        self.model.eval()
        return self.history

    def _out_of_time(self, started: float) -> bool:
        """Would the next epoch, as long as the last one, end past ``max_seconds``? Rank 0's
        clock decides for every rank: ranks that disagreed would leave one waiting in an
        all_reduce for an epoch the others never start."""
        if self.max_seconds is None:
            return False
        last = self.history[-1]["seconds"] if self.history else 0.0
        out = time.perf_counter() - started + last > self.max_seconds
        if self.world > 1:
            out = bool(from_rank_zero(torch.tensor([float(out)]))[0])
        return out

    def _train_epoch(self, data: Data, warmup_steps: int, steps: int) -> dict[str, Any]:
        self.model.train()
        device = device_of(self.model)
        sums: dict[str, torch.Tensor] = {}  # float64 sums on the device: no sync per step
        counts: dict[str, int] = {}
        beta = self.beta
        self._examples = 0  # rows of data seen this epoch, for the progress line
        bar = tqdm(
            total=steps,
            desc=f"epoch {self.epoch + 1}/{self.max_epochs}",
            leave=False,
            disable=None if self.progress else True,  # None: no bar when not a terminal
        )
        for batch in self.sampler.epoch(data, self._generator):
            batch = tuple(
                part[self.rank :: self.world].to(device, non_blocking=True) for part in batch
            )
            self._examples += sum(part.shape[0] for part in batch if part.dim() > 1)
            beta = self.beta * kl_annealing(
                self.step, warmup_steps, self.kl_schedule, self.kl_cycles
            )
            aggressive = self._aggressive is not None and self._aggressive.active
            if aggressive:  # the encoder catches up first; then the decoder's step
                self._encoder_steps(data[0], beta)
            with self._autocast(device):
                terms = self._step_objective(self.model, *batch, beta=beta)
            loss = terms.loss
            finite = bool(torch.isfinite(loss))
            if self.world > 1:  # one rank's NaN stops every rank (none waits in all_reduce)
                finite = not bool(sum_over_ranks(torch.tensor(float(not finite))))
            if not finite:
                bar.close()
                raise TrainingDiverged(diverged(terms, self.epoch, self.step, self.run_dir))
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if aggressive:
                cast(Aggressive, self._aggressive).only_decoder()
            if self.world > 1:
                average_gradients(self.model, batch[0].shape[0])
            if self.clip_grad_norm is not None:  # dense parameters: per-example rows are apart
                dense = [p for group in self.optimizer.param_groups for p in group["params"]]
                nn.utils.clip_grad_norm_(dense, self.clip_grad_norm)
            for optimizer in self.optimizers:
                optimizer.step()
            self.step += 1
            for callback in self.callbacks:
                callback(self)
            with torch.no_grad():
                for name, value in terms.per_example().items():
                    sums[name] = sums.get(name, 0.0) + value.detach().double().sum()
                    counts[name] = counts.get(name, 0) + value.numel()
            bar.update()
            if self.progress and self.step % 10 == 0:
                shown = list(terms.per_example().items())[:3]
                bar.set_postfix({k: f"{v.mean():.2f}" for k, v in shown if v.numel()})
        bar.close()
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "beta": beta,
        }
        for name, total in sums.items():
            if self.world > 1:  # the epoch's averages over every rank's rows
                total = sum_over_ranks(total)
                counts[name] = int(sum_over_ranks(torch.tensor(counts[name])))
            record[f"train_{name}"] = float(total) / counts[name] if counts[name] else None
        return record

    def _autocast(self, device: torch.device) -> torch.autocast:
        low = self.precision == "bfloat16"
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=low)

    def _encoder_steps(self, x: Rows, beta: float) -> None:
        aggressive, device = cast(Aggressive, self._aggressive), device_of(self.model)

        def step(batch: torch.Tensor) -> torch.Tensor:
            batch = batch.to(device)
            with self._autocast(device):
                loss = self._step_objective(self.model, batch, beta=beta).loss
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            aggressive.only_encoder()
            for optimizer in self.optimizers:
                optimizer.step()
            return loss

        aggressive.encoder_steps(step, x, self.batch_size, self._generator)

    def _should_stop(self, valid: Rows | None) -> bool:
        has_valid = valid is not None or self.validate is not None
        return has_valid and self.patience is not None and self.bad_epochs >= self.patience

    def _end_epoch(self, record: dict[str, Any]) -> None:
        key = "valid_score" if "valid_score" in record else "valid_elbo"
        has_valid = key in record
        improved = not has_valid or record[key] > self.best_valid
        if has_valid and improved:
            self.best_valid = record[key]
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        # Without validation the best model is the last one: no copy to keep.
        if not has_valid:
            self._best_state = None
        elif improved:
            self._best_state = copy.deepcopy(self.model.state_dict())
        self.history.append(record)
        for callback in self.callbacks:
            getattr(callback, "epoch_end", lambda trainer: None)(self)
        if self.progress:
            line = epoch_line(record, self.max_epochs, self._clock, self._examples, self.verbose)
            tqdm.write(line + ("  *" if improved and has_valid else ""))
        if self.run_dir is not None and self.rank == 0:
            self._save_state(improved)

    # -- checkpoints -------------------------------------------------------------------------

    def _save_state(self, improved: bool) -> None:
        """Write the checkpoint. Everything resume reads (weights, optimizers, sampler, random
        states, counters) goes into one file, ``trainer.safetensors``, replaced atomically, so
        a kill between files cannot pair one epoch's weights with another's state; the other
        files are for people and for :func:`aevb.load_run`."""
        assert self.run_dir is not None
        save_weights(self.model, self.run_dir / "last.safetensors")
        if improved:
            save_weights(self.model, self.run_dir / "model.safetensors")
        tensors = {
            f"model.{k}": v.detach().contiguous() for k, v in self.model.state_dict().items()
        }
        state: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "best_valid": self.best_valid if math.isfinite(self.best_valid) else None,
            "bad_epochs": self.bad_epochs,
            "learning_rates": list(self.learning_rates),
        }
        for name, optimizer in zip(_OPTIMIZER_NAMES, self.optimizers, strict=False):
            slots, state[name] = optimizer_to_files(optimizer)
            tensors.update({f"{name}.{k}": v for k, v in slots.items()})
        tensors.update({f"sampler.{k}": v for k, v in self.sampler.state_dict().items()})
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.shuffle"] = self._generator.get_state()
        if torch.cuda.is_initialized():
            for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = cuda_state
        state["history"] = self.history
        save_tensors(tensors, self.run_dir / "trainer.safetensors", {"state": json.dumps(state)})
        save_json(state, self.run_dir / "trainer.json")
        save_jsonl(self.history, self.run_dir / "metrics.jsonl")
        write_manifest(self.run_dir, self.epoch)

    def _load_state(self) -> None:
        if self.run_dir is None:
            raise ConfigError("resume=True needs the run_dir the interrupted run wrote to")
        path = self.run_dir / "trainer.safetensors"
        tensors, metadata = load_tensors(path), load_metadata(path)
        if "state" in metadata:
            state = json.loads(metadata["state"])
            load_state_into(self.model, section(tensors, "model"), path)
        else:  # a run folder written before the state moved into one file
            state = load_json(self.run_dir / "trainer.json")
            load_weights(self.model, self.run_dir / "last.safetensors")
        for name, optimizer in zip(_OPTIMIZER_NAMES, self.optimizers, strict=False):
            optimizer_from_files(optimizer, section(tensors, name), state[name])
        # A learning rate asked for anew (e.g. lower, after a divergence) replaces the saved,
        # decayed one; an unchanged one keeps the saved value, so resuming is exact.
        saved = state.get("learning_rates", self.learning_rates)
        for optimizer, lr, old in zip(self.optimizers, self.learning_rates, saved, strict=False):
            if lr != old:
                optimizer.param_groups[0]["lr"] = lr
        self.sampler.load_state_dict(section(tensors, "sampler"))
        if (self.run_dir / "model.safetensors").exists():
            self._best_state = load_tensors(self.run_dir / "model.safetensors")
        torch.set_rng_state(tensors["rng.torch"])
        self._generator.set_state(tensors["rng.shuffle"])
        cuda_states = [v for k, v in sorted(tensors.items()) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
        self.epoch, self.step = state["epoch"], state["step"]
        self.bad_epochs, self.history = state["bad_epochs"], state["history"]
        best_valid = state["best_valid"]
        self.best_valid = -math.inf if best_valid is None else best_valid


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in values.items()}

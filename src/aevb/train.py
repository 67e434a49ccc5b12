"""The fitting loop: minibatch AEVB (Kingma & Welling 2014, Algorithm 1).

In-memory tensors are shuffled and sliced per batch (no per-example Python work), so the
trainer runs as fast as a hand-written loop (``bench/train_throughput.py`` measures it).

A run folder holds::

    model.safetensors     weights with the best validation ELBO (or the last, without one)
    last.safetensors      weights after the last finished epoch
    trainer.safetensors   optimizer moments and random-number-generator states
    trainer.json          epoch, step, early-stopping state, optimizer settings, history
    metrics.jsonl         one line of metrics per epoch
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (
    load_json,
    load_tensors,
    load_weights,
    optimizer_from_files,
    optimizer_to_files,
    save_json,
    save_tensors,
    save_weights,
)
from .errors import TrainingDiverged
from .evaluation import device_of, encode_means, evaluate
from .model import VAE
from .objectives import ELBOTerms, elbo, linear_warmup

Objective = Callable[..., ELBOTerms]
OptimizerFactory = Callable[..., torch.optim.Optimizer]


class Trainer:
    """Fit a model by stochastic gradient ascent on an objective, with validation.

    Args:
        model: e.g. :class:`aevb.VAE`; must have ``encode``, ``decode``, ``prior``.
        objective: ``objective(model, x, beta=...) -> ELBOTerms``; configure variants with
            ``functools.partial(aevb.elbo, stl=True, num_samples=5)``.
        optimizer: optimizer class or factory, called as ``optimizer(params, lr=lr)``.
        lr: learning rate; ``lr_decay`` multiplies it after every epoch.
        batch_size: examples per gradient step.
        max_epochs: passes over the training data.
        patience: stop after this many epochs without a better validation bound (the
            objective's own: the ELBO, or IWAE_k for ``iwae_bound``; ``None``: never stop
            early). The best weights are restored at the end.
        beta: KL weight; ``kl_warmup_epochs`` ramps it linearly from 0 over that many epochs.
        clip_grad_norm: clip the gradient's global norm to this value (``None``: no clipping).
        max_seconds: stop after the first epoch that ends past this wall time of ``fit``.
        seed: seeds parameter-free randomness (shuffling, z samples) for reproducible runs.
        run_dir: folder for checkpoints and metrics (``None``: keep nothing on disk).
        progress: show a live bar with the batch ELBO and KL, and one line per epoch.
        callbacks: called as ``callback(trainer)`` when ``fit`` starts and after every
            optimizer step (e.g. :class:`LatentSnapshots`).
        validate: ``validate(model) -> float``, a score to maximize computed after every
            epoch (recorded as ``valid_score``); when given, it replaces the validation
            bound for early stopping and model selection (e.g. the predictive likelihood of
            held-out table entries, :func:`aevb.imputation.heldout_log_likelihood`).

    Example:
        >>> trainer = Trainer(model, lr=1e-3, max_epochs=50, patience=5)  # doctest: +SKIP
        >>> history = trainer.fit(train_x, valid_x)                          # doctest: +SKIP
    """

    def __init__(
        self,
        model: VAE,
        *,
        objective: Objective = elbo,
        optimizer: OptimizerFactory = torch.optim.Adam,
        lr: float = 1e-3,
        lr_decay: float = 1.0,
        batch_size: int = 100,
        max_epochs: int = 100,
        patience: int | None = None,
        beta: float = 1.0,
        kl_warmup_epochs: int = 0,
        clip_grad_norm: float | None = None,
        max_seconds: float | None = None,
        seed: int = 0,
        run_dir: str | Path | None = None,
        progress: bool = True,
        eval_batch_size: int = 1000,
        callbacks: Sequence[Callable[[Trainer], None]] = (),
        validate: Callable[[VAE], float] | None = None,
    ) -> None:
        if batch_size < 1 or max_epochs < 0 or lr <= 0:
            raise ValueError("batch_size and max_epochs must be positive and lr > 0")
        self.model, self.objective = model, objective
        self.optimizer = optimizer(model.parameters(), lr=lr)
        self.lr_decay, self.batch_size, self.max_epochs = lr_decay, batch_size, max_epochs
        self.patience, self.beta, self.kl_warmup_epochs = patience, beta, kl_warmup_epochs
        self.clip_grad_norm, self.seed, self.progress = clip_grad_norm, seed, progress
        self.max_seconds = max_seconds
        self.eval_batch_size, self.callbacks = eval_batch_size, list(callbacks)
        self.validate = validate
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.epoch = self.step = self.bad_epochs = 0
        self.best_valid = -math.inf
        self.history: list[dict[str, Any]] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self._generator = torch.Generator()

    # -- the loop ---------------------------------------------------------------------------

    def fit(
        self, train: torch.Tensor, valid: torch.Tensor | None = None, *, resume: bool = False
    ) -> list[dict[str, Any]]:
        """Train until ``max_epochs`` or early stopping; return the per-epoch history.

        Args:
            train: ``(n, *event)`` training data.
            valid: ``(m, *event)`` validation data for early stopping and model selection.
            resume: continue from the state saved in ``run_dir`` (bit-identical to an
                uninterrupted run on the same machine and thread count).

        Raises:
            DataError: the data do not fit the model's likelihood (shape, NaN, support).
            TrainingDiverged: a term became NaN/inf; the last good checkpoint is kept.
        """
        for part in (train, valid):
            if part is not None:
                self.model.check_data(part)
        if resume:
            self._load_state()
        else:
            torch.manual_seed(self.seed)
            self._generator.manual_seed(self.seed)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        steps_per_epoch = math.ceil(train.shape[0] / self.batch_size)
        warmup_steps = self.kl_warmup_epochs * steps_per_epoch
        for callback in self.callbacks:
            callback(self)
        started = time.perf_counter()
        while self.epoch < self.max_epochs and not self._should_stop(valid):
            if self.max_seconds is not None and time.perf_counter() - started > self.max_seconds:
                break
            start = time.perf_counter()
            record = self._train_epoch(train, warmup_steps, steps_per_epoch)
            if valid is not None:
                scores = evaluate(self.model, valid, self.eval_batch_size, self.objective)
                record.update(_prefixed("valid", scores))
            if self.validate is not None:
                record["valid_score"] = self.validate(self.model)
            record["seconds"] = time.perf_counter() - start
            self.epoch += 1
            for group in self.optimizer.param_groups:
                group["lr"] *= self.lr_decay
            self._end_epoch(record)
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return self.history

    def _train_epoch(self, train: torch.Tensor, warmup_steps: int, steps: int) -> dict[str, Any]:
        self.model.train()
        device = device_of(self.model)
        n = train.shape[0]
        order = torch.randperm(n, generator=self._generator)
        terms_seen: list[torch.Tensor] = []  # (3, B) per step, summed once per epoch
        beta = self.beta
        bar = tqdm(
            total=steps,
            desc=f"epoch {self.epoch + 1}",
            leave=False,
            disable=None if self.progress else True,  # None: no bar when not a terminal
        )
        for begin in range(0, n, self.batch_size):
            x = train[order[begin : begin + self.batch_size]].to(device, non_blocking=True)
            beta = self.beta * linear_warmup(self.step, warmup_steps)
            terms = self.objective(self.model, x, beta=beta)
            loss = terms.loss
            if not torch.isfinite(loss):
                bar.close()
                self._diverged(terms)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
            self.optimizer.step()
            self.step += 1
            for callback in self.callbacks:
                callback(self)
            with torch.no_grad():
                terms_seen.append(torch.stack([terms.elbo, terms.log_px_z, terms.kl]))
            bar.update()
            if self.progress and self.step % 10 == 0:
                bar.set_postfix(elbo=f"{terms.elbo.mean():.2f}", kl=f"{terms.kl.mean():.2f}")
        bar.close()
        means = (torch.cat(terms_seen, dim=1).double().sum(1).cpu() / n).tolist()
        return {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "beta": beta,
            "train_elbo": means[0],
            "train_log_px_z": means[1],
            "train_kl": means[2],
        }

    def _should_stop(self, valid: torch.Tensor | None) -> bool:
        has_valid = valid is not None or self.validate is not None
        return has_valid and self.patience is not None and self.bad_epochs >= self.patience

    def _end_epoch(self, record: dict[str, Any]) -> None:
        key = "valid_score" if "valid_score" in record else "valid_elbo"
        has_valid = key in record
        improved = not has_valid or record[key] > self.best_valid
        if has_valid and improved:
            self.best_valid = record[key]
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if improved:
            self._best_state = copy.deepcopy(self.model.state_dict())
        self.history.append(record)
        if self.progress:
            names = ("train_elbo", "train_kl", "valid_elbo", "valid_score")
            shown = {k: record[k] for k in names if k in record}
            tqdm.write(
                f"epoch {record['epoch']:>4}  "
                + "  ".join(f"{k} {v:9.3f}" for k, v in shown.items())
                + ("  *" if improved and has_valid else "")
            )
        if self.run_dir is not None:
            self._save_state(improved)

    def _diverged(self, terms: ELBOTerms) -> None:
        named = {"reconstruction term E_q[log p(x|z)]": terms.log_px_z, "KL term": terms.kl}
        bad = [name for name, value in named.items() if not bool(torch.isfinite(value).all())]
        value = terms.loss.item()
        if self.run_dir is not None and (self.run_dir / "last.safetensors").exists():
            kept = f"the last good checkpoint is {self.run_dir / 'last.safetensors'}"
        else:
            kept = "no checkpoint was written yet"
        raise TrainingDiverged(
            f"the {bad[0] if bad else 'objective'} became {value} at epoch {self.epoch + 1}, "
            f"step {self.step + 1}; {kept} (epoch {self.epoch}), and the model in memory still "
            "has the parameters from before this step. Try a lower learning rate, "
            "clip_grad_norm, KL warm-up, or a likelihood whose scale is bounded."
        )

    # -- checkpoints -------------------------------------------------------------------------

    def _save_state(self, improved: bool) -> None:
        assert self.run_dir is not None
        save_weights(self.model, self.run_dir / "last.safetensors")
        if improved:
            save_weights(self.model, self.run_dir / "model.safetensors")
        tensors, rest = optimizer_to_files(self.optimizer)
        tensors = {f"optimizer.{k}": v for k, v in tensors.items()}
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.shuffle"] = self._generator.get_state()
        save_tensors(tensors, self.run_dir / "trainer.safetensors")
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "best_valid": self.best_valid if math.isfinite(self.best_valid) else None,
            "bad_epochs": self.bad_epochs,
            "optimizer": rest,
            "history": self.history,
        }
        save_json(state, self.run_dir / "trainer.json")
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        (self.run_dir / "metrics.jsonl").write_text(lines)

    def _load_state(self) -> None:
        if self.run_dir is None:
            raise ValueError("resume=True needs the run_dir the interrupted run wrote to")
        state = load_json(self.run_dir / "trainer.json")
        tensors = load_tensors(self.run_dir / "trainer.safetensors")
        load_weights(self.model, self.run_dir / "last.safetensors")
        optimizer_tensors = {
            k.removeprefix("optimizer."): v
            for k, v in tensors.items()
            if k.startswith("optimizer.")
        }
        optimizer_from_files(self.optimizer, optimizer_tensors, state["optimizer"])
        if (self.run_dir / "model.safetensors").exists():
            self._best_state = load_tensors(self.run_dir / "model.safetensors")
        torch.set_rng_state(tensors["rng.torch"])
        self._generator.set_state(tensors["rng.shuffle"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.bad_epochs, self.history = state["bad_epochs"], state["history"]
        best_valid = state["best_valid"]
        self.best_valid = -math.inf if best_valid is None else best_valid


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in values.items()}


class LatentSnapshots:
    """Posterior means E_q[z|x] of fixed data every ``every`` steps: a training callback.

    Shows how q(z|x) moves from the prior blob to separated clusters during training
    (seed 003); :func:`aevb.plots.animate_latent` turns the snapshots into a GIF.

    Args:
        x: ``(n, *event)`` data to encode at each snapshot (a few hundred examples suffice).
        every: steps between snapshots; the state at the start of ``fit`` is the first one.
    """

    def __init__(self, x: torch.Tensor, every: int = 50) -> None:
        if every < 1:
            raise ValueError(f"LatentSnapshots needs every >= 1, got {every}")
        self.x, self.every = x, every
        self.steps: list[int] = []
        self.means: list[torch.Tensor] = []

    def __call__(self, trainer: Trainer) -> None:
        if trainer.step % self.every == 0:
            self.record(trainer.model, trainer.step)

    def record(self, model: VAE, step: int) -> None:
        """Add the means of ``model`` at ``step`` (once per step)."""
        if self.steps and self.steps[-1] == step:
            return
        self.steps.append(step)
        self.means.append(encode_means(model, self.x))

    def save(self, path: str | Path, labels: torch.Tensor | None = None) -> None:
        """Write ``means (num_snapshots, n, latent_dim)``, ``steps`` and, if given, the
        ``(n,)`` labels of the examples (for colouring) to safetensors."""
        tensors = {"means": torch.stack(self.means), "steps": torch.tensor(self.steps)}
        if labels is not None:
            tensors["labels"] = labels.contiguous()
        save_tensors(tensors, path)

    def load(self, path: str | Path) -> LatentSnapshots:
        """Continue from snapshots saved by :meth:`save` (when resuming a run)."""
        tensors = load_tensors(path)
        self.means = list(tensors["means"].unbind(0))
        self.steps = tensors["steps"].tolist()
        return self

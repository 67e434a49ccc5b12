"""One Trainer for every model kind: each is trained, interrupted, resumed from its run folder,
and ends with weights bit-identical to an uninterrupted run (CPU, same thread count).

Interruptions are real: a Trainer that stops after two epochs and a new process-free Trainer
that starts from the folder with other initial weights and other global random state; and an
``aevb train`` subprocess killed with SIGKILL in the middle of training, then resumed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from commands import AEVB
from test_cli import aevb
from torch import nn

from aevb import (
    UNLABELLED,
    LabelledMix,
    PerExampleVAE,
    Shuffled,
    Trainer,
    TrainingDiverged,
    Vocabulary,
    elbo,
    iwae_bound,
    labelled_subset,
    load_dataset,
    mlp_m2,
    mlp_vae,
    per_example_elbo,
    semi_amortized_elbo,
    split,
    text_vae,
)
from aevb.training.checkpoint import load_tensors
from aevb.training.recipes import m2_objective

EPOCHS, STOP = 4, 2


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    train, valid, _ = split(load_dataset("digits-binary"), (0.1, 0.0), seed=0)
    x, y = train.x[:400], train.y[:400]
    assert y is not None
    hidden = torch.full_like(y, UNLABELLED)
    keep = labelled_subset(y, 3, seed=0)
    hidden[keep] = y[keep]
    return {"x": x, "y": y, "y_partial": hidden, "valid": valid.x[:100]}


Setup = tuple[nn.Module, dict[str, Any], Any, torch.Tensor | None]


def _vae(objective: Callable[..., Any]) -> Callable[[dict[str, torch.Tensor]], Setup]:
    def setup(data: dict[str, torch.Tensor]) -> Setup:
        model = mlp_vae(64, 3, (32,))
        return model, {"objective": objective, "kl_warmup_epochs": 2}, data["x"], data["valid"]

    return setup


def _m2(data: dict[str, torch.Tensor]) -> Setup:
    model = mlp_m2(64, 10, latent_dim=3, hidden_dims=(32,))
    options = {"objective": m2_objective(data["y_partial"]), "sampler": LabelledMix(50, 7)}
    return model, options, (data["x"], data["y_partial"]), None


def _cvae(data: dict[str, torch.Tensor]) -> Setup:
    model = mlp_m2(64, 10, latent_dim=3, hidden_dims=(32,), classifier=False)
    options = {"objective": m2_objective(data["y"]), "sampler": LabelledMix(50, 7)}
    return model, options, (data["x"], data["y"]), None


def _mean_field(data: dict[str, torch.Tensor]) -> Setup:
    vae = mlp_vae(64, 3, (32,))
    model = PerExampleVAE(vae.decoder, vae.prior, len(data["x"]))
    options = {
        "objective": per_example_elbo,
        "sampler": Shuffled(50, with_index=True),
        "sparse_lr": 0.05,
    }
    return model, options, data["x"], None


def _text(data: dict[str, torch.Tensor]) -> Setup:
    """A sentence VAE with word dropout, a cyclical KL schedule and aggressive training."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    lines = [" ".join(rng.choice(words, rng.integers(1, 9))) for _ in range(240)]
    x = Vocabulary.build(lines).encode(lines, max_length=8).ids
    model = text_vae(35, 9, 3, embed_dim=8, hidden_dim=16, word_dropout=0.25)
    options = {"kl_warmup_epochs": 1, "kl_schedule": "cyclical", "aggressive_steps": 10}
    return model, options, x[:200], x[200:]


KINDS = {
    "vae": _vae(elbo),
    "text": _text,
    "iwae": _vae(functools.partial(iwae_bound, k=3, gradient="dreg")),
    "semi-amortized": _vae(functools.partial(semi_amortized_elbo, steps=2)),
    "m2": _m2,
    "cvae": _cvae,
    "mean-field": _mean_field,
}


def _fit(kind: str, data: dict, run_dir: Path, epochs: int, *, seed: int, resume: bool = False):
    torch.manual_seed(seed)
    model, options, train, valid = KINDS[kind](data)
    trainer = Trainer(
        model, batch_size=50, max_epochs=epochs, lr=3e-3, lr_decay=0.9, seed=7,
        run_dir=run_dir, progress=False, **options,
    )  # fmt: skip
    torch.manual_seed(seed + 1000)  # global random state that resume must not depend on
    history = trainer.fit(train, valid, resume=resume)
    return model, history


def _without_seconds(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_resumes_bit_exactly(kind: str, digits, tmp_path: Path) -> None:
    straight, expected = _fit(kind, digits, tmp_path / "straight", EPOCHS, seed=0)
    _fit(kind, digits, tmp_path / "resumed", STOP, seed=0)
    assert json.loads((tmp_path / "resumed" / "trainer.json").read_text())["epoch"] == STOP
    resumed, history = _fit(kind, digits, tmp_path / "resumed", EPOCHS, seed=123, resume=True)

    first, second = straight.state_dict(), resumed.state_dict()
    assert first.keys() == second.keys()
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{kind}: {different[:3]} differ after resuming"
    assert _without_seconds(history) == _without_seconds(expected)
    # and training did something: the weights moved from their initial values
    torch.manual_seed(0)
    initial = KINDS[kind](digits)[0].state_dict()
    assert any(not torch.equal(initial[name], first[name]) for name in first)


def test_per_example_parameters_move_only_in_their_batch(digits) -> None:
    """SparseAdam on the q_i table: rows outside the minibatches keep their values."""
    torch.manual_seed(0)
    model, options, x, _ = _mean_field(digits)
    rows = torch.arange(50)  # train on the first 50 examples only, as one batch
    options["sampler"] = _FixedRows(rows)
    Trainer(model, max_epochs=3, progress=False, **options).fit(x)
    moved = (model.loc.weight != 0).any(dim=1)
    assert moved[:50].all() and not moved[50:].any()


class _FixedRows:
    """A sampler yielding the same rows every epoch (to watch which table rows move)."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def num_steps(self, data: tuple[torch.Tensor, ...]) -> int:
        return 1

    def epoch(self, data: tuple[torch.Tensor, ...], generator: torch.Generator):
        yield data[0][self.rows], self.rows

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


def test_a_killed_m2_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """SIGKILL in the middle of an ``aevb train --model m2`` run, then ``--resume``."""
    options = [
        "--model", "m2", "--data", "digits-binary", "--likelihood", "bernoulli",
        "--num-labelled", "50", "--hidden-dims", "64", "--latent-dim", "4",
        "--snapshot-every", "0", "--quiet",
    ]  # fmt: skip
    epochs = ["--epochs", "6"]
    # real processes throughout: bit-exactness holds between runs of the same setup
    aevb("train", "--out", tmp_path / "straight", *options, *epochs, process=True)

    out = tmp_path / "killed"
    process = subprocess.Popen(
        [AEVB, "train", "--out", str(out), *options, *epochs],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        state = out / "trainer.json"
        if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    epoch = json.loads((out / "trainer.json").read_text())["epoch"]
    assert 2 <= epoch < 6

    aevb("train", "--out", out, "--resume", *options, *epochs, process=True)
    first = load_tensors(tmp_path / "straight" / "model.safetensors")
    second = load_tensors(out / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    facts = json.loads((out / "run.json").read_text())
    assert facts["epochs_trained"] == 6 and "test_error" in facts


def test_the_nan_guard_names_the_m2_term(digits, tmp_path: Path) -> None:
    """The one NaN guard serves every objective: it names the M2 term that broke."""
    torch.manual_seed(0)
    model, options, train, _ = _m2(digits)
    objective = options.pop("objective")

    def poisoned(model: nn.Module, *batch: torch.Tensor, beta: float):
        terms = objective(model, *batch, beta=beta)
        nan = terms.unlabelled * float("nan")
        return dataclasses.replace(terms, unlabelled=nan, surrogate=terms.surrogate + nan.sum())

    trainer = Trainer(model, objective=poisoned, run_dir=tmp_path, progress=False, **options)
    with pytest.raises(TrainingDiverged, match=r"unlabelled bound U\(x\) became nan at epoch 1"):
        trainer.fit(train)


def test_a_torn_checkpoint_still_resumes_exactly(digits, tmp_path: Path) -> None:
    """A kill between the checkpoint's files (weights of epoch 3, resume state of epoch 2):
    resume reads only ``trainer.safetensors``, one atomically replaced file."""
    straight, _ = _fit("vae", digits, tmp_path / "straight", EPOCHS, seed=0)
    run = tmp_path / "torn"
    _fit("vae", digits, run, STOP, seed=0)
    state = (run / "trainer.safetensors").read_bytes()
    _fit("vae", digits, run, STOP + 1, seed=0, resume=True)
    (run / "trainer.safetensors").write_bytes(state)  # as if killed before it was replaced
    resumed, _ = _fit("vae", digits, run, EPOCHS, seed=5, resume=True)
    first, second = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_mean_field_with_gradient_clipping_and_no_validation_set(digits) -> None:
    """Clipping reaches the dense parameters only (sparse per-example rows are apart);
    validation by the objective is refused where the objective needs example indices."""
    torch.manual_seed(0)
    model, options, x, _ = _mean_field(digits)
    trainer = Trainer(model, max_epochs=2, clip_grad_norm=1.0, progress=False, **options)
    assert len(trainer.fit(x)) == 2
    with pytest.raises(ValueError, match="epoch_metrics= or validate="):
        trainer.fit(x, digits["valid"])


def test_resume_with_a_new_learning_rate_uses_it(digits, tmp_path: Path) -> None:
    """After a divergence one resumes with a lower rate: the asked rate replaces the saved
    (decayed) one; left unchanged, the saved one continues (the runs above)."""
    torch.manual_seed(0)
    model, options, train, valid = _vae(elbo)(digits)
    common = dict(batch_size=50, lr_decay=0.9, run_dir=tmp_path, progress=False, **options)
    Trainer(model, max_epochs=2, lr=3e-3, **common).fit(train, valid)
    history = Trainer(model, max_epochs=4, lr=1e-4, **common).fit(train, valid, resume=True)
    assert history[1]["lr"] == pytest.approx(3e-3 * 0.9)
    assert history[2]["lr"] == pytest.approx(1e-4)
    assert history[3]["lr"] == pytest.approx(1e-4 * 0.9)

"""The trainer on real data: it learns, saves, loads, resumes exactly, and fails loudly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

from aevb import (
    Trainer,
    TrainingDiverged,
    evaluate,
    load_dataset,
    load_weights,
    mlp_vae,
    split,
)
from aevb.training.checkpoint import load_tensors


@pytest.fixture(scope="module")
def digits():
    train, valid, _ = split(load_dataset("digits-binary"), (0.15, 0.0), seed=0)
    return train.x, valid.x


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return mlp_vae(64, 4, (64, 64))


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_training_reduces_the_negative_elbo_on_digits(digits) -> None:
    train, valid = digits
    model = _model()
    before = evaluate(model, valid)["elbo"]
    history = Trainer(model, max_epochs=15, progress=False, lr=3e-3).fit(train, valid)
    after = evaluate(model, valid)["elbo"]
    assert after > before + 15, (before, after)  # from ~-45 nats to better than -30
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]


def test_early_stopping_restores_the_best_weights(digits, tmp_path: Path) -> None:
    train, valid = digits
    model = _model()
    trainer = Trainer(model, max_epochs=200, patience=2, lr=2e-2, progress=False, run_dir=tmp_path)
    history = trainer.fit(train, valid)
    best = max(h["valid_elbo"] for h in history)
    assert len(history) < 200 and trainer.bad_epochs == 2
    best_model = load_weights(_model(1), tmp_path / "model.safetensors")
    assert _same_weights(best_model, model)
    assert trainer.best_valid == best


def test_a_wall_time_budget_starts_no_epoch_that_would_overrun_it(digits) -> None:
    train, _ = digits

    def slow_metrics(model: nn.Module) -> dict[str, float]:
        time.sleep(0.4)  # every epoch lasts at least 0.4 s
        return {}

    budget = 1.0  # two epochs fit; a third would end past it (the old rule ran it)
    trainer = Trainer(_model(), max_epochs=10, max_seconds=budget, epoch_metrics=slow_metrics,
                      progress=False)  # fmt: skip
    history = trainer.fit(train)
    assert history and sum(h["seconds"] for h in history) <= budget, history


def test_resume_continues_exactly(digits, tmp_path: Path) -> None:
    train, valid = digits
    options = dict(lr=3e-3, lr_decay=0.9, kl_warmup_epochs=3, progress=False, seed=7)
    straight = _model()
    Trainer(straight, max_epochs=6, run_dir=tmp_path / "a", **options).fit(train, valid)

    first = _model()
    Trainer(first, max_epochs=3, run_dir=tmp_path / "b", **options).fit(train, valid)
    resumed = _model(seed=123)  # different initial weights: all state must come from disk
    torch.manual_seed(999)  # and so must the random-number generators
    trainer = Trainer(resumed, max_epochs=6, run_dir=tmp_path / "b", **options)
    history = trainer.fit(train, valid, resume=True)

    assert _same_weights(straight, resumed)
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    expected = [json.loads(line) for line in lines]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(history) == strip(expected)


class _FailingDecoder(nn.Module):
    """A decoder that emits NaN logits from its ``fail_at``-th call on."""

    def __init__(self, decoder: nn.Module, fail_at: int) -> None:
        super().__init__()
        self.decoder, self.fail_at, self.calls = decoder, fail_at, 0

    def forward(self, z: torch.Tensor):
        self.calls += 1
        px = self.decoder(z)
        if self.calls < self.fail_at:
            return px
        logits = torch.full_like(px.base_dist.logits, float("nan"))
        return Independent(Bernoulli(logits=logits, validate_args=False), 1)


def test_nan_loss_stops_with_the_term_named_and_keeps_the_last_checkpoint(
    digits, tmp_path: Path
) -> None:
    train, valid = digits
    model = _model()
    steps_per_epoch = -(-len(train) // 100)
    calls_per_epoch = steps_per_epoch + 1 + 1  # training steps, one validation batch, probe
    model.decoder = _FailingDecoder(model.decoder, fail_at=2 * calls_per_epoch + 5)
    trainer = Trainer(model, max_epochs=10, progress=False, run_dir=tmp_path)
    with pytest.raises(TrainingDiverged, match=r"reconstruction term .* epoch 3") as error:
        trainer.fit(train, valid)
    assert "last.safetensors" in str(error.value)
    saved = load_tensors(tmp_path / "last.safetensors")
    assert saved and all(torch.isfinite(t).all() for t in saved.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_weights_with_nan_are_refused_at_load_with_the_tensor_named(tmp_path: Path) -> None:
    from aevb import CheckpointError, save_weights
    from aevb.training.checkpoint import save_tensors

    model = _model()
    save_weights(model, tmp_path / "model.safetensors")
    state = load_tensors(tmp_path / "model.safetensors")
    name = sorted(k for k in state if k.startswith("decoder"))[0]
    state[name][0] = float("nan")
    save_tensors(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"NaN or infinite values in {name}"):
        load_weights(_model(1), tmp_path / "model.safetensors")

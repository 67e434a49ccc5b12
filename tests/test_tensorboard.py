"""TensorBoard event files, read back with TensorBoard's own reader: what the Trainer
callback and ``aevb train --tensorboard`` write equals what training recorded."""

from __future__ import annotations

import json

import pytest
import torch
from commands import aevb

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)

from aevb import TensorBoard, Trainer, kl_per_dimension, load_dataset, mlp_vae


def _events(folder) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_callback_logs_terms_kl_per_dimension_lr_and_images(tmp_path):
    torch.manual_seed(0)
    data = load_dataset("digits-binary")
    train, valid = data.x[:1200], data.x[1200:1400]
    model = mlp_vae(64, 4, (32,))
    board = TensorBoard(tmp_path / "tb", valid, image_shape=(1, 8, 8), num_images=8)
    trainer = Trainer(model, max_epochs=3, batch_size=100, progress=False, callbacks=[board])
    history = trainer.fit(train, valid)
    board.close()

    events = _events(tmp_path / "tb")
    scalars = events.Tags()["scalars"]
    for tag in ("train/elbo", "train/kl", "valid/elbo", "valid/kl", "optim/lr", "optim/beta"):
        assert tag in scalars, (tag, scalars)
    logged = events.Scalars("valid/elbo")
    assert [e.step for e in logged] == [r["step"] for r in history]
    assert [e.value for e in logged] == pytest.approx([r["valid_elbo"] for r in history])
    # KL per dimension of the final model, against aevb's own computation
    per_dim = [events.Scalars(f"kl_per_dim/z{j:02d}")[-1].value for j in range(4)]
    assert per_dim == pytest.approx(kl_per_dimension(model, valid).tolist(), rel=0.05)
    images = events.Tags()["images"]
    assert {"images/data", "images/reconstructions", "images/samples"} <= set(images)
    assert len(events.Images("images/samples")) == 3  # one grid per epoch


def test_train_tensorboard_option_writes_beside_metrics(tmp_path):
    out = tmp_path / "run"
    command = ["train", "--data", "digits-binary", "--epochs", "2", "--latent-dim", "2"]
    command += ["--hidden-dims", "32", "--quiet", "--snapshot-every", "0", "--tensorboard"]
    aevb(*command, "--out", out, check=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = _events(out / "tensorboard")
    logged = events.Scalars("train/elbo")
    assert [e.value for e in logged] == pytest.approx([m["train_elbo"] for m in metrics])
    assert "images/reconstructions" in events.Tags()["images"]

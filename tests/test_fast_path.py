"""The Trainer's fast path: bfloat16 matrix products with float32 densities, a compiled
objective, and the device option; each against the float32 eager run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from commands import aevb

from aevb import ConfigError, Trainer, evaluate, load_dataset, mlp_m2, mlp_vae


def _fit(**options) -> tuple[float, torch.nn.Module]:
    data = load_dataset("digits-binary").x
    torch.manual_seed(0)
    model = mlp_vae(64, 8, (128,))
    Trainer(model, max_epochs=8, batch_size=50, progress=False, **options).fit(data[:1500])
    torch.manual_seed(1)
    return evaluate(model, data[1500:])["elbo"], model


def test_bfloat16_training_reaches_the_float32_objective() -> None:
    full, _ = _fit()
    low, model = _fit(precision="bfloat16")
    assert abs(low - full) < 0.5, (low, full)  # nats per digit, after 8 epochs (about -27)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        px = model.decode(torch.zeros(3, 8))
    assert px.base_dist.logits.dtype == torch.float32  # the density is float32 under autocast


def test_compiled_objective_trains_as_the_eager_one() -> None:
    eager, _ = _fit()
    compiled, _ = _fit(compile=True)
    assert abs(compiled - eager) < 0.1, (compiled, eager)


def test_semi_supervised_densities_are_float32_under_autocast() -> None:
    data = load_dataset("digits-binary")
    torch.manual_seed(0)
    model = mlp_m2(64, 10, 4, (32,))
    x, y = data.x[:50], data.y[:50]
    torch.manual_seed(1)
    full = model.labelled_elbo(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        qy = model.classify(x)
        torch.manual_seed(1)
        low = model.labelled_elbo(x, y)
    assert qy.logits.dtype == torch.float32 and low.dtype == torch.float32
    assert (low - full).abs().mean() < 0.1  # bfloat16 matrix products only


def test_a_device_that_is_not_here_is_named(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        Trainer(mlp_vae(4, 2, (8,)), device="cuda")
    with pytest.raises(ConfigError, match="not a device name"):
        Trainer(mlp_vae(4, 2, (8,)), device="gpu0")
    with pytest.raises(ConfigError, match="precision"):
        Trainer(mlp_vae(4, 2, (8,)), precision="float16")
    result = aevb("train", "--device", "cuda:1", "--out", "run", cwd=tmp_path)
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_command_trains_in_bfloat16(tmp_path: Path) -> None:
    options = ["--epochs", "2", "--hidden-dims", "32", "--snapshot-every", "0", "--quiet"]
    result = aevb("train", *options, "--precision", "bfloat16", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"precision": "bfloat16"' in (tmp_path / "run" / "config.json").read_text()

"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def _block(marker: str) -> str:
    return next(block for block in BLOCKS if marker in block)


def _run_blocks(tmp_path: Path, *markers: str) -> list[str]:
    """Run the README blocks containing ``markers``, in order, as one script; stdout lines."""
    script = tmp_path / "example.py"
    script.write_text("".join(_block(marker) for marker in markers))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_python_examples_run(tmp_path: Path) -> None:
    # the evaluation and inference examples continue the first one: one script, one training
    lines = _run_blocks(tmp_path, "Trainer(model", "log_px(model", "inference_gaps(model")
    elbo, *_ = lines[-3].split()
    log_px, surgery_residual = map(float, lines[-2].split())
    assert -40 < float(elbo) < log_px < 0  # nats per 8x8 binary digit; ELBO < log p(x)
    assert abs(surgery_residual) < 1e-9
    assert abs(float(lines[-1])) < 1e-4  # the two gaps add up to the total


def test_add_a_likelihood_example_is_a_working_head() -> None:
    namespace: dict[str, object] = {}
    prelude = (
        "import torch\nfrom torch import nn\n"
        "from torch.distributions import Distribution, Independent, Poisson\n"
    )
    exec(prelude + _block("class PoissonHead"), namespace)
    head = namespace["PoissonHead"](3, 4)
    h, x = torch.randn(5, 3), torch.randint(0, 6, (5, 4)).float()
    rate = head.log_rate(h).exp().detach().numpy()
    expected = stats.poisson.logpmf(x.numpy(), rate).sum(-1)
    np.testing.assert_allclose(head(h).log_prob(x).detach().numpy(), expected, rtol=1e-5)


def test_tables_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "palmerpenguins.load_penguins()")
    output = "\n".join(lines)
    assert "species" in output and "categorical" in output
    holes_left, same_dtypes, mean_score = lines[-1].split()
    assert holes_left == "0" and same_dtypes == "True"
    assert -40 < float(mean_score) < 0  # nats per penguin, in the data's own units


def test_labels_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "mlp_m2(64, 10")
    error, *shape = lines[-1].split(maxsplit=1)
    assert shape == ["(5, 10, 64)"]
    assert float(error) < 0.25  # 50 labels; logistic regression on those 50 alone: 0.21


def test_config_file_example_is_a_valid_config(tmp_path: Path) -> None:
    from aevb.cli.config import load_config

    (block,) = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    (tmp_path / "run.toml").write_text(block)
    config = load_config(tmp_path / "run.toml")
    assert config.model.kind == "vae" and config.train.alpha == 1.0


def test_one_trainer_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "sampler=LabelledMix")
    error, train_elbo = map(float, lines[-1].split())
    assert error < 0.3  # 50 labels, 20 epochs
    assert -40 < train_elbo < 0  # nats per binary 8x8 digit, a q_i per digit


def test_images_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "hierarchical_vae(")
    assert lines == ["torch.Size([8])", "torch.Size([8])"]


def test_sklearn_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "GridSearchCV(make_pipeline")
    chosen, score = lines[-1].rsplit(" ", 1)
    assert chosen in ("{'vaeestimator__latent_dim': 2}", "{'vaeestimator__latent_dim': 8}")
    assert -400 < float(score) < 0  # nats per image


def test_pyro_example_runs(tmp_path: Path) -> None:
    _run_blocks(tmp_path, "to_pyro(vae, num_data")


def test_stream_and_discrete_latents_examples_run(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "stream=True)", "CategoricalLatentHead, CategoricalPrior")
    shown, elbo = lines[-3].rsplit(" ", 1)
    assert shown == "DiskRows(digits.npy, shape=(1437, 64))"
    assert -60 < float(elbo) < -10  # nats per binary 8x8 digit after 3 epochs
    assert -50 < float(lines[-2]) < -15  # log p(x), categorical latents, 10 epochs
    assert lines[-1] == "torch.Size([180])"  # the mixed model's KL, one per test digit


def test_vq_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "fit_code_prior(vq")
    assert lines[-1].endswith("torch.Size([4, 64])")
    bound = float(lines[-1].split()[0])
    assert -45 < bound < -15  # nats per binary 8x8 digit: log p(x|z_q) + log p(z_q)
    assert 0.3 <= float(lines[-2]) <= 1  # share of the 32 codes in use


def test_text_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "text_vae(len(vocab)")
    assert -20 < float(lines[-3]) < -2  # nats per line of a 5-word grammar
    assert lines[-2].startswith("[") and lines[-1].startswith("[")


def test_series_example_runs(tmp_path: Path) -> None:
    lines = _run_blocks(tmp_path, "series_vae(2, 12")
    nats, shape = lines[-1].split(" ", 1)
    assert -60 < float(nats) < 30 and shape == "torch.Size([3, 24])"

"""The ``aevb`` command, run as a real subprocess on real files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from commands import aevb as run_command

from aevb import load_dataset, load_run, train_run
from aevb.cli.config import RunConfig, config_from_dict, load_config
from aevb.cli.data import load_run_data
from aevb.training.checkpoint import load_tensors

SMALL = ["--epochs", "3", "--hidden-dims", "32,32", "--latent-dim", "3", "--quiet"]


def aevb(
    *args: str | Path, check: bool = True, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """The command, run in this process (:mod:`commands`); asserts success unless told."""
    return run_command(*args, check=check, process=process)


def _fails_cleanly(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = aevb("train", "--out", out, *SMALL)
    assert "test ELBO" in result.stdout
    return out


def test_train_writes_a_complete_run_folder(run_dir: Path) -> None:
    for name in (
        "config.json",
        "run.json",
        "model.safetensors",
        "last.safetensors",
        "trainer.json",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
    ):
        assert (run_dir / name).exists(), name
    config = load_config(run_dir / "config.json")
    assert config.model.latent_dim == 3 and config.model.hidden_dims == (32, 32)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    facts = json.loads((run_dir / "run.json").read_text())
    # A density on [0, 1]^64 (continuous Bernoulli): the ELBO in nats may well be positive.
    assert facts["data_dim"] == 64 and np.isfinite(facts["test_elbo"])


def test_sample_encode_reconstruct(run_dir: Path, tmp_path: Path) -> None:
    aevb("sample", run_dir, "--num", "10", "--out", tmp_path / "s.npy")
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (10, 64) and samples.min() >= 0 and samples.max() <= 1
    aevb("sample", run_dir, "--out", tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0

    aevb("encode", run_dir, "--out", tmp_path / "z.csv")
    table = np.loadtxt(tmp_path / "z.csv", delimiter=",", skiprows=1)
    assert table.shape == (1797, 6) and (table[:, 3:] > 0).all()  # means, then scales
    expected = load_run(run_dir).model.encode(load_dataset("digits").x[:5]).mean.detach()
    np.testing.assert_allclose(table[:5, :3], expected.numpy(), rtol=1e-6, atol=1e-7)

    aevb("reconstruct", run_dir, "--num", "4", "--out", tmp_path / "r.npy")
    assert np.load(tmp_path / "r.npy").shape == (4, 64)


def test_saved_and_loaded_run_gives_identical_outputs(tmp_path: Path) -> None:
    config = config_from_dict({"model": {"hidden_dims": [16]}, "train": {"epochs": 2}})
    trained = train_run(config, tmp_path / "run", progress=False)
    loaded = load_run(tmp_path / "run")
    x = torch.rand(7, 64).round()
    z = torch.randn(5, config.model.latent_dim)
    assert torch.equal(trained.model.encode(x).mean, loaded.model.encode(x).mean)
    assert torch.equal(trained.model.encode(x).stddev, loaded.model.encode(x).stddev)
    assert torch.equal(trained.model.decode(z).mean, loaded.model.decode(z).mean)
    assert torch.equal(trained.model.reconstruct(x), loaded.model.reconstruct(x))


def test_config_file_is_equivalent_to_flags(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(
        "seed = 4\n[model]\nlatent_dim = 3\nhidden_dims = [32, 32]\n[train]\nepochs = 3\n"
    )
    aevb("train", "--out", tmp_path / "flags", *SMALL, "--seed", "4")
    aevb("train", "--out", tmp_path / "file", "--config", tmp_path / "run.toml", "--quiet")
    assert (tmp_path / "flags" / "config.json").read_text() == (
        tmp_path / "file" / "config.json"
    ).read_text()
    first = load_tensors(tmp_path / "flags" / "model.safetensors")
    second = load_tensors(tmp_path / "file" / "model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_unknown_config_keys_are_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[model]\nlatnt_dim = 3\n")
    result = aevb("train", "--config", tmp_path / "bad.toml", "--out", tmp_path / "x", check=False)
    _fails_cleanly(result, "unknown option 'latnt_dim'; did you mean 'latent_dim'?")
    (tmp_path / "type.toml").write_text("[train]\nepochs = 'many'\n")
    result = aevb("train", "--config", tmp_path / "type.toml", "--out", tmp_path / "y", check=False)
    _fails_cleanly(result, "epochs: expected int")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_wrong_likelihood_for_the_data_is_refused(tmp_path: Path) -> None:
    result = aevb("train", "--likelihood", "bernoulli", "--out", tmp_path / "r", check=False)
    _fails_cleanly(result, "binarize the data (--binarize 0.5)")
    assert not (tmp_path / "r").exists()
    binary = ["--likelihood", "bernoulli", "--binarize", "0.5"]
    aevb("train", *binary, "--out", tmp_path / "ok", *SMALL)


def test_corrupt_or_missing_checkpoints_are_reported(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "run.json"):
        (broken / name).write_text((run_dir / name).read_text())
    (broken / "model.safetensors").write_bytes(b"\x10\x00garbage")
    _fails_cleanly(aevb("sample", broken, check=False), "corrupt")
    (broken / "model.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes()[:-50])
    _fails_cleanly(aevb("sample", broken, check=False), "corrupt")
    _fails_cleanly(aevb("sample", tmp_path / "nowhere", check=False), "no run folder")
    (broken / "config.json").write_text("{not json")
    _fails_cleanly(aevb("encode", broken, check=False), "not valid JSON")


def test_existing_run_needs_resume_and_resume_continues(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    _fails_cleanly(aevb("train", "--out", copy, *SMALL, check=False), "--resume")
    aevb("train", "--out", copy, "--resume", *SMALL[2:], "--epochs", "5")
    assert json.loads((copy / "run.json").read_text())["epochs_trained"] == 5
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5]


def test_encode_refuses_data_of_another_shape(run_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((3, 100)))
    result = aevb("encode", run_dir, "--data", tmp_path / "wide.npy", check=False)
    _fails_cleanly(result, "shape (64,), got data of shape (3, 100)")


def test_default_config_round_trips() -> None:
    from aevb.cli.config import config_to_dict

    assert config_from_dict(config_to_dict(RunConfig())) == RunConfig()


@pytest.mark.parametrize("prior", ["vamp", "mixture"])
def test_iwae_with_a_learned_prior_trains_saves_and_evaluates(tmp_path: Path, prior: str) -> None:
    out = tmp_path / "run"
    options = ["--objective", "iwae", "--k", "5", "--iwae-gradient", "dreg"]
    model_options = ["--prior", prior, "--prior-components", "20", "--latent-dim", "4"]
    data = ["--data", "digits-binary", "--likelihood", "bernoulli", "--hidden-dims", "32"]
    aevb("train", "--out", out, "--epochs", "3", "--quiet", *options, *model_options, *data)
    first, second = load_run(out).model, load_run(out).model
    x = load_dataset("digits-binary").x[:20]
    torch.manual_seed(0)
    before = first.elbo(x).elbo
    torch.manual_seed(0)
    assert torch.equal(before, second.elbo(x).elbo)  # the prior's parameters are saved too
    compiled = ["--compile"] if prior == "vamp" else []  # the mixture density compiles too
    result = aevb("evaluate", out, "--k", "200", *compiled)
    assert "log p(x), IS k=200" in result.stdout and "mutual information" in result.stdout
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["num_examples"] == 180 and summary["latent_dim"] == 4
    assert summary["log_px"] > summary["elbo"] - 0.5  # IS at k=200 above the ELBO
    assert summary["mutual_info"] + summary["marginal_kl"] == pytest.approx(summary["average_kl"])
    assert summary["mutual_info"] <= np.log(180) + 1e-6
    assert "<h2>Evaluation</h2>" in (out / "report.html").read_text()


def test_vamp_pseudo_inputs_start_at_training_examples(tmp_path: Path) -> None:
    out = tmp_path / "run"
    model = ["--prior", "vamp", "--prior-components", "10", "--pseudo-inputs", "data"]
    data = ["--data", "digits-binary", "--likelihood", "bernoulli", "--hidden-dims", "16"]
    aevb("train", "--out", out, "--epochs", "1", "--lr", "1e-12", "--quiet", *model, *data)
    run = load_run(out)
    train = load_run_data(run.config)[0].x
    distance = torch.cdist(run.model.prior.pseudo_inputs.detach(), train).min(1).values
    assert (distance < 1e-6).all()  # each pseudo-input is (still) a training image


def test_gaps_refine_and_richer_posteriors(tmp_path: Path) -> None:
    out = tmp_path / "full"
    aevb("train", "--out", out, "--posterior", "full", "--snapshot-every", "0", *SMALL)
    result = aevb(
        "evaluate", out, "--gaps", "--k", "50", "--num", "8", "--families", "diagonal,full",
        "--refine-steps", "5", "--fit-steps", "200",
    )  # fmt: skip
    assert "approximation gap" in result.stdout and "semi-amortized K=5" in result.stdout
    gaps = json.loads((out / "gaps.json").read_text())
    total = gaps["approximation_gap_full"] + gaps["amortization_gap_full"]
    assert abs(total - gaps["total_gap"]) < 1e-5 and gaps["num_examples"] == 8
    refined = aevb("encode", out, "--refine", "20", "--out", tmp_path / "z.csv")
    assert "fitted q(z) per example: 20 steps" in refined.stdout
    assert np.loadtxt(tmp_path / "z.csv", delimiter=",", skiprows=1).shape[1] == 6


def test_mean_field_training_run(tmp_path: Path) -> None:
    out = tmp_path / "mean-field"
    result = aevb(
        "train", "--out", out, "--inference", "mean-field", "--local-steps", "200", *SMALL
    )
    assert "test ELBO" in result.stdout
    facts = json.loads((out / "run.json").read_text())
    assert facts["inference"] == "mean-field" and facts["test_fit_seconds"] > 0
    encoded = aevb("encode", out, "--refine", "50", "--out", tmp_path / "z.csv")
    assert "fitted q(z) per example" in encoded.stdout


def test_negative_binomial_likelihood_on_raw_pixel_counts(tmp_path: Path) -> None:
    """The likelihood added by ARCHITECTURE.md's recipe, end to end on real counts: the 8x8
    digits as scikit-learn ships them (integers 0..16)."""
    from sklearn.datasets import load_digits

    counts = tmp_path / "counts.npy"
    np.save(counts, load_digits().data.astype(np.float32))
    result = aevb(
        "train", "--data", counts, "--likelihood", "negative-binomial", "--out", tmp_path / "nb",
        *SMALL,
    )  # fmt: skip
    facts = json.loads((tmp_path / "nb" / "run.json").read_text())
    assert facts["test_log_px_z"] < 0 and facts["test_elbo"] < facts["test_log_px_z"]
    assert "test ELBO" in result.stdout
    scaled = aevb(
        "train", "--likelihood", "negative-binomial", "--out", tmp_path / "r", *SMALL, check=False
    )  # the bundled digits are scaled to [0, 1]: not counts
    _fails_cleanly(scaled, "needs counts 0, 1, 2")
    assert not (tmp_path / "r").exists()


def test_a_changed_checkpoint_is_refused_by_its_manifest(run_dir: Path, tmp_path: Path) -> None:
    """Weights that are not what training wrote (edited, or a save cut short) are refused."""
    import shutil

    from aevb.training.checkpoint import save_tensors

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert set(manifest["sha256"]) == {
        "last.safetensors",
        "model.safetensors",
        "trainer.safetensors",
    }
    aevb("sample", copy, "--num", "4", "--out", tmp_path / "ok.npy")
    state = load_tensors(copy / "model.safetensors")
    first = sorted(state)[0]
    state[first] = state[first] + 0.01  # still a valid file with finite weights
    save_tensors(state, copy / "model.safetensors")
    _fails_cleanly(aevb("sample", copy, check=False), "is not the file training wrote at epoch")

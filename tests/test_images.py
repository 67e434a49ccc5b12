"""Image data keep their shape: PNG/JPEG folders, array layouts, pixel scaling, bad images;
and an image run end to end from the command line (conv body, discretized logistic, colour)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from commands import aevb
from PIL import Image

from aevb import load_dataset
from aevb.cli.build import build_model
from aevb.cli.config import ModelConfig
from aevb.errors import ConfigError, DataError


def _write_folder(root: Path, shape: tuple[int, int, int], per_class: int, seed: int = 0) -> dict:
    """Class subfolders of PNGs with random pixels; returns {class: [(C, H, W) uint8 arrays]}."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    channels, height, width = shape
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        written[name] = []
        for i in range(per_class):
            pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
            image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
            image.save(root / name / f"{i:03d}.png")
            written[name].append(pixels.transpose(2, 0, 1))
    return written


@pytest.mark.parametrize("shape", [(1, 7, 5), (3, 6, 9)], ids=["grey", "rgb"])
def test_png_folder_round_trip_keeps_every_pixel_shape_and_label(
    tmp_path: Path, shape: tuple[int, int, int]
) -> None:
    written = _write_folder(tmp_path / "pets", shape, per_class=3)
    data = load_dataset(tmp_path / "pets")
    assert data.image_shape == shape
    assert data.label_names == ("cat", "dog")
    assert data.y is not None and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    expected = np.stack(written["cat"] + written["dog"]).reshape(6, -1)
    np.testing.assert_array_equal(data.x.numpy(), expected.astype(np.float32))
    scaled = load_dataset(tmp_path / "pets", scale=255)
    np.testing.assert_allclose(scaled.x.numpy(), expected / 255, rtol=1e-6)


def test_array_layouts_are_read_channels_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.random((4, 3, 5, 6)).astype(np.float32)  # (n, C, H, W)
    np.save(tmp_path / "nchw.npy", images)
    np.save(tmp_path / "nhwc.npy", images.transpose(0, 2, 3, 1))
    np.save(tmp_path / "grey.npy", images[:, 0])
    for name in ("nchw", "nhwc"):
        data = load_dataset(tmp_path / f"{name}.npy")
        assert data.image_shape == (3, 5, 6)
        np.testing.assert_array_equal(data.x.numpy(), images.reshape(4, -1))
    assert load_dataset(tmp_path / "grey.npy").image_shape == (1, 5, 6)
    np.save(tmp_path / "ambiguous.npy", rng.random((2, 3, 5, 3)))
    with pytest.raises(DataError, match=r"channel axis.*transpose"):
        load_dataset(tmp_path / "ambiguous.npy")


def test_bad_image_folders_name_the_file_and_the_fix(tmp_path: Path) -> None:
    _write_folder(tmp_path / "mixed", (1, 8, 8), per_class=2)
    Image.fromarray(np.zeros((9, 8), dtype=np.uint8)).save(tmp_path / "mixed" / "dog" / "big.png")
    with pytest.raises(DataError, match=r"big\.png is 8x9.*resize"):
        load_dataset(tmp_path / "mixed")
    _write_folder(tmp_path / "broken", (1, 8, 8), per_class=2)
    (tmp_path / "broken" / "cat" / "fake.png").write_text("not an image")
    with pytest.raises(DataError, match=r"fake\.png is not a readable image"):
        load_dataset(tmp_path / "broken")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(tmp_path / "empty")


def test_model_building_checks_image_shapes() -> None:
    conv = ModelConfig(body="conv", channels=(8, 16), latent_dim=2, likelihood="bernoulli")
    with pytest.raises(ConfigError, match="needs image data"):
        build_model(conv, 64, None)
    with pytest.raises(DataError, match="too small"):
        build_model(ModelConfig(body="conv", channels=(8, 8, 8)), 9, (1, 3, 3))
    model = build_model(conv, 64, (1, 8, 8))
    with pytest.raises(DataError, match=r"images of shape \(1, 8, 8\).*\(3, 192\)"):
        model.check_data(torch.zeros(3, 192))  # three channels into a grey model


def _aevb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return aevb(*args, cwd=cwd)


def test_colour_image_run_from_the_command_line(tmp_path: Path) -> None:
    """A folder of RGB PNGs, a residual convolutional body, the discretized logistic on 8-bit
    pixels scaled to [0, 1]: trains, evaluates in nats and bits per dimension, draws figures."""
    _write_folder(tmp_path / "pets", (3, 10, 12), per_class=20, seed=2)
    train = _aevb(
        "train", "--data", "pets", "--scale", "255", "--body", "resnet", "--channels", "8,16",
        "--likelihood", "discretized-logistic", "--likelihood-components", "2",
        "--latent-dim", "3", "--epochs", "2", "--batch-size", "8", "--out", "run", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    facts = json.loads((tmp_path / "run" / "run.json").read_text())
    assert facts["image_shape"] == [3, 10, 12] and facts["data_dim"] == 360
    evaluated = _aevb("evaluate", "run", "--k", "20", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    # Random 8-bit pixels: at most 8 bits each, and a 2-epoch model is not much better.
    assert 6.0 < summary["bits_per_dim"] < 12.0
    assert abs(summary["bits_per_dim"] * 360 * np.log(2) - summary["nll"]) < 1e-6
    samples = np.asarray(Image.open(tmp_path / "run" / "samples.png"))
    assert samples.ndim == 3 and samples.shape[2] in (3, 4)  # drawn in colour
    wrong = _aevb("train", "--data", "pets", "--likelihood", "discretized-logistic",
                  "--epochs", "1", "--out", "unscaled", cwd=tmp_path)  # fmt: skip
    assert wrong.returncode != 0 and "--scale 255" in wrong.stderr
    assert not (tmp_path / "unscaled").exists()


def test_hierarchical_run_reports_each_layer(tmp_path: Path) -> None:
    train = _aevb(
        "train", "--data", "digits-binary", "--likelihood", "bernoulli", "--latent-dim", "4",
        "--latent-layers", "2", "--hierarchy", "ladder", "--epochs", "2", "--out", "run",
        "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    evaluated = _aevb("evaluate", "run", "--k", "20", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "layer z_2: KL, active units" in evaluated.stdout
    summary = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert summary["layer_sizes"] == [4, 2]
    encoded = _aevb("encode", "run", "--out", "codes.npy", cwd=tmp_path)
    assert encoded.returncode == 0, encoded.stderr
    assert np.load(tmp_path / "codes.npy").shape == (1797, 2 * (4 + 2))  # means, scales
    assert abs(sum(summary["kl_per_layer"]) - summary["kl"]) < 0.5  # two MC estimates of one KL


def test_m2_with_a_convolutional_body(tmp_path: Path) -> None:
    train = _aevb(
        "train", "--data", "digits-binary", "--likelihood", "bernoulli", "--model", "m2",
        "--num-labelled", "50", "--body", "conv", "--channels", "8,16", "--latent-dim", "4",
        "--hidden-dims", "32", "--epochs", "1", "--out", "m2", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    predicted = _aevb("predict", "m2", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert "error rate" in predicted.stdout
    assert (tmp_path / "m2" / "analogies.png").exists()

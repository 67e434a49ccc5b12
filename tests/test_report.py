"""Every figure for small trained runs, and the HTML report in a real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from aevb import train_run
from aevb.cli.config import config_from_dict
from aevb.training.checkpoint import load_tensors
from aevb.viz.report import FIGURES

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
AEVB = str(Path(sys.executable).with_name("aevb"))


def _train(folder: Path, **sections: dict) -> Path:
    config = config_from_dict(
        {
            "model": {"hidden_dims": [32], **sections.get("model", {})},
            "train": {"epochs": 4, "snapshot_every": 7, **sections.get("train", {})},
            "data": sections.get("data", {}),
        }
    )
    return train_run(config, folder, progress=False).path


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    x1 = rng.gamma(2.0, 1.0, 600)
    x2 = rng.normal(1.0, 0.5, 600)
    np.savetxt(folder / "table.csv", np.stack([x1, x2, rng.normal(x2, x1)], 1), delimiter=",")
    return _train(
        folder / "run",
        data={"source": str(folder / "table.csv")},
        model={"likelihood": "normal", "latent_dim": 3},
    )


def _image(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        image = opened.copy()
    pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 1.0, f"{path.name} is blank"
    return image


def test_every_image_figure_has_its_expected_size(image_run: Path) -> None:
    tile = 8 + 1  # 8x8 digits with a one-pixel border
    expected = {
        "latent.png": (550, 500),
        "prior_grid.png": ((15 * tile + 1) * 2, (15 * tile + 1) * 2),
        "samples.png": ((8 * tile + 1) * 4, (8 * tile + 1) * 4),
        "reconstructions.png": ((8 * tile + 1) * 4, (8 * tile + 1) * 4),
        "interpolations.png": ((10 * tile + 1) * 4, (8 * tile + 1) * 4),
        "learning_curves.png": (1300, 360),
        "kl_per_dimension.png": (1000, 340),
    }
    for name, size in expected.items():
        assert _image(image_run / name).size == size, name
    assert not (image_run / "marginals.png").exists()  # histograms are for tabular data


def test_animation_has_one_frame_per_snapshot(image_run: Path) -> None:
    snapshots = load_tensors(image_run / "snapshots.safetensors")
    steps = snapshots["steps"].tolist()
    # 4 epochs of ceil(1437 / 100) = 15 steps, a snapshot every 7 steps, plus the last step.
    assert steps == [0, 7, 14, 21, 28, 35, 42, 49, 56, 60]
    assert snapshots["means"].shape == (len(steps), 180, 2)
    assert snapshots["labels"].shape == (180,)
    with Image.open(image_run / "latent.gif") as gif:
        frames = [frame.copy() for frame in ImageSequence.Iterator(gif)]
    assert len(frames) == len(steps)
    first, last = (np.asarray(f.convert("L"), dtype=float) for f in (frames[0], frames[-1]))
    assert np.abs(first - last).mean() > 0.5  # the codes moved


def test_tabular_run_draws_marginals_and_traversals_do_not_apply(tabular_run: Path) -> None:
    assert _image(tabular_run / "marginals.png").size == (960, 260)
    _image(tabular_run / "latent.png")  # 3-D codes, projected by PCA
    for name in ("prior_grid.png", "samples.png", "reconstructions.png"):
        assert not (tabular_run / name).exists()


def test_traversals_for_more_than_two_latent_dimensions(tmp_path: Path) -> None:
    run = _train(tmp_path / "run", model={"latent_dim": 3}, train={"epochs": 1})
    assert _image(run / "prior_grid.png").size == ((15 * 9 + 1) * 2, (3 * 9 + 1) * 2)


def test_plot_command_redraws_chosen_figures(image_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(image_run, copy)
    (copy / "latent.png").unlink()
    result = subprocess.run(
        [AEVB, "plot", str(copy), "--what", "latent,kl"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (copy / "latent.png").exists() and "report:" in result.stdout
    bad = subprocess.run(
        [AEVB, "plot", str(copy), "--what", "latnet"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "unknown figures ['latnet']" in bad.stderr


def test_report_embeds_every_figure(image_run: Path) -> None:
    page = (image_run / "report.html").read_text()
    present = [file for file, _ in FIGURES.values() if (image_run / file).exists()]
    assert page.count("<img ") == len(present) == 8
    assert "data:image/gif;base64," in page and "test_elbo" in page and "[model]" in page


def test_report_renders_in_headless_chromium(image_run: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((image_run / "report.html").as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert len(widths) == 8 and all(width > 0 for width in widths)
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_figures_do_not_change_the_trained_model(image_run: Path) -> None:
    from aevb import load_run

    run = load_run(image_run)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    from aevb.cli.data import load_run_data
    from aevb.viz.report import draw_figures

    draw_figures(run, load_run_data(run.config)[2], what=["samples", "kl"])
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())


@pytest.mark.slow  # the whole default run (~200 epochs); its figures and report: test_cli
def test_default_run_separates_the_digit_classes_in_its_latent_space(tmp_path: Path) -> None:
    """The README's ``aevb train``: 2-D codes where a 5-NN classifier finds the digits."""
    from sklearn.neighbors import KNeighborsClassifier

    from aevb import encode_means
    from aevb.cli.config import RunConfig
    from aevb.cli.data import load_run_data

    run = train_run(RunConfig(), tmp_path / "default", progress=False)
    assert (run.path / "report.html").exists() and (run.path / "latent.gif").exists()
    train, _, test = load_run_data(run.config)
    classifier = KNeighborsClassifier(5).fit(encode_means(run.model, train.x), train.y)
    accuracy = classifier.score(encode_means(run.model, test.x), test.y)
    assert accuracy >= 0.8, accuracy

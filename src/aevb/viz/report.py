"""The run report: every figure of a run, and one self-contained HTML page that shows them
with the config and the metrics (images embedded, readable offline)."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import Dataset
from ..distributions.discrete import Bernoullis, Categoricals
from ..distributions.quantized import Codes
from ..errors import ConfigError
from ..evaluation.codes import code_indices
from ..evaluation.metrics import active_units, encode_means, kl_per_dimension
from ..files import write_text
from ..training.checkpoint import load_tensors
from .curves import plot_code_usage, plot_kl_per_dimension, plot_learning_curves
from .figures import FIGURES, SNAPSHOTS
from .plots import (
    animate_latent,
    interleave,
    plot_analogies,
    plot_conditional_samples,
    plot_interpolations,
    plot_latent,
    plot_marginals,
    plot_prior_grid,
    plot_series,
    save_image_grid,
)
from .sentences import write_sentences

# name -> (file, caption); the order is the report's order.


def draw_figures(
    run: Any,
    data: Dataset,
    *,
    what: Iterable[str] | None = None,
    method: str = "pca",
    max_points: int = 2000,
    seed: int = 0,
) -> dict[str, Path]:
    """Draw the figures ``what`` (default: all that apply) of a run into its folder.

    Args:
        run: an :class:`aevb.Run` (model, image shape, folder).
        data: held-out examples (and labels, if any) to encode and reconstruct.
        method: projection of latents above two dimensions, ``"pca"`` or ``"tsne"``.

    Returns:
        ``{name: path}`` of the figures written; figures that do not apply (image grids for
        tabular data, marginals for images, the animation without snapshots) are skipped.
    """
    wanted = set(FIGURES if what is None else what)
    unknown = wanted - set(FIGURES)
    if unknown:
        raise ConfigError(f"unknown figures {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    model, folder, shape = run.model, Path(run.path), run.image_shape
    images = shape is not None
    data = spread_subset(data, max_points, seed)
    x, labels = data.in_memory, data.y
    path = {name: folder / FIGURES[name][0] for name in FIGURES}
    drawn: dict[str, Path] = {}
    torch.manual_seed(seed)
    if "latent" in wanted:
        drawn["latent"] = plot_latent(encode_means(model, x), labels, path["latent"], method=method)
    if "latent-animation" in wanted and (folder / SNAPSHOTS).exists():
        saved = load_tensors(folder / SNAPSHOTS)
        snapshot_labels = saved.get("labels")
        drawn["latent-animation"] = animate_latent(
            list(saved["means"]), saved["steps"].tolist(), snapshot_labels, path["latent-animation"]
        )
    # walks through z-space: for Gaussian latents (discrete codes have no path between them)
    prior = model.prior()
    continuous = not isinstance(prior, Categoricals | Bernoullis | Codes)
    if images and "prior-grid" in wanted and continuous:
        drawn["prior-grid"] = plot_prior_grid(model, shape, path["prior-grid"])
    if images and "samples" in wanted:
        samples = model.sample(64, mean=True)
        drawn["samples"] = save_image_grid(samples, shape, path["samples"])
    if images and "reconstructions" in wanted:
        inputs = x[:32]
        pairs = interleave(inputs, model.reconstruct(inputs))
        drawn["reconstructions"] = save_image_grid(
            pairs, shape, path["reconstructions"], num_columns=8
        )
    if images and "interpolations" in wanted and len(x) >= 2 and continuous:
        rows = min(8, len(x) // 2)
        drawn["interpolations"] = plot_interpolations(
            model, x[:rows], x[rows : 2 * rows], shape, path["interpolations"]
        )
    vocabulary = getattr(run, "vocabulary", None)
    if vocabulary is not None and "sentences" in wanted:
        drawn["sentences"] = write_sentences(model, vocabulary, x, path["sentences"])
    sequence_shape = getattr(run, "metrics", {}).get("sequence_shape")
    if sequence_shape and "series" in wanted:
        samples = model.sample(5)
        steps, channels = sequence_shape
        drawn["series"] = plot_series(x[:5], samples, steps, channels, path["series"])
    if not images and vocabulary is None and not sequence_shape and "marginals" in wanted:
        samples = model.sample(max(len(x), 1000))
        drawn["marginals"] = plot_marginals(x, samples, path["marginals"])
    history = read_metrics(folder)
    if "curves" in wanted and history:
        drawn["curves"] = plot_learning_curves(history, path["curves"])
    if "codes" in wanted and isinstance(prior, Codes):
        counts = torch.bincount(code_indices(model, x).flatten(), minlength=len(prior.codebook))
        drawn["codes"] = plot_code_usage(counts, history, path["codes"])
    if "kl" in wanted and not isinstance(prior, Codes):  # a point-mass q: no KL per dimension
        activity, _ = active_units(model, x)
        drawn["kl"] = plot_kl_per_dimension(kl_per_dimension(model, x), activity, path["kl"])
    return drawn


def draw_label_figures(run: Any, data: Dataset, num_examples: int = 10) -> dict[str, Path]:
    """Analogies and conditional samples of an M2 / conditional-VAE run, in its folder.

    The analogies use ``num_examples`` examples spread over ``data`` (their known labels
    where given, else the classifier's).
    """
    shape = run.image_shape
    chosen = spread_subset(data, num_examples)
    y = chosen.y if chosen.y is not None and bool((chosen.y >= 0).all()) else None
    with torch.no_grad():
        return {
            "analogies": plot_analogies(
                run.model, chosen.in_memory, shape, run.path / "analogies.png", y
            ),
            "conditional_samples": plot_conditional_samples(
                run.model, shape, run.path / "conditional_samples.png"
            ),
        }


def read_metrics(folder: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's ``metrics.jsonl`` (empty if there is none)."""
    file = Path(folder) / "metrics.jsonl"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def spread_subset(data: Dataset, size: int, seed: int = 0) -> Dataset:
    """At most ``size`` rows drawn at random (seeded), in memory: files sorted by class stay
    mixed, and rows on disk are read."""
    if len(data) <= size:
        return data[torch.arange(len(data))]
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]
    return data[rows.sort().values]


def write_report(run: Any, *, title: str | None = None) -> Path:
    """Write ``report.html`` in the run folder: config, metrics, and every figure of
    :data:`FIGURES` present in the folder, inlined so the page reads offline."""
    folder = Path(run.path)
    config = json.loads((folder / "config.json").read_text())
    metrics = dict(run.metrics)
    history = read_metrics(folder)
    last_epoch = history[-1] if history else {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title or f'aevb run {folder.name}')}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title or f'aevb run {folder.name}')}</h1>",
        "<h2>Metrics</h2>",
        _table(metrics),
    ]
    if last_epoch:
        parts += ["<h2>Last epoch</h2>", _table(last_epoch)]
    if (folder / "evaluation.json").exists():
        evaluation = json.loads((folder / "evaluation.json").read_text())
        shown = {k: v for k, v in evaluation.items() if k not in ("activity", "kl_per_dim")}
        parts += ["<h2>Evaluation</h2>", _table(shown)]
    parts.append("<h2>Figures</h2>")
    for file, caption in FIGURES.values():
        if (folder / file).exists():
            parts.append(_figure(folder / file, caption))
    parts += ["<h2>Config</h2>"]
    for section, values in config.items():
        if isinstance(values, dict):
            parts += [f"<h3>[{html.escape(section)}]</h3>", _table(values)]
        else:
            parts += [_table({section: values})]
    parts.append("</body></html>")
    out = folder / "report.html"
    write_text(out, "\n".join(parts))
    return out


def _figure(path: Path, caption: str) -> str:
    if path.suffix == ".txt":
        return (
            f"<figure><pre>{html.escape(path.read_text())}</pre>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(path.stem)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(values: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_format(value))}</td></tr>"
        for key, value in values.items()
    )
    return f"<table>{rows}</table>"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.7em; text-align: left; }
th { background: #f4f4f4; font-weight: 600; }
figure { display: inline-block; margin: 0 1.5em 1.5em 0; vertical-align: top; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; max-width: 40em; }
"""

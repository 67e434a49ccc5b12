"""What a text run shows instead of image grids: sentences, as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..files import write_text
from ..models.sequence import homotopies
from ..models.vae import VAE


@torch.no_grad()
def write_sentences(
    model: VAE, vocabulary: Any, x: torch.Tensor, path: str | Path, num: int = 5
) -> Path:
    """Write ``num`` sentences drawn from the prior (ancestral, then greedy), ``num`` held-out
    lines of ``x`` each followed by its greedy reconstruction, and ``num`` homotopies between
    pairs of lines of ``x`` (Bowman et al. 2016), to the text file ``path``."""
    decode = vocabulary.decode
    lines = ["Sampled from the prior (z ~ p(z), x ~ p(x|z)):"]
    lines += [f"  {line}" for line in decode(model.sample(num))]
    lines += ["", "Greedy decodings of z ~ p(z):"]
    lines += [f"  {line}" for line in decode(model.sample(num, mean=True))]
    shown = x[:num]
    lines += ["", "Held-out lines and their reconstructions (greedy, z = E_q[z|x]):"]
    for line, again in zip(decode(shown), decode(model.reconstruct(shown)), strict=True):
        lines += [f"  {line}", f"    -> {again}"]
    pairs = min(num, len(x) // 2)
    if pairs:
        lines += ["", "Homotopies (z on the line between the codes of two lines):"]
        paths = homotopies(model, x[:pairs], x[pairs : 2 * pairs], num_steps=5)
        for path_ids in paths:
            lines += [f"  {line}" for line in decode(path_ids)] + [""]
    write_text(path, "\n".join(lines).rstrip() + "\n")
    return Path(path)

"""What a text run (``body = 'rnn'``, a ``.txt``/``.txt.gz`` source) adds to a run folder:
its lines split and encoded with a vocabulary built on the training lines, and that
vocabulary saved as ``vocab.json``, so that new text is encoded as the model was trained."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..data.dataset import Dataset
from ..data.text import Vocabulary, is_text, load_text, read_lines, text_dataset
from ..errors import DataError
from ..files import write_text
from ..models.sequence import homotopies
from .config import RunConfig

if TYPE_CHECKING:  # types only: runs imports this module
    from .runs import Run

VOCABULARY = "vocab.json"


def text_splits(
    config: RunConfig, vocabulary: Vocabulary | None = None
) -> tuple[Dataset, Dataset, Dataset]:
    """Train, valid and test lines of a text run (``vocabulary``: a trained run's)."""
    data = config.data
    parts = load_text(
        data.source,
        valid_source=data.valid_source,
        test_source=data.test_source,
        fractions=(data.valid_fraction, data.test_fraction),
        seed=config.seed,
        max_length=data.max_length,
        vocab_size=data.vocab_size,
        lowercase=data.lowercase,
        vocabulary=vocabulary,
    )
    for part in parts:  # counted changes are said, never silent
        for note in part.notes:
            print(f"note: {note}", file=sys.stderr)
    return parts


def run_vocabulary(path: Path, digest: str | None = None) -> Vocabulary | None:
    """The vocabulary saved in run folder ``path`` (``None``: not a text run).

    Raises:
        DataError: ``vocab.json`` is not the file the run was trained with (``digest``, its
            SHA-256 recorded in ``run.json``), so ids would mean other words.
    """
    file = path / VOCABULARY
    if not file.exists():
        return None
    if digest is not None and vocabulary_digest(file) != digest:
        raise DataError(
            f"{file} does not match the run: the model was trained with another vocabulary, "
            "so its ids would mean other words; restore the run's own vocab.json, or train anew"
        )
    return Vocabulary.load(file)


def vocabulary_digest(file: Path) -> str:
    """SHA-256 of a saved vocabulary: recorded in ``run.json`` and checked on loading."""
    return hashlib.sha256(file.read_bytes()).hexdigest()


def text_like(config: RunConfig, vocabulary: Vocabulary, source: str | Path) -> Dataset:
    """New lines from ``source`` encoded with a trained run's ``vocabulary``."""
    if not is_text(source):
        raise DataError(
            f"{source}: this run reads text; give a .txt or .txt.gz file, one sentence per line"
        )
    lines, skipped = read_lines(source)
    if skipped:
        print(f"note: {source}: {skipped} empty lines skipped", file=sys.stderr)
    dataset = text_dataset(lines, vocabulary, config.data.max_length, str(source))
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    return dataset


@torch.no_grad()
def text_samples(
    run: Run, num: int, *, greedy: bool, beam: int, between: list[str] | None
) -> torch.Tensor:
    """``num`` sentences (id rows) of a text run: from z ~ p(z) drawn ancestrally, greedily
    or by beam search, or decoded along the line between the codes of the two sentences
    ``between`` (a homotopy, Bowman et al. 2016)."""
    vocabulary, model = run.vocabulary, run.vae
    assert vocabulary is not None
    if between is not None:
        encoded = vocabulary.encode(between, max_length=run.config.data.max_length)
        if encoded.report():
            print(f"note: --between: {encoded.report()}", file=sys.stderr)
        return homotopies(model, encoded.ids[:1], encoded.ids[1:], num, beam=beam)[0]
    px = model.decode(model.prior().sample((num,)))
    if beam:
        return px.beam_search(beam)  # type: ignore[attr-defined]
    return px.mean if greedy else px.sample()


def write_lines(run: Run, x: torch.Tensor, out: Path, *, pairs: bool = False) -> Path:
    """Id rows as text, one sentence per line (``pairs``: each input, then "->" and its
    reconstruction), written whole."""
    vocabulary = run.vocabulary
    if vocabulary is None:
        raise DataError(f"{run.path} is not a text run: write .png, .npy or .csv instead of .txt")
    lines = vocabulary.decode(x)
    if pairs:
        lines = [f"{a}\n  -> {b}" for a, b in zip(lines[::2], lines[1::2], strict=True)]
    write_text(out, "\n".join(lines) + "\n")
    return out

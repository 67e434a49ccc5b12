"""Text as data: lines from a file (plain or gzipped), a word-level vocabulary built on the
training lines, and sentences as padded rows of token ids.

A sentence of n words is the row ``[w_1, ..., w_n, </s>, <pad>, ...]`` of ids (as floats, like
every other datum; id 0 is ``<pad>``), so the ordinary Trainer, samplers and IS estimators move
it like any vector; the sequence likelihood (:class:`aevb.distributions.sequence.TokenSequence`)
reads the ids and masks the padding. ``</s>`` is part of the sentence: the models predict the
end, and perplexity per word counts it (as the language-modelling literature does).

The tokenizer is Hugging Face ``tokenizers``' word level (Unicode-aware splitting into words
and punctuation); its JSON, saved with a run, makes encoding new text reproducible.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from ..errors import DataError
from ..files import write_text
from .dataset import Dataset, split

TEXT_SUFFIXES = (".txt", ".txt.gz")

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 in every vocabulary


def read_lines(path: str | Path) -> tuple[list[str], int]:
    """The non-empty lines of a UTF-8 text file (``.gz``: gzipped), stripped, and how many
    empty lines were skipped.

    Raises:
        DataError: the file is missing, not UTF-8 text, or has no non-empty line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a text file with one sentence per line")
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        raw = data.decode("utf-8").splitlines()
    except (UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(
            f"{path} is not UTF-8 text ({error}); give one sentence per line, plain or .gz"
        ) from None
    lines = [line.strip() for line in raw]
    kept = [line for line in lines if line]
    if not kept:
        raise DataError(f"{path} holds no text (every line is empty); give one sentence per line")
    return kept, len(lines) - len(kept)


@dataclass(frozen=True)
class EncodedText:
    """Sentences as ids: ``ids (n, max_length + 1)`` float rows (words, ``</s>``, padding),
    with the counts a user should hear about."""

    ids: torch.Tensor
    truncated: int  # sentences cut to max_length words
    unknown: int  # words outside the vocabulary, read as <unk>
    words: int  # words in all, </s> not counted

    def report(self) -> str:
        """One line saying what was changed, or ``''`` when nothing was."""
        parts = []
        if self.truncated:
            parts.append(f"{self.truncated} lines cut to {self.ids.shape[1] - 1} words")
        if self.unknown:
            share = self.unknown / max(self.words, 1)
            parts.append(f"{self.unknown} words ({share:.1%}) not in the vocabulary, read as <unk>")
        return "; ".join(parts)


class Vocabulary:
    """Words <-> ids: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, then the words kept.

    Example:
        >>> vocab = Vocabulary.build(["to be or not to be", "that is the question"])
        >>> vocab.decode(vocab.encode(["to be , or not"]).ids)
        ['to be <unk> or not']
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        ids = [tokenizer.token_to_id(token) for token in SPECIALS]
        if ids != list(range(len(SPECIALS))):
            raise DataError(
                f"not an aevb vocabulary: the special tokens {SPECIALS} must have ids 0-3, got "
                f"{ids}; build it with Vocabulary.build"
            )
        self.tokenizer = tokenizer

    @classmethod
    def build(
        cls,
        lines: Iterable[str],
        *,
        max_size: int = 10_000,
        min_count: int = 1,
        lowercase: bool = False,
    ) -> Vocabulary:
        """The ``max_size`` most frequent words (special tokens included) of ``lines``, each
        seen at least ``min_count`` times; ``lowercase`` folds case first."""
        if max_size <= len(SPECIALS):
            raise DataError(f"max_size must exceed {len(SPECIALS)} (the special tokens)")
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation runs
        trainer = trainers.WordLevelTrainer(
            vocab_size=max_size,
            min_frequency=min_count,
            special_tokens=list(SPECIALS),
            show_progress=False,
        )
        tokenizer.train_from_iterator(lines, trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """A vocabulary saved by :meth:`save`.

        Raises:
            DataError: the file is missing or is not a vocabulary.
        """
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as error:  # tokenizers raises its own Exception for a bad file
            raise DataError(f"{path} is not a vocabulary saved by aevb ({error})") from None

    def save(self, path: str | Path) -> None:
        write_text(path, self.tokenizer.to_str())

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        mine, theirs = json.loads(self.tokenizer.to_str()), json.loads(other.tokenizer.to_str())
        return mine["model"]["vocab"] == theirs["model"]["vocab"]

    __hash__ = None  # type: ignore[assignment]

    def tokens(self, line: str) -> list[str]:
        return self.tokenizer.encode(line, add_special_tokens=False).tokens

    def encode(self, lines: Sequence[str], *, max_length: int = 50) -> EncodedText:
        """``lines`` as rows of ``max_length + 1`` ids: at most ``max_length`` words each, then
        ``</s>``, then padding (one row width for every sentence a model reads)."""
        if max_length < 1:
            raise DataError(f"max_length must be at least 1 word, got {max_length}")
        if not lines:
            raise DataError("no lines to encode: give at least one sentence")
        encodings = self.tokenizer.encode_batch(list(lines), add_special_tokens=False)
        ids = torch.zeros(len(lines), max_length + 1)
        truncated = unknown = words = 0
        for row, encoding in enumerate(encodings):
            sentence = encoding.ids
            words += len(sentence)
            unknown += sum(1 for i in sentence if i == 1)
            if len(sentence) > max_length:
                truncated += 1
                sentence = sentence[:max_length]
            ids[row, : len(sentence)] = torch.tensor(sentence, dtype=torch.float32)
            ids[row, len(sentence)] = SPECIALS.index(EOS)
        return EncodedText(ids, truncated, unknown, words)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Rows of ids back to text, each up to its first ``</s>`` (padding and ``<s>``
        dropped; ``<unk>`` shown as such)."""
        eos = SPECIALS.index(EOS)
        lines = []
        for row in ids.long().tolist():
            row = row[: row.index(eos)] if eos in row else row
            words = [self.tokenizer.id_to_token(i) for i in row if i not in (0, 2)]
            lines.append(" ".join(word for word in words if word is not None))
        return lines


def lengths(ids: torch.Tensor) -> torch.Tensor:
    """``(*batch,)`` tokens per row of ``ids (*batch, T)``, ``</s>`` counted, padding not."""
    return (ids != 0).sum(-1)


def is_text(source: str | Path) -> bool:
    """Whether ``source`` names a text file (``.txt`` or ``.txt.gz``: one sentence per line)."""
    return str(source).lower().endswith(TEXT_SUFFIXES)


def text_dataset(
    lines: Sequence[str], vocabulary: Vocabulary, max_length: int, name: str
) -> Dataset:
    """``lines`` encoded as a :class:`Dataset` of id rows carrying ``vocabulary``; what was
    changed (lines cut, unknown words) is in ``Dataset.notes``."""
    encoded = vocabulary.encode(lines, max_length=max_length)
    notes = (f"{name}: {encoded.report()}",) if encoded.report() else ()
    return Dataset(encoded.ids, name=name, vocabulary=vocabulary, notes=notes)


def load_text(
    source: str | Path,
    *,
    valid_source: str | Path | None = None,
    test_source: str | Path | None = None,
    fractions: tuple[float, float] = (0.1, 0.1),
    seed: int = 0,
    max_length: int = 50,
    vocab_size: int = 10_000,
    lowercase: bool = False,
    vocabulary: Vocabulary | None = None,
) -> tuple[Dataset, Dataset, Dataset]:
    """Train, valid and test sentences of a text file, as id rows of ``max_length + 1``.

    Held-out lines come from ``valid_source`` and ``test_source`` when given (a fixed split),
    else from a shuffled split of ``source`` by ``fractions`` and ``seed``. The vocabulary is
    built on the training lines alone (``vocab_size`` tokens, special ones included), unless
    ``vocabulary`` (a trained run's) is given. Empty lines are skipped and counted; lines cut
    at ``max_length`` words and words outside the vocabulary are counted: each dataset's
    ``notes`` say so.
    """
    lines, skipped = read_lines(source)
    notes = [f"{source}: {skipped} empty lines skipped"] if skipped else []
    if (valid_source is None) != (test_source is None):
        raise DataError("give both valid_source and test_source (a fixed split), or neither")
    if valid_source is not None and test_source is not None:
        parts = [lines, read_lines(valid_source)[0], read_lines(test_source)[0]]
    else:
        rows = split(Dataset(torch.arange(len(lines))[:, None]), fractions, seed=seed)
        parts = [[lines[i] for i in part.x[:, 0].tolist()] for part in rows]
    if vocabulary is None:
        vocabulary = Vocabulary.build(parts[0], max_size=vocab_size, lowercase=lowercase)
    names = [f"{Path(source).name} ({part})" for part in ("train", "valid", "test")]
    train, valid, test = (
        text_dataset(part, vocabulary, max_length, name)
        if part
        else _empty(vocabulary, max_length, name)
        for part, name in zip(parts, names, strict=True)
    )
    return replace(train, notes=(*notes, *train.notes)), valid, test


def _empty(vocabulary: Vocabulary, max_length: int, name: str) -> Dataset:
    return Dataset(torch.zeros(0, max_length + 1), name=name, vocabulary=vocabulary)

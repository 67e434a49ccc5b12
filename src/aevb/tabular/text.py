"""CSV tables kept as text, so that imputation changes only the holes.

``aevb impute`` reads every cell of a CSV as the exact text in the file (:func:`read_text_table`):
zip codes keep their leading zeros, 19-digit ids stay exact, "NA" in a label column stays the
label "NA". Only the tokens given as ``missing`` (by default the empty cell) are holes. A
parsed copy (numbers where a whole column is numbers, text otherwise) is what the model sees;
the output (:func:`fill_text_table`) is the original text with each hole replaced by the
imputed value, written in the column's own style (as many decimals as its observed cells use).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..files import atomic_path

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
DEFAULT_MISSING = ("",)


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def read_text_table(
    path: Path, missing: Sequence[str] = DEFAULT_MISSING
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(text, parsed)``: every cell as written, and the table the model sees (NaN for holes).

    Raises:
        DataError: duplicate or empty column names (renaming them would change the output).
    """
    try:
        with open(path, newline="", encoding="utf-8") as file:
            header = next(csv.reader(file, delimiter=_separator(path)), [])
        text = pd.read_csv(
            path, sep=_separator(path), dtype=str, keep_default_na=False, na_filter=False
        )
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise DataError(f"could not read {path} as a table: {error}") from None
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates or any(name.strip() == "" for name in header):
        named = ", ".join(map(repr, duplicates)) or "an empty name"
        raise DataError(
            f"{path} has duplicate or empty column names ({named}): give every column its "
            "own name in the header row"
        )
    holes = text.isin(list(missing))
    parsed = text.mask(holes)
    for name in parsed.columns:
        numbers = pd.to_numeric(parsed[name], errors="coerce")
        if numbers.notna().sum() == parsed[name].notna().sum():  # every observed cell a number
            parsed[name] = numbers
    return text, parsed


def fill_text_table(text: pd.DataFrame, parsed: pd.DataFrame, filled: pd.DataFrame) -> pd.DataFrame:
    """The original text with every hole (NaN in ``parsed``) replaced by ``filled``'s value."""
    out = text.copy()
    for name in text.columns:
        holes = parsed[name].isna().to_numpy()
        if not holes.any():
            continue
        values = filled[name].to_numpy()[holes]
        if pd.api.types.is_numeric_dtype(parsed[name]):
            decimals = _decimals(text[name].to_numpy()[~holes])
            shown = [_number(float(v), decimals) for v in values]
        else:
            shown = [str(v) for v in values]
        column = out[name].to_numpy(dtype=object)
        column[holes] = shown
        out[name] = column
    return out


def write_text_table(frame: pd.DataFrame, path: Path) -> None:
    """Write cells as they are (text), whole or not at all."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, sep=_separator(path), quoting=csv.QUOTE_MINIMAL)


def _decimals(cells: np.ndarray) -> int:
    """The most digits after the decimal point among a column's observed cells."""
    counts = [len(c.split(".", 1)[1]) for c in cells if "." in c and "e" not in c.lower()]
    return max(counts, default=0)


def _number(value: float, decimals: int) -> str:
    return str(round(value)) if decimals == 0 else f"{value:.{decimals}f}"

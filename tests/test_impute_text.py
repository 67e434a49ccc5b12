"""`aevb impute` never changes an observed cell (reliability class 1): through the real
command, every observed cell comes back as the exact text it was, only holes are filled, which
tokens are holes is an option, and what cannot be honoured is refused before any work."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from commands import aevb

AEVB = str(Path(sys.executable).with_name("aevb"))
TABLE = """zip,id,label,height,count
00501,1234567890123456789,NA,1.25,3
02134,9999999999999999999,cat,,4
00501,1234567890123456780,dog,1.50,
10001,1234567890123456781,,1.75,5
02134,1234567890123456782,cat,2.00,2
00501,1234567890123456783,dog,1.10,3
10001,1234567890123456784,NA,,1
02134,1234567890123456785,"cat, grey",1.30,4
"""


def _impute(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return aevb("impute", "table.csv", "--epochs", "15", "--seed", "0", *args, cwd=folder)


def _cells(path: Path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "table.csv").write_text(TABLE)
    return tmp_path


@pytest.mark.parametrize("missing", ["", "NA"])
def test_observed_cells_come_back_as_written_and_only_holes_change(
    folder: Path, missing: str
) -> None:
    result = _impute(folder, "--out", "filled.csv", "--missing", missing)
    assert result.returncode == 0, result.stderr
    before, after = _cells(folder / "table.csv"), _cells(folder / "filled.csv")
    assert after[0] == before[0] == ["zip", "id", "label", "height", "count"]
    holes = {"", missing}
    for row_before, row_after in zip(before[1:], after[1:], strict=True):
        for old, new in zip(row_before, row_after, strict=True):
            if old in holes:
                assert new not in holes  # filled
            else:
                assert new == old  # byte for byte: 00501, 19-digit ids, "NA", "cat, grey"
    labels = {row[2] for row in after[1:]}
    assert ("NA" in labels) == (missing == "")  # NA is a label unless named as missing
    assert all(row[4].isdigit() for row in after[1:])  # counts filled in the column's style
    heights = [row[3] for row in after[1:]]
    assert all(len(h.split(".")[1]) == 2 for h in heights)  # two decimals, as observed


def test_what_cannot_be_honoured_is_refused_before_any_work(folder: Path) -> None:
    result = _impute(folder, "--out", "filled.xlsx")
    assert result.returncode == 2 and "cannot write filled.xlsx" in result.stderr
    (folder / "table.csv").write_text("a,b,a\n1,2,3\n,5,6\n")
    result = _impute(folder, "--out", "filled.csv")
    assert result.returncode == 2 and "duplicate or empty column names ('a')" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["table.csv"]

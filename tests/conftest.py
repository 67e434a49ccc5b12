"""Strict test configuration: argument validation on, every test seeded, warnings are errors
(pyproject), and the reference data of ../shared/data found or cleanly skipped."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Distribution

Distribution.set_default_validate_args(True)
# Under pytest-xdist the cores are shared among the workers (and the commands they run).
_THREADS = max(
    1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
)
torch.set_num_threads(_THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def float64():
    """Run a test in double precision, restoring the default afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``, or skip: the project must work without the reference data."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def shakespeare(shared_data: Path) -> list[str]:
    """The training lines of ../shared/data/shakespeare (89,845 lines), or skip."""
    path = shared_data / "shakespeare" / "shakespeare_train.txt.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return _lines(path)


@functools.cache
def _lines(path: Path) -> list[str]:
    from aevb.data.text import read_lines

    return read_lines(path)[0]

"""Files that are not what they claim (reliability class 6): one clear line, no partial files,
through the real command; Ctrl-C at start-up exits quietly with status 130."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from commands import aevb

AEVB = str(Path(sys.executable).with_name("aevb"))


def _aevb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return aevb(*args, cwd=cwd)


def _bad_files(folder: Path) -> None:
    x = np.random.default_rng(0).random((100, 64)).astype(np.float32)
    np.savez(folder / "whole.npz", x=x)
    whole = (folder / "whole.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    np.save(folder / "whole.npy", x)
    raw = (folder / "whole.npy").read_bytes()
    header = raw[:128].decode("latin1")
    forged = header.replace("(100, 64)", "(1000000000, 64)")[: len(header)]
    (folder / "huge.npy").write_bytes(forged.encode("latin1") + raw[128:])
    np.save(folder / "fields.npy", np.zeros(10, dtype=[("a", "f4"), ("b", "i4")]))
    np.save(folder / "complex.npy", x.astype(np.complex64))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.npz", "could not read truncated.npz"),
        ("huge.npy", "header says shape (1000000000, 64)"),
        ("fields.npy", "structured array (fields a, b)"),
        ("complex.npy", "complex numbers"),
        ("missing.npy", "no such data file"),
    ],
)
def test_damaged_or_odd_data_files_get_one_line(tmp_path: Path, name: str, message: str) -> None:
    _bad_files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _aevb("train", "--data", name, "--epochs", "1", "--out", "run", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("aevb: error:") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder, nothing new


def test_an_unwritable_output_path_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trained = _aevb("train", "--data", "digits", "--epochs", "1", "--hidden-dims", "8",
                    "--latent-dim", "2", "--out", "run", "--quiet", cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    target = tmp_path / "no" / "such" / "folder" / "samples.png"
    result = _aevb("sample", "run", "--out", str(target), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(target) in line and "No such file or directory" in line
    assert not any(p.name.startswith(".") and "tmp" in p.name for p in run.iterdir())


def test_ctrl_c_during_start_up_exits_quietly_with_130(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [AEVB, "train", "--data", "digits", "--out", "run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal: a shell starts background jobs with SIGINT ignored, and
        # a test run started that way would pass the ignoring on to the command
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # in the imports of the command (torch's library is being loaded), before any epoch; a
    # fixed sleep could land in Python's own start-up on a loaded machine, before aevb runs
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 60
    while "libtorch" not in maps.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in stderr and stderr.strip().startswith("aevb: interrupted")

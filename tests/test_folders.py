"""Outputs never clobber (reliability class 2): through the real command, a folder that is
not an empty or new one is refused unless asked, a refused or failed run changes nothing, and
two processes cannot train into one folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from commands import aevb

from aevb.cli.folders import LOCK, locked
from aevb.errors import ConfigError

AEVB = str(Path(sys.executable).with_name("aevb"))
QUICK = ["--data", "digits", "--epochs", "1", "--latent-dim", "2", "--hidden-dims", "16", "--quiet"]


def _aevb(*args: str, cwd: Path, process: bool = False) -> subprocess.CompletedProcess[str]:
    return aevb(*args, cwd=cwd, process=process)


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folders")
    result = _aevb("train", *QUICK, "--out", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def _refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("aevb: error:")
    for phrase in phrases:
        assert phrase in line


def test_a_folder_with_other_files_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}')
    (folder / "notes.txt").write_text("keep me")
    before = _snapshot(folder)
    _refused(_aevb("train", *QUICK, "--out", "documents", cwd=tmp_path), "--overwrite", "empty")
    assert _snapshot(folder) == before


def test_overwrite_writes_into_a_folder_and_takes_over_a_dead_lock(tmp_path: Path) -> None:
    """Other files stay as they were; a lock left by a process that died is taken over."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (folder / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    result = _aevb("train", *QUICK, "--out", "mixed", "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (folder / "notes.txt").read_text() == "keep me"
    assert (folder / "model.safetensors").exists() and not (folder / LOCK).exists()


def test_a_finished_run_is_refused_without_resume_or_overwrite(
    finished_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = _snapshot(run)
    _refused(_aevb("train", *QUICK, "--out", "run", cwd=tmp_path), "--resume", "--overwrite")
    assert _snapshot(run) == before


def test_overwrite_replaces_a_run_without_leaving_its_files(
    finished_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(finished_run, tmp_path / "run")
    (run / "stale.png").write_bytes(b"an old figure")
    result = _aevb("train", *QUICK, "--seed", "3", "--out", "run", "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    assert not (run / "stale.png").exists()  # nothing of the old run beside the new one
    assert (run / "report.html").exists()


def test_a_refused_resume_changes_nothing(finished_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = _snapshot(run)
    changed_model = [*QUICK, "--latent-dim", "3", "--epochs", "2"]
    _refused(_aevb("train", *changed_model, "--out", "run", "--resume", cwd=tmp_path), "[train]")
    _refused(_aevb("train", *QUICK, "--out", "empty", "--resume", cwd=tmp_path), "nothing to")
    assert _snapshot(run) == before
    assert not (tmp_path / "empty").exists()


def test_resume_rewrites_config_and_facts_only_when_it_has_finished(
    finished_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(finished_run, tmp_path / "run")
    more = [a if a != "1" else "2" for a in QUICK]  # --epochs 2
    result = _aevb("train", *more, "--out", "run", "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2
    assert json.loads((run / "run.json").read_text())["epochs_trained"] == 2


def test_a_second_process_cannot_train_into_a_locked_folder(tmp_path: Path) -> None:
    """This test process holds the lock; the command, another process, is refused by pid."""
    folder = tmp_path / "busy"
    with locked(folder):
        result = _aevb("train", *QUICK, "--out", "busy", "--overwrite", cwd=tmp_path, process=True)
        _refused(result, f"pid {os.getpid()}", "another aevb process")
        assert sorted(p.name for p in folder.iterdir()) == [LOCK]
    assert not (folder / LOCK).exists()
    with (
        pytest.raises(ConfigError, match="another aevb process"),
        locked(tmp_path / "twice"),
        locked(tmp_path / "twice"),
    ):
        pass


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from aevb.files import atomic_path

    target = tmp_path / "latents.csv"
    target.write_text("old, complete\n")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise OSError("No space left on device")
    assert target.read_text() == "old, complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents.csv"]

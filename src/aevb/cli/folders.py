"""Run folders that never clobber: what ``--out`` may be, and one writer at a time.

- A new run goes into a folder that does not exist or is empty. A folder holding a run is
  continued with ``--resume`` or replaced with ``--overwrite`` (its run files are removed
  first, so no file of the old run survives beside the new one); a folder holding other
  files is written into only with ``--overwrite``, and only aevb's own file names are touched.
- While a process trains into a folder it holds ``.aevb.lock`` (created exclusively, with its
  process id and host); a second process is refused with the first one's id. A lock left by
  a process that died on this host is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

LOCK = ".aevb.lock"
TENSORBOARD = "tensorboard"  # the folder of --tensorboard's event files
# Everything a run writes (figures and reports included), removed by --overwrite.
RUN_FILES = (
    "config.json",
    "run.json",
    "trainer.json",
    "metrics.jsonl",
    "manifest.json",
    "model.safetensors",
    "last.safetensors",
    "trainer.safetensors",
    "snapshots.safetensors",
    "evaluation.json",
    "gaps.json",
    "report.html",
    "vocab.json",
)


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds an aevb run (its config and its trainer state)."""
    return (folder / "config.json").is_file() and (folder / "trainer.json").is_file()


def check_out_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, an ``--out`` that training would clobber.

    Raises:
        ConfigError: naming the folder, what it holds, and the options that say what to do.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out, --overwrite replaces it: pick one")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose a folder for the run")
    if resume:
        if not is_run(out):
            raise ConfigError(
                f"nothing to resume in {out}: it holds no run (config.json and trainer.json); "
                "train without --resume to start one"
            )
        return
    if not out.exists() or overwrite or not any(out.iterdir()):
        return
    if is_run(out):
        raise ConfigError(
            f"{out} already holds a run: continue it with --resume, replace it with "
            "--overwrite, or choose another --out"
        )
    shown = ", ".join(sorted(p.name for p in out.iterdir())[:3])
    raise ConfigError(
        f"--out {out} is not empty ({shown}, ...) and holds no aevb run: choose a new or empty "
        "folder, or pass --overwrite to write the run's files into it (files of the same names "
        "are replaced, others are left alone)"
    )


def clear_run(out: Path) -> None:
    """Remove the files of a previous run in ``out`` (``--overwrite``); nothing else."""
    figures = [*out.glob("*.png"), *out.glob("*.gif")] if is_run(out) else []
    for path in [*(out / name for name in RUN_FILES), *figures]:
        path.unlink(missing_ok=True)
    events = out / TENSORBOARD
    if events.is_dir():  # only event files, which aevb wrote
        for path in events.glob("events.out.tfevents.*"):
            path.unlink()
        if not any(events.iterdir()):
            events.rmdir()


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out/.aevb.lock`` while the body runs; refuse if a live process holds it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if _alive(holder):
                raise ConfigError(
                    f"another aevb process (pid {holder.get('pid')} on {holder.get('host')}) is "
                    f"training into {out}: wait for it to finish, or choose another --out"
                ) from None
            path.unlink(missing_ok=True)  # left by a process that died: take it over
            continue
        with os.fdopen(descriptor, "w") as file:
            json.dump(owner, file)
        break
    try:
        yield
    finally:
        if _read(path).get("pid") == owner["pid"]:
            path.unlink(missing_ok=True)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _alive(holder: dict) -> bool:
    """Whether the lock's process still runs (a lock from another host counts as live)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False  # unreadable: a torn lock file, from a kill while it was written
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

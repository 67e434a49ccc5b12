"""Files written whole or not at all.

Every file aevb writes goes through :func:`atomic_path`: the writer fills a temporary file
beside the target (same folder, so the same file system) and it replaces the target only once
complete, with ``os.replace``. A kill, a full disk or an exception midway leaves the old file
(or none), never a truncated one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path``, on error it is removed.

    The temporary name keeps ``path``'s suffix, so writers that choose the format by suffix
    (matplotlib, NumPy, pandas) write the same format.

    Example:
        >>> with atomic_path("figure.png") as tmp:  # doctest: +SKIP
        ...     figure.savefig(tmp)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.filename in (str(tmp), tmp):  # name the file the user asked for
            error.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """``Path.write_text``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)

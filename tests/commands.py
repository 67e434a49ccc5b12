"""Running the ``aevb`` command in tests.

:func:`aevb` calls the console script's own ``main`` in the test process, with its output
captured and its exit status returned as a subprocess would give them: the same code path
minus the 3-4 s of imports (torch, its compiler, matplotlib) a new process pays, which made
most of the test suite's time. ``process=True`` runs the installed script as a real second
process, for what only a process can show: signals, locks held by another pid, a terminal.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

from torch.distributions import Distribution

AEVB = str(Path(sys.executable).with_name("aevb"))


def aevb(
    *args: str | Path,
    cwd: str | Path | None = None,
    check: bool = False,
    process: bool = False,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``aevb ARGS`` (in ``cwd``): its exit status, stdout and stderr.

    An exception that escapes ``main`` gives status 1 and its traceback on stderr, as the
    interpreter would print it; warnings are printed, not raised (as outside pytest).
    """
    command = [str(arg) for arg in args]
    if process:
        result = subprocess.run(
            [AEVB, *command], cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    else:
        result = _in_process(command, cwd)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _in_process(command: list[str], cwd: str | Path | None) -> subprocess.CompletedProcess[str]:
    from aevb.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    validating = Distribution._validate_args  # the tests' strict default, not the command's
    Distribution.set_default_validate_args(False)
    try:
        with (
            contextlib.chdir(cwd or os.getcwd()),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", "`torch.jit.script_method`")  # torch's own imports
            try:
                code = main(command)
            except SystemExit as exit:  # argparse: --help, usage errors
                code = exit.code if isinstance(exit.code, int) else (exit.code is not None)
            except Exception:
                err.write(traceback.format_exc())
                code = 1
    finally:
        Distribution.set_default_validate_args(validating)
    return subprocess.CompletedProcess(
        ["aevb", *command], int(code), out.getvalue(), err.getvalue()
    )

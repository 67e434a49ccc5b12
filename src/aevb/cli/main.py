"""``aevb``: parse the command line (:mod:`aevb.cli.parser`, light), then import and run
the one command asked for; errors meant for the user are one line, exit status 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import AevbError
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to relaunch (train --nproc)
    module, _, name = args.command.partition(":")
    try:
        command = getattr(importlib.import_module(f".{module}", __package__), name)
        return int(command(args))
    except AevbError as error:
        print(f"aevb: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        training = name == "train"
        note = "; the last finished epoch is checkpointed (--resume)" if training else ""
        print(f"aevb: interrupted{note}", file=sys.stderr)
        return 130
    except OSError as error:  # unreadable input, unwritable output, a full disk
        if isinstance(error, BrokenPipeError) or error.filename is None:
            raise
        print(
            f"aevb: error: {error.strerror or error} for {error.filename}: check that the path "
            "exists, is writable, and that its disk has room (nothing was left half-written)",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())

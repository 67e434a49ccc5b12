"""The ``aevb`` command: the only place where names become classes (config), run folders."""

from .main import main

__all__ = ["main"]

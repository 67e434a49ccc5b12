"""The ``aevb`` command: options and their registries of names (config), names turned into
objects (build), run folders (runs); the only layer that turns strings into classes."""

from .main import main

__all__ = ["main"]

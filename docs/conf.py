"""Sphinx configuration: the API pages are built from the docstrings (``make docs``)."""

from __future__ import annotations

import aevb

project = "aevb"
author = "the aevb developers"
release = version = aevb.__version__ if hasattr(aevb, "__version__") else "0.1.0"
extensions = [
    "myst_parser",  # the README and ARCHITECTURE pages are Markdown
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style "Args:" / "Returns:" sections
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = "aevb"
# Links in the README point into the repository (bench/, tests/): not pages of this site.
suppress_warnings = ["myst.xref_missing"]

"""Figures (matplotlib imported lazily) and the self-contained HTML report of a run."""

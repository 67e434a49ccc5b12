"""Schemas: which distribution family models each column of a table, and how rows become tensors.

:meth:`Schema.infer` reads a pandas DataFrame's dtypes and value ranges:

=================================================  =====================
column                                             family
=================================================  =====================
bool, or numbers that are only 0 and 1             ``bernoulli``
category, strings                                  ``categorical``
integers >= 0, variance/mean >= 1.2                ``negative-binomial``
integers >= 0, variance/mean in [0.8, 1.2)         ``poisson``
other integers                                     ``normal``
floats strictly inside (0, 1)                      ``beta``
floats > 0                                         ``gamma``
other floats                                       ``normal``
=================================================  =====================

Any column's family can be overridden (``families={"income": "lognormal"}``). Continuous
columns are rescaled inside (``normal`` and ``student-t`` standardized, positive families
divided by their standard deviation) and rescaled back on output; :attr:`Schema.log_scale`
gives the Jacobian that turns densities of the rescaled values into densities in data units.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..distributions.columns import FAMILIES
from ..errors import DataError


@dataclass
class ColumnSpec:
    """How one column is modelled.

    Attributes:
        name: the column's name in the table.
        family: a key of :data:`aevb.distributions.columns.FAMILIES`.
        dtype: the column's pandas dtype, restored on output.
        categories: the labels of a categorical column, in code order.
        loc, scale: the column is modelled as ``(x - loc) / scale``.
        reason: why this family was chosen (shown by :meth:`Schema.describe`).
    """

    name: str
    family: str
    dtype: str
    categories: list[Any] | None = None
    loc: float = 0.0
    scale: float = 1.0
    reason: str = ""

    @property
    def num_categories(self) -> int:
        return len(self.categories) if self.categories is not None else 0


@dataclass
class Schema:
    """The columns of a table, each with its family and rescaling. See the module docstring."""

    columns: list[ColumnSpec] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def families(self) -> list[str]:
        return [c.family for c in self.columns]

    @property
    def num_categories(self) -> list[int]:
        return [c.num_categories for c in self.columns]

    @property
    def log_scale(self) -> torch.Tensor:
        """``(num_columns,)`` log of each column's rescaling factor (0 for discrete columns).

        ``log p(x) = log p(rescaled x) - sum of log_scale over the observed entries``.
        """
        return torch.tensor([np.log(c.scale) for c in self.columns], dtype=torch.float32)

    # -- inference --------------------------------------------------------------------------

    @classmethod
    def infer(
        cls,
        frame: pd.DataFrame,
        families: Mapping[str, str] | None = None,
        *,
        max_categories: int = 50,
    ) -> Schema:
        """Choose a family per column from its dtype and values (see the module docstring).

        Args:
            frame: the table; NaN/None/pd.NA mark missing entries.
            families: per-column overrides, ``{"column": "family"}``.
            max_categories: more distinct labels than this in a text column is an error
                (usually an identifier or free text, which a categorical cannot model).

        Raises:
            DataError: an unknown column or family in ``families``, an all-missing column,
                too many categories, or values outside an overriding family's support.
        """
        families = dict(families or {})
        unknown = [name for name in families if name not in frame.columns]
        if unknown:
            raise DataError(
                f"families names columns that are not in the table: {unknown}; "
                f"the columns are {list(map(str, frame.columns))}"
            )
        for name, family in families.items():
            if family not in FAMILIES:
                close = difflib.get_close_matches(family, FAMILIES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(
                    f"column {name!r}: unknown family {family!r}{hint}; "
                    f"choose from {', '.join(FAMILIES)}"
                )
        columns = []
        for name in frame.columns:
            series = frame[name]
            observed = series.dropna()
            if observed.empty:
                raise DataError(
                    f"column {name!r} has no observed values (all {len(series)} are missing): "
                    "drop it from the table"
                )
            if name in families:
                spec = ColumnSpec(str(name), families[name], str(series.dtype), reason="given")
                if spec.family == "categorical":
                    spec.categories = _categories(series)
            else:
                spec = _infer_column(series, observed)
            if spec.family == "categorical" and spec.num_categories > max_categories:
                raise DataError(
                    f"column {name!r} has {spec.num_categories} distinct values, more than "
                    f"max_categories={max_categories} for a categorical column: drop it if it "
                    "is an identifier or free text, or raise max_categories"
                )
            _set_rescaling(spec, observed)
            columns.append(spec)
        schema = cls(columns)
        schema.to_tensor(frame)  # every value inside its column's support, or a named error
        return schema

    # -- tables <-> tensors -----------------------------------------------------------------

    def to_tensor(self, frame: pd.DataFrame) -> torch.Tensor:
        """``(n, num_columns)`` float32: rescaled values, category codes, NaN where missing.

        Raises:
            DataError: a column is absent, a label was not seen when fitting, or a value is
                outside its column's support (the message names the column and the row).
        """
        absent = [c.name for c in self.columns if c.name not in frame.columns]
        if absent:
            raise DataError(
                f"the table lacks columns {absent} that the model was fitted with; "
                f"it has {list(map(str, frame.columns))}"
            )
        parts = [_encode_column(spec, frame[spec.name]) for spec in self.columns]
        return torch.as_tensor(np.stack(parts, axis=1), dtype=torch.float32)

    def to_frame(self, x: torch.Tensor | np.ndarray, index: pd.Index | None = None) -> pd.DataFrame:
        """Inverse of :meth:`to_tensor`: original units, labels and dtypes (NaN stays missing)."""
        values = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, np.float64)
        data = {c.name: _decode_column(c, values[:, j]) for j, c in enumerate(self.columns)}
        return pd.DataFrame(data, index=index)

    # -- showing and saving -----------------------------------------------------------------

    def describe(self) -> str:
        """A table of columns, families, dtypes and reasons, for the user to check."""
        rows = [("column", "family", "dtype", "why")]
        for c in self.columns:
            why = c.reason
            if c.family == "categorical":
                shown = ", ".join(map(str, (c.categories or [])[:4]))
                more = ", ..." if c.num_categories > 4 else ""
                why += f" ({c.num_categories}: {shown}{more})"
            rows.append((c.name, c.family, c.dtype, why))
        widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
        return "\n".join(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
            for row in rows
        )

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        return cls([ColumnSpec(**c) for c in data["columns"]])


def _categories(series: pd.Series) -> list[Any]:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return [_plain(v) for v in series.cat.categories]
    return sorted((_plain(v) for v in series.dropna().unique()), key=str)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (JSON-friendly labels)."""
    return value.item() if isinstance(value, np.generic) else value


def _infer_column(series: pd.Series, observed: pd.Series) -> ColumnSpec:
    name, dtype = str(series.name), str(series.dtype)
    if pd.api.types.is_bool_dtype(series.dtype):
        return ColumnSpec(name, "bernoulli", dtype, reason="boolean")
    if not pd.api.types.is_numeric_dtype(series.dtype):
        return ColumnSpec(name, "categorical", dtype, _categories(series), reason="labels")
    values = observed.to_numpy(dtype=np.float64)
    if np.isin(values, (0.0, 1.0)).all():
        return ColumnSpec(name, "bernoulli", dtype, reason="only 0 and 1")
    if pd.api.types.is_integer_dtype(series.dtype):
        mean, var = values.mean(), values.var()
        ratio = var / mean if mean > 0 else np.inf
        if values.min() >= 0 and ratio >= 1.2:
            return ColumnSpec(
                name, "negative-binomial", dtype, reason=f"counts, var/mean {ratio:.2g}"
            )
        if values.min() >= 0 and ratio >= 0.8:
            return ColumnSpec(name, "poisson", dtype, reason=f"counts, var/mean {ratio:.2g}")
        return ColumnSpec(name, "normal", dtype, reason="integers, not count-like")
    if values.min() > 0 and values.max() < 1:
        return ColumnSpec(name, "beta", dtype, reason="fractions in (0, 1)")
    if values.min() > 0:
        return ColumnSpec(name, "gamma", dtype, reason="positive numbers")
    return ColumnSpec(name, "normal", dtype, reason="real numbers")


def _set_rescaling(spec: ColumnSpec, observed: pd.Series) -> None:
    how = FAMILIES[spec.family].standardize
    if how == "none":
        return
    values = pd.to_numeric(observed, errors="coerce").to_numpy(dtype=np.float64)
    std = float(np.nanstd(values))
    spec.scale = std if std > 0 else 1.0
    if how == "center":
        spec.loc = float(np.nanmean(values))


def _encode_column(spec: ColumnSpec, series: pd.Series) -> np.ndarray:
    missing = series.isna().to_numpy()
    family = FAMILIES[spec.family]
    if spec.family == "categorical":
        codes = {label: code for code, label in enumerate(spec.categories or [])}
        labels = [_plain(v) for v in series[~missing]]
        unseen = sorted({str(v) for v in labels if v not in codes})
        if unseen:
            raise DataError(
                f"column {spec.name!r} has labels not seen when fitting: {unseen[:5]}; "
                f"known labels are {(spec.categories or [])[:10]}"
            )
        values = np.full(len(series), np.nan)
        values[~missing] = [codes[v] for v in labels]
        return values
    numeric = pd.to_numeric(series.astype(object).where(~missing, np.nan), errors="coerce")
    values = numeric.to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"column {spec.name!r} ({spec.family}) needs numbers, got {series.iloc[row]!r} "
            f"in row {series.index[row]!r}: fix the value or declare the column categorical"
        )
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise DataError(
            f"column {spec.name!r} has an infinite value in row {series.index[row]!r}: "
            "replace it by a number or leave the entry missing (NaN)"
        )
    values = (values - spec.loc) / spec.scale
    outside = ~missing & ~family.support.check(torch.as_tensor(values)).numpy()
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"column {spec.name!r} has {int(outside.sum())} values outside the support of its "
            f"{spec.family} family ({family.support}); first: {series.iloc[row]!r} in row "
            f"{series.index[row]!r}. Fix the data, or give the column another family, e.g. "
            f"families={{{spec.name!r}: 'normal'}}"
        )
    return values


def _decode_column(spec: ColumnSpec, values: np.ndarray) -> pd.Series:
    missing = np.isnan(values)
    if spec.family == "categorical":
        labels = np.array(spec.categories or [], dtype=object)
        out = np.full(len(values), None, dtype=object)
        out[~missing] = labels[values[~missing].astype(np.int64)]
        if spec.dtype == "category":
            return pd.Series(pd.Categorical(out, categories=spec.categories))
        return _astype(pd.Series(out, dtype=object), spec.dtype)
    values = values * spec.scale + spec.loc
    series = pd.Series(values)
    if spec.dtype in ("bool", "boolean"):
        flags = series.map(lambda v: pd.NA if np.isnan(v) else bool(v > 0.5)).astype("boolean")
        return flags if missing.any() or spec.dtype == "boolean" else flags.astype(bool)
    if _is_integer(spec.dtype):
        return series.round().astype("Int64" if missing.any() else spec.dtype)
    return _astype(series, spec.dtype)


def _is_integer(dtype: str) -> bool:
    try:
        return pd.api.types.is_integer_dtype(pd.api.types.pandas_dtype(dtype))
    except TypeError:
        return False


def _astype(series: pd.Series, dtype: str) -> pd.Series:
    try:
        return series.astype(dtype)
    except (TypeError, ValueError):
        return series

"""Fuzzing the two doors user input comes through (bounded time): the config reader and the
data loaders either accept an input or refuse it with an aevb error, never anything else."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aevb import load_dataset
from aevb.cli.config import SECTIONS, config_from_dict
from aevb.errors import AevbError

FIELDS = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-2, 64), max_size=4),
    st.sampled_from(["vae", "m2", "conv", "ladder", "vamp", "iwae", "bernoulli", "digits"]),
)
SECTION = st.sampled_from(list(FIELDS)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.dictionaries(st.sampled_from(FIELDS[name] + ["typo"]), VALUES, max_size=4),
    )
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(SECTION, max_size=3), st.one_of(st.integers(), st.floats(), st.text()))
def test_the_config_reader_accepts_or_names_the_problem(sections, seed) -> None:
    raw = {name: values for name, values in sections}
    raw["seed"] = seed
    try:
        config = config_from_dict(raw)
    except AevbError:
        return
    assert config.train.epochs >= 1 and config.model.latent_dim >= 1


SUFFIXES = [".npy", ".npz", ".csv", ".amat", "-ubyte", ".tsv"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(SUFFIXES), st.binary(max_size=400))
def test_loaders_refuse_arbitrary_bytes_cleanly(
    tmp_path: Path, suffix: str, content: bytes
) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy/pandas may warn about odd bytes before refusing
        try:
            dataset = load_dataset(path)
        except AevbError:
            return
    assert dataset.x.ndim == 2 and bool(dataset.x.isfinite().all())


ARRAYS = st.tuples(
    st.lists(st.integers(0, 5), min_size=0, max_size=5),
    st.sampled_from(["f4", "f8", "i1", "u1", "i8", "?", "c8", "U3", "O"]),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ARRAYS, st.sampled_from([".npy", ".npz", ".csv"]))
def test_loaders_accept_or_refuse_any_array(tmp_path: Path, spec, suffix: str) -> None:
    shape, dtype = spec
    array = np.zeros(shape, dtype=dtype) if dtype != "O" else np.empty(shape, dtype=object)
    if dtype.startswith(("f", "c")) and array.size:
        array.flat[0] = math.nan if len(shape) % 2 else 1.5
    path = tmp_path / f"data{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if suffix == ".npy":
            np.save(path, array, allow_pickle=True)
        elif suffix == ".npz":
            np.savez(path, x=array)
        elif array.size == 0:
            path.write_text("")
        else:
            rows = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
            np.savetxt(path, rows, delimiter=",", fmt="%s")
        try:
            dataset = load_dataset(path)
        except AevbError:
            return
    assert dataset.x.ndim == 2 and len(dataset) >= 0

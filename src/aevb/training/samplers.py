"""Batch samplers: what one epoch of minibatches is, for the one :class:`aevb.Trainer`.

A sampler turns the training data (a tuple of tensors with examples in rows) into the
argument tuples of the objective, ``objective(model, *batch, beta=...)``, drawing all its
randomness from the trainer's generator, and keeps any state that outlives an epoch in
:meth:`state_dict`, so that a resumed run draws exactly the batches of an uninterrupted one.

- :class:`Shuffled`: every example once per epoch in a fresh random order (AEVB,
  Kingma & Welling 2014, Algorithm 1); ``with_index=True`` also passes the rows' indices,
  for models with per-example parameters (:class:`aevb.PerExampleVAE`).
- :class:`LabelledMix`: M2's minibatches (Kingma et al. 2014): unlabelled rows, each step
  topped up with a few labelled rows cycled through in reshuffled passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import torch

from ..data.ondisk import DiskRows, Rows
from ..errors import ConfigError, DataError
from ..models.semisupervised import UNLABELLED

Batch = tuple[torch.Tensor, ...]
Data = tuple[Rows, ...]  # the training data: examples in rows, in memory or on disk


class BatchSampler(Protocol):
    """One epoch of minibatches from ``data``, with state kept across epochs."""

    def num_steps(self, data: Data) -> int: ...
    def epoch(self, data: Data, generator: torch.Generator) -> Iterator[Batch]: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


class Shuffled:
    """Every example once per epoch, in a new random order, ``batch_size`` rows at a time.

    Yields ``tuple(part[rows] for part in data)``, followed by ``rows (B,)`` when
    ``with_index`` is set.
    """

    def __init__(self, batch_size: int, *, with_index: bool = False) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.batch_size, self.with_index = batch_size, with_index

    def num_steps(self, data: Data) -> int:
        return math.ceil(data[0].shape[0] / self.batch_size)

    def epoch(self, data: Data, generator: torch.Generator) -> Iterator[Batch]:
        x = data[0]
        # rows on disk choose their own order (block formats: blockwise, see aevb.data.ondisk)
        order = (
            x.order(generator)
            if isinstance(x, DiskRows)
            else torch.randperm(len(x), generator=generator)
        )
        for rows in order.split(self.batch_size):
            batch = tuple(part[rows] for part in data)
            yield (*batch, rows) if self.with_index else batch

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class LabelledMix:
    """M2's minibatches from ``(x, y)`` with ``y = UNLABELLED`` (-1) where the label is unknown.

    An epoch is one pass over the unlabelled rows (over the labelled rows when every row has
    a label), ``batch_size`` at a time. Each step adds ``labelled_per_batch`` labelled rows
    from an endless reshuffled cycle through the labelled ones, so with 100 labels among
    50,000 rows each labelled example is seen many times per epoch; the M2 objective weights
    the two parts by their share of the training set, so the over-sampling changes the
    variance of the gradient, not the objective (Kingma et al. 2014, eq. 9).

    Yields ``(x_labelled (B_l, D), y (B_l,), x_unlabelled (B_u, D))``; ``B_u = 0`` when every
    row is labelled.
    """

    def __init__(self, batch_size: int, labelled_per_batch: int = 10) -> None:
        if batch_size < 1 or labelled_per_batch < 1:
            raise ConfigError("batch_size and labelled_per_batch must be positive")
        self.batch_size, self.labelled_per_batch = batch_size, labelled_per_batch
        self._order = torch.zeros(0, dtype=torch.long)  # the current pass over labelled rows
        self._position = 0

    def num_steps(self, data: Data) -> int:
        _, y = data
        assert isinstance(y, torch.Tensor)  # labels are in memory
        labelled = int((y != UNLABELLED).sum())
        if labelled == 0:
            raise DataError("no row has a label: M2 needs at least one labelled example per class")
        unlabelled = len(y) - labelled
        return math.ceil((unlabelled or labelled) / self.batch_size)

    def epoch(self, data: Data, generator: torch.Generator) -> Iterator[Batch]:
        x, y = data
        assert isinstance(y, torch.Tensor)  # labels are in memory
        y = y.cpu()  # row indices live on the CPU, like the saved cycle
        labelled = (y != UNLABELLED).nonzero().flatten()
        unlabelled = (y == UNLABELLED).nonzero().flatten()
        passing = unlabelled if len(unlabelled) else labelled
        order = passing[torch.randperm(len(passing), generator=generator)]
        for rows in order.split(self.batch_size):
            if len(unlabelled):
                extra = self._take(labelled, generator)
                yield x[extra], y[extra], x[rows]
            else:
                yield x[rows], y[rows], x[:0]

    def _take(self, labelled: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        taken, size = [], self.labelled_per_batch
        while size > 0:
            if self._position == len(self._order):
                self._order = labelled[torch.randperm(len(labelled), generator=generator)]
                self._position = 0
            part = self._order[self._position : self._position + size]
            self._position += len(part)
            size -= len(part)
            taken.append(part)
        return torch.cat(taken)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"order": self._order.clone(), "position": torch.tensor(self._position)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._order, self._position = state["order"], int(state["position"])

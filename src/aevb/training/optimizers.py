"""The optimizers of a model: one for its dense parameters, and SparseAdam for per-example
tables (``nn.Embedding(sparse=True)``), which moves only the rows of the current minibatch
(dense Adam would keep moving every row by its stale momentum)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def make_optimizers(
    model: nn.Module, factory: OptimizerFactory, lr: float, sparse_lr: float | None
) -> list[torch.optim.Optimizer]:
    """``factory(dense, lr=lr)`` over the dense parameters, and ``SparseAdam`` at ``sparse_lr``
    (``None``: ``lr``) over the parameters of ``nn.Embedding(sparse=True)`` tables."""
    sparse = [
        parameter
        for module in model.modules()
        if isinstance(module, nn.Embedding) and module.sparse
        for parameter in module.parameters()
    ]
    dense = [p for p in model.parameters() if all(p is not s for s in sparse)]
    optimizers = [factory(dense, lr=lr)]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=sparse_lr or lr))
    return optimizers

"""Evaluation in nats: ELBO terms, importance-sampled log p(x), ELBO surgery, active units,
and the inference gaps."""

from .codes import code_indices, code_usage
from .gaps import inference_gaps
from .metrics import (
    LogPx,
    active_units,
    bits_per_dim,
    encode_means,
    evaluate,
    kl_per_dimension,
    layer_summary,
    log_px,
    summarize,
)
from .surgery import Surgery, elbo_surgery

__all__ = [
    "LogPx",
    "Surgery",
    "active_units",
    "bits_per_dim",
    "code_indices",
    "code_usage",
    "elbo_surgery",
    "encode_means",
    "evaluate",
    "inference_gaps",
    "kl_per_dimension",
    "layer_summary",
    "log_px",
    "summarize",
]

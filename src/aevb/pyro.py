"""Export an aevb model to Pyro: a model and a guide that ``pyro.infer.SVI`` trains.

The vocabularies map one to one:

==================================  ========================================================
aevb                                Pyro
==================================  ========================================================
``VAE`` (prior + decoder)           the **model** ``model(x)``: ``z ~ p(z)``, ``x ~ p(x|z)``
encoder q(z|x)                      the **guide** ``guide(x)``: ``z ~ q(z|x)``
latent variable ``z``               sample site ``"z"`` (named by ``latent``)
data ``x``                          observed sample site named by ``data`` (default ``"x"``)
rows of a batch                     ``pyro.plate("data", num_data)``, scaled to the data set
parameters                          ``pyro.module(name, vae)``, in model and guide alike
``elbo(..., analytic_kl=False)``    ``Trace_ELBO``
``elbo`` (closed-form KL)           ``TraceMeanField_ELBO``
``iwae_bound(k=k)``                 ``RenyiELBO(alpha=0, num_particles=k)``
==================================  ========================================================

aevb's distributions are used as they are, wrapped so Pyro can broadcast and score them;
closed-form KLs registered with aevb (:mod:`aevb.distributions.kl`) are the ones
``TraceMeanField_ELBO`` uses. Any model with ``encode``, ``decode`` and ``prior`` exports:
every head, prior and posterior, flows and latent hierarchies. Pyro is an optional
dependency (``pip install pyro-ppl``).

Example:
    >>> import pyro, torch                                           # doctest: +SKIP
    >>> from aevb import mlp_vae                                     # doctest: +SKIP
    >>> from aevb.pyro import to_pyro                                # doctest: +SKIP
    >>> model, guide = to_pyro(mlp_vae(64, 8), num_data=1797)        # doctest: +SKIP
    >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}),
    ...                      pyro.infer.Trace_ELBO())                # doctest: +SKIP
    >>> svi.step(torch.rand(100, 64).bernoulli())                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch.distributions import Distribution, constraints, kl_divergence, register_kl

from .errors import ConfigError

try:
    import pyro
    from pyro.distributions import TorchDistribution
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        "aevb.pyro needs Pyro: pip install pyro-ppl (it is not a dependency of aevb itself)"
    ) from error

ModelAndGuide = tuple[Callable[..., None], Callable[..., None]]
_Shape = torch.Size | list[int] | tuple[int, ...]


class AsPyro(TorchDistribution):
    """Any ``torch.distributions.Distribution`` as a Pyro distribution.

    Sampling and scoring are the wrapped distribution's own; ``expand`` (Pyro's plates
    broadcasting a prior over the rows of a batch) keeps the distribution and draws the
    extra leading batch dimensions as sample dimensions, so distributions without an
    ``expand`` of their own (e.g. :class:`aevb.MarkovChain`) broadcast too.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}

    def __init__(self, base: Distribution, batch_shape: torch.Size | None = None) -> None:
        self.base = base
        shape = base.batch_shape if batch_shape is None else torch.Size(batch_shape)
        extra = len(shape) - len(base.batch_shape)
        if extra < 0 or shape[extra:] != base.batch_shape:
            raise ValueError(f"cannot broadcast batch shape {base.batch_shape} to {shape}")
        self._extra = shape[:extra]  # leading batch dimensions drawn as sample dimensions
        super().__init__(shape, base.event_shape, validate_args=False)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base.has_rsample

    @property
    def support(self) -> Any:
        return self.base.support

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> torch.Tensor:
        return self.base.variance.expand(self.batch_shape + self.event_shape)

    def expand(self, batch_shape: Any, _instance: Any = None) -> AsPyro:
        return AsPyro(self.base, torch.Size(batch_shape))

    def sample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        return self.base.sample(torch.Size(sample_shape) + self._extra)

    def rsample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        return self.base.rsample(torch.Size(sample_shape) + self._extra)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        rows = value.shape[: value.dim() - self.event_dim]
        shape = torch.broadcast_shapes(rows, self.batch_shape)
        return self.base.log_prob(value).expand(shape)


@register_kl(AsPyro, AsPyro)
def _kl_as_pyro(q: AsPyro, p: AsPyro) -> torch.Tensor:
    """The wrapped pair's closed form (raises ``NotImplementedError`` when there is none,
    and ``TraceMeanField_ELBO`` then estimates the KL by sampling)."""
    return kl_divergence(q.base, p.base).expand(
        torch.broadcast_shapes(q.batch_shape, p.batch_shape)
    )


def to_pyro(
    vae: Any,
    *,
    num_data: int | None = None,
    data: str = "x",
    latent: str = "z",
    name: str = "vae",
) -> ModelAndGuide:
    """Pyro ``model(x)`` and ``guide(x)`` for an aevb model (see the module's table).

    Args:
        vae: anything with ``encode``, ``decode`` and ``prior``: :class:`aevb.VAE`, the
            models of :func:`aevb.mlp_vae` and :func:`aevb.hierarchical_vae`, ...
        num_data: rows in the whole training set; a batch's terms are scaled by
            ``num_data / batch`` so the loss estimates the full data set's (``None``: the
            batch is the data set).
        data, latent: names of the observed and the latent sample sites.
        name: the name its parameters take in Pyro's parameter store.

    Returns:
        ``(model, guide)``, both called with ``x (B, *event)``.
    """
    if not all(hasattr(vae, part) for part in ("encode", "decode", "prior")):
        raise ConfigError("to_pyro needs a model with encode, decode and prior (e.g. aevb.VAE)")
    if hasattr(vae, "classify"):
        raise ConfigError(
            "to_pyro exports models with one continuous latent (VAE, hierarchies); the "
            "semi-supervised M2 model has a discrete label site, which it does not export"
        )

    def plate(x: torch.Tensor) -> Any:
        rows = x.shape[0]
        return pyro.plate("data", num_data or rows, subsample=torch.arange(rows))

    def model(x: torch.Tensor) -> None:
        pyro.module(name, vae)
        with plate(x):
            z = pyro.sample(latent, AsPyro(vae.prior()))
            pyro.sample(data, AsPyro(vae.decode(z)), obs=x)

    def guide(x: torch.Tensor) -> None:
        pyro.module(name, vae)
        with plate(x):
            pyro.sample(latent, AsPyro(vae.encode(x)))

    return model, guide

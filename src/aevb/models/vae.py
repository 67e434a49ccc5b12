"""The VAE: a prior p(z), a decoder p(x|z) and an encoder q(z|x), composed.

In probabilistic terms the decoder is the likelihood, the prior is p(z), and the encoder is
the amortized variational family ("guide", "inference network"); in deep-learning terms they
are the decoder, the latent distribution and the encoder. Each is an ``nn.Module`` returning a
``torch.distributions.Distribution``; any of them can be swapped without touching the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

from ..data.ondisk import DiskRows, Rows, check_finite, row_chunks
from ..distributions.core import support_fix, unwrap, upcast
from ..errors import DataError, require_positive
from ..inference.objectives import ELBOTerms, elbo
from ..nn.mlp import MLP
from .heads import BernoulliHead, NormalHead
from .priors import StandardNormalPrior


def float32_outputs(*parts: nn.Module) -> None:
    """Make each part return its distribution with float32 parameters under autocast.

    Under ``torch.autocast(..., dtype=torch.bfloat16)`` (the Trainer's ``precision``) the
    parts' matrix products run in bfloat16; this forward hook upcasts what they return, so
    every density, KL and sum over data dimensions is computed in float32 (in bfloat16 the
    likelihood of a 784-pixel image is off by nats). Outside autocast it does nothing.
    """
    for part in parts:
        part.register_forward_hook(_float32_output)


def _float32_output(module: nn.Module, inputs: Any, output: Any) -> Any:
    autocast = torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
    return upcast(output) if autocast and isinstance(output, Distribution) else None


class VAE(nn.Module):
    """p(x, z) = p(x|z) p(z) with amortized q(z|x) (Kingma & Welling 2014).

    Args:
        encoder: ``x (B, *event) -> q(z|x)`` with batch_shape ``(B,)``, event ``(latent_dim,)``.
        decoder: ``z (*batch, latent_dim) -> p(x|z)`` with batch_shape ``batch``.
        prior: ``() -> p(z)`` with event ``(latent_dim,)``.

    Example:
        >>> from torch import nn
        >>> from aevb import VAE, MLP, NormalHead, BernoulliHead, StandardNormalPrior
        >>> encoder = nn.Sequential(MLP(64, (128,)), NormalHead(128, 2))
        >>> decoder = nn.Sequential(MLP(2, (128,)), BernoulliHead(128, 64))
        >>> model = VAE(encoder, decoder, StandardNormalPrior(2))
        >>> model.elbo(torch.zeros(5, 64)).elbo.shape
        torch.Size([5])
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        float32_outputs(encoder, decoder, prior)

    @property
    def latent_dim(self) -> int:
        return self.prior().event_shape[-1]

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for ``x (B, *event)``, event ``(latent_dim,)``; ``.mean`` gives the codes."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z): ``z (*batch, latent_dim)`` -> distribution over one datum per batch entry."""
        return self.decoder(z)

    def elbo(self, x: torch.Tensor, **options: object) -> ELBOTerms:
        """Per-example ELBO terms; ``options`` are those of :func:`aevb.elbo`.

        ``x`` is checked and converted first (:func:`as_input`, :meth:`check_data`); the
        functional :func:`aevb.elbo` takes it as given, for speed inside training loops.
        """
        x = as_input(self, x)
        check_data(self, x)
        return elbo(self, x, **options)  # type: ignore[arg-type]

    def check_data(self, x: Rows, *, rows: torch.Tensor | None = None) -> None:
        """Raise :class:`aevb.DataError` unless ``x`` fits p(x|z): shape, finiteness, support.

        The message names the first offending entry (by ``rows[i]`` when given, e.g. its row
        in the file) and how to fix the data or the model.
        """
        check_data(self, x, rows=rows)

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = False) -> torch.Tensor:
        """Draw ``z ~ p(z)``, then ``x ~ p(x|z)`` (or its mean with ``mean=True``).

        Returns:
            ``(num_samples, *event)`` data.
        """
        z = self.prior().sample((num_samples,))
        px = self.decode(z)
        return px.mean if mean else px.sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, sample_z: bool = False) -> torch.Tensor:
        """Mean of p(x|z) at z = E_q[z|x] (or at a sample ``z ~ q(z|x)``), shaped like ``x``."""
        qz = self.encode(x)
        return self.decode(qz.sample() if sample_z else qz.mean).mean


def as_input(model: nn.Module, x: Any, name: str = "x") -> torch.Tensor:
    """``x`` as a tensor of the model's floating dtype, examples in rows.

    NumPy arrays, integer and boolean tensors, and floats of another precision are converted
    (e.g. float64 data for a float32 model); what cannot be data is a :class:`aevb.DataError`
    naming ``name`` and the fix, never an error from inside torch.
    """
    if isinstance(x, DiskRows):  # the rows are needed here all at once: read them
        x = x[:]
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as error:
            raise DataError(f"{name} must be an array of numbers ({error})") from None
    if x.is_complex() or not (x.is_floating_point() or x.dtype in _CONVERTIBLE):
        raise DataError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(
            f"{name} must be an (n, ...) array with one example per row and n >= 1, got shape "
            f"{tuple(x.shape)}" + ("; for one example use x[None]" if x.ndim == 1 else "")
        )
    dtype = _dtype(model)
    return x if x.dtype == dtype else x.to(dtype)


def as_rows(model: nn.Module, x: Any, name: str = "x") -> Rows:
    """:func:`as_input`, except that rows on disk (:class:`aevb.data.DiskRows`) stay there,
    read and converted a batch at a time by those who index them."""
    return x.to(_dtype(model)) if isinstance(x, DiskRows) else as_input(model, x, name)


def _dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def checked_inputs(
    model: nn.Module, data: tuple[Any, ...], valid: Any | None
) -> tuple[tuple[Rows, ...], Rows | None]:
    """Training data ``(x, *rest)`` and validation ``x`` converted (:func:`as_input`, the
    rest, e.g. labels, as tensors) and checked by ``model.check_data`` where it has one."""
    x = as_rows(model, data[0])
    rest = tuple(torch.as_tensor(part) for part in data[1:])
    valid_x = None if valid is None else as_rows(model, valid, "valid")
    check = getattr(model, "check_data", None)
    if check is not None:
        check(x, *rest)
        if valid_x is not None:
            check(valid_x)
    return (x, *rest), valid_x


_CONVERTIBLE = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@torch.no_grad()
def check_data(model: Any, x: Rows, *, rows: torch.Tensor | None = None) -> None:
    """Raise :class:`aevb.DataError` unless ``x`` fits the p(x|z) of ``model`` (anything with
    ``decode`` and ``prior``): shape, finiteness, support.

    The message names the first offending entry and how to fix the data or the model.
    """
    px = model.decode(model.prior().sample((1,)))
    # Likelihoods over rows with holes (aevb.distributions.columns.Columns) skip NaN entries.
    check_finite(x, allow_missing=getattr(px, "handles_missing", False), rows=rows)
    if tuple(x.shape[1:]) != tuple(px.event_shape) or x.ndim < 2:
        images = [m.image_shape for m in model.modules() if hasattr(m, "image_shape")]
        if images:  # a convolutional model: name its image shape
            raise DataError(
                f"the model was built for images of shape {images[0]} (C, H, W), "
                f"{px.event_shape[0]} values each; got data of shape {tuple(x.shape)}: give "
                "images of that shape and channel count, or train a model on these images"
            )
        raise DataError(
            f"the model's likelihood is over examples of shape {tuple(px.event_shape)}, "
            f"got data of shape {tuple(x.shape)}: give an (n, "
            f"{', '.join(map(str, px.event_shape))}) array with examples in rows"
        )
    support = unwrap(px).support
    if support is None:  # a family without a declared support: nothing to check
        return
    # In chunks of rows (data on disk are streamed).
    count, first, begin = 0, "", 0
    for chunk in row_chunks(x):
        outside = ~support.check(chunk).reshape(chunk.shape[0], -1)
        if bool(outside.any()):
            if not count:
                row, column = outside.nonzero()[0].tolist()
                value = chunk[row].flatten()[column].item()
                number = begin + row if rows is None else int(rows[begin + row])
                first = f"row {number}, column {column}, value {value:g}"
            count += int(outside.sum())
        begin += chunk.shape[0]
    if count:
        raise DataError(
            f"{count} data values are outside the support of the {type(unwrap(px)).__name__} "
            f"likelihood (first: {first}). Fix: {support_fix(support)}"
        )


def mlp_vae(
    data_dim: int,
    latent_dim: int,
    hidden_dims: Sequence[int] = (200, 200),
    *,
    likelihood: Callable[[int, int], nn.Module] = BernoulliHead,
    activation: type[nn.Module] = nn.ReLU,
    prior: nn.Module | None = None,
    posterior: Callable[[int, int], nn.Module] = NormalHead,
) -> VAE:
    """A VAE whose encoder and decoder are MLP bodies with heads (decoder widths mirrored).

    Args:
        data_dim: size of one flattened datum.
        latent_dim: size of z.
        hidden_dims: encoder widths; the decoder uses them reversed.
        likelihood: head factory ``(in_dim, data_dim) -> head``, e.g. ``BernoulliHead`` or
            ``functools.partial(NormalHead, scale=0.1)``.
        activation: activation module class of both bodies.
        prior: p(z); ``StandardNormalPrior(latent_dim)`` by default.
        posterior: head factory of q(z|x), ``(in_dim, latent_dim) -> head``: ``NormalHead``
            (diagonal), ``FullCovarianceNormalHead`` or ``PlanarFlowHead``.

    Example:
        >>> model = mlp_vae(784, 50, (200, 200), activation=nn.Tanh)  # Burda et al. (2015)
    """
    require_positive("mlp_vae", data_dim=data_dim, latent_dim=latent_dim)
    encoder_body = MLP(data_dim, hidden_dims, activation)
    decoder_body = MLP(latent_dim, tuple(reversed(hidden_dims)), activation)
    return VAE(
        nn.Sequential(encoder_body, posterior(encoder_body.out_dim, latent_dim)),
        nn.Sequential(decoder_body, likelihood(decoder_body.out_dim, data_dim)),
        prior if prior is not None else StandardNormalPrior(latent_dim),
    )

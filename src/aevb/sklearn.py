"""A scikit-learn estimator: a Gaussian VAE on numeric arrays and DataFrames.

:class:`VAEEstimator` follows scikit-learn's conventions (it passes ``check_estimator``):
``fit``, ``transform`` (posterior means E_q[z|x]), ``inverse_transform`` (decoder means),
``score_samples`` (importance-sampled log p(x) per row, in nats, in the units of the data),
``score`` (their mean, so ``GridSearchCV`` selects by held-out log-likelihood), ``sample``,
``get_params`` / ``set_params``, pipelines and pickling. For tables with categorical
columns and missing values use :class:`aevb.TabularVAE`.

Example:
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import GridSearchCV
    >>> from aevb import VAEEstimator
    >>> x = load_digits().data
    >>> search = GridSearchCV(VAEEstimator(max_epochs=20), {"latent_dim": [2, 8]}, cv=3)
    >>> search.fit(x).best_params_  # doctest: +SKIP
    {'latent_dim': 8}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .inference.objectives import elbo, iwae_bound
from .models.heads import NormalHead
from .models.vae import VAE, mlp_vae
from .nn.mlp import ACTIVATIONS
from .training.trainer import Trainer

_DTYPES = (np.float64, np.float32)


class VAEEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Gaussian VAE p(x|z) = N(mu(z), diag sigma(z)^2), p(z) = N(0, I), fitted by SGVB.

    Features are standardized inside (each column's mean and standard deviation on the
    training data); every output is in the data's own units, and ``score_samples`` adds the
    log-Jacobian of the standardization, so it is a density of the data as given.

    Args:
        latent_dim: size of z (the number of output columns of ``transform``).
        hidden_dims: encoder widths; the decoder mirrors them.
        activation: ``"relu"``, ``"tanh"``, ... (see :data:`aevb.nn.mlp.ACTIVATIONS`).
        k: importance samples in the training objective (1: the ELBO; > 1: IWAE bound).
        max_epochs, batch_size, lr: as in :class:`aevb.Trainer`.
        patience: stop after this many epochs without a better bound on a held-out
            ``validation_fraction`` of the rows, and keep the best weights (``None``: train
            on every row for ``max_epochs``).
        validation_fraction: rows held out when ``patience`` is set.
        min_scale: lower bound of sigma(z) in standardized units (keeps the density bounded
            on constant or duplicated columns).
        score_k: importance samples per row in ``score_samples`` (Burda et al. 2015).
        random_state: seeds the split, the weights, training and the importance samples.

    Attributes:
        model_: the fitted :class:`aevb.VAE` (on standardized data; float64 after ``fit``).
        mean_, scale_: ``(n_features,)`` the standardization.
        history_: the trainer's per-epoch metrics.
        n_features_in_, feature_names_in_: as in scikit-learn.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        hidden_dims: Sequence[int] = (64, 64),
        *,
        activation: str = "relu",
        k: int = 1,
        max_epochs: int = 200,
        batch_size: int = 64,
        lr: float = 1e-3,
        patience: int | None = None,
        validation_fraction: float = 0.1,
        min_scale: float = 1e-2,
        score_k: int = 1000,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.activation = activation
        self.k = k
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.min_scale = min_scale
        self.score_k = score_k
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        assert tags.transformer_tags is not None  # TransformerMixin sets them
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- fitting ------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> VAEEstimator:
        """Standardize ``X (n, d)`` and fit the VAE; ``y`` is ignored."""
        x = validate_data(self, X, dtype=_DTYPES)
        self._check_params()
        rng = check_random_state(self.random_state)
        self.seed_ = int(rng.randint(2**31 - 1))
        self.mean_ = x.mean(axis=0)
        scale = x.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        data = self._standardized(x).float()  # trained in float32
        valid = None
        if self.patience is not None and x.shape[0] >= 10:
            order = torch.from_numpy(rng.permutation(x.shape[0]))
            held = max(1, round(self.validation_fraction * x.shape[0]))
            data, valid = data[order[held:]], data[order[:held]]
        objective = elbo if self.k == 1 else partial(iwae_bound, k=self.k)
        with torch.random.fork_rng(devices=[]):  # leave the caller's torch RNG as it was
            torch.manual_seed(self.seed_)
            self.model_ = self._build(x.shape[1])
            trainer = Trainer(
                self.model_,
                objective=objective,
                lr=self.lr,
                batch_size=self.batch_size,
                max_epochs=self.max_epochs,
                patience=self.patience if valid is not None else None,
                seed=self.seed_,
                progress=False,
            )
            self.history_ = trainer.fit(data, valid)
        # Used in float64: a row's outputs then do not change with the rows computed beside
        # it (float32 matrix products differ in the last bits with the batch's layout).
        self.model_.double().eval()
        return self

    def _check_params(self) -> None:
        ints = {"latent_dim": self.latent_dim, "k": self.k, "batch_size": self.batch_size}
        ints |= {"max_epochs": self.max_epochs, "score_k": self.score_k}
        for name, value in ints.items():
            if not (isinstance(value, int | np.integer) and value >= (name != "max_epochs")):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if not (self.lr > 0 and self.min_scale > 0 and 0 < self.validation_fraction < 1):
            raise ValueError("need lr > 0, min_scale > 0 and 0 < validation_fraction < 1")

    def _build(self, data_dim: int) -> VAE:
        def likelihood(in_dim: int, out_dim: int) -> NormalHead:
            return NormalHead(in_dim, out_dim, min_scale=self.min_scale)

        return mlp_vae(
            data_dim,
            self.latent_dim,
            tuple(self.hidden_dims),
            likelihood=likelihood,
            activation=ACTIVATIONS[self.activation],
        )

    # -- using it -----------------------------------------------------------------------

    def _standardized(self, x: np.ndarray) -> torch.Tensor:
        """``x`` in the model's units, float64 (the fitted model runs in float64)."""
        return torch.from_numpy((x - self.mean_) / self.scale_).double()

    def _checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=_DTYPES, reset=False)

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Posterior means E_q[z|x], ``(n, latent_dim)``, in ``X``'s float dtype."""
        x = self._checked(X)
        codes = self.model_.encode(self._standardized(x)).mean
        return codes.numpy().astype(x.dtype)

    @torch.no_grad()
    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decoder means E[x|z] for codes ``X (n, latent_dim)``, in the data's units."""
        check_is_fitted(self)
        z = check_array(X, dtype=_DTYPES)
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"codes have {z.shape[1]} columns, the model {self.latent_dim}")
        mean = self.model_.decode(torch.from_numpy(z.astype(np.float64))).mean.numpy()
        return (mean * self.scale_ + self.mean_).astype(z.dtype)

    @torch.no_grad()
    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) per row in nats, importance-sampled with ``score_k`` samples.

        The standard-normal noise of the samples z = mu(x) + sigma(x) * eps is drawn once
        (common random numbers) and shared by every row, so a row's estimate does not depend
        on which other rows are scored with it. Like any IS estimate it is a stochastic lower
        bound on log p(x) that tightens as ``score_k`` grows.
        """
        x = self._checked(X)
        data = self._standardized(x)
        generator = torch.Generator().manual_seed(self.seed_)
        eps = torch.randn(self.score_k, 1, self.latent_dim, generator=generator).double()
        rows = max(1, 2**20 // (self.score_k * max(x.shape[1], self.latent_dim)))
        pz = self.model_.prior()
        out = []
        for begin in range(0, data.shape[0], rows):
            batch = data[begin : begin + rows]
            qz = self.model_.encode(batch)
            z = qz.mean + qz.stddev * eps  # (k, b, latent_dim)
            log_w = self.model_.decode(z).log_prob(batch) + pz.log_prob(z) - qz.log_prob(z)
            out.append(torch.logsumexp(log_w, 0) - math.log(self.score_k))
        jacobian = float(np.log(self.scale_).sum())  # x = mean + scale * standardized
        return torch.cat(out).numpy() - jacobian

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log p(x) per row (nats): higher is better, as ``GridSearchCV`` expects."""
        return float(self.score_samples(X).mean())

    @torch.no_grad()
    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """``(n_samples, n_features)`` draws x ~ p(x|z), z ~ p(z), in the data's units."""
        check_is_fitted(self)
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            z = self.model_.prior().sample((n_samples,))
            x = self.model_.decode(z).sample().numpy()
        return x * self.scale_ + self.mean_

    @property
    def _n_features_out(self) -> int:
        return self.latent_dim

"""A scikit-learn-style front end for tables: fit, transform, sample, impute, score.

:class:`TabularVAE` infers a :class:`aevb.Schema` (one distribution family per column),
builds a VAE whose encoder reads rows with holes (:class:`aevb.MaskedInput`) and whose
decoder ends in a :class:`aevb.ColumnsHead`, and trains it with the ordinary
:class:`aevb.Trainer` on the likelihood of the observed entries. No pre-imputation is needed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import CheckpointError, DataError
from ..evaluation.metrics import encode_means, log_px
from ..files import atomic_path
from ..inference.objectives import elbo, iwae_bound
from ..models.heads import ColumnsHead, NormalHead
from ..models.priors import StandardNormalPrior
from ..models.vae import VAE
from ..nn.mlp import ACTIVATIONS, MLP, MaskedInput
from ..training.checkpoint import load_json, load_weights, save_json, save_weights
from ..training.trainer import Trainer
from .imputation import heldout_log_likelihood, impute, multiple_imputations
from .schema import Schema


def tabular_vae(
    schema: Schema,
    latent_dim: int,
    hidden_dims: Sequence[int] = (128, 128),
    *,
    activation: type[nn.Module] = nn.ReLU,
    init_values: torch.Tensor | None = None,
) -> VAE:
    """A VAE over the rows of a table described by ``schema``.

    Args:
        init_values: ``(n, num_columns)`` rows as modelled (NaN for missing); when given,
            the decoder's output biases start at each column's moment-matched marginal fit.
    """
    loc = scale = None
    if init_values is not None:  # numeric inputs standardized by their observed moments
        pairs = list(zip(init_values.T, schema.num_categories, strict=True))
        loc = [float(v.nanmean()) if c == 0 else 0.0 for v, c in pairs]
        scale = [_nanstd(v) if c == 0 else 1.0 for v, c in pairs]
    masked = MaskedInput(schema.num_categories, loc, scale)
    encoder_body = MLP(masked.out_dim, hidden_dims, activation)
    decoder_body = MLP(latent_dim, tuple(reversed(hidden_dims)), activation)
    columns = None if init_values is None else list(init_values.double().numpy().T)
    return VAE(
        nn.Sequential(masked, encoder_body, NormalHead(encoder_body.out_dim, latent_dim)),
        nn.Sequential(
            decoder_body,
            ColumnsHead(decoder_body.out_dim, schema.families, schema.num_categories, columns),
        ),
        StandardNormalPrior(latent_dim),
    )


class TabularVAE:
    """VAE for a pandas DataFrame with mixed column types and missing values.

    Args:
        latent_dim: size of z (default: half the number of columns, between 2 and 16).
        hidden_dims: encoder widths; the decoder mirrors them.
        families: per-column family overrides, e.g. ``{"income": "lognormal"}``.
        k: importance samples in the training objective; ``k > 1`` trains on the IWAE bound
            of the observed entries with the DReG gradient (MIWAE, Mattei & Frellsen 2019);
            ``k=1`` is the ELBO (faster per epoch).
        epochs, batch_size, lr, patience: as in :class:`aevb.Trainer`.
        valid_fraction: fraction of the observed entries held out to choose when to stop
            (see :meth:`fit`); 0 trains on every entry for ``epochs`` epochs.
        max_categories: more labels than this in a text column is an error.
        seed: seeds the split, the initialization and training.
        progress: show the trainer's progress bar and epoch lines; ``verbose``: every term in
            them (:class:`aevb.Trainer`'s options).

    Attributes:
        schema_: after ``fit``, the inferred :class:`aevb.Schema` (``schema_.describe()``
            shows it).
        model_: after ``fit``, the trained :class:`aevb.VAE`.
        history_: after ``fit``, the per-epoch metrics.

    Example:
        >>> import palmerpenguins                                   # doctest: +SKIP
        >>> table = palmerpenguins.load_penguins()                  # doctest: +SKIP
        >>> vae = TabularVAE(epochs=200).fit(table)                 # doctest: +SKIP
        >>> filled = vae.impute(table)                              # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        latent_dim: int | None = None,
        hidden_dims: Sequence[int] = (128, 128),
        families: Mapping[str, str] | None = None,
        k: int = 20,
        activation: str = "relu",
        epochs: int = 2000,
        batch_size: int = 64,
        lr: float = 1e-3,
        patience: int | None = 100,
        valid_fraction: float = 0.1,
        kl_warmup_epochs: int = 0,
        max_categories: int = 50,
        seed: int = 0,
        progress: bool = False,
        verbose: bool = False,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if not 0 <= valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
        self.params: dict[str, Any] = {
            "latent_dim": latent_dim,
            "hidden_dims": list(hidden_dims),
            "families": dict(families or {}),
            "k": k,
            "activation": activation,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "patience": patience,
            "valid_fraction": valid_fraction,
            "kl_warmup_epochs": kl_warmup_epochs,
            "max_categories": max_categories,
            "seed": seed,
        }
        self.progress, self.verbose = progress, verbose
        self.schema_: Schema | None = None
        self.model_: VAE | None = None
        self.history_: list[dict[str, Any]] = []

    # -- fitting ----------------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame) -> TabularVAE:
        """Infer the schema, build the model and train it on the observed entries.

        ``valid_fraction`` of the observed entries (never a row's last one) are hidden from
        training; after every epoch their predictive log-likelihood log p(x_held | x_obs)
        is computed, and training stops ``patience`` epochs after its best value, keeping
        the weights of that epoch. The criterion measures imputation, which keeps improving
        long after the likelihood of whole held-out rows has peaked on small tables.
        """
        p = self.params
        schema = Schema.infer(frame, p["families"], max_categories=p["max_categories"])
        x = schema.to_tensor(frame)
        torch.manual_seed(p["seed"])
        train, heldout = _hold_out_entries(x, p["valid_fraction"], p["seed"])
        latent_dim = p["latent_dim"] or min(16, max(2, len(schema.columns) // 2))
        self.schema_, self.params["latent_dim"] = schema, latent_dim
        self.model_ = self._build(init_values=train)
        objective = functools.partial(iwae_bound, k=p["k"], gradient="dreg") if p["k"] > 1 else elbo
        validate = None
        if heldout is not None:
            validate = functools.partial(heldout_log_likelihood, x=train, heldout=heldout)
        trainer = Trainer(
            self.model_,
            objective=objective,
            lr=p["lr"],
            batch_size=p["batch_size"],
            max_epochs=p["epochs"],
            patience=p["patience"],
            kl_warmup_epochs=p["kl_warmup_epochs"],
            seed=p["seed"],
            progress=self.progress,
            verbose=self.verbose,
            validate=validate,
        )
        self.history_ = trainer.fit(train)
        self.model_.eval()
        return self

    def _build(self, init_values: torch.Tensor | None = None) -> VAE:
        assert self.schema_ is not None
        p = self.params
        return tabular_vae(
            self.schema_,
            p["latent_dim"],
            p["hidden_dims"],
            activation=ACTIVATIONS[p["activation"]],
            init_values=init_values,
        )

    def _fitted(self) -> tuple[Schema, VAE]:
        if self.schema_ is None or self.model_ is None:
            raise RuntimeError("this TabularVAE is not fitted yet: call fit(table) first")
        return self.schema_, self.model_

    # -- using the model --------------------------------------------------------------------

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """``(n, latent_dim)`` posterior means E_q[z | x_obs] of the rows."""
        schema, model = self._fitted()
        return encode_means(model, schema.to_tensor(frame)).numpy()

    def sample(self, num_rows: int, *, seed: int | None = None) -> pd.DataFrame:
        """``num_rows`` new rows from p(x) = ∫ p(x|z) p(z) dz, with the table's dtypes."""
        schema, model = self._fitted()
        if seed is not None:
            torch.manual_seed(seed)
        return schema.to_frame(model.sample(num_rows))

    def impute(
        self,
        frame: pd.DataFrame,
        *,
        num_imputations: int | None = None,
        num_samples: int = 100,
        importance: bool = True,
        seed: int | None = None,
    ) -> pd.DataFrame | list[pd.DataFrame]:
        """The table with its missing entries filled; observed entries are kept as they are.

        Args:
            num_imputations: ``None`` for single imputation (conditional mean, or most
                probable class), else that many draws from p(x_miss | x_obs) (multiple
                imputation), returned as a list of tables.
            num_samples: proposals from q(z|x_obs) for importance weighting (or resampling).
            importance: weight proposals by p(x_obs, z) / q(z|x_obs) (see
                :mod:`aevb.tabular.imputation`); ``False`` trusts q(z|x_obs) as the posterior.
            seed: seeds the draws.
        """
        schema, model = self._fitted()
        if seed is not None:
            torch.manual_seed(seed)
        x = schema.to_tensor(frame)
        if num_imputations is None:
            filled = impute(model, x, num_samples=num_samples, importance=importance)
            return self._restore(schema.to_frame(filled, frame.index), frame)
        draws = multiple_imputations(
            model, x, num_imputations, num_samples=num_samples, importance=importance
        )
        return [self._restore(schema.to_frame(d, frame.index), frame) for d in draws]

    @staticmethod
    def _restore(filled: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
        """Observed entries exactly as given (no round trip through float32 and rescaling)."""
        out = frame.copy()
        for name in filled.columns:
            holes = frame[name].isna()
            if holes.any():
                out[name] = out[name].mask(holes, filled[name])
        return out

    def score_samples(self, frame: pd.DataFrame, *, k: int = 1000) -> np.ndarray:
        """Per-row log p(x_obs) in nats and in the data's own units (importance sampled).

        Missing entries are integrated out; low scores flag unusual rows (anomaly scores).
        """
        schema, model = self._fitted()
        x = schema.to_tensor(frame)
        log_p = log_px(model, x, k).log_px
        jacobian = (schema.log_scale * ~torch.isnan(x)).sum(-1)
        return (log_p - jacobian).double().numpy()

    # -- saving -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write ``tabular.json`` (schema and settings) and ``model.safetensors`` to a folder."""
        schema, model = self._fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_json({"params": self.params, "schema": schema.to_dict()}, folder / "tabular.json")
        save_weights(model, folder / "model.safetensors")

    @classmethod
    def load(cls, path: str | Path) -> TabularVAE:
        """Read a folder written by :meth:`save`."""
        folder = Path(path)
        if not (folder / "tabular.json").is_file():
            raise CheckpointError(
                f"{folder} is not a saved TabularVAE (no tabular.json): give the folder "
                "written by TabularVAE.save or `aevb impute --save-model`"
            )
        stored = load_json(folder / "tabular.json")
        try:
            params, schema = stored["params"], Schema.from_dict(stored["schema"])
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{folder / 'tabular.json'} is malformed: {error}") from None
        vae = cls(**params)
        vae.schema_ = schema
        model = vae._build()
        load_weights(model, folder / "model.safetensors")
        vae.model_ = model.eval()
        return vae


def _nanstd(values: torch.Tensor) -> float:
    observed = values[~torch.isnan(values)].double()
    std = float(observed.std(unbiased=False)) if observed.numel() > 1 else 0.0
    return std if std > 0 else 1.0


def _hold_out_entries(
    x: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hide ``fraction`` of the observed entries (keeping one per row): (train, held-out)."""
    if fraction <= 0:
        return x, None
    generator = torch.Generator().manual_seed(seed)
    observed = ~torch.isnan(x)
    held = observed & (torch.rand(x.shape, generator=generator) < fraction)
    # A row keeps at least its first observed entry, so nothing becomes an empty row.
    first = observed.float().argmax(1)
    emptied = (held == observed).all(1)
    held[emptied, first[emptied]] = False
    nan = torch.full_like(x, float("nan"))
    return torch.where(held, nan, x), torch.where(held, x, nan)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (``.csv``, ``.tsv``, ``.txt``) or Parquet (``.parquet``, ``.pq``) file as a table."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (ValueError, OSError) as error:
        raise DataError(f"could not read {path} as a table: {error}") from None
    raise DataError(f"{path}: unknown table format {suffix!r}; give a .csv, .tsv or .parquet file")


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table as CSV or Parquet, chosen by the file's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(tmp)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")

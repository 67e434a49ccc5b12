"""``aevb impute``: fill the missing entries of a table with a tabular VAE."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError


def impute(args: argparse.Namespace) -> int:
    from ..tabular.vae import TabularVAE, read_table, write_table

    table = read_table(args.data)
    if args.model:
        vae = TabularVAE.load(args.model)
    else:
        families = dict(_key_value(item) for item in args.family)
        vae = TabularVAE(
            latent_dim=args.latent_dim,
            families=families,
            k=args.k,
            epochs=args.epochs,
            seed=args.seed,
            progress=args.progress,
        )
        vae.fit(table)
        print(f"trained {len(vae.history_)} epochs on {len(table)} rows{_best(vae.history_)}")
    assert vae.schema_ is not None
    print(vae.schema_.describe())
    holes = int(table[vae.schema_.names].isna().to_numpy().sum())
    options = dict(num_samples=args.num_samples, importance=not args.no_importance, seed=args.seed)
    if args.num_imputations:
        draws = vae.impute(table, num_imputations=args.num_imputations, **options)
        stacked = [d.assign(imputation=i + 1) for i, d in enumerate(draws)]
        filled = pd.concat(stacked)[["imputation", *table.columns]]
    else:
        filled = vae.impute(table, **options)
    write_table(filled, args.out)
    copies = f" ({args.num_imputations} imputations)" if args.num_imputations else ""
    print(f"filled {holes} missing entries of {args.data}{copies}; wrote {args.out}")
    if args.save_model:
        vae.save(args.save_model)
        print(f"model saved to {args.save_model}")
    return 0


def _best(history: list[dict[str, Any]]) -> str:
    scores = [record["valid_score"] for record in history if "valid_score" in record]
    if not scores:
        return ""
    best = int(np.argmax(scores))
    return f"; kept epoch {best + 1}: held-out entries {scores[best]:.3f} nats each"


def _key_value(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep:
        raise DataError(f"--family takes COLUMN=FAMILY (e.g. income=lognormal), got {item!r}")
    return name, value

"""``aevb impute``: fill the missing entries of a table with a tabular VAE."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

WRITABLE = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def impute(args: argparse.Namespace) -> int:
    from ..tabular.text import TEXT_SUFFIXES, fill_text_table, read_text_table, write_text_table
    from ..tabular.vae import TabularVAE, read_table, write_table

    if args.out.suffix.lower() not in WRITABLE:
        raise DataError(
            f"cannot write {args.out}: aevb writes tables as {', '.join(WRITABLE)}; "
            "choose one of those suffixes"
        )
    missing = ("", *(token for token in args.missing.split(",") if token))
    as_text = Path(args.data).suffix.lower() in TEXT_SUFFIXES and Path(args.data).is_file()
    if as_text:  # cells kept as written; only the `missing` tokens are holes
        text, table = read_text_table(Path(args.data), missing)
    else:
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
            progress=not args.quiet,
            verbose=args.verbose,
        )
        vae.fit(table)
        print(f"trained {len(vae.history_)} epochs on {len(table)} rows{_best(vae.history_)}")
    assert vae.schema_ is not None
    print(vae.schema_.describe())
    holes = int(table[vae.schema_.names].isna().to_numpy().sum())
    options = dict(num_samples=args.num_samples, importance=not args.no_importance, seed=args.seed)
    result = vae.impute(table, num_imputations=args.num_imputations, **options)
    draws = result if isinstance(result, list) else [result]
    keep_text = as_text and args.out.suffix.lower() in TEXT_SUFFIXES
    if keep_text:
        draws = [fill_text_table(text, table, draw) for draw in draws]
    if args.num_imputations:
        stacked = [d.assign(imputation=i + 1) for i, d in enumerate(draws)]
        filled = pd.concat(stacked)[["imputation", *table.columns]]
    else:
        filled = draws[0]
    if keep_text:
        write_text_table(filled, args.out)
    else:
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

"""The ``aevb`` command: train, sample, encode, reconstruct, evaluate, plot and impute.

Every option of ``aevb train`` is also a key of the TOML config (``--latent-dim 8`` is
``[model] latent_dim = 8``); flags override the file, the file overrides the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .checkpoint import save_json
from .config import SECTIONS, RunConfig, load_config, override
from .data import NAMED_DATASETS, load_dataset
from .errors import AevbError, DataError
from .evaluation import summarize
from .gaps import inference_gaps
from .inference import fit_local
from .plots import interleave, save_image_grid
from .report import FIGURES, draw_figures, write_report
from .runs import Run, load_run, load_run_data, train_run


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except AevbError as error:
        print(f"aevb: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aevb: interrupted; the last finished epoch is checkpointed", file=sys.stderr)
        return 130


# -- commands -------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else RunConfig()
    given = {
        name: getattr(args, name)
        for section in SECTIONS.values()
        for name in (f.name for f in dataclasses.fields(section))
        if getattr(args, name) is not None
    }
    if args.seed is not None:
        given["seed"] = args.seed
    config = override(config, given)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"{Path(config.data.source).stem}-{stamp}"
    run = train_run(config, out, resume=args.resume, progress=not args.quiet)
    metrics = run.metrics
    print(f"run folder: {run.path}")
    if "test_kl" in metrics:
        print(
            f"test ELBO {metrics['test_elbo']:.3f} nats "
            f"(reconstruction {metrics['test_log_px_z']:.3f}, KL {metrics['test_kl']:.3f}) "
            f"on {metrics['num_test']} held-out examples"
        )
    elif "test_elbo" in metrics:  # mean-field: q fitted for each test example
        print(
            f"test ELBO {metrics['test_elbo']:.3f} nats on {metrics['num_test']} held-out "
            f"examples, q fitted per example in {metrics['test_fit_seconds']:.1f} s"
        )
    return 0


def _sample(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    torch.manual_seed(args.seed)
    x = run.model.sample(args.num, mean=args.mean)
    path = _write(x, args.out or run.path / "samples.png", run)
    print(f"wrote {args.num} samples to {path}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    x = _run_input(run, args.data)
    if args.refine or run.metrics.get("inference") == "mean-field":
        # semi-amortized: K steps from the encoder; a mean-field run fits q from the prior
        mean_field = run.metrics.get("inference") == "mean-field"
        fitted = fit_local(
            run.model,
            x,
            init="prior" if mean_field else "encoder",
            steps=args.refine or 2000,
            tol=1e-3 if mean_field and not args.refine else None,
            lr=args.refine_lr,
        )
        qz = fitted.distribution()
        assert fitted.elbo is not None
        print(f"fitted q(z) per example: {fitted.steps} steps, ELBO {fitted.elbo.mean():.3f}")
    else:
        with torch.no_grad():
            qz = run.model.encode(x)
    with torch.no_grad():
        table = torch.cat([qz.mean, qz.stddev], dim=1)
    out = Path(args.out or run.path / "latents.csv")
    names = [f"loc_{j}" for j in range(run.model.latent_dim)]
    names += [f"scale_{j}" for j in range(run.model.latent_dim)]
    if out.suffix == ".npy":
        np.save(out, table.numpy())
    else:
        np.savetxt(out, table.numpy(), delimiter=",", header=",".join(names), comments="")
    print(f"wrote q(z|x) means and standard deviations of {len(x)} examples to {out}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    x = _run_input(run, args.data)[: args.num]
    reconstruction = run.model.reconstruct(x)
    out = args.out or run.path / "reconstructions.png"
    if Path(out).suffix == ".png":
        path = _write(interleave(x, reconstruction), out, run, num_columns=8)
    else:
        path = _write(reconstruction, out, run)
    print(f"wrote reconstructions of {len(x)} examples to {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    if args.data:
        data = load_dataset(args.data, binarize=run.config.data.binarize)
    else:
        data = dict(zip(("train", "valid", "test"), load_run_data(run.config), strict=True))[
            args.split
        ]
    x = data.x[: args.num] if args.num else data.x
    run.model.check_data(x)
    if args.gaps:
        return _gaps(args, run, x)
    summary = summarize(run.model, x, k=args.k, seed=args.seed)
    summary["data"] = args.data or f"{run.config.data.source} ({args.split} split)"
    out = Path(args.out or run.path / "evaluation.json")
    save_json(summary, out)
    _print_summary(summary)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {out}; report: {write_report(run)}")
    return 0


def _gaps(args: argparse.Namespace, run: Run, x: torch.Tensor) -> int:
    torch.manual_seed(args.seed)
    families = [f for f in args.families.split(",") if f]
    steps = [int(k) for k in args.refine_steps.split(",") if k]
    gaps = inference_gaps(run.model, x, families=families, refine_steps=steps, k=args.k)
    summary = gaps.summary()
    print(f"inference gaps on {len(x)} examples, nats per example (Cremer et al. 2018)")
    print(f"  log p(x), IS k={args.k}{summary['log_px']:>28.3f}")
    print(f"  ELBO, amortized q(z|x){summary['elbo_amortized']:>26.3f}")
    for k in steps:
        closed = summary.get(f"amortization_gap_closed_by_{k}", float("nan"))
        value = summary[f"elbo_refined_{k}"]
        print(f"  ELBO, semi-amortized K={k:<5}{value:>20.3f}   ({closed:.0%} of the gap)")
    for family in families:
        print(f"  ELBO, q* {family:<16}{summary[f'elbo_optimal_{family}']:>24.3f}")
        print(f"    approximation gap{summary[f'approximation_gap_{family}']:>31.3f}")
        print(f"    amortization gap{summary[f'amortization_gap_{family}']:>32.3f}")
    out = Path(args.out or run.path / "gaps.json")
    save_json(summary, out)
    print(f"wrote {out}")
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    rows = [
        (
            f"log p(x), IS k={summary['k']}",
            f"{summary['log_px']:.3f} ± {summary['log_px_stderr']:.3f}",
        ),
        ("negative log-likelihood", f"{summary['nll']:.3f}"),
        ("bits per dimension", f"{summary['bits_per_dim']:.4f}"),
        ("ELBO", f"{summary['elbo']:.3f}"),
        ("  E_q[log p(x|z)] (-distortion)", f"{summary['log_px_z']:.3f}"),
        ("  KL(q(z|x) || p(z)) (rate)", f"{summary['kl']:.3f}"),
        ("gap log p(x) - ELBO", f"{summary['gap']:.3f}"),
        ("active units", f"{summary['active_units']} of {summary['latent_dim']}"),
        ("ELBO surgery: average KL", f"{summary['average_kl']:.3f}"),
        (
            "  = mutual information I[n;z]",
            f"{summary['mutual_info']:.3f} ± {summary['surgery_stderr']:.3f}",
        ),
        ("  + KL(q(z) || p(z))", f"{summary['marginal_kl']:.3f}"),
    ]
    print(f"{summary['data']}, {summary['num_examples']} examples, nats per example")
    for name, value in rows:
        print(f"  {name:<34} {value:>18}")


def _plot(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    if args.data:
        data = load_dataset(args.data, binarize=run.config.data.binarize)
    else:
        train, _, test = load_run_data(run.config)
        data = test if len(test) else train
    run.model.check_data(data.x)
    what = args.what.split(",") if args.what else None
    figures = draw_figures(run, data, what=what, method=args.method)
    report = write_report(run)
    for name, path in figures.items():
        print(f"{name:>17}: {path}")
    print(f"report: {report}")
    return 0


def _impute(args: argparse.Namespace) -> int:
    from .tabular import TabularVAE, read_table, write_table

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


def _run_input(run: Run, source: str | None) -> torch.Tensor:
    """The data to encode: ``source``, or the run's own data; checked against the model."""
    data = run.config.data
    dataset = load_dataset(source or data.source, binarize=data.binarize)
    run.model.check_data(dataset.x)
    return dataset.x


def _write(x: torch.Tensor, out: str | Path, run: Run, num_columns: int | None = None) -> Path:
    out = Path(out)
    if out.suffix == ".png":
        if run.image_shape is None or len(run.image_shape) != 2:
            raise DataError(f"{run.path} holds no image data: write .npy or .csv instead of .png")
        return save_image_grid(x, run.image_shape, out, num_columns=num_columns)
    if out.suffix == ".npy":
        np.save(out, x.numpy())
    elif out.suffix == ".csv":
        np.savetxt(out, x.numpy(), delimiter=",")
    else:
        raise DataError(f"unknown output format {out.suffix!r}: use .png, .npy or .csv")
    return out


# -- the parser -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aevb",
        description="Variational autoencoders as amortized variational inference.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="fit a VAE and write a run folder")
    train.set_defaults(command=_train)
    train.add_argument("--config", type=Path, help="TOML config file (flags override it)")
    train.add_argument("--out", type=Path, help="run folder (default: runs/NAME-TIME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--seed", type=int, help="seed of the split, initialization, batches")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    for section, cls in SECTIONS.items():
        group = train.add_argument_group(f"[{section}] options")
        for field in dataclasses.fields(cls):
            _add_option(group, field, typing.get_type_hints(cls)[field.name])

    sample = commands.add_parser("sample", help="draw x ~ p(x|z), z ~ p(z) from a run")
    sample.set_defaults(command=_sample)
    sample.add_argument("run", type=Path, help="run folder")
    sample.add_argument("--num", type=int, default=64, help="number of samples")
    sample.add_argument("--mean", action="store_true", help="means of p(x|z), not draws")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", type=Path, help=".png, .npy or .csv (default RUN/samples.png)")

    encode = commands.add_parser("encode", help="write q(z|x) means and scales of data")
    encode.set_defaults(command=_encode)
    encode.add_argument("run", type=Path, help="run folder")
    encode.add_argument("--data", help="data file or name (default: the run's data)")
    encode.add_argument("--out", type=Path, help=".csv or .npy (default RUN/latents.csv)")
    encode.add_argument(
        "--refine", type=int, default=0, help="K gradient steps on each q from the encoder's"
    )
    encode.add_argument("--refine-lr", type=float, default=1e-2, help="Adam step size")

    reconstruct = commands.add_parser("reconstruct", help="decode E_q[z|x] for data")
    reconstruct.set_defaults(command=_reconstruct)
    reconstruct.add_argument("run", type=Path, help="run folder")
    reconstruct.add_argument("--data", help="data file or name (default: the run's data)")
    reconstruct.add_argument("--num", type=int, default=32, help="number of examples")
    reconstruct.add_argument("--out", type=Path, help=".png, .npy or .csv")
    evaluate = commands.add_parser("evaluate", help="log p(x) in nats and diagnostics of a run")
    evaluate.set_defaults(command=_evaluate)
    evaluate.add_argument("run", type=Path, help="run folder")
    evaluate.add_argument("--k", type=int, default=5000, help="importance samples per example")
    evaluate.add_argument("--split", choices=("train", "valid", "test"), default="test")
    evaluate.add_argument("--data", help="data file or name instead of the run's split")
    evaluate.add_argument("--num", type=int, help="only the first NUM examples")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", type=Path, help="JSON file (default RUN/evaluation.json)")
    evaluate.add_argument(
        "--gaps", action="store_true", help="approximation and amortization gaps instead"
    )
    evaluate.add_argument("--families", default="diagonal,full,planar", help="q* families")
    evaluate.add_argument("--refine-steps", default="10,100", help="semi-amortized K values")

    plot = commands.add_parser("plot", help="draw a run's figures and rewrite its report.html")
    plot.set_defaults(command=_plot)
    plot.add_argument("run", type=Path, help="run folder")
    plot.add_argument("--what", help=f"comma-separated, from: {', '.join(FIGURES)} (default: all)")
    plot.add_argument("--data", help="data file or name (default: the run's test split)")
    plot.add_argument("--method", choices=("pca", "tsne"), default="pca", help="above 2-D")

    impute = commands.add_parser(
        "impute", help="fill the missing entries of a table (CSV or Parquet) with a VAE"
    )
    impute.set_defaults(command=_impute)
    impute.add_argument("data", type=Path, help="table file (.csv, .tsv, .parquet)")
    impute.add_argument("--out", type=Path, required=True, help="filled table (.csv/.parquet)")
    impute.add_argument("--model", type=Path, help="use a saved model instead of fitting")
    impute.add_argument("--save-model", type=Path, help="folder to save the fitted model in")
    impute.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="COLUMN=FAMILY",
        help="override a column's inferred family (repeatable)",
    )
    impute.add_argument(
        "--num-imputations", type=int, help="M draws from p(x_miss|x_obs), stacked in OUT"
    )
    impute.add_argument("--num-samples", type=int, default=100, help="proposals from q(z|x)")
    impute.add_argument("--no-importance", action="store_true", help="trust q as the posterior")
    impute.add_argument("--latent-dim", type=int, help="size of z (default: columns / 2)")
    impute.add_argument("--k", type=int, default=20, help="importance samples when training")
    impute.add_argument(
        "--epochs", type=int, default=2000, help="at most (stops on held-out entries)"
    )
    impute.add_argument("--seed", type=int, default=0)
    impute.add_argument("--progress", action="store_true", help="show a line per epoch")
    return parser


def _add_option(group: Any, field: dataclasses.Field[Any], hint: Any) -> None:
    flag = "--" + field.name.replace("_", "-")
    flags = [flag, "--data"] if field.name == "source" else [flag]
    default = field.default if field.default is not dataclasses.MISSING else None
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    help_text = f"default: {shown}"
    if field.name == "source":
        help_text += f"; a path or one of {', '.join(NAMED_DATASETS)}"
    if hint is bool:
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, help=help_text)
        return
    group.add_argument(
        *flags, dest=field.name, type=_parse_as(hint), metavar="VALUE", help=help_text
    )


def _parse_as(hint: Any) -> Any:
    """An argparse ``type`` for a config field's hint; ``none`` gives None for optionals."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint

    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        if typing.get_origin(base) is tuple:
            return tuple(int(part) for part in text.split(",") if part)
        return base(text)

    parse.__name__ = getattr(base, "__name__", "value")
    return parse


if __name__ == "__main__":
    sys.exit(main())

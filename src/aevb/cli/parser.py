"""The ``aevb`` command line: every subcommand, option, description and default.

Light on purpose: it imports no torch, numpy or pandas, so ``aevb --help`` answers at once;
each subcommand names its handler as ``"module:function"`` in :mod:`aevb.cli`, imported
only when the command runs (:func:`aevb.cli.main.main`).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from ..viz.figures import FIGURES
from .config import CHOICES, DATASETS, SECTIONS
from .help import EXAMPLES, HELP


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aevb",
        description="Variational autoencoders as amortized variational inference.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = _command(commands, "train", help="fit a VAE and write a run folder")
    train.set_defaults(command="commands:train")
    train.add_argument("--config", type=Path, help="TOML config file (flags override it)")
    train.add_argument("--out", type=Path, help="run folder (default: runs/NAME-TIME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out, or write into a non-empty --out (default: refuse)",
    )
    train.add_argument("--seed", type=int, help="seed of the split, initialization, batches")
    train.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        help="processes training together on this machine (torchrun: gloo on CPU, NCCL on GPUs)",
    )
    _add_verbosity(train, "the full config first (as TOML), every term in each epoch's line")
    for section, cls in SECTIONS.items():
        group = train.add_argument_group(f"[{section}] options")
        for field in dataclasses.fields(cls):
            _add_option(group, field, typing.get_type_hints(cls)[field.name])

    sample = _command(commands, "sample", help="draw x ~ p(x|z), z ~ p(z) from a run")
    sample.set_defaults(command="commands:sample")
    sample.add_argument("run", type=Path, help="run folder")
    sample.add_argument("--num", type=_positive_int, default=64, help="number of samples")
    sample.add_argument(
        "--mean", action="store_true", help="means of p(x|z), not draws (text: greedy decoding)"
    )
    sample.add_argument("--beam", type=_count, default=0, help="text runs: beam search, N beams")
    sample.add_argument(
        "--between",
        nargs=2,
        metavar=("FROM", "TO"),
        help="text runs: decode --num points on the line between two sentences' codes",
    )
    sample.add_argument("--label", type=int, help="m2/cvae runs: only this label")
    sample.add_argument("--seed", type=int, default=0, help="seed of z ~ p(z) and x ~ p(x|z)")
    sample.add_argument(
        "--out", type=Path, help=".png, .npy, .csv or .txt (default RUN/samples.png or .txt)"
    )

    encode = _command(commands, "encode", help="write q(z|x) means and scales of data")
    encode.set_defaults(command="commands:encode")
    encode.add_argument("run", type=Path, help="run folder")
    encode.add_argument("--data", help="data file or name (default: the run's data)")
    encode.add_argument("--out", type=Path, help=".csv or .npy (default RUN/latents.csv)")
    encode.add_argument(
        "--refine", type=_count, default=0, help="K gradient steps on each q from the encoder's"
    )
    encode.add_argument("--refine-lr", type=_positive_float, default=1e-2, help="Adam step size")

    reconstruct = _command(commands, "reconstruct", help="decode E_q[z|x] for data")
    reconstruct.set_defaults(command="commands:reconstruct")
    reconstruct.add_argument("run", type=Path, help="run folder")
    reconstruct.add_argument("--data", help="data file or name (default: the run's data)")
    reconstruct.add_argument("--num", type=_positive_int, default=32, help="number of examples")
    reconstruct.add_argument("--out", type=Path, help=".png, .npy, .csv or .txt (text runs)")
    plot = _command(commands, "plot", help="draw a run's figures and rewrite its report.html")
    plot.set_defaults(command="commands:plot")
    plot.add_argument("run", type=Path, help="run folder")
    plot.add_argument("--what", help=f"comma-separated, from: {', '.join(FIGURES)} (default: all)")
    plot.add_argument("--data", help="data file or name (default: the run's test split)")
    plot.add_argument("--method", choices=("pca", "tsne"), default="pca", help="above 2-D")

    _add_evaluate_command(commands)
    _add_impute_command(commands)
    _add_predict_command(commands)
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its description (unless it says it, or there is none);
    the examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False  # (0 is a default)
        if nothing or action.default == argparse.SUPPRESS or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _command(commands: Any, name: str, **options: Any) -> argparse.ArgumentParser:
    """A subcommand whose help ends with runnable examples (:data:`aevb.cli.help.EXAMPLES`)."""
    examples = "\n".join(f"  {line}" for line in EXAMPLES[name])
    # train's options write their defaults themselves (from the config's dataclasses)
    formatter = argparse.RawDescriptionHelpFormatter if name == "train" else _Formatter
    return commands.add_parser(
        name, epilog=f"examples:\n{examples}", formatter_class=formatter, **options
    )


def _add_option(group: Any, field: dataclasses.Field[Any], hint: Any) -> None:
    flag = "--" + field.name.replace("_", "-")
    aliases = {"source": "--data", "kind": "--model"}
    flags = [aliases[field.name], flag] if field.name in aliases else [flag]
    default = field.default if field.default is not dataclasses.MISSING else None
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    help_text = HELP[field.name]
    if field.name in CHOICES:
        help_text += f"; one of {', '.join(CHOICES[field.name])}"
    if field.name == "source":
        help_text += f"; named: {', '.join(DATASETS)}"
    help_text += f" (default: {shown})"
    if hint is bool:
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, help=help_text)
        return
    metavar = field.name.upper() if field.name not in CHOICES else "NAME"
    group.add_argument(*flags, dest=field.name, type=_parse_as(hint), metavar=metavar,
                       help=help_text)  # fmt: skip


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


def _add_evaluate_command(commands: Any) -> None:
    evaluate = _command(commands, "evaluate", help="log p(x) in nats and diagnostics of a run")
    evaluate.set_defaults(command="evaluate:evaluate")
    evaluate.add_argument("run", type=Path, help="run folder")
    evaluate.add_argument(
        "--k", type=_positive_int, default=5000, help="importance samples per example"
    )
    evaluate.add_argument(
        "--split",
        choices=("train", "valid", "test"),
        default="test",
        help="which split of the run's data (default: test)",
    )
    evaluate.add_argument("--data", help="data file or name instead of the run's split")
    evaluate.add_argument("--num", type=_positive_int, help="only the first NUM examples")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the proposals z ~ q")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--compile", action="store_true", help="torch.compile the importance sampler (5-20 s)"
    )
    evaluate.add_argument("--out", type=Path, help="JSON file (default RUN/evaluation.json)")
    evaluate.add_argument(
        "--gaps", action="store_true", help="approximation and amortization gaps instead"
    )
    evaluate.add_argument("--families", default="diagonal,full,planar", help="q* families")
    evaluate.add_argument("--refine-steps", default="10,100", help="semi-amortized K values")
    evaluate.add_argument(
        "--fit-steps", type=_positive_int, default=2000, help="Adam steps fitting each q*"
    )


def _add_impute_command(commands: Any) -> None:
    impute = _command(
        commands, "impute", help="fill the missing entries of a table (CSV or Parquet) with a VAE"
    )
    impute.set_defaults(command="tabular:impute")
    impute.add_argument("data", type=Path, help="table file (.csv, .tsv, .parquet)")
    impute.add_argument("--out", type=Path, required=True, help="filled table (.csv/.parquet)")
    impute.add_argument("--model", type=Path, help="use a saved model instead of fitting")
    impute.add_argument(
        "--missing",
        default="",
        metavar="TOKENS",
        help="CSV cells that mean 'missing', comma-separated, besides the empty cell (e.g. "
        "NA,?); every other cell is kept exactly as written (default: empty cells only)",
    )
    impute.add_argument("--save-model", type=Path, help="folder to save the fitted model in")
    impute.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="COLUMN=FAMILY",
        help="override a column's inferred family (repeatable)",
    )
    impute.add_argument(
        "--num-imputations", type=_positive_int, help="M draws from p(x_miss|x_obs), stacked in OUT"
    )
    impute.add_argument(
        "--num-samples", type=_positive_int, default=100, help="proposals from q(z|x)"
    )
    impute.add_argument("--no-importance", action="store_true", help="trust q as the posterior")
    impute.add_argument("--latent-dim", type=_positive_int, help="size of z (default: columns / 2)")
    impute.add_argument(
        "--k", type=_positive_int, default=20, help="importance samples when training"
    )
    impute.add_argument(
        "--epochs", type=_positive_int, default=2000, help="at most (stops on held-out entries)"
    )
    impute.add_argument("--seed", type=int, default=0, help="seed of fitting and draws")
    _add_verbosity(impute)


def _add_predict_command(commands: Any) -> None:
    predict = _command(commands, "predict", help="labels from q(y|x) of a semi-supervised run")
    predict.set_defaults(command="commands:predict")
    predict.add_argument("run", type=Path, help="run folder of aevb train --model m2")
    predict.add_argument("--data", help="data file or name (default: the run's test split)")
    predict.add_argument("--labels", help="label column or file of --data, to score against")
    predict.add_argument("--out", type=Path, help="CSV (default RUN/predictions.csv)")


def _add_verbosity(command: Any, verbose: str = "every term in each epoch's line") -> None:
    """``--quiet`` and ``--verbose``: progress bars and lines are shown by default (bars only
    on a terminal; one line per epoch otherwise)."""
    group = command.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help="no progress output")
    group.add_argument("--verbose", action="store_true", help=verbose)


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse names the option on failure)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number (1, 2, ...)")
    return value


def _count(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} is not a positive finite number")
    return value


# argparse says "invalid <type name> value: 'abc'" for text that is not a number
_positive_int.__name__ = _count.__name__ = "whole number"
_positive_float.__name__ = "number"

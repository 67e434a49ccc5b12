"""The command line explains itself: every option has a description, the choices are named,
and help answers fast because nothing heavy is imported to build it."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import pytest
from commands import AEVB

from aevb.cli import build, config
from aevb.cli.help import HELP
from aevb.cli.parser import build_parser
from aevb.data.loaders import NAMED_DATASETS
from aevb.inference.objectives import IWAE_GRADIENTS
from aevb.nn.mlp import ACTIVATIONS


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (group,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_has_a_description(name: str) -> None:
    command = _subcommands()[name]
    missing = [
        action.option_strings or action.dest
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert not missing, f"aevb {name}: no description for {missing}"


def test_train_help_names_every_kind_inference_likelihood_and_prior() -> None:
    text = " ".join(_subcommands()["train"].format_help().split()).replace("- ", "-")
    for key in ("kind", "inference", "likelihood", "prior", "posterior", "objective"):
        for choice in config.CHOICES[key]:
            assert choice in text, (key, choice)


def test_the_names_the_config_accepts_are_the_names_that_build() -> None:
    assert set(config.LIKELIHOODS) == set(build.LIKELIHOODS)
    assert set(config.PRIORS) == set(build.PRIORS)
    assert set(config.OBJECTIVES) == set(build.OBJECTIVES)
    assert set(config.POSTERIORS) == set(build.POSTERIORS)
    assert set(config.OPTIMIZERS) == set(build.OPTIMIZERS)
    assert set(config.ACTIVATIONS) == set(ACTIVATIONS)
    assert set(config.IWAE_GRADIENTS) == set(IWAE_GRADIENTS)
    assert set(config.DATASETS) == set(NAMED_DATASETS)
    assert set(HELP) == {f for s in config.SECTIONS.values() for f in s.__dataclass_fields__}


def test_help_imports_nothing_heavy_and_answers_fast() -> None:
    probe = (
        "import sys; from aevb.cli.parser import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([AEVB, "--help"], capture_output=True, check=True)
        seconds.append(time.perf_counter() - start)
    assert statistics.median(seconds) < 1.0, seconds  # ~0.1 s measured on 2 cores


def test_an_unknown_choice_gets_the_list_and_a_suggestion() -> None:
    from test_cli import _fails_cleanly, aevb

    result = aevb("train", "--likelihood", "bernouli", "--epochs", "1", check=False)
    _fails_cleanly(result, "is not one of bernoulli, continuous-bernoulli")
    assert "did you mean 'bernoulli'?" in result.stderr


def test_training_prints_progress_a_legend_and_the_report(tmp_path) -> None:
    """Not on a terminal: one plain line per epoch with n of N, elapsed, ETA and speed."""
    from test_cli import aevb

    result = aevb(
        "train", "--out", tmp_path / "run", "--epochs", "2", "--hidden-dims", "16",
        "--snapshot-every", "0",
    )  # fmt: skip
    out = result.stdout
    assert "(* marks a new best validation score" in out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("elapsed, ETA" in line and "ex/s" in line for line in lines)
    assert lines[0].endswith("*")  # the first epoch is always the best so far
    assert f"report: {tmp_path / 'run' / 'report.html'}" in out


def test_verbose_training_and_a_progress_bar_on_a_terminal(tmp_path) -> None:
    """--verbose prints the config as TOML that --config reads back, and every term; on a
    real terminal (a pty) evaluation shows a bar of examples with its rate."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    from commands import AEVB
    from test_cli import aevb

    run = tmp_path / "run"
    result = aevb(
        "train", "--out", run, "--epochs", "1", "--hidden-dims", "16", "--snapshot-every", "0",
        "--verbose",
    )  # fmt: skip
    config_text = result.stdout.split("\n\n[train]")[0]
    assert config_text.startswith("seed = 0") and 'source = "digits"' in config_text
    epoch = next(line for line in result.stdout.splitlines() if line.startswith("epoch "))
    assert "train_log_px_z" in epoch and "valid_log_px_z" in epoch  # hidden without --verbose
    assert aevb("train", "--quiet", "--verbose", check=False).returncode == 2  # one or other

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    process = subprocess.run(
        [AEVB, "evaluate", str(run), "--k", "50", "--num", "100"],
        stdin=follower, stdout=subprocess.PIPE, stderr=follower, timeout=120, check=True,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is closed once everything is read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert b"log p(x), IS k=50" in shown and b"ex/s" in shown
    assert b"log p(x)" in process.stdout


def test_every_subcommand_help_ends_with_runnable_examples() -> None:
    from aevb.cli.help import EXAMPLES
    from aevb.cli.parser import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(EXAMPLES) == set(commands)
    for name, parser in commands.items():
        text = parser.format_help()
        examples = text.split("examples:\n", 1)[1].splitlines()
        assert len(examples) >= 2 and all(line.startswith(f"  aevb {name}") for line in examples)
        for line in examples:  # each example parses: its options exist and take these values
            argv = line.split("#")[0].split()[1:]
            build_parser().parse_args(argv)

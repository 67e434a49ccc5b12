"""Every option has a range (reliability class 4): numbers that make no sense and options that
contradict each other are refused before any work, with the option and its valid range named;
through the config reader (which the command and TOML files share) and the real command."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from commands import aevb

from aevb.cli.config import config_from_dict
from aevb.errors import ConfigError

AEVB = str(Path(sys.executable).with_name("aevb"))

BAD = [
    ({"train": {"patience": 0}}, "patience must be positive"),
    ({"train": {"lr_decay": -1.0}}, "lr_decay must be positive"),
    ({"train": {"clip_grad_norm": -1.0}}, "clip_grad_norm must be positive"),
    ({"train": {"k": 0}}, "k must be positive"),
    ({"train": {"num_samples": 0}}, "num_samples must be positive"),
    ({"train": {"epochs": 0}}, "epochs must be positive"),
    ({"train": {"lr": math.nan}}, "lr must be positive"),
    ({"model": {"latent_dim": 0}}, "latent_dim must be positive"),
    ({"model": {"num_categories": 0}}, "num_categories must be >= 2"),
    ({"model": {"channels": [8, 0]}}, "channels must be positive"),
    ({"data": {"valid_fraction": math.nan}}, "valid_fraction must be >= 0"),
    ({"data": {"valid_fraction": 0.6, "test_fraction": 0.5}}, "must be below 1"),
    ({"data": {"scale": 0.0}}, "scale must be positive"),
    (
        {"model": {"kind": "m2"}, "train": {"inference": "mean-field"}},
        "use inference = 'amortized'",
    ),
    ({"data": {"num_labelled": 100}}, "set kind = 'm2'"),
    ({"train": {"refine_steps": 5, "objective": "iwae"}}, "pick one"),
    ({"model": {"spatial_latents": True}}, "convolutional body"),
]


@pytest.mark.parametrize(("raw", "message"), BAD, ids=[m for _, m in BAD])
def test_nonsense_options_are_refused_with_the_range(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(raw)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "anywhere", "--k", "0"], "argument --k: 0 is not a positive whole number"),
        (["sample", "anywhere", "--num", "-1"], "argument --num: -1 is not a positive whole"),
        (["train", "--data", "digits", "--patience", "0", "--out", "out"], "patience must be"),
        (["train", "--data", "digits", "--binarize", "2", "--out", "out"], "from 0 to 1"),
    ],
)
def test_the_command_refuses_them_in_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = aevb(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []

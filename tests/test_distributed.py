"""Two real processes training one run (torchrun, gloo): the loss curve of one process,
rank 0 alone writing, resume under two processes, and launch options refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from commands import aevb

OPTIONS = ["--data", "digits", "--hidden-dims", "32", "--latent-dim", "2", "--snapshot-every", "0"]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_follow_the_one_process_curve(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert aevb("train", *OPTIONS, "--epochs", "3", "--quiet", "--out", one).returncode == 0
    result = aevb("train", *OPTIONS, "--epochs", "3", "--nproc", "2", "--out", two)
    assert result.returncode == 0, result.stderr
    # rank 0 alone writes: the same files, one line per epoch
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    single, double = _metrics(one), _metrics(two)
    assert [m["step"] for m in double] == [m["step"] for m in single] == [15, 30, 45]
    # Same data, initialization, global batches and averaged gradients; only the draws of z
    # differ (each process draws its own), which moves an epoch's mean ELBO by a few tenths
    # of a nat here (0.04-0.39 measured), so the curves agree to within 1 nat.
    for a, b in zip(single, double, strict=True):
        assert abs(a["train_elbo"] - b["train_elbo"]) < 1.0
        assert abs(a["valid_elbo"] - b["valid_elbo"]) < 1.0
    facts = json.loads((two / "run.json").read_text())
    assert facts["epochs_trained"] == 3 and "test_elbo" in facts


@pytest.mark.slow  # two more torchrun starts (~30 s)
def test_a_two_process_run_resumes_under_two_processes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert aevb("train", *OPTIONS, "--epochs", "1", "--nproc", "2", "--out", run).returncode == 0
    more = aevb("train", *OPTIONS, "--epochs", "2", "--nproc", "2", "--resume", "--out", run)
    assert more.returncode == 0, more.stderr
    assert [m["epoch"] for m in _metrics(run)] == [1, 2]


def test_launch_options_are_checked_before_any_process_starts(tmp_path: Path) -> None:
    too_many = aevb("train", "--nproc", "999", "--out", "run", cwd=tmp_path)
    assert too_many.returncode == 2 and "more than this machine's" in too_many.stderr
    zero = aevb("train", "--nproc", "0", "--out", "run", cwd=tmp_path)
    assert zero.returncode == 2 and "--nproc" in zero.stderr
    assert list(tmp_path.iterdir()) == []


NAN_ON_RANK_ONE = """
import sys

import torch
from aevb import Trainer, TrainingDiverged, elbo, load_dataset, mlp_vae
from aevb.training.distributed import join_from_environment, leave, rank_and_size

join_from_environment(torch.device("cpu"))
rank, _ = rank_and_size()
torch.manual_seed(0)
model = mlp_vae(64, 2, (32,))

def objective(model, x, beta=1.0):
    if rank == 1 and trainer.step == 7:  # this process alone meets a NaN
        x = x * float("nan")
    return elbo(model, x, beta=beta)

trainer = Trainer(model, objective=objective, max_epochs=5, progress=False)
try:
    trainer.fit(load_dataset("digits-binary").x)
except TrainingDiverged as error:
    line = f"rank {rank} stopped at step {trainer.step}: {str(error).splitlines()[0]}"
    # one write per line: the ranks share stdout, and print's own write of the newline let
    # two lines interleave ("... epochsrank 1 ...")
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
leave()
"""


def _two_ranks(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as two torchrun processes; it must exit 0 within five minutes."""
    path = tmp_path / "script.py"
    path.write_text(script)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    try:
        result = subprocess.run(
            [*launcher, "2", str(path)], capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired as error:  # show what each rank had printed
        pytest.fail(f"timed out; stdout {error.stdout!r}; stderr {error.stderr!r}")
    assert result.returncode == 0, (result.stdout, result.stderr[-3000:])
    return result


def test_a_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """Rank 1 alone meets a NaN at step 7: both ranks stop at that step with the divergence
    error (none is left waiting in an all_reduce), before taking the bad step."""
    result = _two_ranks(NAN_ON_RANK_ONE, tmp_path)
    lines = sorted(line for line in result.stdout.splitlines() if line.startswith("rank"))
    assert [line.split(":")[0] for line in lines] == [
        "rank 0 stopped at step 7",
        "rank 1 stopped at step 7",
    ], (result.stdout, result.stderr[-2000:])
    assert "became nan at epoch 1, step 8" in lines[1]  # the rank that met it
    assert "became NaN or inf on another process at epoch 1, step 8" in lines[0]


LATE_CLOCK_ON_RANK_ONE = """
import sys
import time

import torch
from aevb import Trainer, load_dataset, mlp_vae
from aevb.training.distributed import join_from_environment, leave, rank_and_size

torch.set_num_threads(1)
join_from_environment(torch.device("cpu"))
rank, _ = rank_and_size()
torch.manual_seed(0)
trainer = Trainer(mlp_vae(64, 2, (32,)), max_epochs=50, max_seconds=6.0, progress=False,
                  epoch_metrics=lambda model: time.sleep(0.4) or {})
torch.distributed.barrier()  # the processes started at different times; line them up
if rank == 1:
    time.sleep(3.0)  # then rank 1's clock starts 3 s after rank 0's
trainer.fit(load_dataset("digits-binary").x[:200])  # two steps: an epoch is ~0.4 s
sys.stdout.write(f"rank {rank} trained {trainer.epoch} epochs\\n")  # one write per line
sys.stdout.flush()
leave()
"""


def test_rank_zero_clock_ends_a_timed_run_on_every_rank(tmp_path: Path) -> None:
    """Rank 0's clock runs 3 s ahead: by it the 6 s budget holds ~7 epochs of ~0.4 s, by
    rank 1's ~14. Both must stop where rank 0 does, or rank 1 is left alone in an
    all_reduce while rank 0 waits in leave()'s barrier (the run hangs to the timeout)."""
    result = _two_ranks(LATE_CLOCK_ON_RANK_ONE, tmp_path)
    lines = sorted(line for line in result.stdout.splitlines() if line.startswith("rank"))
    epochs = [line.split()[3] for line in lines]
    assert len(lines) == 2 and epochs[0] == epochs[1], (result.stdout, result.stderr[-2000:])

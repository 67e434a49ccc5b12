"""Data read from disk a batch at a time (``stream=True``, ``--stream``): the same values,
batches and results as the same data in memory; streaming checks; bad files refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from commands import aevb

from aevb import ConfigError, DataError, Trainer, load_dataset, log_px, mlp_vae, split
from aevb.data import DiskRows
from aevb.data.sources import WINDOW, CsvRows, ParquetRows

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist.npz"


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    """600 binary 28x28 images: binarized MNIST where present, else seeded noise."""
    if DATA.exists():
        with np.load(DATA) as archive:
            return np.ascontiguousarray(archive["train_x"][:600], dtype=np.uint8)
    return (np.random.default_rng(0).random((600, 784)) < 0.3).astype(np.uint8)


@pytest.fixture
def table() -> pd.DataFrame:
    values = np.random.default_rng(1).normal(size=(2500, 6)).astype(np.float32)
    return pd.DataFrame(values, columns=[f"c{i}" for i in range(6)])


def test_npy_rows_equal_the_array(tmp_path: Path, pixels: np.ndarray) -> None:
    np.save(tmp_path / "flat.npy", pixels)
    np.save(tmp_path / "hwc.npy", pixels.reshape(-1, 28, 28, 1))
    np.save(tmp_path / "big-endian.npy", pixels.astype(">f8"))
    memory = load_dataset(tmp_path / "flat.npy")
    rows = torch.randperm(600, generator=torch.Generator().manual_seed(0))[:250]
    for name in ("flat.npy", "hwc.npy", "big-endian.npy"):
        disk = load_dataset(tmp_path / name, stream=True)
        assert isinstance(disk.x, DiskRows) and disk.image_shape == (1, 28, 28)
        assert disk.x.shape == memory.x.shape
        assert torch.equal(disk.x[rows], memory.x[rows])  # random rows, repeated order kept
        assert torch.equal(disk.x[10:400:7], memory.x[10:400:7])
        assert torch.equal(disk.x[memory.x[:, 300] > 0], memory.x[memory.x[:, 300] > 0])
        assert torch.equal(disk.x[torch.tensor([-1, 0, 0])], memory.x[[-1, 0, 0]])
    with pytest.raises(IndexError):
        disk.x[torch.tensor([600])]


@pytest.mark.parametrize("kind", ["csv", "parquet", "parquet-parts"])
def test_block_formats_equal_the_table(tmp_path: Path, table: pd.DataFrame, kind: str) -> None:
    if kind == "csv":
        path = tmp_path / "t.csv"
        table.to_csv(path, index=False)
    elif kind == "parquet":
        path = tmp_path / "t.parquet"
        table.to_parquet(path, row_group_size=300)
    else:
        path = tmp_path / "parts"
        path.mkdir()
        for i, begin in enumerate(range(0, 2500, 1000)):
            table[begin : begin + 1000].to_parquet(path / f"part-{i}.parquet", row_group_size=400)
    expected = torch.as_tensor(table.to_numpy(copy=True))
    disk = load_dataset(path, stream=True).x
    assert isinstance(disk, DiskRows) and disk.blockwise
    rows = torch.randperm(2500, generator=torch.Generator().manual_seed(0))[:500]
    assert torch.equal(disk[rows], expected[rows])
    assert torch.equal(load_dataset(path).x, expected)  # the same file, in memory


def test_blockwise_epochs_read_each_block_once(tmp_path: Path, table: pd.DataFrame) -> None:
    """A block format's epoch is a permutation in which every batch's rows come from the
    current window of blocks, so each block is parsed once per epoch (the cache holds the
    window), and successive epochs differ."""
    table.to_parquet(tmp_path / "t.parquet", row_group_size=100)  # 25 blocks
    x = DiskRows(ParquetRows(tmp_path / "t.parquet"))
    parsed: list[int] = []
    read_block = x.source.read_block
    x.source.read_block = lambda block: parsed.append(block) or read_block(block)  # type: ignore[method-assign]
    generator = torch.Generator().manual_seed(0)
    first = x.order(generator)
    assert sorted(first.tolist()) == list(range(2500))
    for rows in first.split(50):
        x[rows]
    assert sorted(parsed) == list(range(25))
    blocks = torch.as_tensor(first // 100)
    for window in blocks.split(WINDOW * 100):  # WINDOW whole blocks, mixed
        assert len(window.unique()) == len(window) // 100  # WINDOW, or fewer at the end
        assert len(window) == 100 or not bool((window[1:] == window[:-1]).all())
    assert not torch.equal(first, x.order(generator))


def test_streamed_training_equals_in_memory(tmp_path: Path, pixels: np.ndarray) -> None:
    """An .npy file trains exactly as the same array in memory: same batches, same losses,
    same validation and the same IS log p(x)."""
    np.save(tmp_path / "x.npy", pixels)
    histories, estimates = [], []
    for stream in (False, True):
        train, valid, test = split(load_dataset(tmp_path / "x.npy", stream=stream), (0.2, 0.1))
        torch.manual_seed(0)
        model = mlp_vae(784, 4, (32,))
        trainer = Trainer(model, max_epochs=2, batch_size=64, progress=False)
        histories.append(trainer.fit(train.x, valid.x))
        torch.manual_seed(1)
        estimates.append(log_px(model, test.x, k=16, batch_size=25).log_px)
    keys = [k for k in histories[0][0] if k != "seconds"]
    assert [[r[k] for k in keys] for r in histories[0]] == [
        [r[k] for k in keys] for r in histories[1]
    ]
    assert torch.equal(estimates[0], estimates[1])


def test_stream_from_the_command_line(tmp_path: Path, pixels: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", pixels)
    options = ["--likelihood", "bernoulli", "--epochs", "2", "--snapshot-every", "0"]
    data = tmp_path / "x.npy"
    aevb("train", "--data", data, *options, "--out", tmp_path / "memory", check=True)
    aevb("train", "--data", data, "--stream", *options, "--out", tmp_path / "disk", check=True)
    lines = [
        [
            {k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in path.read_text().splitlines()
        ]
        for path in (tmp_path / "memory" / "metrics.jsonl", tmp_path / "disk" / "metrics.jsonl")
    ]
    assert lines[0] == lines[1]
    facts = [json.loads((tmp_path / run / "run.json").read_text()) for run in ("memory", "disk")]
    assert facts[0]["test_elbo"] == facts[1]["test_elbo"]
    assert json.loads((tmp_path / "disk" / "config.json").read_text())["data"]["stream"] is True
    assert (tmp_path / "disk" / "report.html").exists()
    result = aevb("evaluate", tmp_path / "disk", "--k", "8", "--quiet", check=True)
    assert "log p(x)" in result.stdout


def test_streamed_checks_name_the_row(tmp_path: Path, pixels: np.ndarray) -> None:
    """The finiteness and support checks stream over the file and name the bad row; nothing
    is written."""
    values = pixels.astype(np.float32)
    values[517, 3] = np.nan
    np.save(tmp_path / "nan.npy", values)
    with pytest.raises(DataError, match=r"1 NaN entries in 1 rows \(rows 517\)"):
        load_dataset(tmp_path / "nan.npy", stream=True)
    values[517, 3] = 0.5  # not binary: outside the Bernoulli support
    np.save(tmp_path / "half.npy", values)
    out = tmp_path / "run"
    result = aevb(
        "train", "--data", tmp_path / "half.npy", "--stream", "--likelihood", "bernoulli",
        "--seed", "3", "--out", out,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "row 517, column 3, value 0.5" in result.stderr
    assert not out.exists()


def _fails(tmp_path: Path, data: str, *extra: str) -> str:
    """``aevb train --stream`` on bad input: a clear error and no run folder."""
    out = tmp_path / "run"
    result = aevb("train", "--data", tmp_path / data, "--stream", *extra, "--out", out)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    return result.stderr


def test_bad_files_are_refused(tmp_path: Path, pixels: np.ndarray, table: pd.DataFrame) -> None:
    np.save(tmp_path / "x.npy", pixels)
    whole = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[:-784])
    assert "does not match its header" in _fails(tmp_path, "cut.npy")
    (tmp_path / "extra.npy").write_bytes(whole + bytes(784))
    assert "does not match its header" in _fails(tmp_path, "extra.npy")
    np.save(tmp_path / "fortran.npy", np.asfortranarray(pixels))
    assert "Fortran order" in _fails(tmp_path, "fortran.npy")
    (tmp_path / "parts").mkdir()
    table[:1000].to_parquet(tmp_path / "parts" / "a.parquet")
    table[1000:].astype({"c2": "float64"}).to_parquet(tmp_path / "parts" / "b.parquet")
    message = _fails(tmp_path, "parts")
    assert "b.parquet has columns" in message and "c2: double" in message
    table.assign(name="x").to_parquet(tmp_path / "text.parquet")
    assert "non-numeric columns: name (" in _fails(tmp_path, "text.parquet")
    table.to_csv(tmp_path / "ragged.csv", index=False)
    with open(tmp_path / "ragged.csv", "a") as file:
        file.write("1,2,3,4,5,6,7\n")
    assert "ragged.csv (rows 0-2500): Error tokenizing" in _fails(tmp_path, "ragged.csv")
    np.savez(tmp_path / "x.npz", x=pixels)
    assert "must be .npy, .csv or Parquet" in _fails(tmp_path, "x.npz")
    labels = str(tmp_path / "x.npy")
    assert "keeps its data" in _fails(tmp_path, "x.npy", "--model", "m2", "--labels", labels)


def test_csv_blocks_locate_rows(tmp_path: Path) -> None:
    """Blocks of 4096 rows, blank lines skipped, a header or none."""
    values = np.arange(9000 * 2, dtype=np.float32).reshape(9000, 2)
    text = "\n".join(
        f"{a:g},{b:g}" + ("\n" if i == 5000 else "") for i, (a, b) in enumerate(values)
    )
    (tmp_path / "plain.csv").write_text(text)  # no header, no final newline, one blank line
    x = load_dataset(tmp_path / "plain.csv", stream=True).x
    assert isinstance(x, DiskRows) and isinstance(x.source, CsvRows)
    assert x.source.block_starts.tolist() == [0, 4096, 8192, 9000]
    assert torch.equal(
        x[torch.tensor([8999, 0, 4095, 4096, 5001])],
        torch.as_tensor(values[[8999, 0, 4095, 4096, 5001]]),
    )


def test_stream_needs_a_vae_config() -> None:
    from aevb.cli.config import config_from_dict

    with pytest.raises(ConfigError, match="stream = true"):
        config_from_dict({"data": {"stream": True}, "train": {"inference": "mean-field"}})


def test_resident_memory_does_not_follow_the_file(tmp_path: Path) -> None:
    """One pass over a 96 MB .npy in a fresh process raises its resident memory by far less
    than the file (np.memmap would add the whole file: its pages count once touched)."""
    rows = 96 * 2**20 // (784 * 4)
    np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.float32, (rows, 784)).flush()
    script = (
        "import sys, torch, numpy as np\n"
        "from aevb.data import load_dataset\n"
        "def rss():\n"
        "    fields = dict(l.split(':') for l in open('/proc/self/status'))\n"
        "    return int(fields['VmRSS'].split()[0]) / 1024\n"
        "x = load_dataset(sys.argv[1], stream=True).x\n"
        "before = rss()\n"
        "for rows in x.order(torch.Generator().manual_seed(0)).split(500):\n"
        "    x[rows]\n"
        "print(rss() - before)\n"
    )
    grown = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "big.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(grown.stdout) < 24, grown.stdout  # MB, against the file's 96

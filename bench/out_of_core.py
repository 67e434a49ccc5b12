"""Data larger than memory: peak resident memory and time per epoch of ``aevb train
--stream`` as the rows grow, beside the same run with the data in memory.

The data are statically binarized MNIST's 50,000 training images (``../shared/data``),
tiled to 1x, 4x and 16x the rows and saved as uint8 ``.npy`` files (39 MB, 157 MB, 627 MB).
Each run is a fresh process training a 784-200-200-50 Bernoulli VAE for ``--epochs``
epochs with the usual 80/10/10 split, validation each epoch, the test metrics and the
figures: the whole ``aevb train`` command. The script prints each run's peak resident
memory (the process's own ``ru_maxrss``) and its median seconds per epoch, with their
ratios to the 1x streamed run: flat memory and time linear in the rows are the targets.

    python bench/out_of_core.py [--sizes 1,4,16] [--epochs 2] [--out bench-runs/out-of-core]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist.npz"
CHILD = """
import resource, sys
from aevb.cli.main import main
status = main(sys.argv[1:])
print("peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(status)
"""


def write_tiled(images: np.ndarray, times: int, path: Path) -> None:
    """``images`` repeated ``times`` over, written in pieces (never all in memory)."""
    if path.exists():
        return
    out = np.lib.format.open_memmap(path, "w+", np.uint8, (len(images) * times, 784))
    for i in range(times):
        out[i * len(images) : (i + 1) * len(images)] = images
    out.flush()
    del out


def run(data: Path, out: Path, epochs: int, threads: int, stream: bool) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, "-c", CHILD, "train", "--data", str(data), "--likelihood", "bernoulli",
        "--hidden-dims", "200,200", "--latent-dim", "50", "--epochs", str(epochs),
        "--kl-warmup-epochs", "0", "--snapshot-every", "0", "--quiet", "--out", str(out),
    ]  # fmt: skip
    if stream:
        command.append("--stream")
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    peak = float(done.stdout.split("peak_mb")[-1])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    seconds = statistics.median(json.loads(line)["seconds"] for line in lines)
    rows = json.loads((out / "run.json").read_text())["num_train"]
    return {"peak_mb": peak, "seconds": seconds, "train_rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,4,16", help="multiples of the 50,000 rows")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-runs/out-of-core"))
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"skipped: {DATA} is not here")
    args.out.mkdir(parents=True, exist_ok=True)
    with np.load(DATA) as archive:
        images = np.ascontiguousarray(archive["train_x"], dtype=np.uint8)
    sizes = [int(size) for size in args.sizes.split(",")]
    results = []
    for size in sizes:
        data = args.out / f"mnist-{size}x.npy"
        write_tiled(images, size, data)
        kinds = [("memory", False), ("stream", True)] if size == sizes[0] else [("stream", True)]
        for kind, stream in kinds:
            result = run(data, args.out / f"run-{size}x-{kind}", args.epochs, args.threads, stream)
            results.append(
                {"size": size, "kind": kind, "file_mb": data.stat().st_size / 2**20, **result}
            )
            print(json.dumps(results[-1]), flush=True)
    base = next(r for r in results if r["kind"] == "stream")
    print(f"\n784-200-200-50 Bernoulli VAE, {args.epochs} epochs, {args.threads} threads")
    print(f"{'rows':>9} {'data':>7} {'file MB':>8} {'peak RSS MB':>12} {'x 1x':>6} "
          f"{'s/epoch':>8} {'x 1x':>6} {'us/row':>7}")  # fmt: skip
    for r in results:
        print(
            f"{r['size'] * len(images):>9} {r['kind']:>7} {r['file_mb']:>8.0f} "
            f"{r['peak_mb']:>12.0f} {r['peak_mb'] / base['peak_mb']:>6.2f} "
            f"{r['seconds']:>8.2f} {r['seconds'] / base['seconds']:>6.2f} "
            f"{1e6 * r['seconds'] / r['train_rows']:>7.1f}"
        )
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

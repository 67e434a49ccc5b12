"""The sentence VAE against an LSTM language model on Shakespeare, in nats per line.

Data: ``../shared/data/shakespeare`` (train 89,845 / valid 5,019 / test 5,005 lines, a fixed
split); a word-level vocabulary of the 10,000 most frequent tokens of the training lines
(``<unk>`` for the rest), lines cut at 25 tokens (the count is printed). Models, the same
decoder for both (embeddings 256, one LSTM layer of 256, softmax over the vocabulary;
``--dropout`` on the decoder's embeddings and outputs, Zaremba et al. 2014, as He et al. 2019
and Li et al. 2019 train their LSTM decoders):

    lm    the language model: no latent variable
    vae   the sentence VAE (Bowman et al. 2016): an LSTM encoder (256), z of 32 dimensions
          read by the decoder at its start and at every step; against posterior collapse,
          free bits (a floor of --free-bits nats per dimension on the batch's KL, Kingma et
          al. 2016) and a cyclical KL schedule (Fu et al. 2019)

Each trains with Adam (lr 1e-3, batch 64) for at most ``--minutes`` of wall time, keeping the
weights of the best validation bound; ``--resume`` trains an existing run for another
``--minutes`` (bit-exact). Then, on the test lines: log p(x) by importance sampling with
``--k`` proposals (for the language model, whose q is its prior and whose decoder ignores
z, one proposal gives log p(x) exactly), NLL per line, perplexity per word (``</s>``
counted as a word), the KL term, active units and the mutual information I(x; z); five
samples from the prior and five homotopies (Bowman et al.'s Table 8). Results accumulate
in ``--out``/results.json.

    python bench/shakespeare.py --models lm,vae --minutes 88 --threads 1   # two cores
    python bench/shakespeare.py --models vae --minutes 30 --resume          # another piece
    python bench/shakespeare.py --models lm --minutes 1 --num-test 50 --k 20  # smoke
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from aevb import Trainer, Vocabulary, elbo, log_px, read_lines, text_vae
from aevb.evaluation import active_units, elbo_surgery, evaluate
from aevb.models.sequence import homotopies
from aevb.training.checkpoint import load_weights

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare"
MAX_LENGTH = 25
NETWORK = {"embed_dim": 256, "hidden_dim": 256, "bidirectional": False}
MODELS: dict[str, dict[str, Any]] = {"lm": {"latent_dim": 0}, "vae": {"latent_dim": 32}}


def _split(name: str) -> list[str]:
    return read_lines(DATA / f"shakespeare_{name}.txt.gz")[0]


def _trainer(name: str, model: Any, out: Path, minutes: float, free_bits: float) -> Trainer:
    options: dict[str, Any] = {}
    if name == "vae":  # 4 cycles of 2 epochs, then beta = 1 (free bits keep a floor on KL)
        options = {"kl_warmup_epochs": 2, "kl_schedule": "cyclical", "kl_cycles": 4}
        options["objective"] = _with_free_bits(free_bits)
    return Trainer(
        model,
        lr=1e-3,
        batch_size=64,
        max_epochs=1000,
        patience=5,
        clip_grad_norm=5.0,
        max_seconds=minutes * 60,
        run_dir=out,
        progress=False,
        **options,
    )


def _with_free_bits(free_bits: float) -> Any:
    return functools.partial(elbo, free_bits=free_bits)


def _evaluate(model: Any, vocab: Vocabulary, test: torch.Tensor, k: int) -> dict[str, Any]:
    model.eval()
    started = time.perf_counter()
    estimate = log_px(model, test, k, batch_size=16, max_rows=2048)
    seconds = time.perf_counter() - started
    tokens = int((test != 0).sum())  # words and </s>
    nll = -float(estimate.log_px.sum())
    terms = evaluate(model, test)
    _, active = active_units(model, test)
    surgery = elbo_surgery(model, test[:1000])
    torch.manual_seed(0)
    samples = vocab.decode(model.sample(5))
    greedy = vocab.decode(model.sample(5, mean=True))
    paths = homotopies(model, test[0:10:2], test[1:10:2], num_steps=5)
    return {
        "num_lines": len(test),
        "tokens": tokens,
        "k": k,
        "nll_per_line": nll / len(test),
        "nll_stderr": float(estimate.mean_stderr),
        "perplexity_per_word": math.exp(nll / tokens),
        "elbo_per_line": terms["elbo"],
        "kl": terms["kl"],
        "active_units": int(active.sum()),
        "mutual_info": surgery.mutual_info,
        "log_px_seconds": seconds,
        "samples": samples,
        "greedy_samples": greedy,
        "homotopies": [vocab.decode(path) for path in paths],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lm,vae")
    parser.add_argument("--minutes", type=float, default=80.0, help="training budget per model")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=None)
    parser.add_argument("--num-train", type=int, default=None, help="fewer lines (smoke)")
    parser.add_argument("--free-bits", type=float, default=0.25, help="vae: nats per dimension")
    parser.add_argument("--dropout", type=float, default=0.3, help="decoder dropout")
    parser.add_argument("--out", type=Path, default=Path("bench-runs/shakespeare"))
    parser.add_argument("--threads", type=int, default=2, help="1: two runs side by side")
    parser.add_argument("--resume", action="store_true", help="train existing runs further")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the trained runs")
    args = parser.parse_args()
    if not (DATA / "shakespeare_train.txt.gz").exists():
        print(f"skipped: {DATA} not found")
        return 0
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = _split("train")
    vocab = Vocabulary.build(lines, max_size=10_000)
    encoded = {
        name: vocab.encode(_split(name), max_length=MAX_LENGTH) for name in ("valid", "test")
    }
    encoded["train"] = vocab.encode(lines, max_length=MAX_LENGTH)
    for name, text in encoded.items():
        print(f"{name}: {len(text.ids)} lines, {text.words} words; {text.report() or 'as read'}")
    test = encoded["test"].ids[: args.num_test]
    results_path = args.out / "results.json"
    for name in [name for name in args.models.split(",") if name]:
        out = args.out / name
        torch.manual_seed(0)
        network = {**NETWORK, "dropout": args.dropout}
        model = text_vae(len(vocab), MAX_LENGTH + 1, **MODELS[name], **network)
        trained = (out / "trainer.json").exists()
        if args.eval_only or (trained and not args.resume):
            load_weights(model, out / "model.safetensors")
        else:
            trainer = _trainer(name, model, out, args.minutes, args.free_bits)
            train = encoded["train"].ids[: args.num_train]
            trainer.fit(train, encoded["valid"].ids[: args.num_test], resume=trained)
            last = trainer.history[-1]
            print(f"{name}: {last['epoch']} epochs, valid ELBO {last['valid_elbo']:.2f}, "
                  f"KL {last['valid_kl']:.2f}", flush=True)  # fmt: skip
        history = json.loads((out / "trainer.json").read_text())["history"]
        # the language model's q is its prior and its decoder ignores z: one proposal is exact
        k = args.k if MODELS[name]["latent_dim"] else 1
        summary = _evaluate(model, vocab, test, k)
        minutes = sum(r["seconds"] for r in history) / 60
        summary.update(epochs=len(history), train_minutes=minutes, dropout=args.dropout)
        print(
            f"{name}: test NLL {summary['nll_per_line']:.2f} nats per line "
            f"(k={k}, ± {summary['nll_stderr']:.2f}), perplexity "
            f"{summary['perplexity_per_word']:.1f}, KL {summary['kl']:.2f}, active units "
            f"{summary['active_units']}, I(x; z) {summary['mutual_info']:.2f}, trained "
            f"{summary['train_minutes']:.1f} min ({summary['epochs']} epochs)",
            flush=True,
        )
        for line in summary["samples"]:
            print(f"  sample: {line}")
        for path in summary["homotopies"]:
            print("  homotopy: " + " | ".join(path))
        # Re-read before writing: another run of this script (--threads 1) may have saved.
        saved = json.loads(results_path.read_text()) if results_path.exists() else {}
        saved[name] = summary
        results_path.write_text(json.dumps(saved, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

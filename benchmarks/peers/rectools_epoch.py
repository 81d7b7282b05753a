"""Time training epochs of RecTools' ``SASRecModel`` on CPU.

Runs in the peer environment that ``bash benchmarks/peer_env.sh`` creates (``bench-env/venv``,
``rectools[torch]``). The data set is built from a ``user item`` file with timestamps = line order
and trimmed to seqrec's leave-one-out training part (users with >= 3 interactions hold out their
last two), the model uses the SASRec paper's settings (n_factors 50, 2 blocks, 1 head,
session_max_len 50, dropout 0.5, batch 128, lr 1e-3, id embeddings only), and the Lightning trainer
is RecTools' default one (deterministic, CPU, no logging or checkpoints) plus a timing callback.

    bench-env/venv/bin/python benchmarks/peers/rectools_epoch.py --epochs 2             # BCE, 1 negative
    bench-env/venv/bin/python benchmarks/peers/rectools_epoch.py --loss softmax         # full CE, 50 batches

``--loss softmax`` (full cross-entropy over the catalogue) is slow on CPU, so by default it times
only ``--max-batches 50`` batches of one epoch (``--epochs 1``) and extrapolates to a full epoch; the result line
says so (``"extrapolated": true``). ``--eval`` adds full-catalogue HR@10 / NDCG@10 on the test
items (input = training + validation item, seen items filtered).

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    K,
    emit,
    leave_one_out,
    load_average,
    log,
    metrics,
    read_sequences,
    stdout_to_stderr,
    test_users,
)

PEER = "rectools"
LOSSES = {"bce": "BCE", "softmax": "softmax", "gbce": "gBCE", "sampled_softmax": "sampled_softmax"}
SOFTMAX_DEFAULT_BATCHES = 50
MIN_TRAIN_INTERACTIONS = 2  # SASRecModel's train_min_user_interactions default


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="'user item' file (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="default: 2 (1 with --loss softmax)")
    p.add_argument("--loss", choices=sorted(LOSSES), default="bce")
    p.add_argument("--n-negatives", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--maxlen", type=int, default=50)
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument(
        "--max-batches",
        type=int,
        default=None,
        help=f"time only this many batches per epoch and extrapolate "
        f"(default: all; {SOFTMAX_DEFAULT_BATCHES} for --loss softmax)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", action="store_true", help="after training, full-catalogue HR@10/NDCG@10 on the test items")
    args = p.parse_args(argv)
    if args.loss == "softmax":
        args.max_batches = SOFTMAX_DEFAULT_BATCHES if args.max_batches is None else args.max_batches
        args.epochs = 1 if args.epochs is None else args.epochs
    args.epochs = 2 if args.epochs is None else args.epochs
    return args


def interactions_frame(parts: list[dict[int, list[int]]]):
    """Interactions of one or more per-user parts (concatenated in order) as a RecTools frame.

    Timestamps follow the order of the file: each user's items keep their relative order, which is
    all SASRec reads from them.
    """
    import pandas as pd
    from rectools import Columns

    users, items = [], []
    for u in sorted(parts[0]):
        seq = [i for part in parts for i in part.get(u, [])]
        users.extend([u] * len(seq))
        items.extend(seq)
    n = len(users)
    return pd.DataFrame(
        {
            Columns.User: np.asarray(users, dtype=np.int64),
            Columns.Item: np.asarray(items, dtype=np.int64),
            Columns.Weight: np.ones(n, dtype=np.float32),
            Columns.Datetime: pd.Timestamp("2000-01-01") + pd.to_timedelta(np.arange(n), unit="s"),
        }
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    import rectools
    import torch
    from pytorch_lightning import Callback, Trainer, seed_everything
    from rectools.dataset import Dataset
    from rectools.models import SASRecModel
    from rectools.models.nn.item_net import IdEmbeddingsItemNet

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    if args.threads:
        torch.set_num_threads(args.threads)

    seqs, n_users, n_items = read_sequences(args.data)
    train, valid, test = leave_one_out(seqs)
    log(f"{args.data}: {n_users} users, {n_items} items, {sum(map(len, seqs.values()))} actions")
    train_df = interactions_frame([train])
    n_train_seqs = sum(1 for s in train.values() if len(s) >= MIN_TRAIN_INTERACTIONS)
    full_batches = math.ceil(n_train_seqs / args.batch_size)

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self.batches: list[int] = []
            self.sequences: list[int] = []
            self.losses: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.batches.append(0)
            self.sequences.append(0)
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches[-1] += 1
            self.sequences[-1] += int(batch["x"].shape[0])
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            if loss is not None:
                self._last = loss

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds.append(time.perf_counter() - self._t0)
            last = getattr(self, "_last", None)
            self.losses.append(float(last) if last is not None else float("nan"))
            log(
                f"epoch {len(self.seconds)}: {self.seconds[-1]:.2f} s for {self.batches[-1]} batches"
                f" ({self.sequences[-1]} sequences), loss {self.losses[-1]:.4f}"
            )

    seed_everything(args.seed, workers=True, verbose=False)
    model = SASRecModel(
        n_factors=args.hidden,
        n_blocks=args.blocks,
        n_heads=args.heads,
        session_max_len=args.maxlen,
        dropout_rate=args.dropout,
        batch_size=args.batch_size,
        loss=LOSSES[args.loss],
        n_negatives=args.n_negatives,
        lr=args.lr,
        epochs=args.epochs,
        deterministic=True,
        train_min_user_interactions=MIN_TRAIN_INTERACTIONS,
        item_net_block_types=(IdEmbeddingsItemNet,),
        recommend_torch_device="cpu",
        verbose=0,
    )
    timer = EpochTimer()
    # RecTools' default trainer, pinned to the CPU, with the timing callback (and a batch limit).
    model._trainer = Trainer(
        max_epochs=args.epochs,
        min_epochs=args.epochs,
        deterministic=True,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
        callbacks=[timer],
        limit_train_batches=args.max_batches if args.max_batches is not None else 1.0,
    )

    load_before = load_average()
    t0 = time.perf_counter()
    with stdout_to_stderr():
        dataset = Dataset.construct(train_df)
        model.fit(dataset)
    fit_seconds = time.perf_counter() - t0
    # RecTools fits a deep copy of the trainer: read the copy's timer.
    timer = next(cb for cb in model.fit_trainer.callbacks if isinstance(cb, EpochTimer))

    per_batch = [s / b for s, b in zip(timer.seconds, timer.batches) if b]
    seconds_per_epoch = float(np.mean(per_batch)) * full_batches
    timed_batches = timer.batches[0] if timer.batches else 0
    result = {
        "peer": PEER,
        "loss": args.loss,
        "epochs": args.epochs,
        "seconds_per_epoch": round(seconds_per_epoch, 3),
        "sequences_per_s": round(n_train_seqs / seconds_per_epoch, 1),
        "min_seconds_per_epoch": round(min(per_batch) * full_batches, 3),  # least disturbed epoch on a shared machine
        "epoch_seconds": [round(s, 3) for s in timer.seconds],
        "steps_per_epoch": full_batches,
        "timed_steps_per_epoch": timed_batches,
        "extrapolated": timed_batches < full_batches,
        "sequences_per_epoch": n_train_seqs,
        "fit_seconds": round(fit_seconds, 3),
        "batch_size": args.batch_size,
        "maxlen": args.maxlen,
        "hidden": args.hidden,
        "blocks": args.blocks,
        "heads": args.heads,
        "dropout": args.dropout,
        "n_negatives": args.n_negatives if args.loss != "softmax" else None,
        "final_loss": round(timer.losses[-1], 5) if timer.losses else None,
        "torch": torch.__version__,
        "rectools": rectools.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg_1m": [load_before, load_average()],
        "data": str(args.data),
    }
    if args.eval:
        t0 = time.perf_counter()
        with stdout_to_stderr():
            result.update(evaluate_full(model, train, valid, test))
        result["eval_seconds"] = round(time.perf_counter() - t0, 2)
        log(f"test: HR@{K} {result[f'HR@{K}']}, NDCG@{K} {result[f'NDCG@{K}']}")
    emit(result)


def evaluate_full(model, train, valid, test) -> dict:
    """Top-K over the whole catalogue from RecTools' ``recommend`` (seen items filtered)."""
    from rectools import Columns
    from rectools.dataset import Dataset

    users = test_users(test)
    input_df = interactions_frame([{u: train[u] for u in users}, valid])
    recos = model.recommend(
        users=users, dataset=Dataset.construct(input_df), k=K, filter_viewed=True, on_unsupported_targets="ignore"
    )
    target = {u: test[u][0] for u in users}
    hits = recos[recos[Columns.Item].to_numpy() == recos[Columns.User].map(target).to_numpy()]
    rank_of = dict(zip(hits[Columns.User], hits[Columns.Rank] - 1))  # RecTools ranks are 1-based
    ranks = [rank_of.get(u, K) for u in users]  # a user without a hit (or not supported) ranks >= K
    return metrics(ranks)


if __name__ == "__main__":
    main()

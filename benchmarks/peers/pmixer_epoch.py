"""Time training epochs of pmixer/SASRec.pytorch (the best-known PyTorch SASRec) on CPU.

Uses the peer's own ``SASRec`` model and multiprocessing ``WarpSampler`` from the copy that
``bash benchmarks/peer_env.sh`` places in ``bench-env/peers/SASRec.pytorch`` (their files are not
modified), and repeats the training loop of their ``python/main.py``: xavier-normal init, Adam
(betas 0.9/0.98), BCE on one sampled negative per position, ``(n_users - 1) // batch + 1`` steps per
epoch, a sampler with 3 worker processes. Differences from their ``main.py``: no loss print on
every step, and the train/valid/test split is seqrec's leave-one-out (users with >= 3 interactions
hold out their last two; their ``data_partition`` uses >= 4), so the optional accuracy
(``--eval``: full-catalogue HR@10 / NDCG@10 on the test item) is comparable with ours.

    bench-env/venv/bin/python benchmarks/peers/pmixer_epoch.py --epochs 2

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_DATA,
    PEERS_DIR,
    emit,
    leave_one_out,
    load_average,
    log,
    metrics,
    read_sequences,
    stdout_to_stderr,
    test_users,
)

PEER = "pmixer/SASRec.pytorch"


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"{path} not found: run `bash benchmarks/peer_env.sh` first")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _sampler_dies_with_runner(pm_utils) -> None:
    """Make the peer's sampler processes end when this runner ends, however it ends.

    Their workers block on a full queue forever once the trainer is gone; a benchmark driver that
    kills this runner on a timeout would leave them behind. The peer's ``sample_function`` is
    wrapped (its file is untouched) so that each worker asks Linux for SIGTERM when its parent dies.
    """
    original = pm_utils.sample_function

    def sample_function(*args):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the runner's handler: die at once
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        original(*args)

    pm_utils.sample_function = sample_function
    if "fork" in multiprocessing.get_all_start_methods():
        multiprocessing.set_start_method("fork", force=True)  # the wrapper lives in this process
    # SIGTERM ends the run through ``finally`` (sampler.close()), not abruptly.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="'user item' file (default: %(default)s)")
    p.add_argument("--peer-dir", type=Path, default=PEERS_DIR / "SASRec.pytorch")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--maxlen", type=int, default=50)
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--workers", type=int, default=3, help="WarpSampler processes (their main.py: 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="time only this many steps per epoch and extrapolate to a full epoch",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", action="store_true", help="after training, full-catalogue HR@10/NDCG@10 on the test items")
    return p.parse_args(argv)


def evaluate_full(model, train, valid, test, n_items: int, maxlen: int, batch: int = 512) -> dict:
    """Score every item for each test user via the peer's ``predict``; exclude the input history."""
    import torch

    users = test_users(test)
    all_items = np.arange(1, n_items + 1)
    ranks = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            seqs = np.zeros((len(chunk), maxlen), dtype=np.int64)
            for row, u in enumerate(chunk):
                hist = (train[u] + valid[u])[-maxlen:]
                seqs[row, maxlen - len(hist) :] = hist
            scores = model.predict(np.array(chunk), seqs, all_items).numpy()  # [B, n_items], column j = item j+1
            scores = np.nan_to_num(scores, nan=-np.inf)
            rows = np.arange(len(chunk))
            targets = np.array([test[u][0] - 1 for u in chunk])
            target_scores = scores[rows, targets]
            hist_rows = np.concatenate([np.full(len(train[u]) + len(valid[u]), r) for r, u in enumerate(chunk)])
            hist_cols = np.concatenate([np.asarray(train[u] + valid[u]) - 1 for u in chunk])
            scores[hist_rows, hist_cols] = -np.inf
            scores[rows, targets] = target_scores  # the target itself is always scored
            r = (scores >= target_scores[:, None]).sum(axis=1) - 1
            ranks.extend(np.where(np.isfinite(target_scores), r, n_items - 1).tolist())
    return metrics(ranks)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    py = args.peer_dir / "python"
    pm_model = load_module("pmixer_sasrec_model", py / "model.py")
    pm_utils = load_module("pmixer_sasrec_utils", py / "utils.py")
    _sampler_dies_with_runner(pm_utils)
    commit_file = args.peer_dir / "COMMIT"
    commit = commit_file.read_text().strip() if commit_file.is_file() else "unknown"

    seqs, n_users, n_items = read_sequences(args.data)
    train, valid, test = leave_one_out(seqs)
    log(f"{args.data}: {n_users} users, {n_items} items, {sum(map(len, seqs.values()))} actions")

    # Their main.py, at the paper's settings and on CPU.
    margs = SimpleNamespace(
        device="cpu",
        hidden_units=args.hidden,
        maxlen=args.maxlen,
        dropout_rate=args.dropout,
        num_blocks=args.blocks,
        num_heads=args.heads,
        norm_first=False,
        l2_emb=0.0,
    )
    num_batch = (len(train) - 1) // args.batch_size + 1
    steps = num_batch if args.max_steps is None else min(args.max_steps, num_batch)

    load_before = load_average()
    sampler = pm_utils.WarpSampler(
        train, n_users, n_items, batch_size=args.batch_size, maxlen=args.maxlen, n_workers=args.workers
    )
    try:
        model = pm_model.SASRec(n_users, n_items, margs).to(margs.device)
        for _name, param in model.named_parameters():
            try:
                torch.nn.init.xavier_normal_(param.data)
            except Exception:  # their main.py skips what xavier cannot init (biases, LayerNorm)
                pass
        model.pos_emb.weight.data[0, :] = 0
        model.item_emb.weight.data[0, :] = 0
        model.train()
        bce_criterion = torch.nn.BCEWithLogitsLoss()
        adam_optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98))

        epoch_seconds = []
        last_loss = float("nan")
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            for _step in range(steps):
                u, seq, pos, neg = sampler.next_batch()
                u, seq, pos, neg = np.array(u), np.array(seq), np.array(pos), np.array(neg)
                pos_logits, neg_logits = model(u, seq, pos, neg)
                pos_labels = torch.ones(pos_logits.shape, device=margs.device)
                neg_labels = torch.zeros(neg_logits.shape, device=margs.device)
                adam_optimizer.zero_grad()
                indices = np.where(pos != 0)
                loss = bce_criterion(pos_logits[indices], pos_labels[indices])
                loss += bce_criterion(neg_logits[indices], neg_labels[indices])
                for param in model.item_emb.parameters():
                    loss += margs.l2_emb * torch.sum(param**2)
                loss.backward()
                adam_optimizer.step()
                last_loss = loss.item()
            elapsed = time.perf_counter() - t0
            epoch_seconds.append(elapsed)
            log(f"epoch {epoch}: {elapsed:.2f} s for {steps} steps, loss {last_loss:.4f}")
    finally:
        sampler.close()

    scale = num_batch / steps
    seconds_per_epoch = float(np.mean(epoch_seconds)) * scale
    result = {
        "peer": PEER,
        "loss": "bce",
        "epochs": args.epochs,
        "seconds_per_epoch": round(seconds_per_epoch, 3),
        "sequences_per_s": round(num_batch * args.batch_size / seconds_per_epoch, 1),
        "min_seconds_per_epoch": round(min(epoch_seconds) * scale, 3),  # least disturbed epoch on a shared machine
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
        "steps_per_epoch": num_batch,
        "timed_steps_per_epoch": steps,
        "extrapolated": steps < num_batch,
        "batch_size": args.batch_size,
        "maxlen": args.maxlen,
        "hidden": args.hidden,
        "blocks": args.blocks,
        "heads": args.heads,
        "dropout": args.dropout,
        "n_negatives": 1,
        "sampler_workers": args.workers,
        "final_loss": round(last_loss, 5),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg_1m": [load_before, load_average()],
        "commit": commit,
        "data": str(args.data),
    }
    if args.eval:
        t0 = time.perf_counter()
        with stdout_to_stderr():
            result.update(evaluate_full(model, train, valid, test, n_items, args.maxlen))
        result["eval_seconds"] = round(time.perf_counter() - t0, 2)
        log(f"test: HR@10 {result['HR@10']}, NDCG@10 {result['NDCG@10']}")
    emit(result)


if __name__ == "__main__":
    main()

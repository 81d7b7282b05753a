"""Helpers shared by the peer runners: data, leave-one-out split, metrics, the result line.

Self-contained on purpose (numpy + the standard library only): the runners live in the peer
environment ``bench-env/venv`` and never import seqrec, so each implementation is timed on its own.

The split and the metrics follow seqrec's defaults so that the peers' accuracy can stand next to
ours: per user with at least 3 interactions the last item is the test target and the second last
the validation target; shorter users stay wholly in training. The test input is training +
validation; every catalogue item is a candidate, the items of the input history are excluded, and
ranks are pessimistic (a tie with the target counts against it).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "amazon-games" / "games.txt"
PEERS_DIR = REPO / "bench-env" / "peers"
MIN_EVAL_LENGTH = 3
K = 10


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_sequences(path: Path) -> tuple[dict[int, list[int]], int, int]:
    """``user item`` lines (1-based ids, each user's lines in time order) -> ({user: items}, n_users, n_items)."""
    seqs: dict[int, list[int]] = defaultdict(list)
    n_users = n_items = 0
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise SystemExit(f"{path}:{line_no}: expected 'user item', got {line.rstrip()!r}")
            u, i = int(parts[0]), int(parts[1])
            seqs[u].append(i)
            n_users = max(n_users, u)
            n_items = max(n_items, i)
    return dict(seqs), n_users, n_items


def leave_one_out(seqs: dict[int, list[int]]):
    """-> (train, valid, test): dicts user -> list; valid/test hold one item or nothing."""
    train, valid, test = {}, {}, {}
    for u, s in seqs.items():
        if len(s) >= MIN_EVAL_LENGTH:
            train[u], valid[u], test[u] = s[:-2], [s[-2]], [s[-1]]
        else:
            train[u], valid[u], test[u] = list(s), [], []
    return train, valid, test


def test_users(test: dict[int, list[int]]) -> list[int]:
    return sorted(u for u, t in test.items() if t)


def load_average() -> float | None:
    """1-minute load average: timings taken on a busy machine say so in their result line."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def metrics(ranks: list[int] | np.ndarray, k: int = K) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.int64)
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return {
        f"HR@{k}": round(float(hit.mean()), 5),
        f"NDCG@{k}": round(float(ndcg.mean()), 5),
        "eval_users": int(len(ranks)),
    }


@contextlib.contextmanager
def stdout_to_stderr():
    """Keep stdout for the one result line: anything a library prints goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def emit(result: dict) -> None:
    """The one JSON line on stdout that benchmarks/train_speed.py reads."""
    for key, value in result.items():
        if isinstance(value, float) and not math.isfinite(value):
            result[key] = None
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()

"""Training speed: seqrec's SASRec next to pmixer/SASRec.pytorch and RecTools, in one run.

    .venv/bin/python benchmarks/train_speed.py [--epochs 3] [--skip-peers] [--device cpu|cuda] [--data PATH]

Data: Amazon Games (``../shared/data/amazon-games/games.txt`` beside the repository; 31,013
users, 23,715 items, read as it is, no k-core reapplied), split leave-one-out; every
implementation trains on the same training part. Settings are the SASRec paper's: hidden 50,
2 blocks, 1 head, max length 50, dropout 0.5, batch 128, Adam lr 1e-3, one torch thread each.

1. seqrec, BCE with one sampled negative per position: ``--epochs`` epochs (default 3); seconds
   per epoch = the median of the epochs' ``seconds`` in the TrainResult history.
2. The peers as subprocesses in their own environment (``bench-env/venv``, made by
   ``bash benchmarks/peer_env.sh``): ``benchmarks/peers/pmixer_epoch.py --epochs 2 --threads 1``
   and ``benchmarks/peers/rectools_epoch.py --epochs 2 --threads 1``; each prints one JSON line.
3. Full cross-entropy over the whole catalogue: seqrec ``loss="ce"`` (``--ce-epochs``, default 2)
   against ``rectools_epoch.py --loss softmax --threads 1``, which times 50 batches of one epoch
   and extrapolates to the full epoch (too slow on a CPU for a whole one).

"ours is N× faster" is the ratio of sequences per second (the three implementations' epochs
hold slightly different numbers of sequences: pmixer samples ``steps x 128`` users with
replacement, RecTools drops users with fewer than 2 training items).

``--device cuda`` moves only seqrec to the GPU (the peers stay on the CPU, as their runners are
written); use it with ``--skip-peers`` for a GPU epoch time. Prints a Markdown table with the
date, the CPU, torch's version and the 1-minute load average; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqrec.config import TrainConfig  # noqa: E402
from seqrec.data.readers import load_dataset  # noqa: E402
from seqrec.data.split import LeaveOneOut  # noqa: E402
from seqrec.models.sasrec import SASRecConfig, SASRecModel  # noqa: E402
from seqrec.training.batches import Batches  # noqa: E402
from seqrec.training.loop import train  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "amazon-games" / "games.txt"
PEER_PYTHON = ROOT / "bench-env" / "venv" / "bin" / "python"
PEERS = ROOT / "benchmarks" / "peers"
PMIXER_DIR = ROOT / "bench-env" / "peers" / "SASRec.pytorch"
PAPER = dict(hidden=50, blocks=2, heads=1, max_len=50, dropout=0.5)
TARGETS = {("bce", "pmixer"): 6.0, ("bce", "rectools"): 4.0, ("ce", "rectools"): 20.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ours(loo: LeaveOneOut, loss: str, epochs: int, device: str, threads: int) -> dict:
    """Train seqrec's SASRec for ``epochs`` epochs; the median epoch from the history."""
    n_items = loo.data.n_items
    extra = {"n_negatives": 1} if loss == "bce" else {}
    cfg = TrainConfig(
        loss=loss,
        batch_size=128,
        lr=1e-3,
        epochs=epochs,
        eval_every=0,
        threads=threads,
        quiet=True,
        device=device,
        **extra,
    )
    sequences = len(Batches(loo, PAPER["max_len"], cfg).n)
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items, **PAPER))
    before = load_avg()
    t0 = time.perf_counter()
    result = train(model, loo, cfg)
    seconds = [row["seconds"] for row in result.history]
    median = statistics.median(seconds)
    log(f"seqrec {loss}: epochs {seconds} s (whole run with the test ranking {time.perf_counter() - t0:.1f} s)")
    return {
        "seconds_per_epoch": median,
        "sequences_per_s": sequences / median,
        "epoch_seconds": seconds,
        "sequences_per_epoch": sequences,
        "threads": result.history[-1].get("threads"),
        "load_avg_1m": [before, load_avg()],
        "extrapolated": False,
    }


def peer(script: str, *args: str, data: Path) -> dict | None:
    """Run one peer runner in the peer environment; its JSON line, or None (and why) if it failed."""
    cmd = [str(PEER_PYTHON), str(PEERS / script), "--data", str(data), "--threads", "1", *args]
    log("$ " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        log(f"{script} failed (exit {proc.returncode}); its last output:\n{tail}")
        return None
    out = json.loads(lines[-1])
    out.setdefault("sequences_per_epoch", out.get("steps_per_epoch", 0) * out.get("batch_size", 128))
    log(
        f"{script}: {out.get('seconds_per_epoch')} s/epoch, epochs {out.get('epoch_seconds')}, "
        f"load {out.get('load_avg_1m')}"
    )
    return out


def fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="'user item' file (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="seqrec BCE epochs (median taken; default 3)")
    p.add_argument("--ce-epochs", type=int, default=2, help="seqrec full-CE epochs (default 2)")
    p.add_argument("--peer-epochs", type=int, default=2, help="epochs per peer BCE run (default 2)")
    p.add_argument("--device", default="cpu", help="seqrec's device: cpu (default), cuda, cuda:N, mps, auto")
    p.add_argument("--skip-peers", action="store_true", help="time seqrec only")
    p.add_argument("--skip-ce", action="store_true", help="leave out the full cross-entropy rows")
    args = p.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: no such file (Amazon Games 'user item' file; pass --data)")

    torch.set_num_threads(1)
    skip_peers = args.skip_peers
    if not skip_peers and not PEER_PYTHON.is_file():
        log(
            f"no peer environment at {PEER_PYTHON.parent.parent}: create it with `bash benchmarks/peer_env.sh` "
            "(RecTools in its own venv, pmixer/SASRec.pytorch from GitHub or a local copy); timing seqrec only"
        )
        skip_peers = True

    load_start = load_avg()
    data = load_dataset(args.data)
    loo = LeaveOneOut(data)
    log(f"{args.data}: {data.n_users:,} users, {data.n_items:,} items; seqrec on {args.device}")

    rows: list[tuple[str, str, dict | None, str]] = []  # (implementation, loss, result, key of ours)
    bce = ours(loo, "bce", args.epochs, args.device, 1)
    rows.append(("seqrec (ours)", "bce, 1 negative", bce, "bce"))
    if not skip_peers:
        pm = peer("pmixer_epoch.py", "--epochs", str(args.peer_epochs), data=args.data)
        commit = (PMIXER_DIR / "COMMIT").read_text().strip()[:7] if (PMIXER_DIR / "COMMIT").is_file() else None
        name = "pmixer/SASRec.pytorch" + (f" @{commit}" if commit else "")
        rows.append((name, "bce, 1 negative", pm, "bce"))
        rt = peer("rectools_epoch.py", "--epochs", str(args.peer_epochs), data=args.data)
        rows.append(
            (f"RecTools {rt['rectools']}" if rt and rt.get("rectools") else "RecTools", "bce, 1 negative", rt, "bce")
        )
    if not args.skip_ce:
        ce = ours(loo, "ce", args.ce_epochs, args.device, 1)
        rows.append(("seqrec (ours)", f"ce, full softmax over {data.n_items:,} items", ce, "ce"))
        if not skip_peers:
            sm = peer("rectools_epoch.py", "--loss", "softmax", data=args.data)
            label = f"RecTools {sm['rectools']}" if sm and sm.get("rectools") else "RecTools"
            if sm and sm.get("extrapolated"):
                label += f" ({sm['timed_steps_per_epoch']} of {sm['steps_per_epoch']} batches, extrapolated)"
            rows.append((label, "softmax (full ce)", sm, "ce"))
    load_end = load_avg()

    baseline = {"bce": bce, "ce": ce if not args.skip_ce else None}
    gpu = ""
    if args.device != "cpu" and torch.cuda.is_available() and args.device.startswith(("cuda", "auto")):
        gpu = f"; seqrec on {torch.cuda.get_device_name()}"
    out = [
        f"Training speed on {args.data.parent.name}/{args.data.name} ({data.n_users:,} users, {data.n_items:,} items), "
        f"{dt.date.today().isoformat()}",
        "",
        f"CPU: {cpu_model()}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}; one torch thread per "
        f"implementation; 1-minute load average {fmt(load_start, 2)} at the start, {fmt(load_end, 2)} at the end",
        "",
        "N× = seqrec's sequences/s over the peer's, same loss.",
        "",
        "| implementation | loss | s/epoch | sequences/s | ours is N× faster |",
        "|---|---|---:|---:|---:|",
    ]
    ratios: dict[tuple[str, str], float] = {}
    for name, loss, res, key in rows:
        if res is None:
            out.append(f"| {name} | {loss} | failed | | |")
            continue
        ref = baseline[key]
        if res is ref:
            ratio = "—"
        else:
            r = ref["sequences_per_s"] / res["sequences_per_s"]
            ratios[(key, "pmixer" if "pmixer" in name else "rectools")] = r
            ratio = f"{r:.1f}×"
        out.append(
            f"| {name} | {loss} | {fmt(res['seconds_per_epoch'])} | {fmt(res['sequences_per_s'], 0)} | {ratio} |"
        )
    out.append("")
    cores = os.cpu_count() or 1
    busy = []
    for name, loss, res, _ in rows:
        if res is None:
            continue
        loads = [x for x in res.get("load_avg_1m") or [] if x is not None]
        busy += [f"{name}, {loss.split(',')[0]}"] if loads and max(loads) > cores else []
        how = "median" if any(res is b for b in baseline.values()) else "mean"
        if res.get("extrapolated"):
            timed = (
                f"{res.get('timed_steps_per_epoch')} of {res.get('steps_per_epoch')} batches timed "
                f"({res.get('epoch_seconds')} s) and scaled to the whole epoch"
            )
        else:
            timed = f"epochs {res.get('epoch_seconds')} s ({how} taken)"
        out.append(
            f"{name}, {loss}: {timed}, {res.get('sequences_per_epoch') or 0:,} sequences per epoch, "
            f"load average {loads}."
        )
    if busy:
        out.append(
            f"Disturbed: the load average rose above the {cores} cores during {'; '.join(busy)} "
            "(other jobs); those rows are slower than on a quiet machine."
        )
    if ratios:
        out.append("")
        for (key, who), target in TARGETS.items():
            if (key, who) in ratios:
                r = ratios[(key, who)]
                verdict = "met" if r >= target else "not met"
                out.append(f"Target {key} vs {who} ≥ {target:.0f}×: {r:.1f}× ({verdict}).")
    print("\n".join(out))


if __name__ == "__main__":
    main()

"""Serving latency: Recommender (torch vs ONNX), batched throughput, and HTTP through uvicorn.

    .venv/bin/python benchmarks/serve_latency.py [--data ../shared/data/amazon-games] [--quick]

A SASRec with hidden 50, 2 blocks, max_len 50 over amazon-games (23,715 items), randomly
initialised (weights do not change the cost). Histories are real users' most recent items.

1. ``Recommender.recommend`` for one history, top 10: p50 / p99 per backend and thread count.
2. ``recommend_many`` on 4,096 histories: histories per second.
3. HTTP ``POST /recommend`` through uvicorn (one worker, its own process, one torch thread) on
   127.0.0.1, driven by an open-loop generator (requests are sent on a fixed schedule whatever the
   server's speed; latency counts from the scheduled time, so queueing shows): 300 req/s for 30 s,
   then a ramp that finds the highest rate held with p99 <= 50 ms and no errors.

``--limits`` runs only the cost-limit checks instead (uvicorn, ONNX backend, one torch thread per worker):

a. two clients each send maximum-cost ``POST /recommend/batch`` requests back to back (1,000 histories
   of 150 ids, about 0.9 MB, with k at the ``max_batch_results`` limit: 100,000 results, an answer of
   about 8 MB) while cheap ``POST /recommend`` (50 req/s) and ``GET /health`` (20 req/s) run open loop
   beside them on one worker: their p50 / p99 / max (target: cheap p99 <= 50 ms);
b. 300 req/s of ``POST /recommend`` for ``--limits-seconds`` (60) against 2 workers: p99 (target <= 20 ms),
   errors (target 0) and the workers' resident memory before and after (target: growth < 5 %).

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqrec.data.readers import load_dataset  # noqa: E402
from seqrec.models.folder import save_folder  # noqa: E402
from seqrec.models.sasrec import SASRecConfig, SASRecModel  # noqa: E402
from seqrec.serving.recommender import Recommender  # noqa: E402


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append(
            "| "
            + " | ".join(
                f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v) for v in r.values()
            )
            + " |"
        )
    return "\n".join(out)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def sample_histories(ds, n: int, max_len: int, seed: int = 0) -> list[list]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, ds.n_users, n)
    raw = ds.item_ids.raw
    return [raw[ds.sequence(u)[-max_len:] - 1].tolist() for u in users]


# ---------------------------------------------------------------------------- in-process
def single_latency(rec: Recommender, histories: list[list], n: int) -> tuple[float, float, float]:
    for h in histories[:200]:
        rec.recommend(h, k=10)
    times = []
    for h in histories[:n]:
        t = time.perf_counter()
        rec.recommend(h, k=10)
        times.append((time.perf_counter() - t) * 1000)
    return pct(times, 50), pct(times, 99), float(np.mean(times))


def batch_rate(rec: Recommender, histories: list[list], batch: int) -> float:
    rec.recommend_many(histories[:batch], k=10)
    t = time.perf_counter()
    for lo in range(0, len(histories), batch):
        rec.recommend_many(histories[lo : lo + batch], k=10)
    return len(histories) / (time.perf_counter() - t)


# ---------------------------------------------------------------------------- HTTP load
class Load:
    """Open-loop HTTP/1.1 load over keep-alive connections (raw asyncio streams); a body of None is a GET."""

    def __init__(self, port: int, bodies: list[bytes | None], max_conns: int = 256, path: str = "/recommend") -> None:
        self.port, self.bodies, self.max_conns, self.path = port, bodies, max_conns, path.encode()
        self.idle: list = []
        self.open = 0

    def request(self, body: bytes | None) -> bytes:
        if body is None:
            return b"GET " + self.path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        return (
            b"POST " + self.path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    async def _conn(self, fresh: bool = False) -> tuple:
        """(reader, writer, reused): an idle keep-alive connection, else a new one (up to max_conns)."""
        while True:
            if self.idle and not fresh:
                return (*self.idle.pop(), True)
            if self.open < self.max_conns or fresh:
                self.open += 1
                try:
                    return (*await asyncio.open_connection("127.0.0.1", self.port), False)
                except OSError:
                    self.open -= 1
                    raise
            await asyncio.sleep(0.0005)

    async def _exchange(self, reader, writer, body: bytes) -> int:
        writer.write(self.request(body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        return int(head[9:12])

    async def one(self, scheduled: float, body: bytes, lat: list, errors: list) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(2):  # a reused connection the server closed while idle is retried once
            reader = writer = None
            try:
                reader, writer, reused = await self._conn(fresh=attempt > 0)
                status = await self._exchange(reader, writer, body)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
                if writer is not None:
                    writer.close()
                    self.open -= 1
                if attempt == 0 and writer is not None and reused:
                    continue
                errors.append(type(e).__name__)
                return
            lat.append((loop.time() - scheduled) * 1000)
            if status != 200:
                errors.append(status)
            self.idle.append((reader, writer))
            return

    async def run(self, rate: float, seconds: float) -> dict:
        loop = asyncio.get_running_loop()
        lat: list[float] = []
        errors: list = []
        n = int(rate * seconds)
        tasks = []
        start = loop.time() + 0.05
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(scheduled, self.bodies[i % len(self.bodies)], lat, errors)))
        await asyncio.gather(*tasks)
        took = loop.time() - start
        kinds = sorted({str(e) for e in errors})
        return {
            "rate": rate,
            "sent": n,
            "achieved": len(lat) / took,
            "p50": pct(lat, 50),
            "p99": pct(lat, 99),
            "max": max(lat) if lat else float("nan"),
            "errors": len(errors),
            "error kinds": ", ".join(kinds) or "-",
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, backend: str = "auto", workers: int = 1, **options) -> tuple[subprocess.Popen, int]:
    """``seqrec.serving.server.run`` in its own process (``options``: more of its keywords, as Python literals)."""
    port = free_port()
    more = "".join(f", {k}={v!r}" for k, v in options.items())
    code = (
        f"from seqrec.serving.server import run; run({str(folder)!r}, port={port}, backend={backend!r}, threads=1, "
        f"access_log=False, workers={workers}{more})"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(port: int, bodies: list[bytes], pid: int, n: int) -> dict:
    """One connection, one request at a time: latency without queueing, and server CPU per request."""
    load = Load(port, bodies)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lat = []
    cpu0 = cpu_seconds(pid)
    for i in range(n):
        t = time.perf_counter()
        await load._exchange(reader, writer, bodies[i % len(bodies)])
        lat.append((time.perf_counter() - t) * 1000)
    cpu = (cpu_seconds(pid) - cpu0) / n * 1000
    writer.close()
    return {
        "p50 ms": pct(lat, 50),
        "p99 ms": pct(lat, 99),
        "server CPU ms/request": cpu,
        "one-core capacity req/s": int(1000 / cpu) if cpu else 0,
    }


async def http_bench(
    port: int, bodies: list[bytes], steady: float, ramp: list[float], step_s: float, pid: int
) -> tuple:
    load = Load(port, bodies)
    await load.run(100, 2)  # warm-up
    closed = await closed_loop(port, bodies, pid, 1000)
    fixed = await load.run(300, steady)
    steps = []
    for rate in ramp:
        r = await load.run(rate, step_s)
        steps.append(r)
        if r["p99"] > 50 or r["errors"] or r["achieved"] < 0.95 * rate:
            break
    return closed, fixed, steps


# ---------------------------------------------------------------------------- cost limits
def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_pids(pid: int) -> list[int]:
    """The server's worker processes (uvicorn's children; the process itself when it has none)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children] or [pid]


def heavy_body(histories: list[list], n: int = 1000, length: int = 150) -> tuple[bytes, int]:
    """The costliest batch the default limits allow: n histories of ``length`` ids, k at the limit."""
    from seqrec.serving.limits import Limits

    limits = Limits()
    k = min(1000, limits.max_batch_results // n)
    padded = [(h * (length // max(1, len(h)) + 1))[:length] for h in histories[:n]]
    body = json.dumps({"histories": padded, "k": k}, separators=(",", ":")).encode()
    assert len(body) <= limits.max_body_bytes, len(body)
    return body, k


async def heavy_loop(port: int, body: bytes, until: float, took: list, errors: list) -> None:
    """Send one heavy request after another on one connection until ``until`` (loop time)."""
    loop = asyncio.get_running_loop()
    load = Load(port, [body], path="/recommend/batch")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while loop.time() < until:
        t = loop.time()
        status = await load._exchange(reader, writer, body)
        took.append((loop.time() - t) * 1000)
        if status != 200:
            errors.append(status)
    writer.close()


async def beside_heavy(port: int, bodies: list[bytes], heavy: bytes, seconds: float, clients: int = 2) -> list[dict]:
    """Cheap requests and /health, open loop: alone, then while ``clients`` heavy batch loops run."""
    loop = asyncio.get_running_loop()
    await Load(port, bodies).run(50, 2)  # warm-up

    async def cheap_and_health(label: str) -> list[dict]:
        cheap, health = await asyncio.gather(
            Load(port, bodies).run(50, seconds), Load(port, [None], path="/health").run(20, seconds)
        )
        return [
            {"requests": f"{name}, {label}", **{k: v for k, v in r.items() if k != "rate"}}
            for name, r in (("POST /recommend 50 req/s", cheap), ("GET /health 20 req/s", health))
        ]

    rows = await cheap_and_health("alone")
    took: list = []
    heavy_errors: list = []
    until = loop.time() + seconds + 1.0
    heavies = [asyncio.create_task(heavy_loop(port, heavy, until, took, heavy_errors)) for _ in range(clients)]
    await asyncio.sleep(1.0)  # the heavy requests under way
    rows += await cheap_and_health(f"beside {clients} heavy")
    await asyncio.gather(*heavies)
    rows.append(
        {
            "requests": f"POST /recommend/batch, {clients} back to back",
            "sent": len(took),
            "achieved": len(took) / seconds,
            "p50": pct(took, 50),
            "p99": pct(took, 99),
            "max": max(took) if took else float("nan"),
            "errors": len(heavy_errors),
            "error kinds": ", ".join(sorted({str(e) for e in heavy_errors})) or "-",
        }
    )
    return rows


def limits_beside(
    folder: Path, backend: str, bodies: list[bytes], heavy: bytes, k: int, seconds: float, clients: int
) -> None:
    proc, port = start_server(folder, backend)
    try:
        rows = asyncio.run(beside_heavy(port, bodies, heavy, seconds, clients))
    finally:
        proc.terminate()
        proc.wait(10)
    print(
        f"## a. Beside {clients} maximum-cost batch requests ({len(heavy) / 1e6:.2f} MB: 1,000 histories of 150 ids, "
        f"k {k}; 1 worker, {seconds:.0f} s; latency from the scheduled send time)\n"
    )
    print(table(rows) + "\n")


def limits_bench(
    ds,
    model,
    histories: list[list],
    seconds: float,
    heavy_seconds: float,
    backend: str,
    clients: int = 2,
    parts: str = "ab",
) -> None:
    bodies = [json.dumps({"history": h, "k": 10}).encode() for h in histories[:1000]]
    heavy, k = heavy_body(histories)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_folder(Path(tmp) / "model", model, ds, config={}, metrics={})
        if "a" in parts:
            limits_beside(folder, backend, bodies, heavy, k, heavy_seconds, clients)
        if "b" not in parts:
            return

        proc, port = start_server(folder, backend, workers=2)
        try:
            asyncio.run(Load(port, bodies).run(300, 5))  # warm-up: every worker has scored and answered
            pids = worker_pids(proc.pid)
            before = [rss_mib(p) for p in pids]
            fixed = asyncio.run(Load(port, bodies).run(300, seconds))
            after = [rss_mib(p) for p in pids]
        finally:
            proc.terminate()
            proc.wait(20)
        growth = (sum(after) - sum(before)) / sum(before) * 100
        print(
            f"## b. 300 req/s of POST /recommend for {seconds:.0f} s, 2 workers (targets: 0 errors, p99 <= 20 ms, "
            "RSS growth < 5 %)\n"
        )
        print(
            table(
                [
                    {
                        **{k: v for k, v in fixed.items() if k != "rate"},
                        "workers RSS before MiB": sum(before),
                        "after MiB": sum(after),
                        "growth %": growth,
                    }
                ]
            )
            + "\n"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-games" / "games.txt"))
    p.add_argument("--quick", action="store_true", help="shorter runs (5 s steady, 3 s ramp steps)")
    p.add_argument("--http-backends", default="torch,onnx")
    p.add_argument("--limits", action="store_true", help="only the cost-limit checks (a and b in the docstring)")
    p.add_argument("--limits-seconds", type=float, default=60.0, help="length of the 300 req/s run with --limits")
    p.add_argument("--heavy-seconds", type=float, default=20.0, help="length of the run beside heavy batches")
    p.add_argument("--heavy-clients", type=int, default=2, help="heavy batch loops in part a (0: a baseline)")
    p.add_argument("--limits-parts", default="ab", help="which parts of --limits to run (a, b or ab)")
    args = p.parse_args()

    ds = load_dataset(args.data)
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=50, blocks=2, heads=1, max_len=50)).eval()
    histories = sample_histories(ds, 4096, 50)
    load = os.getloadavg()
    print(
        f"# Serving latency: SASRec hidden 50, 2 blocks, max_len 50 on {ds.meta.get('name')} "
        f"({ds.n_items:,} items, {ds.n_users:,} users)\n"
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"Python {platform.python_version()}, load average at start {load[0]:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    if args.limits:
        limits_bench(
            ds,
            model,
            histories,
            args.limits_seconds,
            args.heavy_seconds,
            args.http_backends.split(",")[-1],
            args.heavy_clients,
            args.limits_parts,
        )
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return

    rows, brows = [], []
    default_threads = torch.get_num_threads()
    for backend in ("torch", "onnx"):
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            rec = Recommender(model, ds, backend=backend, onnx_threads=threads)
            p50, p99, mean = single_latency(rec, histories, 1000 if args.quick else 3000)
            rows.append({"backend": backend, "threads": threads, "p50 ms": p50, "p99 ms": p99, "mean ms": mean})
            brows.append(
                {
                    "backend": backend,
                    "threads": threads,
                    **{f"batch {b} hist/s": batch_rate(rec, histories, b) for b in (256, 1024)},
                }
            )
    torch.set_num_threads(default_threads)
    print("## Recommender.recommend: one history, top 10 (target p50 <= 1 ms, p99 <= 3 ms)\n")
    print(table(rows) + "\n")
    print("## Recommender.recommend_many: 4,096 histories, top 10 (target >= 5,000 histories/s)\n")
    print(table(brows) + "\n")

    bodies = [json.dumps({"history": h, "k": 10}).encode() for h in histories[:1000]]
    steady, step_s = (5.0, 3.0) if args.quick else (30.0, 5.0)
    ramp = [400, 500, 600, 700, 800, 1000, 1200, 1500, 2000]
    closed_rows, fixed_rows, ramp_rows, held = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_folder(Path(tmp) / "model", model, ds, config={}, metrics={})
        for backend in args.http_backends.split(","):
            proc, port = start_server(folder, backend)
            try:
                closed, fixed, steps = asyncio.run(http_bench(port, bodies, steady, ramp, step_s, proc.pid))
            finally:
                proc.terminate()
                proc.wait(10)
            closed_rows.append({"backend": backend, **closed})
            fixed_rows.append({"backend": backend, **{k: v for k, v in fixed.items() if k != "rate"}})
            ramp_rows += [{"backend": backend, **s} for s in steps]
            ok = [s["rate"] for s in steps if s["p99"] <= 50 and not s["errors"] and s["achieved"] >= 0.95 * s["rate"]]
            if fixed["p99"] <= 50 and not fixed["errors"]:
                ok.insert(0, 300)
            held.append(
                {
                    "backend": backend,
                    "highest rate held (p99 <= 50 ms, no errors)": f"{max(ok)} req/s" if ok else "< 300 req/s",
                }
            )
    print("## HTTP POST /recommend via uvicorn (1 worker, 1 torch thread): closed loop, 1 connection, 1,000 requests\n")
    print(table(closed_rows) + "\n")
    print(f"## The same, open loop: 300 req/s for {steady:.0f} s (latency from the scheduled send time)\n")
    print(table(fixed_rows) + "\n")
    print(
        f"## Ramp ({step_s:.0f} s per step; stops at the first step over p99 50 ms, with errors or < 95 % achieved)\n"
    )
    print(table(ramp_rows) + "\n")
    print(table(held))


if __name__ == "__main__":
    main()

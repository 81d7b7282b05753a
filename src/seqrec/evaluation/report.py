"""Result tables and charts: the printing side of the CLI and the benchmarks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqrec.errors import SeqrecError
from seqrec.files import METRICS_LOG as METRICS  # one JSON row per training epoch, written by seqrec.training.loop
from seqrec.files import PLOT


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table (pastes into the README as is); numbers right-aligned."""
    if not rows:
        return "(no rows)"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), (int, float)) for r in rows if r.get(c) is not None) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(columns), rule, *(line(r) for r in cells)])


def bar_chart(
    rows: Sequence[dict[str, Any]], metric: str, path: str | Path, group: str = "data", label: str = "model"
) -> Path:
    """Grouped bar chart of one metric (e.g. NDCG@10) per model, one group per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = list(dict.fromkeys(r[group] for r in rows))
    labels = list(dict.fromkeys(r[label] for r in rows))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) * max(1, len(labels)) / 2), 4))
    x = np.arange(len(groups))
    for j, name in enumerate(labels):
        vals = [next((r[metric] for r in rows if r[group] == g and r[label] == name), 0.0) for g in groups]
        ax.bar(x + j * width - 0.4 + width / 2, vals, width, label=name)
    ax.set_xticks(x, groups)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by model")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_png(fig, path, dpi=120)


def save_png(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (temp file, then rename) and close it."""
    import io

    import matplotlib.pyplot as plt

    from seqrec.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def plot_run(run_dir: str | Path) -> Path:
    """PNG of the training loss and validation NDCG@10 / HR@10 per epoch from ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.is_file():
        raise SeqrecError(f"{run_dir}: no {METRICS} (not a training run folder)")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise SeqrecError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from e
    if not rows:
        raise SeqrecError(f"{path}: no epochs recorded yet")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], marker=".")
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
    evals = [r for r in rows if "valid" in r]
    for key in ("NDCG@10", "HR@10"):
        ax2.plot([r["epoch"] for r in evals], [r["valid"][key] for r in evals], marker="o", label=key)
    ax2.set(xlabel="epoch", ylabel="validation", title="validation")
    ax2.legend()
    fig.tight_layout()
    return save_png(fig, run_dir / PLOT)

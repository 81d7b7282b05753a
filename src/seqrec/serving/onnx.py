"""ONNX: ``export_onnx`` writes a scorer's ``score`` as an ONNX graph; ``onnx_session`` opens one with
onnxruntime for ``seqrec.serving.recommender``'s ``"onnx"`` backend (scores equal torch's within 1e-4).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch

from seqrec.data.dataset import PAD
from seqrec.errors import SeqrecError
from seqrec.files import ONNX


class _ScoreGraph(torch.nn.Module):
    """The graph ``export_onnx`` traces: histories [B, L] int64 -> scores [B, N+1] float32."""

    def __init__(self, scorer: Any) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        return self.scorer.score(histories).float()


def export_onnx(scorer: Any, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``scorer.score`` as an ONNX graph (input ``histories`` [B, max_len] int64, output
    ``scores`` [B, N+1], dynamic batch), atomically. Uses the TorchScript-based exporter. A model with item
    features is exported unfolded, so the graph holds its item embeddings as they are (``seqrec.models.folder``
    checks an export by them); ONNX Runtime folds the feature sums when a session starts."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    L, n = int(scorer.max_len), int(scorer.n_items)
    example = torch.randint(1, n + 1, (2, L), generator=torch.Generator().manual_seed(0))
    example[0, : L // 2] = PAD
    module = _ScoreGraph(scorer)
    if isinstance(scorer, torch.nn.Module):
        was_training = scorer.training
        scorer.eval()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=["histories"],
                output_names=["scores"],
                dynamic_axes={"histories": {0: "batch"}, "scores": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
                do_constant_folding=getattr(scorer, "features", None) is None,
            )
        os.replace(tmp, path)
    except Exception as e:
        raise SeqrecError(f"could not export {type(scorer).__name__} to ONNX: {e}") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(scorer, torch.nn.Module):
            scorer.train(was_training)
    return path


def onnx_session(scorer: Any, path: str | os.PathLike | None, threads: int, owner: object) -> Any:
    """An onnxruntime session (CPU, ``threads`` intra-op threads) over the graph at ``path``; with no
    ``path``, over a private export of ``scorer`` in a temp folder that lives as long as ``owner``."""
    import onnxruntime as ort

    if path is None:
        tmp = tempfile.mkdtemp(prefix="seqrec-onnx-")
        weakref.finalize(owner, shutil.rmtree, tmp, True)
        path = export_onnx(scorer, Path(tmp) / ONNX)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

"""ONNX exports in a model folder: an export is used only once ``register_onnx`` has recorded it in the manifest
with the sha256 of the weights it was exported from (``seqrec.models.folder.register_onnx``); ``checked_onnx``
finds the folder's checked export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.files import ONNX, WEIGHTS
from seqrec.models.sasrec import SASRecModel

log = logging.getLogger("seqrec.folder")


def checked_onnx(path: Path, model: SASRecModel, files: dict[str, dict[str, Any]] | None) -> Path | None:
    """The folder's ``model.onnx`` when it is known to hold these weights; a ``SeqrecError`` when it
    holds others; None (with a warning) when there is none or it cannot be told."""
    file = path / ONNX
    if not file.is_file():
        return None
    if files is not None and ONNX in files:  # its size and sha256 were checked with the other files
        recorded, weights = files[ONNX].get("weights_sha256"), files.get(WEIGHTS, {}).get("sha256")
        if recorded != weights:
            raise SeqrecError(
                f"{file}: exported from other weights than {WEIGHTS} (sha256 {recorded!r}, the "
                f"weights have {weights}); run seqrec export-onnx again or delete it"
            )
        return file
    if onnx_holds(file, model) is None:
        log.warning("%s: cannot tell which weights it was exported from; it is not used", file)
        return None
    return file


def onnx_holds(file: Path, model: SASRecModel) -> bool | None:
    """True when the ONNX graph in ``file`` holds ``model``'s item embeddings (as they are or transposed);
    None when it has no initializer of that shape; a ``SeqrecError`` when it holds others."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(file), load_external_data=False)
    except Exception as e:  # protobuf raises several types for a damaged file
        raise SeqrecError(
            f"{file}: not a readable ONNX model ({type(e).__name__}: {e}); run seqrec export-onnx again or delete it"
        ) from e
    emb = model.item_emb.weight.detach().numpy()
    shapes = {tuple(emb.shape), tuple(emb.shape[::-1])}
    candidates = [init for init in proto.graph.initializer if tuple(init.dims) in shapes]
    for init in candidates:
        try:
            a = numpy_helper.to_array(init)
        except Exception:  # a damaged tensor holds nothing to compare
            continue
        if a.dtype == emb.dtype and (np.array_equal(a, emb) or np.array_equal(a.T, emb)):
            return True
    if candidates:
        raise SeqrecError(
            f"{file}: exported from other weights than {WEIGHTS} (its item embeddings differ); "
            f"run seqrec export-onnx again or delete it"
        )
    return None

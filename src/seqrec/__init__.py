"""seqrec: SASRec sequential recommendation, from raw interactions to served recommendations.

The top-level names are imported lazily, so ``import seqrec`` stays cheap (no torch until needed)::

    from seqrec import Recommender, SASRec, load_dataset
    model = SASRec(loss="ce").fit(load_dataset("ml-1m"), out_dir="runs/ml-1m")
"""

from __future__ import annotations

import importlib
from typing import Any

from seqrec.errors import SeqrecError

__all__ = ["Dataset", "Recommender", "SASRec", "SeqrecError", "load_dataset", "__version__"]
_LAZY = {
    "Dataset": "seqrec.data.dataset",
    "SASRec": "seqrec.api",
    "load_dataset": "seqrec.data.readers",
    "Recommender": "seqrec.serving.recommender",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("seqrec")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'seqrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Loading a model folder to serve, checked (``load_checked``: it loads, its item count matches its id map, a
probe history ranks with finite scores), inside ``--models-dir`` when one is given (``model_folder``), with the
store's availability applied (``apply_availability``, ``sync_availability``). Used by reloads (``live``) and by
the workers following the recorded generation (``generation``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.serving.recommender import Recommender
from seqrec.serving.stores import AnyStore

log = logging.getLogger("seqrec.serve")
PROBE_K = 5


def apply_availability(r: Recommender, store: AnyStore | None) -> int:
    """Make the items the store records as unavailable so in ``r`` (ids it does not know are skipped);
    how many are unavailable."""
    if store is None:
        return 0
    known, _ = r.dataset.item_ids.lookup(store.unavailable())
    r.available[known] = False
    return len(known)


def sync_availability(r: Recommender, store: AnyStore) -> None:
    """Make ``r``'s availability the store's (for several workers: another may have changed it); only the
    items that differ are written, so a request scoring meanwhile sees each item either way, never all open."""
    mask = np.ones_like(r.available)
    mask[r.dataset.item_ids.lookup(store.unavailable())[0]] = False
    differ = mask != r.available
    if differ.any():
        r.available[differ] = mask[differ]


# ---------------------------------------------------------------------------- reload
def model_folder(path: str, models_dir: str | None = None) -> Path:
    """The folder ``path`` names, checked: a directory, inside ``models_dir`` (after resolving links; a
    relative path is taken inside it) when that is given. A ``SeqrecError`` naming the path otherwise, also
    for a path the system refuses to look at (``OSError``: a component over 255 characters, no permission)."""
    try:
        if models_dir is None:
            folder = Path(path)
        else:
            root = Path(models_dir).resolve()
            folder = (root / path).resolve()
            if not folder.is_relative_to(root):
                raise SeqrecError(
                    f"{path}: not inside the models folder {models_dir} (the service loads model "
                    f"folders from there only: --models-dir)"
                )
        if not folder.is_dir():
            raise SeqrecError(f"{path}: no such model folder")
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SeqrecError(f"{path}: cannot read this path ({reason})") from None
    return folder


def load_checked(path: str, backend: str, index: str = "exact", models_dir: str | None = None) -> Recommender:
    """A model folder loaded and checked for serving: it loads, its scorer, catalogue and id map agree on
    the item count, and it ranks a probe history with finite scores; ``index`` (``seqrec.serving.ann``) is built as it
    loads; with ``models_dir`` the folder must be inside it (``model_folder``). A ``SeqrecError`` naming the
    problem otherwise."""
    folder = model_folder(path, models_dir)
    try:
        new = Recommender.from_folder(folder, backend=backend, index=index)
    except SeqrecError as e:
        raise SeqrecError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    except Exception as e:  # a folder that passed its checks but still fails to build (e.g. a scorer error)
        raise SeqrecError(f"{path}: cannot serve this folder ({type(e).__name__}: {e})") from None
    n, mapped, rows = new.n_items, len(new.dataset.item_ids), new.dataset.catalog.height
    if not (n == mapped == rows == int(new.scorer.n_items)):
        raise SeqrecError(
            f"{path}: the model scores {new.scorer.n_items} items but its id map holds {mapped} "
            f"and its catalogue {rows}"
        )
    try:
        probe = new.dataset.item_ids.to_raw([1])
        for history in (probe, []):
            items = new.recommend(history, k=min(PROBE_K, n)).items
            if n > 1 and not items:
                raise ValueError("no items ranked")
            if not all(math.isfinite(float(i.score)) for i in items):
                raise ValueError("scores that are not finite")
    except Exception as e:
        raise SeqrecError(f"{path}: the model failed its probe history ({e})") from None
    return new

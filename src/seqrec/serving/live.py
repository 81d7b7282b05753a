"""The live side of the service (``seqrec.serving.app``): API keys, events into the store, users' histories
from it, and swapping in a new model while requests are served.

* Keys: ``key_check(api_key)`` is the dependency of the routes that need a key (``Authorization: Bearer
  KEY`` or ``X-API-Key: KEY``, compared with ``hmac.compare_digest``): none is 401, a wrong one 403. Without
  a configured key these routes are refused with 403 saying how to set one, whatever the client's address
  (behind a proxy every client can look local). ``/health`` and ``/ready`` never need a key.
* ``POST /events`` stores one event or a list (at most ``Limits.max_events``) and answers once they are
  durable (``seqrec.serving.store``); the commit runs on the store's writer thread, awaited, never on the loop.
* A user's history is their training sequence (if any) followed by their stored events by ``ts``
  (``live_history``); items the model does not know are skipped when scoring and reported.
* ``reload_model`` loads a model folder in a thread, checks it (it loads, its item count matches its id
  map, it scores a probe history), then replaces ``app.state.recommender`` in one assignment: each
  request took its reference once, so requests in flight finish on the old model. A folder that fails
  is refused (400 naming the problem) and the old model keeps serving. A path the system cannot read (a
  component over 255 characters, a NUL byte, no permission) is refused the same way, naming the path. With
  ``models_dir`` (``seqrec serve --models-dir``) only folders inside it, after resolving links, are loaded (a
  relative path is taken inside it); without it a key holder can load any model folder the server can read.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from seqrec.errors import SeqrecError
from seqrec.serving.loading import (  # noqa: F401  (the routes take them from here)
    apply_availability,
    load_checked,
    model_folder,
    sync_availability,
)
from seqrec.serving.policy import DEFAULT_POLICY, EventPolicy
from seqrec.serving.recommender import Recommender, UnknownIdError
from seqrec.serving.schemas import (
    MAX_HISTORY,
)
from seqrec.serving.store import Event, normalise_id
from seqrec.serving.stores import AnyStore, same_store

log = logging.getLogger("seqrec.serve")
ENV_API_KEY = "SEQREC_API_KEY"
_JS_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")  # a stored id shown as a JSON integer when exact in JavaScript


# ---------------------------------------------------------------------------- keys
def key_check(api_key: str | None) -> Callable[..., Any]:
    """The dependency that lets a request through only with ``api_key`` (403 for all when it is None)."""
    bearer = HTTPBearer(auto_error=False, description="the service's API key: Authorization: Bearer KEY")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key")
    expected = api_key.encode("utf-8") if api_key else None

    async def check(
        credentials: HTTPAuthorizationCredentials | None = Security(bearer), x_api_key: str | None = Security(header)
    ) -> None:
        if expected is None:
            raise HTTPException(
                403,
                "this route needs an API key and the service has none: start it with "
                f"--api-key KEY or set {ENV_API_KEY}",
            )
        given = credentials.credentials if credentials is not None else x_api_key
        if not given:
            raise HTTPException(
                401,
                "an API key is needed: send Authorization: Bearer KEY or X-API-Key: KEY",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # header values arrive decoded as Latin-1: encoding them back gives the bytes sent
        if not hmac.compare_digest(given.encode("latin-1", "replace"), expected):
            raise HTTPException(403, "wrong API key")

    return check


# ---------------------------------------------------------------------------- histories
def shown_id(key: str) -> int | str:
    """A stored id as the service writes ids: an integer when it is one (and exact in JavaScript), else text."""
    return int(key) if _JS_INT.fullmatch(key) and abs(int(key)) < 2**53 else key


@dataclass(frozen=True)
class LiveHistory:
    """A user's training sequence (internal ids) and their stored events (oldest first)."""

    user: int | None  # internal id in the training data, None for a new user
    training: np.ndarray
    events: list[Event]
    policy: EventPolicy = DEFAULT_POLICY

    def raw(self, r: Recommender) -> list[Any]:
        """The whole history as raw ids, oldest first: what ``Recommender.recommend`` reads (the events whose
        type enters the history, ``seqrec.serving.policy``)."""
        keep = self.policy.in_history
        return [*r.dataset.item_ids.to_raw(self.training), *(e.item_id for e in self.events if keep(e.type))]

    def excluded(self, exclude_seen: bool = True) -> list[str]:
        """The stored items never to recommend to this user again by their event's type (e.g. purchases,
        dislikes; with ``exclude_seen`` views too)."""
        return [e.item_id for e in self.events if self.policy.excludes(e.type, exclude_seen)]


def trained_mark(r: Recommender, store: AnyStore) -> int:
    """The last stored event the model trained on (``seqrec train --from-store`` records it), when it was
    trained on this store; 0 otherwise. Later events only are added to its users' histories."""
    mark = r.dataset.meta.get("store_mark")
    if isinstance(mark, dict) and isinstance(mark.get("rowid"), int) and same_store(mark.get("store"), store):
        return mark["rowid"]
    return 0


def live_history(
    r: Recommender, store: AnyStore | None, user_id: str, limit: int = MAX_HISTORY, policy: EventPolicy = DEFAULT_POLICY
) -> LiveHistory:
    """The training history of ``user_id`` followed by their latest ``limit`` stored events; a user in neither
    is an ``UnknownIdError``."""
    user = r.dataset.user_ids.get(user_id)
    events: list[Event] = []
    if store is not None:
        try:
            key = normalise_id(user_id, "user_id")
        except SeqrecError:
            key = None  # not an id: no event can be stored for it
        if key is not None:
            events = store.history(key, limit, after=trained_mark(r, store))
    if user is None and not events:
        raise UnknownIdError(
            f"unknown user id: {user_id!r} (not in the training data{'' if store is None else ', no stored events'})"
        )
    training = r.dataset.sequence(user) if user is not None else np.zeros(0, dtype=np.int64)
    return LiveHistory(user, training, events, policy)


_TITLES: weakref.WeakKeyDictionary[Recommender, list[str | None]] = weakref.WeakKeyDictionary()


def _titles(r: Recommender) -> list[str | None]:
    """Titles by internal id (index 0 is padding), built once per model."""
    titles = _TITLES.get(r)
    if titles is None:
        titles = _TITLES.setdefault(r, [None, *r.dataset.catalog.sort("item")["title"].to_list()])
    return titles


def history_answer(r: Recommender, h: LiveHistory, user_id: str, limit: int, n_events: int) -> dict[str, Any]:
    titles, items = _titles(r), r.dataset.item_ids
    out: list[dict[str, Any]] = []
    start = max(0, len(h.training) - max(0, limit - len(h.events)))
    for i, raw in zip(h.training[start:].tolist(), items.to_raw(h.training[start:])):
        out.append({"item_id": raw, "ts": None, "source": "training", "known": True, "title": titles[i]})
    for e in h.events[-limit:]:
        i = items.get(e.item_id)
        out.append(
            {
                "item_id": shown_id(e.item_id) if i is None else items.to_raw([i])[0],
                "ts": e.ts,
                "source": "store",
                "known": i is not None,
                "title": None if i is None else titles[i],
                "type": e.type,
            }
        )
    return {
        "user_id": user_id,
        "items": out[-limit:],
        "training_items": len(h.training),
        "store_events": n_events,
        "model": r.name,
    }


# ---------------------------------------------------------------------------- availability
async def reload_model(app: FastAPI, path: str | None = None) -> dict[str, Any]:
    """Load ``path`` (default: the folder the service serves) beside the current model and swap it in."""
    start = time.perf_counter()
    lock: asyncio.Lock = app.state.reload_lock
    if lock.locked():
        raise HTTPException(409, "a reload is already running; try again when it is done")
    async with lock:
        target = path or app.state.model_path
        if not target:
            raise SeqrecError(
                'give the model folder to load: {"path": "FOLDER"} (the service was not started from a folder)'
            )
        old = app.state.recommender
        index = "exact" if old is None else old.index_kind  # the new model is searched as the old one was
        models_dir = getattr(app.state, "models_dir", None) if path else None  # the served folder was the operator's
        if models_dir is not None:  # the folder itself (links resolved), so that a later reload loads the same
            target = str(await asyncio.to_thread(model_folder, str(target), models_dir))
        new = await asyncio.to_thread(load_checked, str(target), app.state.backend, index, models_dir)
        if app.state.store is not None:  # checked: now the generation every worker follows (seqrec.serving.generation)
            from seqrec.serving.generation import folder_digest, record_generation

            digest = await asyncio.to_thread(folder_digest, target)
            app.state.generation = await asyncio.to_thread(record_generation, app.state.store, str(target), digest)
            app.state.served_digest = digest
        await asyncio.to_thread(apply_availability, new, app.state.store)
        app.state.recommender = new  # the swap: requests that took the old reference finish on it
        app.state.model_path = str(target)
        previous = None if old is None else old.name
        del old
        log.info("reloaded %s from %s (was %s)", new.name, target, previous)
        if gc.get_freeze_count():  # the old model was frozen with the process (serve._settle): let it go
            await asyncio.to_thread(_refreeze)
        return {
            "model": new.name,
            "previous": previous,
            "path": str(target),
            "n_items": new.n_items,
            "took_ms": round((time.perf_counter() - start) * 1000, 3),
        }


async def reload_on_signal(app: FastAPI) -> None:
    """SIGHUP: reload the folder the service serves; a failure is logged and the old model keeps serving."""
    try:
        answer = await reload_model(app)
    except (SeqrecError, HTTPException) as e:
        log.error("SIGHUP: reload refused: %s", getattr(e, "detail", e))
        return
    except Exception:
        log.exception("SIGHUP: reload failed")
        return
    log.warning("SIGHUP: now serving %s (%s items) from %s", answer["model"], answer["n_items"], answer["path"])


def _refreeze() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()

"""``Service``: what every router shares — the app (whose ``state.recommender`` is the model in service),
the limits, the event store, the thread pools, the key dependencies and the metrics registry."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from seqrec.serving.http import _Pool
from seqrec.serving.limits import Limits
from seqrec.serving.live import sync_availability
from seqrec.serving.policy import EventPolicy
from seqrec.serving.recommender import Recommender
from seqrec.serving.stores import AnyStore

AVAILABILITY_SYNC_S = 1.0  # seconds between reads of the store's availability table per worker


class NotReady(Exception):
    """Raised by routes that need the model while none is loaded (answered 503)."""


@dataclass
class Service:
    app: FastAPI
    limits: Limits
    store: AnyStore | None
    singles: _Pool  # single-history requests
    batches: _Pool  # batch requests (bounded queue: 503 beyond it)
    writes: list[Any]  # dependencies of the routes that need the key
    reads: list[Any]  # of the read routes (the key too with protect_reads)
    read_errors: dict[int | str, dict[str, Any]]
    registry: CollectorRegistry
    policy: EventPolicy  # what each type of event does (seqrec.serving.policy)
    synced: float = 0.0  # when availability was last read from the store

    def rec(self) -> Recommender:
        """The model in service, taken once per request; at most every ``AVAILABILITY_SYNC_S`` its availability
        is read again from the store (another worker may have changed it)."""
        r = self.app.state.recommender
        if r is None:
            raise NotReady()
        if self.store is not None and time.monotonic() - self.synced >= AVAILABILITY_SYNC_S:
            self.synced = time.monotonic()
            sync_availability(r, self.store)
        return r


def ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)

"""``POST /events`` (one event or a list, answered once durable) and ``GET /users/{user_id}/history``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError

from seqrec.serving.http import _StrictRoute, _TooLarge
from seqrec.serving.live import history_answer, live_history, shown_id
from seqrec.serving.routes.service import Service, ms
from seqrec.serving.schemas import AUTH_ERRORS, EventsRequest, EventsResponse, HistoryResponse
from seqrec.serving.store import normalise_id


def router(svc: Service) -> APIRouter:
    api = APIRouter(route_class=_StrictRoute)

    @api.post(
        "/events",
        response_model=EventsResponse,
        tags=["events"],
        operation_id="post_events",
        dependencies=svc.writes,
        responses=AUTH_ERRORS,
        summary="Store one event or a list; answered once they are durable",
    )
    async def post_events(body: EventsRequest) -> dict[str, Any]:
        start = time.perf_counter()
        store = svc.store
        if store is None:
            raise HTTPException(404, "this service has no event store: start it with --store FILE")
        events = body.root
        limit = svc.limits.max_events
        if len(events) > limit:
            raise _TooLarge(f"{len(events)} events in one request is over the limit of {limit} (max_events)")
        for n, e in enumerate(events):
            if e.type is not None and e.type not in svc.policy.kinds:
                raise RequestValidationError(
                    [
                        {
                            "type": "event_type",
                            "loc": ["body", n, "type"],
                            "input": e.type,
                            "msg": f"unknown event type; the event policy knows {', '.join(svc.policy.kinds)}",
                        }
                    ]
                )
        r = svc.rec()
        done = await asyncio.wrap_future(store.submit([(e.user_id, e.item_id, e.ts, e.type) for e in events]))
        unknown: dict[str, None] = {}
        for e in events:
            key = normalise_id(e.item_id)
            if key not in unknown and r.dataset.item_ids.get(key) is None:
                unknown[key] = None
        return {
            "stored": done.stored,
            "duplicates": done.duplicates,
            "unknown_items": [shown_id(k) for k in unknown],
            "took_ms": ms(start),
        }

    @api.get(
        "/users/{user_id}/history",
        response_model=HistoryResponse,
        tags=["recommend"],
        dependencies=svc.reads,
        responses=svc.read_errors,
        summary="A user's latest history: training items, then their stored events",
    )
    async def user_history(user_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        r = svc.rec()
        store = svc.store

        def work() -> dict[str, Any]:
            h = live_history(r, store, user_id, limit, svc.policy)
            full = store is not None and len(h.events) == limit  # more than were read, perhaps
            n_events = store.count(user_id) if store is not None and full else len(h.events)
            return history_answer(r, h, user_id, limit, n_events)

        return await svc.singles.run(work)

    return api

"""``POST /admin/items`` (items nobody has interacted with yet, placed by their features),
``PUT /admin/items/{item_id}/available`` (never recommend an item, or again) and
``POST /admin/reload`` (load a model folder beside the current one, check it, swap it in)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, HTTPException

from seqrec.serving.http import _StrictRoute
from seqrec.serving.live import reload_model, shown_id
from seqrec.serving.routes.service import Service, ms
from seqrec.serving.schemas import (
    AUTH_ERRORS,
    AvailableRequest,
    AvailableResponse,
    ItemsRequest,
    ItemsResponse,
    ReloadRequest,
    ReloadResponse,
)
from seqrec.serving.store import normalise_id


def router(svc: Service) -> APIRouter:
    api = APIRouter(route_class=_StrictRoute, tags=["operations"], dependencies=svc.writes)
    items_lock = asyncio.Lock()

    @api.post(
        "/admin/items",
        response_model=ItemsResponse,
        operation_id="add_items",
        responses=AUTH_ERRORS,
        summary="Add items nobody has interacted with yet, placed by their features (in memory, this worker)",
    )
    async def add_items(body: ItemsRequest) -> dict[str, Any]:
        start = time.perf_counter()
        async with items_lock:  # one addition at a time: none is lost to another's swap
            r = svc.rec()
            records = [item.model_dump(exclude_none=True) for item in body.items]
            new, added = await svc.singles.run(lambda: r.with_items(records))
            if svc.app.state.recommender is not r:
                raise HTTPException(409, "the model was reloaded while the items were being added; send them again")
            svc.app.state.recommender = new  # one assignment: requests in flight finish on the object they took
        return {
            "added": added.items,
            "unknown_values": added.unknown_values,
            "without_features": added.without_features,
            "n_items": new.n_items,
            "took_ms": ms(start),
        }

    @api.put(
        "/admin/items/{item_id}/available",
        response_model=AvailableResponse,
        operation_id="set_available",
        responses=AUTH_ERRORS,
        summary="Make an item unavailable (never recommended) or available again; kept "
        "in the event store, so it survives restarts and reloads",
    )
    async def set_available(item_id: str, body: AvailableRequest) -> dict[str, Any]:
        r = svc.rec()
        r.item(item_id)  # 404 for an item the model does not know
        if svc.store is not None:  # durable first: an answered change survives a crash
            await asyncio.wrap_future(svc.store.set_available([normalise_id(item_id, "item_id")], body.available))
        async with items_lock:  # not beside an addition of items, whose new model copies the flags
            r = svc.rec()
            changed = r.set_available([item_id], body.available)
        return {
            "item_id": shown_id(normalise_id(item_id)),
            "available": body.available,
            "changed": changed > 0,
            "unavailable": int((~r.available[1:]).sum()),
        }

    @api.post(
        "/admin/reload",
        response_model=ReloadResponse,
        operation_id="reload",
        responses={**AUTH_ERRORS, 409: {"description": "a reload is already running"}},
        summary="Load a model folder beside the current one, check it, and swap it in",
    )
    async def reload(body: ReloadRequest | None = None) -> dict[str, Any]:
        return await reload_model(svc.app, body.path if body is not None else None)

    return api

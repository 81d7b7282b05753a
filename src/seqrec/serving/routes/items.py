"""``GET /items`` (search), ``GET /items/{item_id}``, ``GET /items/{item_id}/similar`` (and its older name)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from seqrec.serving.http import _items, _StrictRoute
from seqrec.serving.routes.service import Service, ms
from seqrec.serving.schemas import ItemInfo, QueryK, SearchResponse, SimilarResponse


def router(svc: Service) -> APIRouter:
    api = APIRouter(route_class=_StrictRoute, responses=svc.read_errors, dependencies=svc.reads)

    @api.get("/items", response_model=SearchResponse, tags=["items"])
    async def search_items(
        query: Annotated[str, Query(max_length=200)] = "", limit: Annotated[int, Query(ge=1, le=1000)] = 20
    ) -> dict[str, Any]:
        start = time.perf_counter()
        r = svc.rec()
        items = await svc.singles.run(lambda: r.search(query, limit))
        if not r.available.all():  # say which found items are unavailable
            items = [{**i, "available": bool(r.available[r.catalogue.internal(i["item_id"])])} for i in items]
        return {"query": query, "items": items, "took_ms": ms(start)}

    @api.get("/items/{item_id}", response_model=ItemInfo, tags=["items"])
    async def get_item(item_id: str) -> dict[str, Any]:
        r = svc.rec()
        return {**r.item(item_id), "available": bool(r.available[r.catalogue.internal(item_id)])}

    async def similar(item_id: str, k: int) -> dict[str, Any]:
        start = time.perf_counter()
        r = svc.rec()
        info = r.item(item_id)
        items = await svc.singles.run(lambda: r.similar_items(item_id, k=k))  # the first call builds the index
        method = "embedding" if hasattr(r.scorer, "item_embeddings") else "cooccurrence"
        return {"item": info, "items": _items(items), "method": method, "model": r.name, "took_ms": ms(start)}

    @api.get("/items/{item_id}/similar", response_model=SimilarResponse, tags=["items"])
    async def similar_items(item_id: str, k: QueryK = 10) -> dict[str, Any]:
        return await similar(item_id, k)

    @api.get(
        "/similar_items/{item_id}",
        response_model=SimilarResponse,
        tags=["older API"],
        deprecated=True,
        summary="Older name of GET /items/{item_id}/similar",
    )
    async def similar_items_old(item_id: str, top_k: QueryK = 10) -> dict[str, Any]:
        return await similar(item_id, top_k)

    return api

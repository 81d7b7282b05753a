"""``POST /recommend``, ``POST /recommend/batch`` (and its older name) and
``GET /users/{user_id}/recommendations``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from seqrec.serving.http import _answer, _items_json, _json, _StrictRoute, _text, _TooLarge, item_bytes
from seqrec.serving.live import live_history, shown_id
from seqrec.serving.recommender import SCORE_CHUNK, Recommender
from seqrec.serving.routes.service import Service, ms
from seqrec.serving.schemas import (
    BatchRequest,
    BatchResponse,
    FilterQuery,
    QueryK,
    RecommendRequest,
    RecommendResponse,
    UserRecommendations,
    query_filter,
)


def check_cost(svc: Service, r: Recommender, n: int, k: int) -> None:
    """Refuse (413) a batch whose answer is over the limits, before any work is done."""
    limits = svc.limits
    if n > limits.max_batch:
        raise _TooLarge(f"batch of {n} histories is over the limit of {limits.max_batch} (max_batch)")
    results = n * min(k, r.n_items)
    if results > limits.max_batch_results:
        raise _TooLarge(
            f"batch of {n} histories x k {k} = {results:,} results is over the limit of "
            f"{limits.max_batch_results:,} (max_batch_results); send fewer histories or a smaller k"
        )
    size = int(n * 60 + results * item_bytes(r))
    if size > limits.max_response_bytes:
        raise _TooLarge(
            f"the answer to {n} histories x k {k} would be about {size:,} bytes, over the limit of "
            f"{limits.max_response_bytes:,} (max_response_bytes); send fewer histories or a smaller k"
        )


def _recommend(svc: Service) -> Callable[..., Awaitable[Response]]:
    """``POST /recommend``: one history, scored in the pool of single requests."""

    async def recommend(body: RecommendRequest) -> Response:
        start = time.perf_counter()
        r = svc.rec()

        def work() -> bytes:
            res = r.recommend(
                body.history,
                k=body.k,
                exclude_seen=body.exclude_seen,
                include=body.include,
                exclude=body.exclude,
                filter=body.filter,
                explain=body.explain,
            )
            return _answer(
                items=_items_json(r, res.items, res.because),
                unknown_items=_text(res.unknown_items),
                fallback=_text(res.fallback),
                fewer_than_k=_text(res.fewer_than_k),
                model=_text(r.name),
                took_ms=_text(ms(start)),
            ).encode()

        return _json(await svc.singles.run(work))

    return recommend


def _recommend_batch(svc: Service) -> Callable[..., Awaitable[Response]]:
    """``POST /recommend/batch``: many histories, refused (413) over the limits before any work."""

    async def recommend_batch(body: BatchRequest) -> Response:
        start = time.perf_counter()
        r = svc.rec()
        check_cost(svc, r, len(body.histories), body.k)
        rules = None if body.filter is None else r.filters.mask(body.filter)  # compiled once; a bad one refused here

        def work() -> bytes:
            parts = []
            for lo in range(0, len(body.histories), SCORE_CHUNK):  # a chunk at a time: bounded memory
                out = r.recommend_many(
                    body.histories[lo : lo + SCORE_CHUNK],
                    k=body.k,
                    exclude_seen=body.exclude_seen,
                    filter=rules,
                    explain=body.explain,
                )
                parts += [
                    _answer(
                        items=_items_json(r, x.items, x.because),
                        unknown_items=_text(x.unknown_items),
                        fallback=_text(x.fallback),
                        fewer_than_k=_text(x.fewer_than_k),
                    )
                    for x in out
                ]
            results = "[" + ",".join(parts) + "]"
            return _answer(results=results, model=_text(r.name), took_ms=_text(ms(start))).encode()

        return _json(await svc.batches.run(work))

    return recommend_batch


def _user_recommendations(svc: Service) -> Callable[..., Awaitable[Response]]:
    """``GET /users/{user_id}/recommendations``: the user's training history, then their stored events."""

    async def user_recommendations(
        user_id: str, k: QueryK = 10, exclude_seen: bool = True, filter: FilterQuery = None, explain: bool = False
    ) -> Response:
        start = time.perf_counter()
        r = svc.rec()
        rules = query_filter(filter)

        def work() -> bytes:
            history = live_history(r, svc.store, user_id, policy=svc.policy)
            if history.events:
                res = r.recommend(
                    history.raw(r),
                    k=k,
                    exclude_seen=exclude_seen,
                    exclude=history.excluded(exclude_seen),
                    filter=rules,
                    explain=explain,
                )
            else:
                res = r.recommend_users([user_id], k=k, exclude_seen=exclude_seen, filter=rules, explain=explain)[0]
            return _answer(
                user_id=_text(user_id),
                items=_items_json(r, res.items, res.because),
                fallback=_text(res.fallback),
                fewer_than_k=_text(res.fewer_than_k),
                unknown_items=_text([shown_id(str(u)) for u in res.unknown_items]),
                store_events=_text(len(history.events)),
                model=_text(r.name),
                took_ms=_text(ms(start)),
            ).encode()

        return _json(await svc.singles.run(work))

    return user_recommendations


def router(svc: Service) -> APIRouter:
    api = APIRouter(route_class=_StrictRoute)
    recommend, recommend_batch = _recommend(svc), _recommend_batch(svc)
    post: dict[str, Any] = dict(responses=svc.read_errors, dependencies=svc.reads)
    new: dict[str, Any] = dict(tags=["recommend"], **post)
    api.post(
        "/recommend",
        response_model=RecommendResponse,
        operation_id="recommend",
        **new,
        summary="Top-k items after a history (also accepts user_history / top_k / exclude_history)",
    )(recommend)
    api.post(
        "/recommend/batch",
        response_model=BatchResponse,
        operation_id="recommend_batch",
        **new,
        summary="Top-k items for many histories",
    )(recommend_batch)
    api.post(
        "/recommend_batch",
        response_model=BatchResponse,
        tags=["older API"],
        deprecated=True,
        operation_id="recommend_batch_old",
        **post,
        summary="Older name of POST /recommend/batch",
    )(recommend_batch)

    api.get(
        "/users/{user_id}/recommendations",
        response_model=UserRecommendations,
        **new,
        summary="Top-k items for a user: their training history, then their stored events",
    )(_user_recommendations(svc))
    return api

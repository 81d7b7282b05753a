"""The HTTP service: ``create_app(recommender) -> FastAPI`` and ``run(model_path)``.

Routes (OpenAPI docs at ``/docs``):

* ``POST /recommend``, ``POST /recommend/batch``, ``GET /users/{user_id}/recommendations``
* ``GET /items/{item_id}``, ``GET /items/{item_id}/similar``, ``GET /items?query=&limit=``
* ``GET /health`` (alive), ``GET /ready`` (model loaded), ``GET /model``, ``GET /metrics`` (Prometheus)
* older names kept: ``POST /recommend_batch``, ``GET /similar_items/{item_id}?top_k=``
* the web page at ``/`` (static files from ``seqrec/web``)

Status codes: 422 for wrong types, missing fields or ``k`` outside 1..1000 (FastAPI's validation
detail names the field); 404 for unknown users and items; 413 for a body over ``max_body_bytes``
(by Content-Length or as streamed) or a batch over ``max_batch``; 400 for any other
``SeqrecError``. Anything else is a bug: it is logged and answered with a JSON 500 (and, as
Starlette does, re-raised so servers log it and test clients see it).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from seqrec.errors import SeqrecError
from seqrec.recommend import Item, Recommender, UnknownIdError
from seqrec.schemas import (
    ERRORS,
    QueryK,
    BatchRequest,
    BatchResponse,
    HealthResponse,
    ItemInfo,
    ModelResponse,
    ReadyResponse,
    RecommendRequest,
    RecommendResponse,
    SearchResponse,
    SimilarResponse,
    UserRecommendResponse,
)

log = logging.getLogger("seqrec.serve")
WEB_DIR = Path(__file__).with_name("web")
ENV_MODEL, ENV_BACKEND, ENV_THREADS = "SEQREC_MODEL_PATH", "SEQREC_BACKEND", "SEQREC_TORCH_THREADS"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _NotReady(Exception):
    """Raised by routes that need the model while none is loaded (answered 503)."""


def _json_error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class _Guard:
    """ASGI middleware: body size limit (413) and Prometheus request counts and latencies per route."""

    def __init__(self, app: Any, max_body_bytes: int, requests: Counter, latency: Histogram) -> None:
        self.app, self.max_body = app, max_body_bytes
        self.requests, self.latency = requests, latency

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_and_record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                await _json_error(413, f"request body is larger than {self.max_body} bytes")(scope, receive, send_and_record)
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.requests.labels(method, template, str(status[0])).inc()
            self.latency.labels(method, template).observe(time.perf_counter() - start)

    async def _read_body(self, scope: dict, receive: Any) -> bytes | None:
        """The whole request body, or None once it exceeds the limit (declared or streamed)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_body:
                    return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _items(items: list[Item]) -> list[dict[str, Any]]:
    return [{"rank": i.rank, "item_id": i.item_id, "score": i.score, "title": i.title, "genres": i.genres}
            for i in items]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def create_app(recommender: Recommender | None, *, max_batch: int = 1000, max_body_bytes: int = 1_000_000) -> FastAPI:
    """The service around one loaded ``Recommender`` (``None``: alive but not ready, 503 elsewhere)."""
    app = FastAPI(title="seqrec", version="1", description="Sequential recommendations (SASRec) over raw item ids.")
    app.state.recommender = recommender
    registry = CollectorRegistry()
    requests = Counter("seqrec_http_requests", "HTTP requests by method, route template and status",
                       ["method", "route", "status"], registry=registry)
    latency = Histogram("seqrec_http_request_duration_seconds", "HTTP request latency by method and route template",
                        ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
    app.add_middleware(_Guard, max_body_bytes=max_body_bytes, requests=requests, latency=latency)

    @app.exception_handler(SeqrecError)
    async def _seqrec_error(request: Request, exc: SeqrecError) -> JSONResponse:
        return _json_error(404 if isinstance(exc, UnknownIdError) else 400, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return _json_error(500, "internal server error")

    def rec() -> Recommender:
        if app.state.recommender is None:
            raise _NotReady()
        return app.state.recommender

    @app.exception_handler(_NotReady)
    async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(503, "model not loaded yet")

    # ------------------------------------------------------------------ recommendations
    async def recommend(body: RecommendRequest) -> dict[str, Any]:
        start = time.perf_counter()
        r = rec()
        res = r.recommend(body.history, k=body.k, exclude_seen=body.exclude_seen, include=body.include,
                          exclude=body.exclude)
        return {"items": _items(res.items), "unknown_items": res.unknown_items, "fallback": res.fallback,
                "model": r.name, "took_ms": _ms(start)}

    def recommend_batch(body: BatchRequest) -> dict[str, Any]:
        start = time.perf_counter()
        r = rec()
        if len(body.histories) > max_batch:
            return _json_error(413, f"batch of {len(body.histories)} histories is over the limit of {max_batch}")
        out = r.recommend_many(body.histories, k=body.k, exclude_seen=body.exclude_seen)
        results = [{"items": _items(x.items), "unknown_items": x.unknown_items, "fallback": x.fallback} for x in out]
        return {"results": results, "model": r.name, "took_ms": _ms(start)}

    post = dict(responses=ERRORS)
    app.post("/recommend", response_model=RecommendResponse, tags=["recommend"], operation_id="recommend", **post,
             summary="Top-k items after a history (also accepts user_history / top_k / exclude_history)")(recommend)
    app.post("/recommend/batch", response_model=BatchResponse, tags=["recommend"], operation_id="recommend_batch",
             **post,
             summary="Top-k items for many histories")(recommend_batch)
    app.post("/recommend_batch", response_model=BatchResponse, tags=["older API"], deprecated=True,
             operation_id="recommend_batch_old", **post,
             summary="Older name of POST /recommend/batch")(recommend_batch)

    @app.get("/users/{user_id}/recommendations", response_model=UserRecommendResponse, tags=["recommend"],
             responses=ERRORS)
    async def user_recommendations(user_id: str, k: QueryK = 10, exclude_seen: bool = True) -> dict[str, Any]:
        start = time.perf_counter()
        r = rec()
        res = r.recommend_users([user_id], k=k, exclude_seen=exclude_seen)[0]
        return {"user_id": user_id, "items": _items(res.items), "fallback": res.fallback, "model": r.name,
                "took_ms": _ms(start)}

    # ------------------------------------------------------------------ items
    @app.get("/items", response_model=SearchResponse, tags=["items"], responses=ERRORS)
    async def search_items(query: Annotated[str, Query(max_length=200)] = "",
                           limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
        start = time.perf_counter()
        return {"query": query, "items": rec().search(query, limit), "took_ms": _ms(start)}

    @app.get("/items/{item_id}", response_model=ItemInfo, tags=["items"], responses=ERRORS)
    async def get_item(item_id: str) -> dict[str, Any]:
        return rec().item(item_id)

    async def similar(item_id: str, k: int) -> dict[str, Any]:
        start = time.perf_counter()
        r = rec()
        info = r.item(item_id)
        items = r.similar_items(item_id, k=k)
        method = "embedding" if hasattr(r.scorer, "item_embeddings") else "cooccurrence"
        return {"item": info, "items": _items(items), "method": method, "model": r.name, "took_ms": _ms(start)}

    @app.get("/items/{item_id}/similar", response_model=SimilarResponse, tags=["items"], responses=ERRORS)
    async def similar_items(item_id: str, k: QueryK = 10) -> dict[str, Any]:
        return await similar(item_id, k)

    @app.get("/similar_items/{item_id}", response_model=SimilarResponse, tags=["older API"], deprecated=True,
             responses=ERRORS, summary="Older name of GET /items/{item_id}/similar")
    async def similar_items_old(item_id: str, top_k: QueryK = 10) -> dict[str, Any]:
        return await similar(item_id, top_k)

    # ------------------------------------------------------------------ operations
    @app.get("/health", response_model=HealthResponse, tags=["operations"])
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/ready", response_model=ReadyResponse, tags=["operations"],
             responses={503: {"model": ReadyResponse, "description": "model not loaded"}})
    async def ready() -> Any:
        r = app.state.recommender
        if r is None:
            return JSONResponse({"ready": False, "model": None}, status_code=503)
        return {"ready": True, "model": r.name}

    @app.get("/model", response_model=ModelResponse, tags=["operations"])
    async def model_info() -> dict[str, Any]:
        return rec().info()

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ web page
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    def openapi() -> dict[str, Any]:
        """The generated schema, plus the batch limit as ``maxItems`` (checked in the route as 413)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            batch = schema["components"]["schemas"]["BatchRequest"]["properties"]["histories"]
            batch["maxItems"] = max_batch
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (used by ``run`` with several workers)."""
    path = os.environ.get(ENV_MODEL)
    if not path:
        raise SeqrecError(f"set {ENV_MODEL} to a model folder")
    _set_threads(os.environ.get(ENV_THREADS))
    return create_app(Recommender.from_folder(path, backend=os.environ.get(ENV_BACKEND, "auto")))


def _set_threads(threads: Any) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def run(model_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        backend: str = "auto", threads: int | None = 1, access_log: bool = True) -> None:
    """Serve a model folder with uvicorn; several workers each load the model (via ``app_from_env``).

    ``threads`` sets torch's intra-op threads per worker (default 1: one history is too small to
    split, and every thread that scores, e.g. the pool serving batch requests, would otherwise keep
    its own busy OpenMP team). Scale with ``workers`` instead; ``None`` keeps torch's default.
    """
    import uvicorn

    if not Path(model_path).is_dir():
        raise SeqrecError(f"{model_path}: no such model folder")
    if workers > 1:
        os.environ.update({ENV_MODEL: str(model_path), ENV_BACKEND: backend})
        if threads:
            os.environ[ENV_THREADS] = str(threads)
        uvicorn.run("seqrec.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                    access_log=access_log)
        return
    _set_threads(threads)
    app = create_app(Recommender.from_folder(model_path, backend=backend))
    uvicorn.run(app, host=host, port=port, access_log=access_log)


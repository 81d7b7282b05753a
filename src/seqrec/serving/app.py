"""The HTTP service: ``create_app(recommender) -> FastAPI`` and ``run(model_path)``.

Routes (OpenAPI docs at ``/docs``):

* ``POST /recommend``, ``POST /recommend/batch``, ``GET /users/{user_id}/recommendations``
* ``GET /items/{item_id}``, ``GET /items/{item_id}/similar``, ``GET /items?query=&limit=``
* ``GET /health`` (alive), ``GET /ready`` (model loaded), ``GET /model``, ``GET /metrics`` (Prometheus)
* live (``seqrec.serve_live``): ``POST /events`` (into the event store), ``GET /users/{user_id}/history``,
  ``POST /admin/reload`` (a new model folder swapped in; SIGHUP does the same in ``run``)
* older names kept: ``POST /recommend_batch``, ``GET /similar_items/{item_id}?top_k=``
* the web page at ``/`` (static files from ``seqrec/web``)

Status codes: 422 for wrong types, missing fields, ``k`` outside 1..1000, bodies that are not strict
JSON (``NaN``, ``Infinity``, ``1e400``, unpaired surrogates, not UTF-8; see ``seqrec.schemas`` and
``seqrec.serve_http``); the validation detail names the field. 404 for unknown users and items; 413 for
a request over one of the ``Limits`` (``seqrec.limits``: body bytes, histories per batch, histories x k
per batch, estimated answer bytes; the message names the limit); 503 while no model is loaded, or when
too many batch requests are already waiting; 400 for any other ``SeqrecError``. Anything else is a bug: it is logged with its traceback,
counted in the metrics and answered with a JSON 500, and the connection stays usable (the error is not
re-raised to the server, which would close a keep-alive connection).

Scoring runs off the event loop in two bounded thread pools: one for single-history requests, one
(``Limits.batch_workers``) for batch requests, whose answers are built in chunks, so ``/health`` and
cheap requests stay fast while heavy ones run. Limits default to the values of ``Limits``; ``run`` and
the multi-worker factory also read ``SEQREC_LIMITS``, a JSON object of fields to change, e.g.
``SEQREC_LIMITS='{"max_batch_results": 50000}'``, and ``seqrec serve`` takes a ``--limit-NAME`` flag
for each field (``--limit-max-batch-results 50000``), which wins over ``SEQREC_LIMITS``.

Keys: ``POST /events`` and ``POST /admin/reload`` need the API key (``api_key``, ``SEQREC_API_KEY``), and so do
the read routes with ``protect_reads``; without a configured key those routes are 403. ``/health``,
``/ready``, the web page and the docs are always open. ``cors_origins`` lists the origins a browser page
may call the service from (none by default).

This module holds the routes; the middleware, thread pools and JSON rendering are ``seqrec.serve_http``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Sequence

from fastapi import Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from seqrec.errors import SeqrecError
from seqrec.limits import ENV_LIMITS, Limits
from seqrec.recommend import SCORE_CHUNK, Recommender, UnknownIdError
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
    UserRecommendations,
    AUTH_ERRORS,
)
from seqrec.serve_live import ENV_API_KEY, add_live_routes, key_check, live_history, reload_on_signal, shown_id
from seqrec.store import EventStore
from seqrec.serve_http import (_answer, _Busy, _Guard, _items, _items_json, _json, _json_error, _Pool, _safe,
                               _StrictRoute, _text, _TooLarge, item_bytes)

log = logging.getLogger("seqrec.serve")
WEB_DIR = Path(__file__).with_name("web")
ENV_MODEL, ENV_BACKEND, ENV_THREADS = "SEQREC_MODEL_PATH", "SEQREC_BACKEND", "SEQREC_TORCH_THREADS"
ENV_INDEX = "SEQREC_INDEX"  # exact / hnsw / ivf (seqrec.ann), for the workers of run
ENV_STORE, ENV_PROTECT_READS, ENV_CORS = "SEQREC_STORE", "SEQREC_PROTECT_READS", "SEQREC_CORS_ORIGINS"
SWITCH_INTERVAL = 0.0005  # seconds; see _settle
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _NotReady(Exception):
    """Raised by routes that need the model while none is loaded (answered 503)."""


def _settle() -> None:
    """Tune the server process once the model is loaded, for cheap requests beside heavy ones:

    * the model and data live as long as the process: move them out of the cyclic garbage collector's
      reach (``gc.freeze``). Its full passes stop every thread while they walk all objects; over
      amazon-games they took 0.16 s, stalling cheap requests while batch answers were built;
    * hand the GIL over every ``SWITCH_INTERVAL`` s (Python's default is 5 ms; 0.5 ms gave cheap requests
      beside heavy ones a lower p99 than 1 ms): a thread building a batch
      answer holds it otherwise that long each time the event loop or a cheap request needs it.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def create_app(recommender: Recommender | None, *, limits: Limits | None = None, max_batch: int | None = None,
               max_body_bytes: int | None = None, store: EventStore | None = None, api_key: str | None = None,
               protect_reads: bool = False, cors_origins: Sequence[str] = (),
               model_path: str | os.PathLike | None = None, backend: str = "auto",
               reload_on_sighup: bool = False, close_store: bool = False) -> FastAPI:
    """The service around one loaded ``Recommender`` (``None``: alive but not ready, 503 elsewhere).

    ``limits`` defaults to ``Limits()``; ``max_batch`` and ``max_body_bytes`` change those two fields.
    ``store`` is the event store behind ``POST /events`` and the users' histories (``seqrec.store``);
    ``api_key`` opens the write and admin routes (and the read routes too with ``protect_reads``);
    ``cors_origins`` are the browser origins allowed to call it. ``model_path`` and ``backend`` are what
    ``POST /admin/reload`` loads without a path; ``reload_on_sighup`` makes SIGHUP do that (the server's
    main thread only); ``close_store`` closes the store when the app shuts down.
    """
    changes = {k: v for k, v in dict(max_batch=max_batch, max_body_bytes=max_body_bytes).items() if v is not None}
    limits = replace(limits or Limits(), **changes)
    max_batch = limits.max_batch
    if api_key is not None and not api_key.strip():
        raise SeqrecError("the API key is empty; give a secret of a few dozen random characters")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        hup = reload_on_sighup and hasattr(signal, "SIGHUP")
        reloads: set[asyncio.Task] = set()  # the loop keeps only weak references to its tasks

        def on_hup() -> None:
            task = loop.create_task(reload_on_signal(app))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        if hup:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            if close_store and store is not None:
                await asyncio.to_thread(store.close)

    app = FastAPI(title="seqrec", version="1", description="Sequential recommendations (SASRec) over raw item ids.",
                  lifespan=lifespan)
    app.router.route_class = _StrictRoute
    app.state.recommender = recommender
    app.state.limits = limits
    app.state.store = store
    app.state.model_path = None if model_path is None else str(model_path)
    app.state.backend = backend
    app.state.reload_lock = asyncio.Lock()
    writes = [Depends(key_check(api_key))]
    reads = writes if protect_reads else []
    read_errors = AUTH_ERRORS if protect_reads else ERRORS
    singles = _Pool(limits.score_workers, None, "seqrec-score")
    batches = _Pool(limits.batch_workers, limits.batch_workers + limits.batch_queue, "seqrec-batch")
    registry = CollectorRegistry()
    requests = Counter("seqrec_http_requests", "HTTP requests by method, route template and status",
                       ["method", "route", "status"], registry=registry)
    latency = Histogram("seqrec_http_request_duration_seconds", "HTTP request latency by method and route template",
                        ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
    app.add_middleware(_Guard, max_body_bytes=limits.max_body_bytes, requests=requests, latency=latency)
    if cors_origins:  # outside the guard: its answers (413, 500) carry the headers too
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"], max_age=600)

    @app.exception_handler(SeqrecError)
    async def _seqrec_error(request: Request, exc: SeqrecError) -> JSONResponse:
        return _json_error(404 if isinstance(exc, UnknownIdError) else 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the detail echoes the input, which may hold what JSON cannot carry (bytes, NaN, surrogates)
        return JSONResponse({"detail": _safe(jsonable_encoder(_safe(exc.errors())))}, status_code=422)

    @app.exception_handler(_TooLarge)
    async def _too_large(request: Request, exc: _TooLarge) -> JSONResponse:
        return _json_error(413, str(exc))

    @app.exception_handler(_Busy)
    async def _busy(request: Request, exc: _Busy) -> JSONResponse:
        return _json_error(503, f"busy: {exc.args[0]} batch requests are already running or waiting "
                                f"(batch_workers + batch_queue); retry shortly", headers={"Retry-After": "1"})

    def rec() -> Recommender:
        if app.state.recommender is None:
            raise _NotReady()
        return app.state.recommender

    @app.exception_handler(_NotReady)
    async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(503, "model not loaded yet")

    # ------------------------------------------------------------------ recommendations
    async def recommend(body: RecommendRequest) -> Response:
        start = time.perf_counter()
        r = rec()

        def work() -> bytes:
            res = r.recommend(body.history, k=body.k, exclude_seen=body.exclude_seen, include=body.include,
                              exclude=body.exclude)
            return _answer(items=_items_json(r, res.items), unknown_items=_text(res.unknown_items),
                           fallback=_text(res.fallback), model=_text(r.name), took_ms=_text(_ms(start))).encode()

        return _json(await singles.run(work))

    def check_cost(r: Recommender, n: int, k: int) -> None:
        """Refuse (413) a batch whose answer is over the limits, before any work is done."""
        if n > max_batch:
            raise _TooLarge(f"batch of {n} histories is over the limit of {max_batch} (max_batch)")
        results = n * min(k, r.n_items)
        if results > limits.max_batch_results:
            raise _TooLarge(f"batch of {n} histories x k {k} = {results:,} results is over the limit of "
                            f"{limits.max_batch_results:,} (max_batch_results); send fewer histories or a smaller k")
        size = int(n * 60 + results * item_bytes(r))
        if size > limits.max_response_bytes:
            raise _TooLarge(f"the answer to {n} histories x k {k} would be about {size:,} bytes, over the limit of "
                            f"{limits.max_response_bytes:,} (max_response_bytes); send fewer histories or a smaller k")

    async def recommend_batch(body: BatchRequest) -> Response:
        start = time.perf_counter()
        r = rec()
        check_cost(r, len(body.histories), body.k)

        def work() -> bytes:
            parts = []
            for lo in range(0, len(body.histories), SCORE_CHUNK):  # a chunk at a time: bounded memory
                out = r.recommend_many(body.histories[lo : lo + SCORE_CHUNK], k=body.k, exclude_seen=body.exclude_seen)
                parts += [_answer(items=_items_json(r, x.items), unknown_items=_text(x.unknown_items),
                                  fallback=_text(x.fallback)) for x in out]
            results = "[" + ",".join(parts) + "]"
            return _answer(results=results, model=_text(r.name), took_ms=_text(_ms(start))).encode()

        return _json(await batches.run(work))

    post = dict(responses=read_errors, dependencies=reads)
    app.post("/recommend", response_model=RecommendResponse, tags=["recommend"], operation_id="recommend", **post,
             summary="Top-k items after a history (also accepts user_history / top_k / exclude_history)")(recommend)
    app.post("/recommend/batch", response_model=BatchResponse, tags=["recommend"], operation_id="recommend_batch",
             **post,
             summary="Top-k items for many histories")(recommend_batch)
    app.post("/recommend_batch", response_model=BatchResponse, tags=["older API"], deprecated=True,
             operation_id="recommend_batch_old", **post,
             summary="Older name of POST /recommend/batch")(recommend_batch)

    @app.get("/users/{user_id}/recommendations", response_model=UserRecommendations, tags=["recommend"],
             responses=read_errors, dependencies=reads,
             summary="Top-k items for a user: their training history, then their stored events")
    async def user_recommendations(user_id: str, k: QueryK = 10, exclude_seen: bool = True) -> Response:
        start = time.perf_counter()
        r = rec()

        def work() -> bytes:
            history = live_history(r, store, user_id)
            if history.events:
                res = r.recommend(history.raw(r), k=k, exclude_seen=exclude_seen)
            else:
                res = r.recommend_users([user_id], k=k, exclude_seen=exclude_seen)[0]
            return _answer(user_id=_text(user_id), items=_items_json(r, res.items), fallback=_text(res.fallback),
                           unknown_items=_text([shown_id(str(u)) for u in res.unknown_items]),
                           store_events=_text(len(history.events)), model=_text(r.name),
                           took_ms=_text(_ms(start))).encode()

        return _json(await singles.run(work))

    # ------------------------------------------------------------------ items
    @app.get("/items", response_model=SearchResponse, tags=["items"], responses=read_errors, dependencies=reads)
    async def search_items(query: Annotated[str, Query(max_length=200)] = "",
                           limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
        start = time.perf_counter()
        r = rec()
        items = await singles.run(lambda: r.search(query, limit))
        return {"query": query, "items": items, "took_ms": _ms(start)}

    @app.get("/items/{item_id}", response_model=ItemInfo, tags=["items"], responses=read_errors, dependencies=reads)
    async def get_item(item_id: str) -> dict[str, Any]:
        return rec().item(item_id)

    async def similar(item_id: str, k: int) -> dict[str, Any]:
        start = time.perf_counter()
        r = rec()
        info = r.item(item_id)
        items = await singles.run(lambda: r.similar_items(item_id, k=k))  # the first call builds the index
        method = "embedding" if hasattr(r.scorer, "item_embeddings") else "cooccurrence"
        return {"item": info, "items": _items(items), "method": method, "model": r.name, "took_ms": _ms(start)}

    @app.get("/items/{item_id}/similar", response_model=SimilarResponse, tags=["items"], responses=read_errors,
             dependencies=reads)
    async def similar_items(item_id: str, k: QueryK = 10) -> dict[str, Any]:
        return await similar(item_id, k)

    @app.get("/similar_items/{item_id}", response_model=SimilarResponse, tags=["older API"], deprecated=True,
             responses=read_errors, dependencies=reads, summary="Older name of GET /items/{item_id}/similar")
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

    @app.get("/model", response_model=ModelResponse, tags=["operations"], dependencies=reads)
    async def model_info() -> dict[str, Any]:
        return rec().info()

    @app.get("/metrics", tags=["operations"], response_class=Response, dependencies=reads,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    add_live_routes(app, rec=rec, singles=singles, writes=writes, reads=reads, too_large=_TooLarge)

    # ------------------------------------------------------------------ web page
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    def openapi() -> dict[str, Any]:
        """The generated schema, plus the batch and events limits as ``maxItems`` (checked in the routes as 413),
        and the events body as what it is: one event or a list."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            batch = schema["components"]["schemas"]["BatchRequest"]["properties"]["histories"]
            batch["maxItems"] = max_batch
            batch["description"] = (f"alias: user_histories; at most {max_batch} histories and "
                                    f"{limits.max_batch_results:,} results (histories x k) per request")
            events = schema["components"]["schemas"]["EventsRequest"]
            one = events.pop("items")
            events.pop("type")
            events["anyOf"] = [one, {"type": "array", "items": one, "maxItems": limits.max_events}]
            events["description"] += f" At most {limits.max_events} events per request (max_events)."
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
    backend = os.environ.get(ENV_BACKEND, "auto")
    store = EventStore(os.environ[ENV_STORE]) if os.environ.get(ENV_STORE) else None
    index = os.environ.get(ENV_INDEX) or "exact"
    app = create_app(Recommender.from_folder(path, backend=backend, index=index), limits=Limits.from_env(), store=store,
                     api_key=os.environ.get(ENV_API_KEY) or None, protect_reads=os.environ.get(ENV_PROTECT_READS) == "1",
                     cors_origins=json.loads(os.environ.get(ENV_CORS) or "[]"), model_path=path, backend=backend,
                     close_store=True)
    _settle()
    return app


def _set_threads(threads: Any) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket the workers share, made with ``IPPROTO_TCP`` as its protocol.

    asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on connections whose socket says
    ``IPPROTO_TCP``; uvicorn's own socket for several workers says 0, so every answer, written as head
    then body, waited for the client's delayed ACK: about 40 ms more per request than one worker.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SeqrecError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def run(model_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        backend: str = "auto", threads: int | None = 1, access_log: bool = True, limits: Limits | None = None,
        store: str | os.PathLike | None = None, api_key: str | None = None, protect_reads: bool = False,
        cors_origins: Sequence[str] = (), index: str = "exact") -> None:
    """Serve a model folder with uvicorn; several workers each load the model (via ``app_from_env``).

    ``limits`` default to ``Limits.from_env()`` (``SEQREC_LIMITS``, else the defaults). ``store`` is the
    event store's file (created when absent), ``api_key`` defaults to ``SEQREC_API_KEY``; see ``create_app``.
    SIGHUP reloads the model folder being served: in place with one worker (``POST /admin/reload``'s
    checks; a folder that fails them is logged and the old model keeps serving), by replacing each worker
    in turn with several (uvicorn's rolling restart). ``POST /admin/reload`` reloads only the worker
    that answers it.

    ``threads`` sets torch's intra-op threads per worker (default 1: one history is too small to
    split, and every thread that scores, e.g. the pool serving batch requests, would otherwise keep
    its own busy OpenMP team). Scale with ``workers`` instead; ``None`` keeps torch's default. faiss searches
    with as many threads. ``index`` (``exact``, ``hnsw``, ``ivf``: ``seqrec.ann``) is built as each worker loads.
    """
    import uvicorn

    if not Path(model_path).is_dir():
        raise SeqrecError(f"{model_path}: no such model folder")
    limits = limits or Limits.from_env()
    api_key = api_key if api_key is not None else os.environ.get(ENV_API_KEY) or None
    if api_key is not None and not api_key.strip():
        raise SeqrecError("--api-key: the key is empty; give a secret of a few dozen random characters")
    if workers > 1:
        if store is not None:
            EventStore(store).close()  # created and checked once, before the workers open it
        os.environ.update({ENV_MODEL: str(model_path), ENV_BACKEND: backend, ENV_INDEX: index,
                           ENV_LIMITS: json.dumps(asdict(limits)),
                           ENV_STORE: "" if store is None else str(store), ENV_API_KEY: api_key or "",
                           ENV_PROTECT_READS: "1" if protect_reads else "", ENV_CORS: json.dumps(list(cors_origins))})
        if threads:
            os.environ[ENV_THREADS] = str(threads)
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config("seqrec.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                                access_log=access_log)
        Multiprocess(config, sockets=[_listen_socket(host, port)]).run()
        return
    _set_threads(threads)
    events = EventStore(store) if store is not None else None
    try:
        app = create_app(Recommender.from_folder(model_path, backend=backend, index=index), limits=limits, store=events,
                         api_key=api_key, protect_reads=protect_reads, cors_origins=cors_origins,
                         model_path=model_path, backend=backend, reload_on_sighup=True, close_store=True)
        _settle()
        uvicorn.run(app, host=host, port=port, access_log=access_log)
    finally:
        if events is not None:
            events.close()


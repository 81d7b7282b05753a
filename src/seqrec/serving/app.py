"""The HTTP service: ``create_app(recommender) -> FastAPI`` and ``run(model_path)``.

Routes (OpenAPI docs at ``/docs``):

* ``POST /recommend``, ``POST /recommend/batch``, ``GET /users/{user_id}/recommendations``
* ``GET /items/{item_id}``, ``GET /items/{item_id}/similar``, ``GET /items?query=&limit=``
* ``GET /health`` (alive), ``GET /ready`` (model loaded), ``GET /model``, ``GET /metrics`` (Prometheus)
* live (``seqrec.serving.live``): ``POST /events`` (into the event store), ``GET /users/{user_id}/history``,
  ``POST /admin/reload`` (a new model folder swapped in; SIGHUP does the same in ``run``)
* older names kept: ``POST /recommend_batch``, ``GET /similar_items/{item_id}?top_k=``
* the web page at ``/`` (static files from ``seqrec/web``)

Status codes: 422 for wrong types, missing fields, ``k`` outside 1..1000, bodies that are not strict
JSON (``NaN``, ``Infinity``, ``1e400``, unpaired surrogates, not UTF-8; see ``seqrec.serving.schemas`` and
``seqrec.serving.http``); the validation detail names the field. 404 for unknown users and items; 413 for
a request over one of the ``Limits`` (``seqrec.serving.limits``: body bytes, histories per batch, histories x k
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

This module holds the routes; the middleware, thread pools and JSON rendering are ``seqrec.serving.http``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Histogram

from seqrec.errors import SeqrecError
from seqrec.serving.filters import FilterError
from seqrec.serving.generation import folder_digest
from seqrec.serving.generation import watch as watch_generation
from seqrec.serving.http import _Busy, _Guard, _json_error, _Pool, _StrictRoute, _TooLarge, _validation_detail
from seqrec.serving.limits import Limits
from seqrec.serving.live import apply_availability, key_check, reload_on_signal
from seqrec.serving.policy import EventPolicy, load_policy
from seqrec.serving.recommender import Recommender, UnknownIdError
from seqrec.serving.routes import admin, events, items, operations, recommendations
from seqrec.serving.routes.operations import WEB_DIR
from seqrec.serving.routes.service import NotReady, Service
from seqrec.serving.schemas import AUTH_ERRORS, ERRORS
from seqrec.serving.shop_schemas import openapi_rules
from seqrec.serving.store import StoreError
from seqrec.serving.stores import AnyStore

log = logging.getLogger("seqrec.serve")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def create_app(
    recommender: Recommender | None,
    *,
    limits: Limits | None = None,
    max_batch: int | None = None,
    max_body_bytes: int | None = None,
    store: AnyStore | None = None,
    api_key: str | None = None,
    protect_reads: bool = False,
    cors_origins: Sequence[str] = (),
    model_path: str | os.PathLike | None = None,
    backend: str = "auto",
    reload_on_sighup: bool = False,
    close_store: bool = False,
    models_dir: str | os.PathLike | None = None,
    event_policy: EventPolicy | None = None,
) -> FastAPI:
    """The service around one loaded ``Recommender`` (``None``: alive but not ready, 503 elsewhere).

    ``limits`` defaults to ``Limits()``; ``max_batch`` and ``max_body_bytes`` change those two fields.
    ``store`` is the event store behind ``POST /events`` and the users' histories (``seqrec.serving.store``);
    ``api_key`` opens the write and admin routes (and the read routes too with ``protect_reads``);
    ``cors_origins`` are the browser origins allowed to call it. ``model_path`` and ``backend`` are what
    ``POST /admin/reload`` loads without a path; ``reload_on_sighup`` makes SIGHUP do that (the server's
    main thread only); ``close_store`` closes the store when the app shuts down. With ``models_dir``,
    ``POST /admin/reload`` loads only folders inside it (after resolving links; a relative path is taken
    inside it); without it, a key holder can make the service load any model folder the server can read.
    ``event_policy`` says what each type of event does (``seqrec.serving.policy``; default ``DEFAULT_POLICY``).
    The items the store records as unavailable are made so in ``recommender`` (and in every model reloaded).
    """
    changes = {k: v for k, v in dict(max_batch=max_batch, max_body_bytes=max_body_bytes).items() if v is not None}
    limits = replace(limits or Limits(), **changes)
    max_batch = limits.max_batch
    if api_key is not None and not api_key.strip():
        raise SeqrecError("the API key is empty; give a secret of a few dozen random characters")
    if models_dir is not None:
        models_dir = _models_dir(models_dir)

    lifespan = _lifespan(reload_on_sighup, store, close_store)

    app = FastAPI(
        title="seqrec",
        version="1",
        description="Sequential recommendations (SASRec) over raw item ids.",
        lifespan=lifespan,
    )
    app.router.route_class = _StrictRoute
    app.state.recommender = recommender
    if recommender is not None:
        apply_availability(recommender, store)
    app.state.limits = limits
    app.state.store = store
    app.state.model_path = None if model_path is None else str(model_path)
    app.state.backend = backend
    app.state.models_dir = None if models_dir is None else str(models_dir)
    app.state.reload_lock = asyncio.Lock()
    app.state.generation = None  # the recorded model generation this worker holds (seqrec.serving.generation)
    app.state.served_digest = None if model_path is None else folder_digest(model_path)
    writes = [Depends(key_check(api_key))]
    svc = Service(
        app,
        limits,
        store,
        singles=_Pool(limits.score_workers, None, "seqrec-score"),
        batches=_Pool(limits.batch_workers, limits.batch_workers + limits.batch_queue, "seqrec-batch"),
        writes=writes,
        reads=writes if protect_reads else [],
        read_errors=AUTH_ERRORS if protect_reads else ERRORS,
        registry=CollectorRegistry(),
        policy=event_policy or load_policy(None),
    )
    _add_middleware(app, svc, limits, cors_origins)
    _add_error_handlers(app)
    for routes in (recommendations, items, events, admin, operations):
        app.include_router(routes.router(svc))
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    app.openapi = _openapi(app, svc, limits)  # type: ignore[method-assign]
    return app


def _lifespan(reload_on_sighup: bool, store: Any, close_store: bool) -> Callable[[FastAPI], Any]:
    """The app's lifespan: SIGHUP reloads (``reload_on_sighup``), the generation watcher over ``store``, and the
    store closed at the end (``close_store``)."""

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
        watcher = None if store is None else loop.create_task(watch_generation(app))  # reloads of other workers
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            if close_store and store is not None:
                await asyncio.to_thread(store.close)

    return lifespan


def _add_middleware(app: FastAPI, svc: Service, limits: Limits, cors_origins: Sequence[str]) -> None:
    """The guard (body limit, metrics, last word on errors) and, for the origins given, CORS."""
    requests = Counter(
        "seqrec_http_requests",
        "HTTP requests by method, route template and status",
        ["method", "route", "status"],
        registry=svc.registry,
    )
    latency = Histogram(
        "seqrec_http_request_duration_seconds",
        "HTTP request latency by method and route template",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
        registry=svc.registry,
    )
    app.add_middleware(_Guard, max_body_bytes=limits.max_body_bytes, requests=requests, latency=latency)
    if cors_origins:  # outside the guard: its answers (413, 500) carry the headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            max_age=600,
        )


def _openapi(app: FastAPI, svc: Service, limits: Limits) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: the generated schema, plus what the routes check themselves (see ``openapi``)."""
    max_batch = limits.max_batch

    def openapi() -> dict[str, Any]:
        """The generated schema, plus the batch and events limits as ``maxItems`` (checked in the routes as 413),
        and the events body as what it is: one event or a list."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            batch = schema["components"]["schemas"]["BatchRequest"]["properties"]["histories"]
            batch["maxItems"] = max_batch
            batch["description"] = (
                f"alias: user_histories; at most {max_batch} histories and "
                f"{limits.max_batch_results:,} results (histories x k) per request"
            )
            events = schema["components"]["schemas"]["EventsRequest"]
            one = events.pop("items")
            events.pop("type")
            events["anyOf"] = [one, {"type": "array", "items": one, "maxItems": limits.max_events}]
            events["description"] += f" At most {limits.max_events} events per request (max_events)."
            r = app.state.recommender
            openapi_rules(schema, None if r is None else r.filters.fields(), list(svc.policy.kinds))
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _add_error_handlers(app: FastAPI) -> None:
    """Library errors as 4xx, the service's own refusals as 413 / 503, the store's failures as 503."""

    @app.exception_handler(SeqrecError)
    async def _seqrec_error(request: Request, exc: SeqrecError) -> JSONResponse:
        if isinstance(exc, FilterError):  # a filter that does not fit the catalogue: a validation error naming it
            where = "query" if request.method == "GET" else "body"
            return JSONResponse(
                {"detail": [{"type": "filter", "loc": [where, "filter", *exc.loc], "msg": exc.message, "input": None}]},
                status_code=422,
            )
        return _json_error(404 if isinstance(exc, UnknownIdError) else 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the detail echoes the input, which may hold what JSON cannot carry (bytes, NaN, surrogates)
        return JSONResponse({"detail": _validation_detail(exc.errors())}, status_code=422)

    @app.exception_handler(_TooLarge)
    async def _too_large(request: Request, exc: _TooLarge) -> JSONResponse:
        return _json_error(413, str(exc))

    @app.exception_handler(_Busy)
    async def _busy(request: Request, exc: _Busy) -> JSONResponse:
        return _json_error(
            503,
            f"busy: {exc.args[0]} batch requests are already running or waiting "
            f"(batch_workers + batch_queue); retry shortly",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(503, "model not loaded yet")

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        log.error("event store: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})


def _models_dir(path: str | os.PathLike) -> str:
    """``--models-dir``, checked: an existing folder (named in the error otherwise)."""
    try:
        if Path(path).is_dir():
            return str(Path(path).resolve())
    except (OSError, ValueError) as e:
        raise SeqrecError(f"--models-dir {path}: cannot read this path ({e})") from None
    raise SeqrecError(f"--models-dir {path}: no such folder")

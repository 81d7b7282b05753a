"""The HTTP plumbing under ``seqrec.serving.app``'s routes: strict JSON bodies, the request guard, the
bounded thread pools and the JSON answers built from text fragments.

* Strict JSON: a route with a JSON body (``_StrictRoute``) reads it with ``seqrec.serving.strict_json.parse_json_body``,
  so ``NaN``, ``Infinity``, ``1e400``, unpaired surrogates and bodies that are not UTF-8 are a 422
  naming the field, before the request model sees them; error details are made JSON-safe (``_safe``).
* ``_Guard`` (ASGI middleware): the body-size limit (413), Prometheus request counts and latencies
  per route template, and the last word on unexpected errors (logged, answered 500, never re-raised
  to the server, so a keep-alive connection stays usable).
* ``_Pool``: a few threads that run scoring off the event loop, with an optional bound on running +
  waiting work (``_Busy``, answered 503).
* Answers: ``_items_json`` and ``_answer`` write the JSON text directly from per-item fragments built
  once per catalogue; ``item_bytes`` estimates an answer's size for ``Limits.max_response_bytes``.
  An item's keys and their order are the fields of ``seqrec.serving.catalogue.Item`` (``ITEM_FIELDS``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.message
import json
import logging
import math
import operator
import threading
import time
import weakref
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import Counter, Histogram

from seqrec.serving.catalogue import Item
from seqrec.serving.recommender import Recommender
from seqrec.serving.schemas import MAX_K
from seqrec.serving.strict_json import MAX_BODY_ERRORS, BodyError, parse_json_body

log = logging.getLogger("seqrec.serve")


MAX_QUOTE = 200  # characters of a request's value a 422 quotes back
MAX_DETAIL_CHARS = 5000  # characters of any one text in an error answer
MAX_ERROR_BYTES = 20_000  # a 422 answer over this drops the inputs it quotes


def _safe(value: Any, depth: int = 0, text: int = MAX_DETAIL_CHARS) -> Any:
    """An error detail that JSON can carry: non-finite floats and bytes as text, unpaired surrogates
    escaped, texts over ``text`` characters, long lists and deep nesting cut short."""
    if isinstance(value, str):
        if len(value) > text:
            value = f"{value[:text]}... ({len(value):,} characters)"
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:  # quoted as text
        return _safe(str(value), depth, text)
    if isinstance(value, (bytes, bytearray)):
        return _safe(bytes(value[:1000]).decode("utf-8", "replace"), depth, text)
    if depth >= 8 and isinstance(value, (dict, list, tuple)):
        return "..."
    if isinstance(value, dict):
        return {_safe(str(k), text=text): _safe(v, depth + 1, text) for k, v in list(value.items())[:100]}
    if isinstance(value, (list, tuple)):
        return [_safe(v, depth + 1, text) for v in value[:100]]
    return value


def _validation_detail(errors: Sequence[Any]) -> list[Any]:
    """A 422's detail: at most ``MAX_BODY_ERRORS`` errors, each quoting at most ``MAX_QUOTE`` characters of
    a value; when that is still over ``MAX_ERROR_BYTES``, the inputs are left out (the ``loc`` names them)."""
    shown = [_safe(e, text=2**62) for e in list(errors)[:MAX_BODY_ERRORS]]  # what JSON can carry, then cut
    detail = _safe(jsonable_encoder(shown), text=MAX_QUOTE)
    if len(_dumps(detail)) > MAX_ERROR_BYTES:
        detail = [
            {k: v for k, v in e.items() if k not in ("input", "ctx")} if isinstance(e, dict) else e for e in detail
        ]
    return detail


def _json_error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": _safe(detail)}, status_code=status, headers=headers)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _is_json(content_type: str | None) -> bool:
    """The content types FastAPI reads as JSON: application/json and application/*+json."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    sub = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (sub == "json" or sub.endswith("+json"))


class _StrictRequest(Request):
    """A request whose JSON body is read by ``parse_json_body`` (once)."""

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = parse_json_body(await self.body())
        return self._strict_json


class _StrictRoute(APIRoute):
    """Routes with a JSON body read it strictly: a body that is not strict JSON is a 422 naming the field."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict(request: Request) -> Response:
            request = _StrictRequest(request.scope, request.receive)
            if _is_json(request.headers.get("content-type")) and await request.body():
                try:
                    await request.json()
                except BodyError as e:
                    raise RequestValidationError(e.errors) from None
            return await handler(request)

        return strict


class _Guard:
    """ASGI middleware: body size limit (413), Prometheus request counts and latencies per route, and
    the last word on unexpected errors (logged, answered 500, never re-raised to the server)."""

    def __init__(self, app: Any, max_body_bytes: int, requests: Counter, latency: Histogram) -> None:
        self.app, self.max_body = app, max_body_bytes
        self.requests, self.latency = requests, latency

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]
        started = [False]

        async def send_and_record(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                started[0] = True
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                await _json_error(413, f"request body is larger than {self.max_body} bytes (max_body_bytes)")(
                    scope, receive, send_and_record
                )
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_and_record)
        except Exception:
            # Re-raising would make the server close the connection (uvicorn does once a response has
            # started), failing the client's next requests on it; the traceback is in the log instead.
            log.exception("unexpected error in %s %s", scope.get("method", ""), scope.get("path", ""))
            status[0] = 500
            if not started[0]:
                await _json_error(500, "internal server error")(scope, receive, send)
            # else the answer was cut short: the server closes this one connection, as it must
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


class _TooLarge(Exception):
    """A request over one of the ``Limits`` (answered 413 with the message)."""


class _Busy(Exception):
    """Too many batch requests in progress and waiting (answered 503 with Retry-After)."""


class _Pool:
    """A few threads that run blocking work for the event loop; ``limit`` bounds running + waiting."""

    def __init__(self, workers: int, limit: int | None, name: str) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self.slots = threading.BoundedSemaphore(limit) if limit else None
        self.limit = limit

    async def run(self, fn: Callable[[], Any]) -> Any:
        if self.slots is not None and not self.slots.acquire(blocking=False):
            raise _Busy(self.limit)
        try:
            future = self.executor.submit(fn)
        except BaseException:
            if self.slots is not None:
                self.slots.release()
            raise
        slots = self.slots
        if slots is not None:
            future.add_done_callback(lambda _: slots.release())
        return await asyncio.wrap_future(future)


ITEM_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Item))  # an answer item's keys, in order
_PER_ANSWER = ("rank", "score")  # set by each ranking; the other fields are the item's own (cached as text)
if tuple(n for n in ITEM_FIELDS if n in _PER_ANSWER) != _PER_ANSWER:
    raise TypeError(f"seqrec.serving.catalogue.Item must have the fields {_PER_ANSWER}, in that order")
_OWN = tuple(n for n in ITEM_FIELDS if n not in _PER_ANSWER)
_TEMPLATE = "{{" + ",".join(f'"{n}":' + ("\0" if n in _PER_ANSWER else f"{{{n}}}") for n in ITEM_FIELDS) + "}}"
_values = operator.attrgetter(*ITEM_FIELDS)


def _item_dict(item: Item) -> dict[str, Any]:
    """One item of an answer as a dict, its keys in ``ITEM_FIELDS`` order."""
    return dict(zip(ITEM_FIELDS, _values(item)))


def _items(items: list[Item]) -> list[dict[str, Any]]:
    return [_item_dict(i) for i in items]


_ITEM_BYTES: weakref.WeakKeyDictionary[Recommender, float] = weakref.WeakKeyDictionary()


def item_bytes(rec: Recommender, sample: int = 2000) -> float:
    """Mean JSON size of one recommended item of this catalogue (for the answer-size estimate)."""
    if rec not in _ITEM_BYTES:
        ids = list(range(1, rec.catalogue.n_items + 1, max(1, rec.catalogue.n_items // sample)))
        items = rec.catalogue.ranked([-0.12345678901234567] * len(ids), ids)
        sizes = [len(_dumps(_item_dict(dataclasses.replace(item, rank=MAX_K)))) + 1 for item in items]
        _ITEM_BYTES[rec] = sum(sizes) / max(1, len(sizes))
    return _ITEM_BYTES[rec]


def _fragments(item: Item) -> tuple[str, ...]:
    """The JSON text of ``item`` cut where its per-answer fields go (JSON text never holds a raw NUL)."""
    return tuple(_TEMPLATE.format_map({n: _text(getattr(item, n)) for n in _OWN}).split("\0"))


_FRAGMENTS: weakref.WeakKeyDictionary[Recommender, dict[Any, tuple[str, ...]]] = weakref.WeakKeyDictionary()


def _items_json(rec: Recommender, items: list[Item], because: list[list[dict[str, Any]]] | None = None) -> str:
    """``_items`` as JSON text, from per-item fragments built once: no dict per item, so a large answer
    is quick to build and leaves nothing for the garbage collector to scan. ``because`` (an explanation per
    item) adds each item's ``because`` field."""
    cache = _FRAGMENTS.get(rec)
    if cache is None:
        cache = _FRAGMENTS.setdefault(rec, {})
    parts = []
    for i in items:
        frag = cache.get(i.item_id)
        if frag is None:
            frag = cache[i.item_id] = _fragments(i)
        score = float(i.score)
        if not math.isfinite(score):
            raise ValueError(f"score {score} of item {i.item_id!r} is not a JSON number")
        head, middle, tail = frag  # around rank and score (_PER_ANSWER)
        parts.append(f"{head}{i.rank}{middle}{score!r}{tail}")
    if because is not None:
        parts = [f'{p[:-1]},"because":{_text(b)}}}' for p, b in zip(parts, because)]
    return "[" + ",".join(parts) + "]"


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _text(value: Any) -> str:
    """``value`` as compact JSON text (``json.dumps`` with these options, without building an encoder per call)."""
    return _ENCODE(value)


def _answer(**fields: str) -> str:
    """A JSON object from fields already written as JSON text."""
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"

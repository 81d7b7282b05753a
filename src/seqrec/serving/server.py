"""Running the service: ``run`` serves a model folder with uvicorn (one process, or several workers made by
``app_from_env``, the factory uvicorn calls in each, configured through ``SEQREC_*`` variables), and ``_settle``
tunes a server process once its model is loaded."""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from seqrec.errors import SeqrecError
from seqrec.serving.app import _models_dir, create_app
from seqrec.serving.limits import ENV_LIMITS, Limits
from seqrec.serving.live import ENV_API_KEY
from seqrec.serving.policy import load_policy
from seqrec.serving.recommender import Recommender
from seqrec.serving.stores import open_store

log = logging.getLogger("seqrec.serve")
ENV_MODEL, ENV_BACKEND, ENV_THREADS = "SEQREC_MODEL_PATH", "SEQREC_BACKEND", "SEQREC_TORCH_THREADS"
ENV_INDEX = "SEQREC_INDEX"  # exact / hnsw / ivf (seqrec.serving.ann), for the workers of run
ENV_MODELS_DIR = "SEQREC_MODELS_DIR"  # POST /admin/reload loads folders inside it only
ENV_STORE, ENV_PROTECT_READS, ENV_CORS = "SEQREC_STORE", "SEQREC_PROTECT_READS", "SEQREC_CORS_ORIGINS"
ENV_POLICY = "SEQREC_EVENT_POLICY"  # a JSON file of event kinds (seqrec.serving.policy), for the workers of run
SWITCH_INTERVAL = 0.0005  # seconds; see _settle


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


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (used by ``run`` with several workers)."""
    path = os.environ.get(ENV_MODEL)
    if not path:
        raise SeqrecError(f"set {ENV_MODEL} to a model folder")
    _set_threads(os.environ.get(ENV_THREADS))
    backend = os.environ.get(ENV_BACKEND, "auto")
    store = open_store(os.environ[ENV_STORE]) if os.environ.get(ENV_STORE) else None
    index = os.environ.get(ENV_INDEX) or "exact"
    policy = load_policy(os.environ.get(ENV_POLICY) or None)
    app = create_app(
        Recommender.from_folder(path, backend=backend, index=index),
        limits=Limits.from_env(),
        store=store,
        event_policy=policy,
        api_key=os.environ.get(ENV_API_KEY) or None,
        protect_reads=os.environ.get(ENV_PROTECT_READS) == "1",
        cors_origins=json.loads(os.environ.get(ENV_CORS) or "[]"),
        model_path=path,
        backend=backend,
        close_store=True,
        models_dir=os.environ.get(ENV_MODELS_DIR) or None,
    )
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


def run(
    model_path: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    backend: str = "auto",
    threads: int | None = 1,
    access_log: bool = True,
    limits: Limits | None = None,
    store: str | os.PathLike | None = None,
    api_key: str | None = None,
    protect_reads: bool = False,
    cors_origins: Sequence[str] = (),
    index: str = "exact",
    models_dir: str | os.PathLike | None = None,
    event_policy: str | os.PathLike | None = None,
) -> None:
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
    with as many threads. ``index`` (``exact``, ``hnsw``, ``ivf``: ``seqrec.serving.ann``) is built as each worker loads.
    ``models_dir`` (``SEQREC_MODELS_DIR`` for the workers) limits ``POST /admin/reload`` to folders inside it.
    ``event_policy`` is a JSON file of event kinds (``seqrec.serving.policy``; default ``DEFAULT_POLICY``).
    """
    import uvicorn

    try:
        if not Path(model_path).is_dir():
            raise SeqrecError(f"{model_path}: no such model folder")
    except (OSError, ValueError) as e:
        raise SeqrecError(f"{model_path}: cannot read this path ({e})") from None
    if models_dir is not None:
        models_dir = _models_dir(models_dir)
    limits = limits or Limits.from_env()
    policy = load_policy(event_policy)  # checked before the workers start
    api_key = api_key if api_key is not None else os.environ.get(ENV_API_KEY) or None
    if api_key is not None and not api_key.strip():
        raise SeqrecError("--api-key: the key is empty; give a secret of a few dozen random characters")
    if workers > 1:
        if store is not None:
            open_store(store).close()  # created and checked once, before the workers open it
        os.environ.update(
            {
                ENV_MODEL: str(model_path),
                ENV_BACKEND: backend,
                ENV_INDEX: index,
                ENV_LIMITS: json.dumps(asdict(limits)),
                ENV_STORE: "" if store is None else str(store),
                ENV_API_KEY: api_key or "",
                ENV_PROTECT_READS: "1" if protect_reads else "",
                ENV_CORS: json.dumps(list(cors_origins)),
                ENV_MODELS_DIR: "" if models_dir is None else str(models_dir),
                ENV_POLICY: "" if event_policy is None else str(event_policy),
            }
        )
        if threads:
            os.environ[ENV_THREADS] = str(threads)
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config(
            "seqrec.serving.server:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
        )
        Multiprocess(config, sockets=[_listen_socket(host, port)]).run()
        return
    _set_threads(threads)
    events = open_store(store) if store is not None else None
    try:
        app = create_app(
            Recommender.from_folder(model_path, backend=backend, index=index),
            limits=limits,
            store=events,
            api_key=api_key,
            protect_reads=protect_reads,
            cors_origins=cors_origins,
            model_path=model_path,
            backend=backend,
            reload_on_sighup=True,
            close_store=True,
            models_dir=models_dir,
            event_policy=policy,
        )
        _settle()
        uvicorn.run(app, host=host, port=port, access_log=access_log)
    finally:
        if events is not None:
            events.close()

"""``GET /health``, ``/ready``, ``/model``, ``/metrics`` and the web page at ``/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from seqrec.serving.generation import generation_info
from seqrec.serving.http import _StrictRoute
from seqrec.serving.routes.service import Service
from seqrec.serving.schemas import HealthResponse, ModelResponse, ReadyResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def router(svc: Service) -> APIRouter:
    api = APIRouter(route_class=_StrictRoute, tags=["operations"])

    @api.get("/health", response_model=HealthResponse)
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @api.get(
        "/ready",
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse, "description": "model not loaded"}},
    )
    async def ready() -> Any:
        r = svc.app.state.recommender
        if r is None:
            return JSONResponse({"ready": False, "model": None}, status_code=503)
        return {"ready": True, "model": r.name}

    @api.get("/model", response_model=ModelResponse, dependencies=svc.reads)
    async def model_info() -> dict[str, Any]:
        return {**svc.rec().info(), "generation": generation_info(svc.app)}

    @api.get(
        "/metrics",
        response_class=Response,
        dependencies=svc.reads,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}
        },
    )
    async def metrics() -> Response:
        return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    return api

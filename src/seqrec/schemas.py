"""Request and response models of the HTTP service (``seqrec.serve``).

Requests accept the names of the older API as aliases (``user_history``, ``top_k``,
``exclude_history``, ``user_histories``); the OpenAPI schema shows the current names.
Raw ids are JSON integers (|id| < 2**53, exact in JavaScript) or strings (at most 256 characters): ``50`` and ``"50"`` find
the same item.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, Strict

MAX_K = 1000
MAX_HISTORY = 10_000



def _integral(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer; so do we (request models are otherwise strict: "3" is no int)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


RawId = (Annotated[int, Strict(), Field(ge=-(2**53 - 1), le=2**53 - 1), BeforeValidator(_integral)]
         | Annotated[str, Strict(), Field(max_length=256)])
K = Annotated[int, Strict(), Field(ge=1, le=MAX_K, description="how many items to return (1..1000)"),
              BeforeValidator(_integral)]
QueryK = Annotated[int, Field(ge=1, le=MAX_K, description="how many items to return (1..1000)")]  # "10" in a URL


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# ---------------------------------------------------------------------------- requests
class RecommendRequest(BaseModel):
    """A history of raw item ids, oldest first."""

    model_config = ConfigDict(populate_by_name=True, strict=True)

    history: list[RawId] = Field(
        validation_alias=_alias("history", "user_history"), max_length=MAX_HISTORY,
        description="raw item ids, oldest first (alias: user_history)",
    )
    k: K = Field(10, validation_alias=_alias("k", "top_k"))
    exclude_seen: bool = Field(True, validation_alias=_alias("exclude_seen", "exclude_history"))
    include: list[RawId] | None = Field(None, max_length=MAX_HISTORY, description="only these raw ids are candidates")
    exclude: list[RawId] | None = Field(None, max_length=MAX_HISTORY, description="these raw ids are never returned")


class BatchRequest(BaseModel):
    """Many histories at once; more than the service's batch limit is answered with 413."""

    model_config = ConfigDict(populate_by_name=True, strict=True)

    histories: list[Annotated[list[RawId], Field(max_length=MAX_HISTORY)]] = Field(
        validation_alias=_alias("histories", "user_histories"), description="alias: user_histories"
    )
    k: K = Field(10, validation_alias=_alias("k", "top_k"))
    exclude_seen: bool = Field(True, validation_alias=_alias("exclude_seen", "exclude_history"))


# ---------------------------------------------------------------------------- responses
class ItemOut(BaseModel):
    rank: int
    item_id: int | str
    score: float
    title: str | None
    genres: list[str]


class RecommendResponse(BaseModel):
    items: list[ItemOut]
    unknown_items: list[int | str] = Field(description="history ids not in the catalogue (skipped)")
    fallback: bool = Field(description="true when no history id was known: popularity ranking")
    model: str
    took_ms: float


class BatchResult(BaseModel):
    items: list[ItemOut]
    unknown_items: list[int | str]
    fallback: bool


class BatchResponse(BaseModel):
    results: list[BatchResult]
    model: str
    took_ms: float


class UserRecommendResponse(BaseModel):
    user_id: str
    items: list[ItemOut]
    fallback: bool
    model: str
    took_ms: float


class ItemInfo(BaseModel):
    item_id: int | str
    title: str | None
    genres: list[str]
    year: int | None
    popularity: int = Field(description="interactions in the training data")


class SimilarResponse(BaseModel):
    item: ItemInfo
    items: list[ItemOut]
    method: Literal["embedding", "cooccurrence"]
    model: str
    took_ms: float


class SearchResponse(BaseModel):
    query: str
    items: list[ItemInfo]
    took_ms: float


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    model: str | None


class ModelResponse(BaseModel):
    name: str
    backend: str
    scorer: str
    max_len: int
    n_items: int
    has_embeddings: bool
    config: dict[str, Any]
    metrics: dict[str, Any]
    data: dict[str, Any]
    data_name: str | None


class ErrorResponse(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad input"},
    404: {"model": ErrorResponse, "description": "unknown user or item"},
    413: {"model": ErrorResponse, "description": "request body (or batch) too large"},
}

"""Request and response models of the HTTP service (``seqrec.serving.app``).

Requests accept the names of the older API as aliases (``user_history``, ``top_k``,
``exclude_history``, ``user_histories``); the OpenAPI schema shows the current names.
Raw ids are JSON integers (|id| < 2**53, exact in JavaScript) or strings (at most 256 characters): ``50`` and ``"50"`` find
the same item. ``ItemOut``, an item of an answer, is made from the fields of ``seqrec.serving.catalogue.Item``.

Request bodies are read strictly first (``seqrec.serving.strict_json``).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, Strict, create_model

from seqrec.serving.catalogue import Item
from seqrec.serving.shop_schemas import (  # noqa: F401 (request and answer parts of the shop rules, used here)
    EXPLAIN_FIELD,
    FEWER,
    FILTER_FIELD,
    AvailableRequest,
    AvailableResponse,
    Because,
    EventType,
    Filter,
    FilterQuery,
    query_filter,
)

MAX_K = 1000
MAX_HISTORY = 10_000


RawId = Annotated[int, Strict(), Field(ge=-(2**53 - 1), le=2**53 - 1)] | Annotated[str, Strict(), Field(max_length=256)]
K = Annotated[int, Strict(), Field(ge=1, le=MAX_K, description="how many items to return (1..1000)")]
QueryK = Annotated[int, Field(ge=1, le=MAX_K, description="how many items to return (1..1000)")]  # "10" in a URL


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# ---------------------------------------------------------------------------- requests
class RecommendRequest(BaseModel):
    """A history of raw item ids, oldest first."""

    model_config = ConfigDict(populate_by_name=True, strict=True)

    history: list[RawId] = Field(
        validation_alias=_alias("history", "user_history"),
        max_length=MAX_HISTORY,
        description="raw item ids, oldest first (alias: user_history)",
    )
    k: K = Field(10, validation_alias=_alias("k", "top_k"))
    exclude_seen: bool = Field(True, validation_alias=_alias("exclude_seen", "exclude_history"))
    include: list[RawId] | None = Field(None, max_length=MAX_HISTORY, description="only these raw ids are candidates")
    exclude: list[RawId] | None = Field(None, max_length=MAX_HISTORY, description="these raw ids are never returned")
    filter: Filter = FILTER_FIELD
    explain: bool = EXPLAIN_FIELD


class BatchRequest(BaseModel):
    """Many histories at once; more than the service's batch limit is answered with 413."""

    model_config = ConfigDict(populate_by_name=True, strict=True)

    histories: list[Annotated[list[RawId], Field(max_length=MAX_HISTORY)]] = Field(
        validation_alias=_alias("histories", "user_histories"), description="alias: user_histories"
    )
    k: K = Field(10, validation_alias=_alias("k", "top_k"))
    exclude_seen: bool = Field(True, validation_alias=_alias("exclude_seen", "exclude_history"))
    filter: Filter = FILTER_FIELD
    explain: bool = EXPLAIN_FIELD


# ---------------------------------------------------------------------------- responses
def _model_of(cls: type, name: str) -> type[BaseModel]:
    """A pydantic model named ``name`` with the fields of dataclass ``cls``: same order, types, all required,
    a field's ``help`` metadata as its description."""
    hints = typing.get_type_hints(cls)
    return create_model(
        name,
        __module__=__name__,
        **{  # type: ignore[call-overload]
            f.name: (hints[f.name], Field(..., description=f.metadata.get("help"))) for f in dataclasses.fields(cls)
        },
    )


if TYPE_CHECKING:
    ItemOut = BaseModel
else:
    ItemOut = _model_of(Item, "ItemOut")  # the fields of seqrec.serving.catalogue.Item


class RecommendedItem(ItemOut):
    because: list[Because] | None = Field(None, description="with explain: the history items behind this item")


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    unknown_items: list[int | str] = Field(description="history ids not in the catalogue (skipped)")
    fallback: bool = Field(description="true when no history id was known: popularity ranking")
    fewer_than_k: bool = FEWER
    model: str
    took_ms: float


class BatchResult(BaseModel):
    items: list[RecommendedItem]
    unknown_items: list[int | str]
    fallback: bool
    fewer_than_k: bool = FEWER


class BatchResponse(BaseModel):
    results: list[BatchResult]
    model: str
    took_ms: float


class UserRecommendResponse(BaseModel):
    user_id: str
    items: list[RecommendedItem]
    fallback: bool
    fewer_than_k: bool = FEWER
    model: str
    took_ms: float


class ItemInfo(BaseModel):
    item_id: int | str
    title: str | None
    genres: list[str]
    year: int | None
    popularity: int = Field(description="interactions in the training data")
    available: bool = Field(True, description="false: never recommended (PUT /admin/items/{item_id}/available)")


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
    generation: dict[str, Any] | None = (
        None  # the recorded model generation this worker holds (counter, path, digest, worker)
    )


class ErrorResponse(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad input"},
    404: {"model": ErrorResponse, "description": "unknown user or item"},
    413: {
        "model": ErrorResponse,
        "description": "request body, batch or answer over a limit of the service (the message names it)",
    },
    503: {"model": ErrorResponse, "description": "model not loaded yet, or too many batch requests waiting"},
}


# ---------------------------------------------------------------------------- the live service
from pydantic import AfterValidator, RootModel, model_validator  # noqa: E402

MAX_TS = 1e11  # epoch seconds (the year 5138); larger values are almost surely milliseconds


def _event_id(value: int | str) -> int | str:
    from seqrec.data.columns import id_problem

    problem = id_problem(value)  # the one rule for an id given alone (seqrec.data.columns)
    if problem is not None:
        raise ValueError(problem)
    return value


EventId = Annotated[RawId, AfterValidator(_event_id)]


class EventIn(BaseModel):
    """One interaction: a user consumed an item at ``ts`` (epoch seconds; the server's time when absent)."""

    model_config = ConfigDict(populate_by_name=True, strict=True, extra="forbid")

    user_id: EventId
    item_id: EventId
    type: EventType = None
    ts: Annotated[float, Strict(), Field(ge=0, le=MAX_TS)] | None = Field(
        None,
        validation_alias=_alias("ts", "timestamp"),
        description="epoch seconds (alias: timestamp); absent: the time the server received the request. "
        "Send it to make a retried request idempotent: (user_id, item_id, ts) is stored once",
    )


class EventsRequest(RootModel[list[EventIn]]):
    """One event, or a list of events (a single object is read as a list of one)."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class EventsResponse(BaseModel):
    stored: int = Field(description="events newly stored (durable when this answer is sent)")
    duplicates: int = Field(description="events already stored, or repeated in this request (not stored again)")
    unknown_items: list[int | str] = Field(
        description="item ids the model does not know (stored, but skipped when scoring until a model knows them)"
    )
    took_ms: float


class HistoryItem(BaseModel):
    item_id: int | str
    ts: float | None = Field(description="epoch seconds; null for the training history")
    source: Literal["training", "store"]
    known: bool = Field(description="whether the model knows the item (unknown ones are skipped when scoring)")
    title: str | None
    type: str | None = Field(None, description="the stored event's type (null: untyped, or the training history)")


class HistoryResponse(BaseModel):
    user_id: str
    items: list[HistoryItem] = Field(
        description="the latest items, oldest first: the training history, then the user's stored events by ts"
    )
    training_items: int = Field(description="length of the user's training history (0 for a new user)")
    store_events: int = Field(description="the user's events in the store")
    model: str


class UserRecommendations(UserRecommendResponse):
    unknown_items: list[int | str] = Field(
        description="item ids from the user's stored events that the model does not know (skipped)"
    )
    store_events: int = Field(description="the user's stored events read after the training history")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        None, description="a model folder on the server; absent: the folder the service was started with"
    )


class NewItem(BaseModel):
    """An item nobody has interacted with yet: its id and the catalogue fields its features come from."""

    model_config = ConfigDict(extra="forbid")

    item_id: EventId = Field(
        description="an id by the rule of POST /events: an integer within +-(2**53 - 1) or "
        "text (at most 256 characters; not empty, NaN, null or holding NUL)"
    )
    title: Annotated[str, Field(max_length=2000)] | None = None
    genres: Annotated[list[Annotated[str, Field(max_length=400)]], Field(max_length=1000)] | None = None
    attributes: Annotated[list[Annotated[str, Field(max_length=400)]], Field(max_length=1000)] | None = None
    year: Annotated[int, Field(ge=0, le=10_000)] | None = None


class ItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[NewItem], Field(min_length=1, max_length=1000)]


class ItemsResponse(BaseModel):
    added: list[int | str] = Field(description="the ids added, in order")
    unknown_values: dict[str, list[str]] = Field(
        description="feature values the model's vocabulary does not know (left out), per field"
    )
    without_features: list[int | str] = Field(description="added items with no known feature (ranked low)")
    n_items: int
    took_ms: float


class ReloadResponse(BaseModel):
    model: str = Field(description="the model now serving")
    previous: str | None = Field(description="the model it replaced")
    path: str
    n_items: int
    took_ms: float


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": ErrorResponse, "description": "no API key (Authorization: Bearer KEY or X-API-Key)"},
    403: {"model": ErrorResponse, "description": "wrong API key, or no key configured for the service"},
}

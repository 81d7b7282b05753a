"""Request and answer parts of the shop rules (``seqrec.serving.schemas`` uses them): filters on item facts,
explanations, availability and event types."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, Strict

from seqrec.serving.filters import FilterError

MAX_FILTER_TEXT = 8000  # characters of a filter given in a URL

Filter = Annotated[dict[str, Annotated[dict[str, Any], Field(max_length=8)]], Field(max_length=64)] | None
FILTER_HELP = (
    'conditions on catalogue fields, all of which must hold, e.g. {"genres": {"any": ["Comedy"]}, '
    '"year": {"gte": 1990, "lte": 1999}, "item_id": {"none": [50]}}; operators any, all, none (list '
    "fields; item_id and text fields: any, none), gte, lte (numeric fields). An unknown field or a "
    "wrong type is a 422 naming it"
)
FILTER_FIELD: Any = Field(None, description=FILTER_HELP)
FilterQuery = Annotated[str | None, Query(max_length=MAX_FILTER_TEXT, description="as JSON text: " + FILTER_HELP)]
EXPLAIN_FIELD: Any = Field(
    False,
    description="add to each item 'because': up to 3 history items that raised its "
    "score most, with their share (leave-one-out score drops)",
)
FEWER: Any = Field(
    False,
    description="fewer than k items passed the filter, the exclusions and availability: the answer holds what there is",
)
EventType = (
    Annotated[
        str,
        Strict(),
        Field(
            pattern=r"^[a-z][a-z0-9_-]{0,31}$",
            description="the kind of event (view, purchase, dislike, or a type "
            "of the service's event policy); absent: as a view",
        ),
    ]
    | None
)


def query_filter(text: str | None) -> dict[str, Any] | None:
    """The filter given as JSON text in a URL (``?filter=...``); a ``FilterError`` when it is not JSON."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise FilterError((), f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise FilterError((), f"expected an object of field conditions, got {type(value).__name__}")
    return value


class Because(BaseModel):
    item_id: int | str
    title: str | None
    drop: float = Field(description="the item's score less its score without this history item")
    share: float = Field(description="this history item's part of the positive drops (0..1)")


class AvailableRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    available: bool = Field(description="false: the item is never recommended until made available again")


class AvailableResponse(BaseModel):
    item_id: int | str
    available: bool
    changed: bool = Field(description="whether this request changed it")
    unavailable: int = Field(description="items now unavailable")


def _filter_schema(fields: dict[str, str]) -> dict[str, Any]:
    """The JSON schema of a filter over a catalogue with ``fields`` (``FilterIndex.fields``)."""
    text = {"type": "array", "items": {"type": "string"}}
    raw = {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}
    ops = {
        "id": {"any": raw, "none": raw},
        "list": {"any": text, "all": text, "none": text},
        "text": {"any": text, "none": text},
        "number": {"gte": {"type": "number"}, "lte": {"type": "number"}},
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            name: {"type": "object", "properties": ops[kind], "additionalProperties": False, "minProperties": 1}
            for name, kind in fields.items()
        },
    }


def openapi_rules(schema: dict[str, Any], fields: dict[str, str] | None, types: list[str]) -> None:
    """Make the generated ``schema`` say what the service accepts: the filter's fields and operators (those of the
    catalogue served when the schema is made; as JSON content of the ``filter`` query parameter too) and the
    event types of the policy."""
    parts = schema["components"]["schemas"]
    if fields is not None:
        one = _filter_schema(fields)
        for name in ("RecommendRequest", "BatchRequest"):
            prop = parts[name]["properties"]["filter"]
            prop["anyOf"] = [one, {"type": "null"}]
        for path in schema["paths"].values():
            for op in path.values():
                for param in op.get("parameters", []):
                    if param.get("name") == "filter" and param.get("in") == "query":
                        param.pop("schema", None)
                        param["content"] = {"application/json": {"schema": one}}
    kind = parts["EventIn"]["properties"]["type"]
    kind["anyOf"] = [{"type": "string", "enum": list(types)}, {"type": "null"}]

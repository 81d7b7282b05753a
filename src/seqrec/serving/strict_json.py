"""The service's strict JSON reader: ``parse_json_body`` is stricter than ``json.loads``. The body must be UTF-8;
``NaN``, ``Infinity``, ``-Infinity`` and numbers beyond the float range (``1e400``) are refused, and so are
strings (and keys) holding an unpaired UTF-16 surrogate escape (``"\\ud800"``); each is one 422 error whose
``loc`` names the field (``["body", "history", 0]``). A number written with an integral value (``3.0``, ``1e2``)
is read as that integer, exactly (JSON Schema counts it as an integer; so do we)."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

MAX_BODY_ERRORS = 20  # problems listed per refused body


class BodyError(ValueError):
    """A request body that is not strict JSON; ``errors`` are FastAPI-style validation errors."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class _NonFinite:
    """Stands in for a number JSON cannot carry, until its place in the body is known."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _BadKey:
    """Stands in for an object key that holds an unpaired surrogate, in document order."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # only an escape can put a surrogate into decoded text


def _unpaired(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(s: str) -> str:
    """A string with any unpaired surrogate written as its escape, so that it can be echoed."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_json_body(body: bytes) -> Any:
    """The JSON value of a request body; raises ``BodyError`` naming each field that strict JSON refuses."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BodyError(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body"],
                    "input": None,
                    "msg": f"the body is not UTF-8 (byte 0x{body[e.start]:02x} at offset {e.start})",
                }
            ]
        ) from None
    marked: list[int] = []

    def constant(name: str) -> _NonFinite:  # NaN, Infinity, -Infinity
        marked.append(1)
        return _NonFinite(name)

    def number(literal: str) -> Any:
        value = float(literal)
        if not math.isfinite(value):  # 1e400
            marked.append(1)
            return _NonFinite(literal)
        if value.is_integer():
            exact = Decimal(literal)
            if exact == exact.to_integral_value():
                return int(exact)
        return value

    try:
        value = json.JSONDecoder(parse_constant=constant, parse_float=number).decode(text)
    except json.JSONDecodeError as e:
        raise BodyError(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", e.pos],
                    "input": None,
                    "ctx": {"error": e.msg},
                    "msg": f"JSON decode error: {e.msg} at line {e.lineno} column {e.colno}",
                }
            ]
        ) from None
    except RecursionError:
        raise BodyError(
            [{"type": "json_invalid", "loc": ["body"], "input": None, "msg": "JSON nested too deeply"}]
        ) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise BodyError(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body"],
                    "input": None,
                    "msg": f"JSON value out of range ({str(e).split(':')[0].split(';')[0]})",
                }
            ]
        ) from None
    if marked or _SURROGATE_ESCAPE.search(text):
        errors = _strict_problems(value)
        if errors:
            raise BodyError(errors)
    return value


def _strict_problems(value: Any) -> list[dict[str, Any]]:
    """Non-finite numbers and unpaired surrogates in a parsed body, in document order, with their paths."""
    errors: list[dict[str, Any]] = []
    stack: list[tuple[Any, tuple]] = [(value, ("body",))]
    while stack and len(errors) < MAX_BODY_ERRORS:
        v, path = stack.pop()
        if isinstance(v, _NonFinite):
            errors.append(
                {
                    "type": "finite_number",
                    "loc": list(path),
                    "input": v.text,
                    "msg": f"Input should be a finite number; {v.text} is not a JSON number",
                }
            )
        elif isinstance(v, str):
            if _unpaired(v):
                errors.append(
                    {
                        "type": "string_unicode",
                        "loc": list(path),
                        "input": _shown(v),
                        "msg": "String should be valid Unicode; it holds an unpaired surrogate escape",
                    }
                )
        elif isinstance(v, _BadKey):
            errors.append(
                {
                    "type": "string_unicode",
                    "loc": list(path),
                    "input": v.text,
                    "msg": "Key should be valid Unicode; it holds an unpaired surrogate escape",
                }
            )
        elif isinstance(v, dict):
            for key in reversed(list(v)):
                bad = _unpaired(key)
                stack.append((_BadKey(_shown(key)), (*path, _shown(key))) if bad else (v[key], (*path, key)))
        elif isinstance(v, list):
            stack.extend((v[i], (*path, i)) for i in range(len(v) - 1, -1, -1))
    return errors

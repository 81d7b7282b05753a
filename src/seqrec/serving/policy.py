"""Kinds of events and what each does: the event policy.

``POST /events`` takes an optional ``type`` (a short name: a lower-case letter, then up to 31 letters,
digits, ``_`` or ``-``). The policy says per type

* ``history``: whether its events enter the history the model reads (when recommending, and when training
  with ``seqrec train --from-store``);
* ``exclude``: whether its item is removed from that user's later recommendations: ``"always"``, or
  ``"seen"`` (only when the request asks ``exclude_seen``, as for any history item).

The default (``DEFAULT_POLICY``): ``view`` enters the history, excluded with ``exclude_seen``; ``purchase``
enters the history and is always excluded; ``dislike`` stays out of the history and is always excluded. An
event without a type behaves as events always did (as a ``view``). ``--event-policy FILE`` (JSON, e.g.
``{"view": {"history": true, "exclude": "seen"}, "wishlist": {"history": false, "exclude": "seen"}}``)
replaces the default; a type the policy does not name is refused (422 naming the known types).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seqrec.errors import SeqrecError

TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
EXCLUDES = ("always", "seen")


@dataclass(frozen=True, slots=True)
class EventKind:
    history: bool = True  # the event enters the history the model reads
    exclude: str = "seen"  # "always": never recommended to the user again; "seen": only with exclude_seen


UNTYPED = EventKind()


class EventPolicy:
    """Per event type, an ``EventKind``; ``None`` (an untyped event) is always ``UNTYPED``."""

    def __init__(self, kinds: Mapping[str, EventKind]) -> None:
        for name, kind in kinds.items():
            if not TYPE_NAME.fullmatch(name):
                raise SeqrecError(f"event type {name!r}: a lower-case letter, then up to 31 letters, digits, _ or -")
            if kind.exclude not in EXCLUDES:
                raise SeqrecError(f"event type {name!r}: exclude must be one of {EXCLUDES}, got {kind.exclude!r}")
        self.kinds = dict(kinds)

    def kind(self, type_: str | None) -> EventKind:
        if type_ is None:
            return UNTYPED
        kind = self.kinds.get(type_)
        if kind is None:
            raise SeqrecError(f"unknown event type {type_!r}; the event policy knows {', '.join(self.kinds)}")
        return kind

    def check(self, type_: str | None) -> None:
        """``SeqrecError`` for a type the policy does not know."""
        self.kind(type_)

    def in_history(self, type_: str | None) -> bool:
        """Whether events of ``type_`` enter the history (an unknown stored type: yes, as untyped)."""
        return self.kinds.get(type_, UNTYPED).history if type_ is not None else True

    def excludes(self, type_: str | None, exclude_seen: bool) -> bool:
        """Whether an event of ``type_`` removes its item from the user's recommendations."""
        kind = self.kinds.get(type_, UNTYPED) if type_ is not None else UNTYPED
        return kind.exclude == "always" or (exclude_seen and kind.exclude == "seen")

    def to_dict(self) -> dict[str, Any]:
        return {n: {"history": k.history, "exclude": k.exclude} for n, k in self.kinds.items()}

    @classmethod
    def from_dict(cls, value: Any, source: str = "the event policy") -> EventPolicy:
        if not isinstance(value, Mapping):
            raise SeqrecError(f"{source}: expected an object of event types, got {type(value).__name__}")
        kinds = {}
        for name, spec in value.items():
            if not isinstance(spec, Mapping) or set(spec) - {"history", "exclude"}:
                raise SeqrecError(
                    f'{source}: type {name!r}: expected {{"history": true|false, '
                    f'"exclude": "always"|"seen"}}, got {spec!r}'
                )
            history = spec.get("history", True)
            if not isinstance(history, bool):
                raise SeqrecError(f"{source}: type {name!r}: history must be true or false, got {history!r}")
            kinds[str(name)] = EventKind(history, spec.get("exclude", "seen"))
        try:
            return cls(kinds)
        except SeqrecError as e:
            raise SeqrecError(f"{source}: {e}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> EventPolicy:
        try:
            text = open(path, encoding="utf-8").read()
            value = json.loads(text)
        except (OSError, ValueError) as e:
            raise SeqrecError(f"{path}: cannot read the event policy ({e})") from None
        return cls.from_dict(value, str(path))


DEFAULT_POLICY = EventPolicy(
    {"view": EventKind(True, "seen"), "purchase": EventKind(True, "always"), "dislike": EventKind(False, "always")}
)


def load_policy(path: str | os.PathLike | None) -> EventPolicy:
    """The policy in ``path`` (JSON), or ``DEFAULT_POLICY``."""
    return DEFAULT_POLICY if path is None else EventPolicy.from_file(path)

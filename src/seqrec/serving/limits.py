"""What one request to the service may cost: ``Limits``, with every default and its help in one place.

``seqrec.serving.app`` answers a request over a limit with 413 naming it (``max_body_bytes``, ``max_batch``,
``max_batch_results``, ``max_response_bytes``, ``max_events``) and sizes its thread pools from the rest. The limits
come from ``Limits()``, changed by ``SEQREC_LIMITS`` (a JSON object of fields, read by ``seqrec serve``
and the multi-worker factory) and by ``seqrec serve``'s ``--limit-*`` flags, which are made from the
fields here. No web framework is imported, so the command line can build its flags cheaply.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields

from seqrec.errors import SeqrecError, check_config_keys

ENV_LIMITS = "SEQREC_LIMITS"


def _limit(default: int, help: str, least: int = 1) -> int:
    return field(default=default, metadata={"help": help, "least": least})


@dataclass(frozen=True)
class Limits:
    """What one request may cost; every default is here. Over a limit is answered 413 naming it."""

    max_body_bytes: int = _limit(1_000_000, "request body in bytes, by Content-Length or as streamed")
    max_batch: int = _limit(1000, "histories in one batch request")
    max_batch_results: int = _limit(100_000, "histories x k in one batch request")
    max_response_bytes: int = _limit(
        16_000_000, "estimated size in bytes of one answer, from the catalogue's mean item size"
    )
    # One at a time: a second concurrent batch request adds a thread contending for the GIL, and
    # cheap requests beside two heavy ones had p99 70 ms with 2 against 49 ms with 1 (one worker, 2 cores).
    batch_workers: int = _limit(1, "batch requests scored at once")
    batch_queue: int = _limit(8, "batch requests waiting beyond those; more are answered 503", least=0)
    score_workers: int = _limit(4, "threads for single-history requests")
    max_events: int = _limit(1000, "events in one POST /events request")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            least = f.metadata["least"]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SeqrecError(f"limit {f.name} must be an integer >= {least}, got {value!r}")

    @classmethod
    def from_env(cls, text: str | None = None) -> Limits:
        """Defaults, changed by the JSON object in ``SEQREC_LIMITS`` (or ``text``) when set."""
        text = os.environ.get(ENV_LIMITS) if text is None else text
        if not text:
            return cls()
        try:
            changes = json.loads(text)
        except json.JSONDecodeError as e:
            raise SeqrecError(
                f'{ENV_LIMITS}: not valid JSON ({e.msg}); expected an object like {{"max_batch_results": 50000}}'
            ) from e
        return cls(**check_config_keys(cls, changes, ENV_LIMITS))

"""The one user-facing exception type, and checks that several configurations share."""

MAX_SEED = 2**32 - 1  # seeds are integers in [0, MAX_SEED]: numpy's generators refuse negative ones


class SeqrecError(Exception):
    """A problem with the user's input (file, field, option) that the user can fix.

    The message names the file, line or field and what was expected. The CLI prints it and exits 2;
    the service turns it into a 4xx. Any other exception is a bug and keeps its traceback.
    """


def check_config_keys(cls: type, d: object, what: str) -> dict:
    """A JSON object for dataclass ``cls``: refuse non-objects and unknown keys, naming them."""
    from dataclasses import fields

    if not isinstance(d, dict):
        raise SeqrecError(f"{what}: expected a JSON object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise SeqrecError(f"{what}: unknown keys {unknown}; allowed: {sorted(known)}")
    return d

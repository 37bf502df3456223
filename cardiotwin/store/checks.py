"""Checks of what callers hand to the store: pseudonyms, purposes, kinds and JSON payloads.

Each check returns the (normalised) value or raises :class:`~cardiotwin.errors.InputError` with
a message saying what is expected. They run before any transaction, so a rejected input is not
audited (it never reached the data).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cardiotwin.errors import InputError

__all__ = ["check_pseudonym", "check_purpose", "check_kind", "json_native"]

_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KIND = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")


def check_pseudonym(pseudonym: str) -> str:
    """Validate a pseudonym (1–64 characters from ``[A-Za-z0-9._-]``) and return it."""
    if not isinstance(pseudonym, str) or not _PSEUDONYM.fullmatch(pseudonym):
        raise InputError(
            "pseudonym must be 1-64 characters from [A-Za-z0-9._-] starting with a letter or "
            "digit (the value is not repeated here in case it is an identifier); use the "
            "pseudonym from de-identification, never a name "
            "or hospital ID"
        )
    return pseudonym


def check_purpose(purpose: str) -> str:
    """Validate the purpose of an access (1–200 characters) and return it stripped."""
    if not isinstance(purpose, str) or not purpose.strip() or len(purpose) > 200:
        raise InputError(
            "purpose must be a non-empty text of at most 200 characters saying why the data is "
            f"accessed (e.g. 'treatment planning'), got {purpose!r}"
        )
    return purpose.strip()


def check_kind(kind: str, *, what: str) -> str:
    """Validate the kind of a result or artifact (lower case, e.g. ``"flow.steady"``).

    Parameters
    ----------
    kind : str
        The kind to check.
    what : str
        What it is the kind of (``"result"``, ``"artifact"``), for the message.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InputError(f"{what} kind must match {_KIND.pattern}, got {kind!r}")
    return kind


def json_native(what: str, value: Any) -> Any:
    """``value`` as JSON-native data (what the database will return), or InputError.

    Objects with a ``to_dict()`` method are converted first; arrays (``tolist()``) and paths are
    accepted inside; NaN and infinities are refused.
    """
    if hasattr(value, "to_dict") and callable(value.to_dict):
        value = value.to_dict()
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{what} must be JSON-serialisable without NaN/inf ({exc}); convert arrays with "
            ".tolist() and NaN with None"
        ) from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")

"""Guards that keep direct patient identifiers out of stored data.

One home for the nested-key search used by the store (patient metadata) and the twin state; each
caller passes its own list of forbidden keys (the twin must allow e.g. a boundary cap's ``name``,
patient metadata must not).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any


def normalise_key(key: object) -> str:
    """``"Patient_Name"``, ``"patient name"`` and ``"patientName"`` all become ``"patientname"``."""
    return re.sub(r"[\s_\-]", "", str(key)).lower()


def find_identifying_key(value: Any, path: str, keys: Collection[str]) -> str | None:
    """Path (``"meta.patient.name"``) of the first dict key in ``value`` whose normalised form is
    in ``keys``, searching nested dicts and lists; None when there is none."""
    if isinstance(value, dict):
        for k, v in value.items():
            if normalise_key(k) in keys:
                return f"{path}.{k}"
            found = find_identifying_key(v, f"{path}.{k}", keys)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = find_identifying_key(v, f"{path}[{i}]", keys)
            if found:
                return found
    return None

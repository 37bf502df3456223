"""JSON of study inputs and results (numpy scalars and arrays converted)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["to_json"]


def to_json(obj: Any) -> str:
    """Indented JSON of ``obj``; numpy scalars become numbers, other objects their ``str``."""
    return json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o), indent=2)

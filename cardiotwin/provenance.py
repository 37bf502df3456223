"""Provenance: how every result was made (inputs' hashes, parameters, code version, timings)."""

from __future__ import annotations

import hashlib
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardiotwin import __version__


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(paths: list[Path] | list[str]) -> str:
    """Hex SHA-256 over the contents of several files, independent of their order."""
    digests = sorted(sha256_file(p) for p in paths)
    return sha256_bytes("\n".join(digests).encode())


@dataclass
class Provenance:
    """Record of how a result was made.

    Attributes
    ----------
    step : str
        Name of the step that made the result (``"segment"``, ``"flow.steady"``...).
    inputs : dict
        Input name → SHA-256 hex digest (or another stable identifier).
    parameters : dict
        The parameters the step ran with (JSON-serialisable).
    timings_s : dict
        Stage name → wall-clock seconds.
    """

    step: str
    inputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    code_version: str = __version__
    python: str = field(default_factory=platform.python_version)
    created_utc: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Context manager adding the wall-clock time of a block to ``timings_s[stage]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[stage] = self.timings_s.get(stage, 0.0) + time.perf_counter() - t0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

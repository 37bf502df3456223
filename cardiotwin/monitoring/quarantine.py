"""The quarantine: every monitoring record that was not accepted, with the reason.

Nothing a reader or a check refuses is dropped: it becomes a :class:`Rejection` (source, record,
field, reason, value received, expected range, the raw text when there is one) kept by a
:class:`Quarantine`. The type is plain data (:meth:`Rejection.to_dict`) so that the store can
persist it later; for now a quarantine lives in memory and can be written to and read from JSON
lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cardiotwin.errors import ImplausibleValueError, ObservationError, UnitError, UnknownCodeError

MAX_RAW_CHARS = 2000
"""The raw text kept with a rejection is cut to this many characters (hostile input can be large)."""

KINDS = ("malformed", "unknown-code", "unit", "implausible", "out-of-order", "conflict",
         "status", "subject")
"""What a :class:`Rejection` can be for."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused monitoring record.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    source : str
        The file, message or stream (``"fhir:vitals.json"``).
    record : str
        The record within the source (``"Observation/hr-1"``, ``"OBX 3"``, ``"row 12"``).
    field : str
        The field at fault (``"valueQuantity.code"``, ``"OBX-6"``), ``""`` for the whole record.
    reason : str
        The full message, as the error said it.
    value : str
        The value received, as text (cut to :data:`MAX_RAW_CHARS`).
    expected : str
        The range or set expected, ``""`` when there is none.
    subject : str
        The subject, when it was known.
    raw : str
        The raw record (JSON, HL7 segment, CSV row), cut to :data:`MAX_RAW_CHARS`.
    """

    kind: str
    source: str
    record: str
    field: str
    reason: str
    value: str = ""
    expected: str = ""
    subject: str = ""
    raw: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"rejection kind {self.kind!r} is not one of {KINDS}")
        for name in ("value", "raw"):
            text = getattr(self, name)
            if len(text) > MAX_RAW_CHARS:
                object.__setattr__(self, name, text[:MAX_RAW_CHARS] + "…")

    @classmethod
    def from_error(cls, err: ObservationError, *, source: str, record: str = "",
                   subject: str = "", raw: str = "", kind: str | None = None) -> Rejection:
        """A rejection carrying what an :class:`~cardiotwin.errors.ObservationError` says."""
        if kind is None:
            kind = ("unknown-code" if isinstance(err, UnknownCodeError) else
                    "unit" if isinstance(err, UnitError) else
                    "implausible" if isinstance(err, ImplausibleValueError) else
                    "subject" if err.field == "subject" else "malformed")
        return cls(kind=kind, source=source, record=record or err.record, field=err.field,
                   reason=str(err), value="" if err.value is None else str(err.value),
                   expected=err.expected, subject=subject, raw=raw)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rejection:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class Quarantine:
    """The rejected records, in the order they were refused.

    Examples
    --------
    >>> q = Quarantine()
    >>> q.add(Rejection(kind="unit", source="csv:v.csv", record="row 3", field="sbp",
    ...                 reason="unknown unit", value="psi"))
    >>> len(q), q.kinds()
    (1, {'unit': 1})
    """

    def __init__(self, rejections: Iterable[Rejection] = ()):
        self._items: list[Rejection] = list(rejections)

    def add(self, rejection: Rejection) -> None:
        """Keep one rejection."""
        self._items.append(rejection)

    def extend(self, rejections: Iterable[Rejection]) -> None:
        """Keep several rejections."""
        self._items.extend(rejections)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Rejection]:
        return iter(self._items)

    def kinds(self) -> dict[str, int]:
        """How many rejections of each kind."""
        out: dict[str, int] = {}
        for r in self._items:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out

    def write_jsonl(self, path: str | Path) -> Path:
        """Write all rejections, one JSON object a line (the file is replaced)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for r in self._items:
                fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read_jsonl(cls, path: str | Path) -> Quarantine:
        """Read a quarantine written by :meth:`write_jsonl`."""
        with Path(path).open(encoding="utf-8") as fh:
            return cls(Rejection.from_dict(json.loads(line)) for line in fh if line.strip())

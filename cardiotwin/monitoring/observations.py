"""The validated monitoring ``Observation``, the LOINC codes a twin reads and their UCUM units.

An :class:`Observation` is one measured value for one twin: its subject (the twin's pseudonym,
never a name or a hospital number), the time (timezone-aware, kept in UTC), the LOINC code, the
value as received with its UCUM unit, the same value in SI (through :mod:`cardiotwin.units`),
where it came from and from which device. It is validated at construction: an unknown code or
unit, a naive time, a non-finite value or a subject that does not look like a pseudonym cannot
make an ``Observation``; the :class:`~cardiotwin.errors.ObservationError` raised names the
record, the field, the value and what was expected.

Plausibility ranges (:data:`VITALS`) are not applied here but by :mod:`.checks`, so that a reader
can hand an implausible value to the quarantine with the range it broke.

Sources of the codes and ranges are listed in ``docs/monitoring.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cardiotwin import units
from cardiotwin.errors import ObservationError, UnitError, UnknownCodeError
from cardiotwin.monitoring.quarantine import Rejection

LOINC_SYSTEM = "http://loinc.org"
"""The FHIR ``Coding.system`` of LOINC."""

UCUM_SYSTEM = "http://unitsofmeasure.org"
"""The FHIR ``Quantity.system`` of UCUM."""

SI_UNITS = {"pressure": "Pa", "rate": "Hz", "flow": "m3/s", "volume": "m3", "fraction": "1"}
"""The SI unit an :class:`Observation` value is kept in, per kind of quantity."""


def _identity(x: float) -> float:
    return x


#: UCUM unit code → (kind of quantity, conversion to the SI unit of :data:`SI_UNITS`).
#: UCUM codes are case-sensitive; ``mmHg`` and ``bpm`` are not UCUM but are what many bedside
#: monitors send in HL7 v2 OBX-6, so they are accepted as the synonyms of ``mm[Hg]`` and
#: ``/min`` (the unit as received is kept on the observation either way).
UCUM_UNITS: dict[str, tuple[str, Callable[[float], float]]] = {
    "mm[Hg]": ("pressure", units.mmhg_to_pa),
    "mmHg": ("pressure", units.mmhg_to_pa),
    "kPa": ("pressure", units.kpa_to_pa),
    "Pa": ("pressure", _identity),
    "/min": ("rate", units.bpm_to_hz),
    "1/min": ("rate", units.bpm_to_hz),
    "{beats}/min": ("rate", units.bpm_to_hz),
    "{beat}/min": ("rate", units.bpm_to_hz),
    "{breaths}/min": ("rate", units.bpm_to_hz),
    "bpm": ("rate", units.bpm_to_hz),
    "/s": ("rate", _identity),
    "Hz": ("rate", _identity),
    "L/min": ("flow", units.l_min_to_m3_s),
    "mL/min": ("flow", units.ml_min_to_m3_s),
    "mL/s": ("flow", units.ml_s_to_m3_s),
    "m3/s": ("flow", _identity),
    "mL": ("volume", units.ml_to_m3),
    "L": ("volume", units.l_to_m3),
    "m3": ("volume", _identity),
    "%": ("fraction", units.percent_to_fraction),
    "1": ("fraction", _identity),
}


@dataclass(frozen=True, slots=True)
class VitalSign:
    """One LOINC code a twin reads.

    Parameters
    ----------
    code : str
        LOINC code (``"8867-4"``).
    name : str
        LOINC long common name.
    kind : str
        Kind of quantity, a key of :data:`SI_UNITS`.
    display_unit : str
        The UCUM unit the plausible range is given in (and that reports show).
    plausible : tuple of float
        Lowest and highest plausible value, inclusive, in ``display_unit``.
    range_source : str
        Where the range comes from.
    """

    code: str
    name: str
    kind: str
    display_unit: str
    plausible: tuple[float, float]
    range_source: str

    @property
    def plausible_si(self) -> tuple[float, float]:
        """The plausible range in the SI unit of :attr:`kind`."""
        to_si = UCUM_UNITS[self.display_unit][1]
        return to_si(self.plausible[0]), to_si(self.plausible[1])

    def describe_range(self) -> str:
        """``"0-300 /min"``: the plausible range as a user reads it."""
        lo, hi = self.plausible
        return f"{lo:g}-{hi:g} {self.display_unit}"


_RICU = ("ricu concept dictionary (Bennett et al., GigaScience 2023; eth-mds/ricu "
         "inst/extdata/config/concept-dict.json, concept {!r})")
_PROJECT = "cardiotwin choice, see docs/monitoring.md (no published data-cleaning limit found)"

#: The vitals a twin reads, by LOINC code. Codes checked against loinc.org / the FHIR R4 vital
#: signs profile, HL7 CardX and the German MII ICU module (docs/monitoring.md lists them).
VITALS: dict[str, VitalSign] = {v.code: v for v in (
    VitalSign("8867-4", "Heart rate", "rate", "/min", (0.0, 300.0), _RICU.format("hr")),
    VitalSign("8480-6", "Systolic blood pressure", "pressure", "mm[Hg]", (0.0, 300.0),
              _RICU.format("sbp")),
    VitalSign("8462-4", "Diastolic blood pressure", "pressure", "mm[Hg]", (0.0, 200.0),
              _RICU.format("dbp")),
    VitalSign("8478-0", "Mean blood pressure", "pressure", "mm[Hg]", (0.0, 250.0),
              _RICU.format("map")),
    VitalSign("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "fraction", "%",
              (50.0, 100.0), _RICU.format("o2sat")),
    VitalSign("2708-6", "Oxygen saturation in Arterial blood", "fraction", "%", (50.0, 100.0),
              _RICU.format("o2sat")),
    VitalSign("9279-1", "Respiratory rate", "rate", "/min", (0.0, 120.0), _RICU.format("resp")),
    VitalSign("8741-1", "Left ventricular Cardiac output", "flow", "L/min", (0.5, 40.0),
              _PROJECT),
    VitalSign("20562-5", "Left ventricular Stroke volume", "volume", "mL", (5.0, 250.0),
              _PROJECT),
)}

BP_PANEL_CODES = frozenset({"85354-9", "55284-4"})
"""LOINC blood-pressure panels whose components (systolic, diastolic, mean) are read one by one."""

_PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")


def is_pseudonym(text: object) -> bool:
    """Whether ``text`` has the form of a twin pseudonym (1-64 letters, digits or . _ : -)."""
    return isinstance(text, str) and _PSEUDONYM.fullmatch(text) is not None


def vital(code: str, *, record: str = "", field: str = "code") -> VitalSign:
    """The :class:`VitalSign` of a LOINC code.

    Raises
    ------
    UnknownCodeError
        When the code is not in :data:`VITALS`; the message names the code and lists the known ones.
    """
    try:
        return VITALS[code]
    except KeyError:
        known = ", ".join(f"{c} ({v.name})" for c, v in VITALS.items())
        raise UnknownCodeError("unknown LOINC code; a twin reads only the vitals listed",
                               record=record, field=field, value=code,
                               expected=f"one of {known}") from None


def to_si(value: float, unit: str, code: str, *, record: str = "", field: str = "unit") -> float:
    """Convert ``value`` in UCUM ``unit`` to the SI unit of LOINC ``code``'s kind.

    Raises
    ------
    UnknownCodeError
        Unknown code.
    UnitError
        Unknown unit, or a unit of another kind (a pressure in L/min).
    """
    v = vital(code, record=record)
    allowed = ", ".join(u for u, (k, _) in UCUM_UNITS.items() if k == v.kind)
    if unit not in UCUM_UNITS:
        raise UnitError(f"unknown unit for {v.name} ({code})", record=record, field=field,
                        value=unit, expected=f"a UCUM unit of {v.kind}: {allowed}")
    kind, convert = UCUM_UNITS[unit]
    if kind != v.kind:
        raise UnitError(f"{unit!r} is a unit of {kind}, not of {v.kind} as {v.name} ({code}) is",
                        record=record, field=field, value=unit, expected=allowed)
    return float(convert(float(value)))


def utc_time(t: datetime, *, record: str = "", field: str = "time") -> datetime:
    """``t`` in UTC; a naive ``t`` (no timezone) is refused with :class:`ObservationError`."""
    if not isinstance(t, datetime):
        raise ObservationError("time is not a date and time", record=record, field=field,
                               value=t, expected="a timezone-aware datetime")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ObservationError(
            "time has no timezone, so the instant is ambiguous", record=record, field=field,
            value=t.isoformat(),
            expected="a time with a UTC offset (2024-05-01T10:42:00+02:00), or give the reader "
                     "default_timezone=")
    return t.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Observation:
    """One monitoring value for one twin, validated at construction.

    Parameters
    ----------
    subject : str
        The twin's pseudonym (letters, digits, ``. _ : -``; at most 64 characters). A name or a
        hospital number must never reach here; readers take it from a FHIR ``Patient`` reference
        or identifier, HL7 PID-3 or an explicit argument.
    time : datetime
        When the value was measured; timezone-aware, stored in UTC.
    code : str
        LOINC code, one of :data:`VITALS`.
    value_as_received : float
        The value in ``unit``, as the source sent it.
    unit : str
        The UCUM unit as received (a key of :data:`UCUM_UNITS`).
    source : str
        Where it came from (``"fhir:vitals.json"``, ``"hl7v2:MSG001"``, ``"wfdb:100"``).
    device : str
        The measuring device's id, ``""`` when the source does not say.
    record : str
        The record within the source (``"Observation/hr-1"``, ``"OBX 2"``, ``"row 14"``).

    Attributes
    ----------
    value : float
        The value in SI (:data:`SI_UNITS` of the code's kind): Pa, Hz, m³/s, m³ or a fraction.

    Raises
    ------
    ObservationError
        Bad subject, time or value; :class:`UnknownCodeError` or :class:`UnitError` for the code
        and the unit. The message names ``source`` / ``record`` and the field.
    """

    subject: str
    time: datetime
    code: str
    value_as_received: float
    unit: str
    source: str
    device: str = ""
    record: str = ""
    value: float = field(init=False)

    def __post_init__(self) -> None:
        where = self.where
        if not isinstance(self.subject, str) or not _PSEUDONYM.fullmatch(self.subject):
            # the value is not repeated: it may be a name or a hospital number
            raise ObservationError(
                "subject is not a twin pseudonym (the value is not repeated here)",
                record=where, field="subject",
                expected="1-64 letters, digits or . _ : - (the twin's pseudonym, never a name)")
        object.__setattr__(self, "time", utc_time(self.time, record=where))
        try:
            x = float(self.value_as_received)
        except (TypeError, ValueError):
            raise ObservationError("value is not a number", record=where, field="value",
                                   value=self.value_as_received,
                                   expected="a finite number") from None
        if not math.isfinite(x):
            raise ObservationError("value is not finite", record=where, field="value",
                                   value=self.value_as_received, expected="a finite number")
        object.__setattr__(self, "value_as_received", x)
        object.__setattr__(self, "value", to_si(x, self.unit, self.code, record=where))

    @property
    def where(self) -> str:
        """``source#record``: how messages name this observation."""
        return f"{self.source}#{self.record}" if self.record else str(self.source)

    @property
    def vital(self) -> VitalSign:
        """The :class:`VitalSign` of :attr:`code`."""
        return VITALS[self.code]

    @property
    def stream(self) -> tuple[str, str, str]:
        """``(subject, code, device)``: the stream whose times must increase."""
        return self.subject, self.code, self.device

    @property
    def key(self) -> tuple[str, str, str, datetime, float]:
        """What makes two observations the same one: stream, time and SI value (not the source)."""
        return self.subject, self.code, self.device, self.time, self.value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (time as ISO 8601 UTC); :meth:`from_dict` reads it back."""
        return {"subject": self.subject, "time": self.time.isoformat(), "code": self.code,
                "value_as_received": self.value_as_received, "unit": self.unit,
                "source": self.source, "device": self.device, "record": self.record,
                "value_si": self.value, "si_unit": SI_UNITS[self.vital.kind]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Observation:
        """Inverse of :meth:`to_dict` (the SI value is recomputed, not trusted)."""
        return cls(subject=d["subject"], time=datetime.fromisoformat(d["time"]), code=d["code"],
                   value_as_received=d["value_as_received"], unit=d["unit"], source=d["source"],
                   device=d.get("device", ""), record=d.get("record", ""))


@dataclass(frozen=True, slots=True)
class Batch:
    """What a reader read from one source: the observations and the records it refused.

    Parameters
    ----------
    observations : tuple of Observation
        Valid observations, in the order of the source (plausibility not yet checked).
    rejections : tuple of Rejection
        Records that could not become an observation, each with its reason.
    """

    observations: tuple[Observation, ...] = ()
    rejections: tuple[Rejection, ...] = ()

    def __add__(self, other: Batch) -> Batch:
        return Batch(self.observations + other.observations, self.rejections + other.rejections)


def make_observation(rejections: list[Rejection], *, raw: str = "", **fields: Any
                     ) -> Observation | None:
    """Build an :class:`Observation` from ``fields``; on an :class:`ObservationError` append a
    :class:`Rejection` to ``rejections`` (with ``raw``) and return None. Readers use it so that
    one bad record never stops the rest of a file."""
    try:
        return Observation(**fields)
    except ObservationError as err:
        rejections.append(Rejection.from_error(err, source=fields.get("source", ""),
                                               record=fields.get("record", ""),
                                               subject=str(fields.get("subject", "")), raw=raw))
        return None

"""Read FHIR R4 ``Observation`` and ``Bundle`` JSON into observations.

Resources are parsed with ``fhir.resources``' R4B models (``fhir.resources.R4B``: the package's
top-level models are R5; R4B is its R4-compatible release, FHIR 4.3, whose ``Observation`` and
``Bundle`` match R4's). Each observation needs a LOINC ``code``, a ``valueQuantity`` with a UCUM
unit, an ``effectiveDateTime`` or ``effectiveInstant`` with a timezone, and ``status`` final,
amended or corrected. A blood-pressure panel (85354-9) is read as its components (systolic,
diastolic, mean). The subject is the ``Patient`` reference (``Patient/<pseudonym>``) or
identifier value, or ``subject=`` for resources that carry none.

A record that breaks a rule becomes a :class:`~.quarantine.Rejection`; only a file that is not
FHIR JSON at all raises.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cardiotwin.errors import InputError, ObservationError
from cardiotwin.monitoring.observations import (
    BP_PANEL_CODES,
    LOINC_SYSTEM,
    Batch,
    make_observation,
)
from cardiotwin.monitoring.quarantine import Rejection

logger = logging.getLogger(__name__)

ACCEPTED_STATUSES = frozenset({"final", "amended", "corrected"})
"""``Observation.status`` values whose result may update a twin (preliminary ones may not)."""

MAX_FILE_BYTES = 50 * 2**20
"""A FHIR file larger than this is refused before it is parsed."""


def read_fhir(source: str | Path | dict[str, Any], *, subject: str | None = None,
              name: str | None = None) -> Batch:
    """Read a FHIR R4 Observation or Bundle (of Observations).

    Parameters
    ----------
    source : str, Path or dict
        A JSON file, or the parsed JSON (a dict, e.g. the body of a REST call).
    subject : str, optional
        The twin's pseudonym, for resources without a ``subject``. When a resource has one too,
        both must agree.
    name : str, optional
        How messages name the source; the file name by default, ``"fhir"`` for a dict.

    Returns
    -------
    Batch
        The observations and the rejected records (each with its reason).

    Raises
    ------
    InputError
        The file cannot be read, is not JSON, is larger than :data:`MAX_FILE_BYTES`, or is not an
        Observation or a Bundle.
    """
    if isinstance(source, dict):
        doc = source
        label = f"fhir:{name or 'json'}"
    else:
        path = Path(source)
        label = f"fhir:{name or path.name}"
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise InputError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES} "
                                 "bytes a FHIR file may have; split the Bundle")
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise InputError(f"{path}: cannot read the FHIR file ({err.strerror})") from err
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: not FHIR JSON ({err}); expected an Observation or a "
                             "Bundle resource in JSON") from err
    if not isinstance(doc, dict):
        raise InputError(f"{label}: the JSON is a {type(doc).__name__}, not a FHIR resource; "
                         "expected an object with resourceType Observation or Bundle")
    rtype = doc.get("resourceType")
    if rtype == "Observation":
        return _read_observation(doc, label=label, subject=subject)
    if rtype == "Bundle":
        batch = Batch()
        entries = doc.get("entry") or []
        if not isinstance(entries, list):
            raise InputError(f"{label}: Bundle.entry is not a list")
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                batch += Batch(rejections=(Rejection(
                    kind="malformed", source=label, record=f"entry[{i}]", field="resource",
                    reason=f"{label}#entry[{i}]: Bundle entry without a resource",
                    expected="entry.resource, an Observation", raw=_raw(entry)),))
                continue
            if res.get("resourceType") == "Patient":
                continue  # subjects come from the Observation's reference, never from the Patient
            if res.get("resourceType") != "Observation":
                batch += Batch(rejections=(Rejection(
                    kind="malformed", source=label, record=f"entry[{i}]", field="resourceType",
                    reason=(f"{label}#entry[{i}]: a {res.get('resourceType')!r} resource is "
                            "not an observation a twin reads"),
                    value=str(res.get("resourceType")), expected="Observation",
                    raw=_raw(res)),))
                continue
            batch += _read_observation(res, label=label, subject=subject, index=i)
        logger.info("%s: %d observations, %d rejected", label, len(batch.observations),
                    len(batch.rejections))
        return batch
    raise InputError(f"{label}: resourceType {rtype!r} is not read; expected Observation or "
                     "Bundle (FHIR R4 JSON)")


#: Observation elements left out of the raw text a rejection keeps: they can name the patient
#: (``subject.display``, a performer, contained resources, the narrative).
REDACTED_ELEMENTS = ("subject", "performer", "contained", "text")


def _raw(obj: Any) -> str:
    if isinstance(obj, dict):
        obj = {k: ("<redacted>" if k in REDACTED_ELEMENTS else v) for k, v in obj.items()}
    try:
        return json.dumps(obj, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(obj)


def _read_observation(doc: dict[str, Any], *, label: str, subject: str | None,
                      index: int | None = None) -> Batch:
    from fhir.resources.R4B.observation import Observation as FhirObservation
    from pydantic import ValidationError

    rid = doc.get("id")
    record = f"Observation/{rid}" if rid else (f"entry[{index}]" if index is not None
                                                 else "Observation")
    raw = _raw(doc)
    rejections: list[Rejection] = []

    def reject(err: ObservationError, kind: str | None = None) -> Batch:
        return Batch(rejections=(Rejection.from_error(err, source=label, record=record, raw=raw,
                                                      subject=subject or "", kind=kind),))

    try:
        res = FhirObservation.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        value = first.get("input")
        return reject(ObservationError(
            f"not a valid FHIR R4 Observation: {first.get('msg')}", record=f"{label}#{record}",
            field=loc, value=value if isinstance(value, str | int | float) else None,
            expected="a FHIR R4 Observation (a dateTime with hours needs a timezone)"
            if loc.startswith("effective") else "a FHIR R4 Observation"))
    where = f"{label}#{record}"
    if res.status not in ACCEPTED_STATUSES:
        return reject(ObservationError(
            "status is not a final result", record=where, field="status", value=res.status,
            expected=" or ".join(sorted(ACCEPTED_STATUSES))), kind="status")
    try:
        subj = _subject(res, subject, where)
        time = _effective(res, where)
    except ObservationError as err:
        return reject(err, kind="subject" if err.field.startswith("subject") else None)
    device = _reference_id(res.device) if res.device is not None else ""
    codings = (res.code.coding if res.code is not None else None) or []
    codes = [c.code for c in codings if c.system == LOINC_SYSTEM and c.code]
    if not codes:
        return reject(ObservationError("no LOINC coding", record=where, field="code.coding",
                                       value=[c.system for c in codings] or None,
                                       expected=f"a coding with system {LOINC_SYSTEM}"),
                      kind="unknown-code")
    items = []  # (code, quantity, field, record)
    if codes[0] in BP_PANEL_CODES and res.component:
        for j, comp in enumerate(res.component):
            ccodings = (comp.code.coding if comp.code is not None else None) or []
            ccodes = [c.code for c in ccodings if c.system == LOINC_SYSTEM]
            items.append((ccodes[0] if ccodes else "", comp.valueQuantity,
                          f"component[{j}]", f"{record}/component[{j}]"))
    else:
        items.append((codes[0], res.valueQuantity, "", record))
    observations = []
    for code, qty, prefix, rec in items:
        dot = f"{prefix}." if prefix else ""
        if qty is None or qty.value is None:
            rejections.append(Rejection.from_error(ObservationError(
                "no numeric valueQuantity", record=f"{label}#{rec}", field=f"{dot}valueQuantity",
                expected="valueQuantity with value and a UCUM code"), source=label, record=rec,
                subject=subj, raw=raw))
            continue
        unit = qty.code or qty.unit or ""
        obs = make_observation(rejections, raw=raw, subject=subj, time=time, code=code,
                               value_as_received=float(qty.value), unit=unit, source=label,
                               device=device, record=rec)
        if obs is not None:
            observations.append(obs)
    return Batch(tuple(observations), tuple(rejections))


def _reference_id(ref: Any) -> str:
    """``"Patient/tw-1"`` → ``"tw-1"``; an identifier's value when there is no reference."""
    if ref.reference:
        return str(ref.reference).rstrip("/").rsplit("/", 1)[-1]
    if ref.identifier is not None and ref.identifier.value:
        return str(ref.identifier.value)
    return str(ref.display or "")


def _subject(res: Any, subject: str | None, where: str) -> str:
    found = ""
    if res.subject is not None:
        if res.subject.reference and not str(res.subject.reference).startswith(
                ("Patient/", "#")):
            raise ObservationError("subject is not a Patient", record=where,
                                   field="subject.reference", value=res.subject.reference,
                                   expected="Patient/<the twin's pseudonym>")
        found = _reference_id(res.subject)
    if found and subject and found != subject:
        raise ObservationError("subject differs from the one given (its value is not repeated "
                               "here)", record=where, field="subject", expected=subject)
    if not (found or subject):
        raise ObservationError("no subject", record=where, field="subject",
                               expected="subject.reference Patient/<pseudonym> or subject= "
                                        "(--subject on the command line)")
    return found or str(subject)


def _effective(res: Any, where: str) -> datetime:
    t = res.effectiveDateTime or res.effectiveInstant
    if t is None:
        raise ObservationError("no effective time", record=where, field="effective[x]",
                               expected="effectiveDateTime or effectiveInstant with a timezone")
    if isinstance(t, date) and not isinstance(t, datetime):
        raise ObservationError("effective time is a date without a time of day", record=where,
                               field="effectiveDateTime", value=t.isoformat(),
                               expected="a date and time with a timezone")
    return t

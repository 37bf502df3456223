"""The REST API's response models (pydantic): what each endpoint returns, with units in names.

The models are built from the workflows' frozen results (:class:`~cardiotwin.workflows.TwinStatus`,
:class:`~cardiotwin.workflows.IngestResult`, :class:`~cardiotwin.workflows.TwinEvent`) in one
place, so the OpenAPI schema the server publishes is the contract clients and the schemathesis
tests check responses against.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _finite(x: Any) -> float | None:
    """A JSON-safe number: None for a missing or non-finite value."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class FhirResource(BaseModel):
    """The body of ``POST /twins/{pseudonym}/observations``: one FHIR R4 ``Observation`` or a
    ``Bundle`` of them, as JSON. Only ``resourceType`` is checked here; the FHIR reader
    (:func:`cardiotwin.monitoring.read_fhir`) checks the rest and quarantines what breaks a
    rule."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Observation", "Bundle"]


class Problem(BaseModel):
    """An error as an RFC 9457 problem detail (``application/problem+json``)."""

    type: str = Field("about:blank", description="Problem type URI.")
    title: str = Field(description="Short summary of the problem class (the HTTP reason).")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong and what to do about it.")
    instance: str = Field("", description="The request path.")
    quarantined: list[QuarantinedRecord] | None = Field(
        None, description="For refused observations: each record with the reason it was "
        "quarantined.")


class QuarantinedRecord(BaseModel):
    """A monitoring record the checks refused, kept in the twin's quarantine."""

    kind: str = Field(description="malformed, unknown-code, unit, implausible, out-of-order, "
                      "conflict, status or subject.")
    source: str
    record: str
    field: str
    reason: str = Field(description="The full message: record, field, value, expected range.")
    value: str = ""
    expected: str = ""


class Estimate(BaseModel):
    """A predicted quantity with its spread (one standard deviation), clinical units."""

    mean: float | None
    sd: float | None
    unit: str


class BuildPhysiology(BaseModel):
    """The physiology of the twin's last 3-D run (its build values)."""

    heart_rate_bpm: float
    stroke_volume_ml: float
    systolic_bp_mmhg: float
    diastolic_bp_mmhg: float


class TwinEstimate(BaseModel):
    """What the twin says at a time: physiology ± 1 SD, data age, stale and drift flags."""

    as_of_utc: str
    estimates: dict[str, Estimate] = Field(
        description="heart_rate, stroke_volume, cardiac_output, systolic_bp, diastolic_bp, "
        "mean_bp, resistance, compliance, rd_c and (with valve data) valve_gradient.")
    outlets: dict[str, dict[str, float | None]] = Field(
        description="Outlet name → Rp (Pa·s/m³), C (m³/Pa), Rd (Pa·s/m³); empty without a mesh.")
    last_observation_utc: str | None
    data_age_s: float | None = Field(description="Seconds since the last accepted observation.")
    stale: bool
    stale_reason: str
    drift: bool
    drift_reasons: list[str]
    n_observations: int


class TwinState(BaseModel):
    """A twin's state at a time (``GET /twins/{pseudonym}``)."""

    pseudonym: str
    version: int = Field(description="The twin version in force at as_of_utc.")
    saved_utc: str
    reason: str
    build_physiology: BuildPhysiology
    estimate: TwinEstimate


class TwinVersion(BaseModel):
    version: int
    created_utc: str
    reason: str


class TwinHistory(BaseModel):
    """A twin's versions up to a time (``GET /twins/{pseudonym}/versions``)."""

    pseudonym: str
    as_of_utc: str
    version: int = Field(description="The version in force at as_of_utc.")
    versions: list[TwinVersion]


class TwinSummary(BaseModel):
    pseudonym: str
    latest_version: int = Field(description="0 when no twin has been saved.")
    created_utc: str


class IngestResult(BaseModel):
    """What posting observations did (``POST /twins/{pseudonym}/observations``)."""

    pseudonym: str
    accepted: int = Field(description="Observations stored (and assimilated when the filter "
                          "reads their code).")
    duplicates: int = Field(description="Observations already stored: not stored again.")
    quarantined: list[QuarantinedRecord]
    version: int | None = Field(description="The new twin version, null when nothing new was "
                                "accepted.")
    base_version: int
    stale: bool
    stale_reason: str
    drift: bool
    drift_reasons: list[str]
    estimate: TwinEstimate | None


class TwinEvent(BaseModel):
    """A change of a twin's stale or drift flag."""

    pseudonym: str
    kind: Literal["stale", "current", "drift", "drift-cleared"]
    time_utc: str | None = Field(description="Data time of the change; null for 'stale since "
                                 "the build'.")
    version: int
    detail: str


class Token(BaseModel):
    """A bearer token (``POST /token``)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in_s: int = Field(description="Seconds the token lives without use (idle timeout).")
    username: str
    role: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


Problem.model_rebuild()


# ------------------------------------------------------------------------- from the workflows
def estimate_of(est: Any) -> TwinEstimate:
    return TwinEstimate(
        as_of_utc=est.as_of_utc,
        estimates={k: Estimate(mean=_finite(e.mean), sd=_finite(e.sd), unit=e.unit)
                   for k, e in est.estimates.items()},
        outlets={k: {q: _finite(v) for q, v in o.items()} for k, o in est.outlets.items()},
        last_observation_utc=est.last_observation_utc, data_age_s=_finite(est.data_age_s),
        stale=bool(est.stale), stale_reason=est.stale_reason, drift=bool(est.drift),
        drift_reasons=list(est.drift_reasons), n_observations=int(est.n_observations))


def quarantined_of(rejections: Any) -> list[QuarantinedRecord]:
    return [QuarantinedRecord(kind=r.kind, source=r.source, record=r.record, field=r.field,
                              reason=r.reason, value=r.value, expected=r.expected)
            for r in rejections]


def twin_state_of(status: Any) -> TwinState:
    p = status.physiology
    return TwinState(
        pseudonym=status.pseudonym, version=status.version, saved_utc=status.saved_utc,
        reason=status.reason,
        build_physiology=BuildPhysiology(
            heart_rate_bpm=p.heart_rate_bpm, stroke_volume_ml=p.stroke_volume_ml,
            systolic_bp_mmhg=p.systolic_bp_mmhg, diastolic_bp_mmhg=p.diastolic_bp_mmhg),
        estimate=estimate_of(status.estimate))


def history_of(status: Any) -> TwinHistory:
    return TwinHistory(pseudonym=status.pseudonym, as_of_utc=status.as_of_utc,
                       version=status.version,
                       versions=[TwinVersion(version=int(v["version"]),
                                             created_utc=str(v["created_utc"]),
                                             reason=str(v["reason"])) for v in status.versions])


def ingest_of(res: Any) -> IngestResult:
    return IngestResult(
        pseudonym=res.pseudonym, accepted=res.accepted, duplicates=res.duplicates,
        quarantined=quarantined_of(res.quarantined), version=res.version,
        base_version=res.base_version, stale=res.stale, stale_reason=res.stale_reason,
        drift=res.drift, drift_reasons=list(res.drift_reasons),
        estimate=None if res.status is None else estimate_of(res.status))


def event_of(e: Any) -> TwinEvent:
    return TwinEvent(pseudonym=e.pseudonym, kind=e.kind, time_utc=e.time_utc,
                     version=e.version, detail=e.detail)

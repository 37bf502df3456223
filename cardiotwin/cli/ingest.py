"""``cardiotwin ingest``: monitoring files into the store and the twins."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import (
    RoleOpt,
    StoreOpt,
    actor_for,
    console,
    errors,
    format_age,
    store_at,
)


def ingest(
    path: Annotated[Path, typer.Argument(
        metavar="FILE|DIR", help="A monitoring file (FHIR JSON, HL7 v2, WFDB record, CSV) or a "
        "folder of them.")],
    subject: Annotated[str | None, typer.Option(
        "--subject", help="The twin's pseudonym for records that name no patient (WFDB, CSV "
        "without a subject column).")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="fhir, hl7, wfdb or csv (default: from the extension: .json, "
        ".hl7/.er7/.txt, .hea, .csv).")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="CSV column map: time=COL[,subject=COL][,device=COL],COL=LOINC:UCUM,"
        "... e.g. time=t,hr=8867-4:/min,sbp=8480-6:mm[Hg],dbp=8462-4:mm[Hg].")] = None,
    timezone: Annotated[str | None, typer.Option(
        "--timezone", help="IANA zone (Europe/Berlin) of times without a UTC offset (HL7 v2 "
        "TS, CSV, WFDB headers).")] = None,
    start: Annotated[str | None, typer.Option(
        "--start", help="Time of the first sample of a WFDB record whose header has none "
        "(ISO 8601 with offset).")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Check monitoring data, store it and update the twins it belongs to.

    Each accepted batch updates the twin's physiology (an unscented Kalman filter) as a new
    twin version; refused records go to the quarantine with their reason. Audited.

    \b
    Examples:
      cardiotwin ingest vitals.json
      cardiotwin ingest ward-feed/ --format hl7
      cardiotwin ingest cuff.csv --subject TW-3F2A --columns time=t,sbp=8480-6:mm[Hg]
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from cardiotwin import workflows
    from cardiotwin.errors import InputError

    with errors():
        tz = start_time = None
        if timezone is not None:
            try:
                tz = ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InputError(f"--timezone {timezone!r} is not an IANA time zone "
                                 "(e.g. Europe/Berlin, UTC)") from None
        if start is not None:
            try:
                start_time = datetime.fromisoformat(start)
            except ValueError:
                raise InputError(f"--start {start!r} is not an ISO 8601 time (e.g. "
                                 "2024-05-01T10:00:00+00:00)") from None
        results = workflows.ingest_file(path, store=store_at(store), actor=actor_for(role),
                                        subject=subject, format=fmt, columns=columns,
                                        default_timezone=tz, start_time=start_time)
        if not results:
            console.print(f"no monitoring data for any twin in {path}", highlight=False)
            return
        t = Table(title=f"Ingested {path}")
        for c in ("twin", "accepted", "duplicates", "quarantined", "version", "data age",
                  "flags"):
            t.add_column(c)
        for r in results:
            flags = [f for f, on in (("STALE", r.stale), ("DRIFT", r.drift)) if on]
            t.add_row(r.pseudonym, str(r.accepted), str(r.duplicates), str(len(r.quarantined)),
                      "–" if r.version is None else str(r.version),
                      format_age(r.status.data_age_s if r.status else None),
                      " ".join(flags) or "ok")
        console.print(t)
        for r in results:
            for q in r.quarantined[:20]:
                console.print(f"[yellow]quarantined[/] ({q.kind}) {q.reason}", highlight=False)
            if len(r.quarantined) > 20:
                console.print(f"… and {len(r.quarantined) - 20} more for {r.pseudonym}")
            for reason in r.drift_reasons:
                console.print(f"[bold red]DRIFT[/] {r.pseudonym}: {reason}", highlight=False)

"""Read CSV tables of vitals with a declared column map.

A CSV carries no codes or units of its own, so the caller declares them: which column holds the
time, and for each value column its LOINC code and UCUM unit (:class:`ColumnMap`). Optional
columns give the subject and the device; otherwise ``subject=`` names the twin. Each cell that
breaks a rule becomes a :class:`~.quarantine.Rejection` naming the row and the column; an empty
cell is no observation (a table row need not have every vital).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

from cardiotwin.errors import InputError, ObservationError
from cardiotwin.monitoring.observations import Batch, make_observation, to_si, vital
from cardiotwin.monitoring.quarantine import Rejection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColumnMap:
    """What the columns of a vitals table mean.

    Parameters
    ----------
    time : str
        Column of ISO 8601 times (``2024-05-01T10:42:00+02:00``).
    values : dict
        Value column → ``(LOINC code, UCUM unit)``, e.g. ``{"hr": ("8867-4", "/min")}``.
    subject : str, optional
        Column of the twin's pseudonym; without it every row belongs to ``subject=``.
    device : str, optional
        Column of the device id.

    Raises
    ------
    ObservationError
        A code or unit in ``values`` is unknown or does not fit (checked at construction, so a
        bad map fails before any row is read).
    """

    time: str
    values: dict[str, tuple[str, str]] = field(default_factory=dict)
    subject: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.values:
            raise InputError("the column map declares no value column; give values={column: "
                             "(LOINC code, UCUM unit)}")
        for col, (code, unit) in self.values.items():
            vital(code, record="column map", field=f"values[{col!r}]")
            to_si(1.0, unit, code, record="column map", field=f"values[{col!r}]")


def parse_column_map(text: str) -> ColumnMap:
    """A :class:`ColumnMap` from its command-line form.

    ``"time=t,subject=pid,device=dev,hr=8867-4:/min,sbp=8480-6:mm[Hg]"``: ``time``, ``subject``
    and ``device`` name those columns; every other ``column=CODE:UNIT`` is a value column.

    Raises
    ------
    InputError
        A part is not ``name=value``, a value column lacks ``CODE:UNIT``, or ``time`` is missing;
        unknown codes and units as :class:`ColumnMap`.
    """
    spec: dict[str, str] = {}
    values: dict[str, tuple[str, str]] = {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise InputError(f"column map part {part!r} is not NAME=VALUE; expected e.g. "
                             "time=t,hr=8867-4:/min,sbp=8480-6:mm[Hg]")
        if name in ("time", "subject", "device"):
            spec[name] = value
            continue
        code, sep, unit = value.partition(":")
        if not sep or not code or not unit:
            raise InputError(f"column {name!r}: {value!r} is not LOINC-CODE:UCUM-UNIT "
                             "(e.g. 8867-4:/min)")
        values[name] = (code.strip(), unit.strip())
    if "time" not in spec:
        raise InputError("the column map names no time column; add time=COLUMN")
    return ColumnMap(time=spec["time"], values=values, subject=spec.get("subject"),
                     device=spec.get("device"))


def read_table(path: str | Path, *, columns: ColumnMap, subject: str | None = None,
               default_timezone: tzinfo | None = None, delimiter: str = ",") -> Batch:
    """Read a CSV file of vitals.

    Parameters
    ----------
    path : str or Path
        The CSV file (UTF-8, a header row).
    columns : ColumnMap
        What the columns mean.
    subject : str, optional
        The twin's pseudonym, when the table has no subject column.
    default_timezone : tzinfo, optional
        Zone of the times that carry no UTC offset; without it such a row is rejected.
    delimiter : str
        Field separator.

    Returns
    -------
    Batch

    Raises
    ------
    InputError
        The file cannot be read, or a declared column is missing from the header.
    """
    path = Path(path)
    label = f"csv:{path.name}"
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot read the table ({err.strerror})") from err
    observations, rejections = [], []
    with fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        declared = [columns.time, *columns.values, columns.subject, columns.device]
        missing = [c for c in declared if c is not None and c not in header]
        if missing:
            raise InputError(f"{path}: column(s) {missing} of the column map are not in the "
                             f"header {header}")
        if columns.subject is None and not subject:
            raise InputError(f"{path}: the table has no subject column; give subject= (the "
                             "twin's pseudonym, --subject on the command line)")
        try:
            for row in reader:
                rowno = reader.line_num
                record = f"row {rowno}"
                # only the declared columns: others may hold what the twin must not keep
                raw = delimiter.join(str(row.get(c) or "") for c in declared if c is not None)
                subj = (row.get(columns.subject) or "").strip() if columns.subject else ""
                subj = subj or (subject or "")
                if subject and subj != subject:
                    rejections.append(Rejection(
                        kind="subject", source=label, record=record, field=str(columns.subject),
                        reason=(f"{label}#{record}: column {columns.subject}: the subject "
                                f"differs from {subject!r} (its value is not repeated here)"),
                        expected=subject))
                    continue
                try:
                    time = _time(row.get(columns.time) or "", default_timezone,
                                 f"{label}#{record}", f"column {columns.time}")
                except ObservationError as err:
                    rejections.append(Rejection.from_error(err, source=label, record=record,
                                                           subject=subj, raw=raw))
                    continue
                device = (row.get(columns.device) or "").strip() if columns.device else ""
                for col, (code, unit) in columns.values.items():
                    cell = (row.get(col) or "").strip()
                    if not cell:
                        continue
                    rec = f"{record}/{col}"
                    try:
                        value = float(cell)
                    except ValueError:
                        rejections.append(Rejection.from_error(ObservationError(
                            "value is not a number", record=f"{label}#{rec}",
                            field=f"column {col}", value=cell, expected="a number"),
                            source=label, record=rec, subject=subj, raw=raw))
                        continue
                    obs = make_observation(rejections, raw=raw, subject=subj, time=time,
                                           code=code, value_as_received=value, unit=unit,
                                           source=label, device=device, record=rec)
                    if obs is not None:
                        observations.append(obs)
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not a readable CSV table ({err})") from err
    logger.info("%s: %d observations, %d rejected", label, len(observations), len(rejections))
    return Batch(tuple(observations), tuple(rejections))


def _time(text: str, default_timezone: tzinfo | None, where: str, fieldname: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ObservationError("not an ISO 8601 date and time", record=where, field=fieldname,
                               value=text, expected="e.g. 2024-05-01T10:42:00+02:00") from None
    if t.tzinfo is None:
        if default_timezone is None:
            raise ObservationError("time has no UTC offset, so the instant is ambiguous",
                                   record=where, field=fieldname, value=text,
                                   expected="a time with +HH:MM, or give default_timezone=")
        t = t.replace(tzinfo=default_timezone)
    return t

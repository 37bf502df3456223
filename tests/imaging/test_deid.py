"""Keyed pseudonyms and identity-free metadata."""

import os
import stat

import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.imaging.deid import deidentify_volume, load_or_create_key, pseudonym
from cardiotwin.imaging.volume import Volume


def test_key_created_private_and_stable(tmp_path):
    path = tmp_path / "keys" / "pseudonym.key"
    k1 = load_or_create_key(path)
    assert len(k1) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path) == k1


def test_pseudonym_is_keyed_and_consistent():
    a, b = b"a" * 32, b"b" * 32
    assert pseudonym("12345", a) == pseudonym("12345", a)
    assert pseudonym("12345", a) != pseudonym("12345", b)
    assert pseudonym("12345", a) != pseudonym("12346", a)
    assert pseudonym("12345", a).startswith("PT-") and len(pseudonym("12345", a)) == 15
    with pytest.raises(InputError, match="patient ID is empty"):
        pseudonym("  ", a)


def test_deidentified_volume_has_no_identity():
    v = Volume(np.zeros((2, 2, 2), np.int16), (1, 1, 1), (0, 0, 0),
               metadata={"patient_name": "DOE^JANE", "patient_id": "X1", "modality": "CT"})
    d = deidentify_volume(v, b"k" * 32)
    assert "patient_name" not in d.metadata and "patient_id" not in d.metadata
    assert d.metadata["modality"] == "CT" and d.metadata["pseudonym"] == pseudonym("X1", b"k" * 32)
    assert "DOE" not in repr(d.metadata)


def test_a_series_without_patient_id_is_keyed_by_its_study():
    """Public exports often blank PatientID: the twin is keyed by the StudyInstanceUID instead
    (a warning says later scans will not link); with neither, the volume is refused."""
    key = b"k" * 32
    v = Volume(np.zeros((2, 2, 2), np.int16), (1, 1, 1), (0, 0, 0),
               metadata={"patient_id": "", "study_uid": "1.2.3.4", "modality": "CT"})
    d = deidentify_volume(v, key)
    assert d.metadata["pseudonym"] == pseudonym("study:1.2.3.4", key)
    assert "study_uid" in d.metadata and "patient_id" not in d.metadata
    with pytest.raises(InputError, match="neither a PatientID nor a StudyInstanceUID"):
        deidentify_volume(v.with_array(v.array, study_uid=""), key)
    # an export that blanked the UIDs too is keyed by what the caller names (the files' hash)
    e = deidentify_volume(v.with_array(v.array, study_uid=""), key, fallback_id="files:abc")
    assert e.metadata["pseudonym"] == pseudonym("files:abc", key)

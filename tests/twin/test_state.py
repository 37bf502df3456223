"""Physiology validation and derived values; PatientTwin JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.twin.state import PatientTwin, Physiology, weissler_lvet_s

BASE = dict(
    heart_rate_bpm=70.0, stroke_volume_ml=70.0, systolic_bp_mmhg=120.0, diastolic_bp_mmhg=80.0
)


def test_derived_values():
    p = Physiology(**BASE, ejection_time_s=0.30)
    # CO = HR · SV = 70 /min × 70 mL = 4.9 L/min
    assert p.cardiac_output_l_min == pytest.approx(4.9, rel=1e-12)
    # MAP = DBP + (SBP − DBP)/3 = 80 + 40/3
    assert p.mean_arterial_pressure_mmhg == pytest.approx(93.3333333333, rel=1e-10)
    assert p.pulse_pressure_mmhg == pytest.approx(40.0)
    # Mean systolic flow = SV / ET = 70 mL / 0.30 s
    assert p.mean_systolic_flow_ml_s == pytest.approx(233.333333333, rel=1e-10)


def test_weissler_ejection_time():
    # Weissler AM, Harris WS, Schoenfeld CD. Circulation 1968;37:149–159: LVET = 413 − 1.7·HR ms
    assert weissler_lvet_s(70) == pytest.approx(0.294, abs=1e-12)
    assert weissler_lvet_s(100) == pytest.approx(0.243, abs=1e-12)
    assert weissler_lvet_s(200) == pytest.approx(0.15)  # clipped to the plausible range
    p = Physiology(**BASE)
    assert p.ejection_time_s is None
    assert p.effective_ejection_time_s == pytest.approx(0.294, abs=1e-12)
    assert p.mean_systolic_flow_ml_s == pytest.approx(70 / 0.294, rel=1e-12)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heart_rate_bpm", 0),
        ("heart_rate_bpm", 221),
        ("stroke_volume_ml", 0.07),  # litres instead of mL
        ("systolic_bp_mmhg", 16.0),  # kPa instead of mmHg
        ("diastolic_bp_mmhg", 200),
        ("ejection_time_s", 300),  # ms instead of s
        ("heart_rate_bpm", float("nan")),
    ],
)
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(InputError, match=field):
        Physiology(**{**BASE, field: value})


def test_range_message_states_the_range():
    with pytest.raises(InputError, match=r"heart_rate_bpm = 0 bpm .*\[30, 220\] bpm"):
        Physiology(**{**BASE, "heart_rate_bpm": 0})


def test_diastolic_must_be_below_systolic_and_et_below_period():
    with pytest.raises(InputError, match="diastolic_bp_mmhg"):
        Physiology(**{**BASE, "systolic_bp_mmhg": 90, "diastolic_bp_mmhg": 95})
    with pytest.raises(InputError, match="cardiac period"):
        Physiology(**{**BASE, "heart_rate_bpm": 200, "ejection_time_s": 0.32})
    with pytest.raises(InputError, match="real number"):
        Physiology(**{**BASE, "heart_rate_bpm": True})


def test_physiology_round_trip_and_unknown_keys():
    p = Physiology(**BASE, ejection_time_s=0.31)
    assert Physiology.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(InputError, match="unknown"):
        Physiology.from_dict({**p.to_dict(), "cardiac_output": 5})


def test_twin_json_round_trip_normalises_tuples_and_numpy():
    twin = PatientTwin(
        pseudonym="P-12.ab",
        physiology=Physiology(**BASE),
        anatomy={
            "landmarks": {"annulus_centre_mm": (1.0, 2.0, 3.0), "centreline_mm": np.zeros((2, 3))},
            "volumes_ml": {"lv": np.float64(121.5)},
        },
        mesh={"mesh_path": "m.xdmf", "artifact_sha256": "a" * 64, "n_cells": np.int64(5)},
        parameters={"windkessel": {"outlet:desc": {"R_p_pa_s_m3": 1.2e7}}},
        provenance={"step": "build"},
    )
    assert twin.anatomy["landmarks"]["annulus_centre_mm"] == [1.0, 2.0, 3.0]
    assert twin.anatomy["landmarks"]["centreline_mm"] == [[0.0] * 3] * 2
    again = PatientTwin.from_json(twin.to_json())
    assert again == twin
    assert PatientTwin.from_dict(json.loads(json.dumps(twin.to_dict()))) == twin
    assert twin.to_dict()["format_version"] == 1


def test_twin_refuses_identifiers_and_bad_fields():
    with pytest.raises(InputError, match="pseudonym"):
        PatientTwin(pseudonym="Doe, John", physiology=Physiology(**BASE))
    with pytest.raises(InputError, match="direct identifiers"):
        PatientTwin(
            pseudonym="P1",
            physiology=Physiology(**BASE),
            provenance={"dicom": {"PatientName": "DOE^JOHN"}},
        )
    twin = PatientTwin(pseudonym="P1", physiology=Physiology(**BASE))
    with pytest.raises(InputError, match="patient_id"):
        twin.anatomy = {"patient_id": "123"}
    with pytest.raises(InputError, match="JSON"):
        twin.anatomy = {"x": float("nan")}
    with pytest.raises(InputError, match="physiology"):
        PatientTwin(pseudonym="P1", physiology=BASE)
    with pytest.raises(InputError, match="version"):
        PatientTwin(pseudonym="P1", physiology=Physiology(**BASE), version=-1)
    with pytest.raises(InputError, match="unknown"):
        PatientTwin.from_dict({**twin.to_dict(), "name": "x"})
    with pytest.raises(InputError, match="format_version"):
        PatientTwin.from_dict({**twin.to_dict(), "format_version": 99})

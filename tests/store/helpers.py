"""Shared builders for the store tests."""

from __future__ import annotations

from cardiotwin.twin.state import PatientTwin, Physiology


def make_twin(pseudonym: str = "P0001", *, hr: float = 70.0) -> PatientTwin:
    return PatientTwin(
        pseudonym=pseudonym,
        physiology=Physiology(
            heart_rate_bpm=hr,
            stroke_volume_ml=70.0,
            systolic_bp_mmhg=120.0,
            diastolic_bp_mmhg=80.0,
        ),
        anatomy={
            "landmarks": {"annulus_diameter_mm": 23.4, "annulus_centre_mm": (1.0, 2.0, 3.0)},
            "volumes_ml": {"lv": 120.5},
        },
        provenance={"step": "test"},
    )

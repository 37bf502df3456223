"""The anatomy quality gate (cardiotwin.geometry.anatomy_gate) on the phantom and on broken input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cardiotwin.errors import InputError, SegmentationError
from cardiotwin.geometry.anatomy_gate import (
    RANGES,
    GateRange,
    GateResult,
    check_annulus,
    check_caps,
    check_relative_positions,
    run_gate,
)
from cardiotwin.imaging.volume import LABELS, LabelMap


def _truth_labels(phantom) -> LabelMap:
    """The phantom's labels with the arch branches merged into the aorta (as segment_heart)."""
    a = phantom.labels.array.copy()
    a[a == LABELS["branches"]] = LABELS["aorta"]
    return LabelMap(phantom.labels.volume.with_array(a))


def test_phantom_passes(coarse_phantom, phantom_fluid_surface) -> None:
    res = run_gate(_truth_labels(coarse_phantom), coarse_phantom.truth.landmarks,
                   caps=phantom_fluid_surface.caps)
    assert res.status == "pass", res.messages()
    names = {c.name for c in res.checks}
    assert {"lv_blood_volume", "aorta_volume", "annulus_diameter", "sides_of_valve",
            "outlet_count", "cap_diameter:inlet"} <= names
    assert all(c.source for c in res.checks)
    res.raise_if_failed()
    assert res.to_dict()["status"] == "pass"


def test_small_annulus_fails_with_its_source(coarse_phantom) -> None:
    lm = dataclasses.replace(coarse_phantom.truth.landmarks, annulus_diameter_mm=15.0 * 0.99,
                             annulus_area_mm2=190.0)
    checks = {c.name: c for c in check_annulus(lm)}
    assert checks["annulus_diameter"].status == "fail"
    assert "SCCT" in checks["annulus_diameter"].source
    assert checks["annulus_area"].status == "warn"
    lm = dataclasses.replace(coarse_phantom.truth.landmarks, annulus_diameter_mm=31.0)
    assert {c.name: c for c in check_annulus(lm)}["annulus_diameter"].status == "warn"


def test_swapped_labels_fail_the_positions(coarse_phantom) -> None:
    lab = _truth_labels(coarse_phantom)
    a = lab.array.copy()
    lv, ao = a == LABELS["lv_blood"], a == LABELS["aorta"]
    a[lv], a[ao] = LABELS["aorta"], LABELS["lv_blood"]
    swapped = LabelMap(lab.volume.with_array(a))
    checks = {c.name: c for c in check_relative_positions(swapped, coarse_phantom.truth.landmarks)}
    assert checks["sides_of_valve"].status == "fail"
    res = run_gate(swapped, coarse_phantom.truth.landmarks)
    with pytest.raises(SegmentationError, match="sides_of_valve.*another series"):
        res.raise_if_failed()


def test_degenerate_and_extra_caps_fail(phantom_fluid_surface) -> None:
    caps = list(phantom_fluid_surface.caps)
    zero = [dataclasses.replace(caps[-1], name=f"outlet:island{i}", area_mm2=0.0) for i in range(7)]
    res = GateResult(check_caps(caps + zero))
    assert {c.name: c.status for c in res.checks}["outlet_count"] == "fail"  # 4 + 7 = 11 outlets
    bad = [c for c in res.failures if c.name.startswith("cap_diameter:outlet:island")]
    assert len(bad) == 7 and "0.0 mm²" in bad[0].message
    assert res.status == "fail" and len(res.messages()) >= 8


def test_ranges_are_ordered_and_documented() -> None:
    for name, rng in RANGES.items():
        assert rng.fail_low <= rng.warn_low <= rng.warn_high <= rng.fail_high, name
        assert len(rng.source) > 20, name
    assert RANGES["annulus_diameter"].status(23.0) == "pass"
    assert RANGES["annulus_diameter"].status(float("nan")) == "fail"
    with pytest.raises(InputError):
        GateRange(1.0, 0.0, 0.0, 2.0, "mm", "x")
    assert np.isfinite(RANGES["annulus_area"].warn_low)

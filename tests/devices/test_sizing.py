"""Sizing for every family: area and perimeter oversizing against hand computation, the chart
boundaries, warnings at the limits, the uncovered (gap) area, the coronary-obstruction risk, the
user-supplied diameter of stents and occluders, stored reports, and `cardiotwin device size`."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from cardiotwin import workflows
from cardiotwin.cli import app
from cardiotwin.devices.catalog import load_catalog
from cardiotwin.devices.sizing import (
    SizingReport,
    assess_sizes,
    assess_sizes_by_diameter,
    coronary_risk,
    size_device_family,
)
from cardiotwin.errors import InputError
from cardiotwin.store import Actor
from cardiotwin.twin.state import PatientTwin, Physiology
from tests.devices.test_devices import _landmarks

runner = CliRunner()
CAT = load_catalog()
PSEUDO = "PT-SIZING-1"


def _with(perimeter_mm: float | None = None, area_mm2: float | None = None, sinus_mm: float = 36.0):
    """Landmarks of a 23 mm annulus with the perimeter/area/sinus replaced."""
    lms = _landmarks(23.0)
    return replace(lms, annulus_perimeter_mm=perimeter_mm or lms.annulus_perimeter_mm,
                   annulus_area_mm2=area_mm2 or lms.annulus_area_mm2, sinus_diameter_mm=sinus_mm)


def test_perimeter_oversizing_against_hand_computation():
    fam = CAT.family("self_expanding_thv")
    rep = assess_sizes(_with(perimeter_mm=70.0, area_mm2=380.0), fam,
                       family_key="self_expanding_thv")
    row = rep.assessment(26)
    # by hand: π·26 = 81.681 mm; 81.681 / 70 − 1 = 16.69 %
    assert row.perimeter_oversizing_pct == pytest.approx(16.687, abs=1e-3)
    # by hand: π·13² = 530.93 mm²; 530.93 / 380 − 1 = 39.72 %
    assert row.area_oversizing_pct == pytest.approx(39.718, abs=1e-3)
    assert rep.recommended_mm == 26 and rep.sizing_by == "annulus_perimeter"
    assert rep.measured_value == 70.0 and rep.measurement_source.startswith("CT annulus")
    assert (row.chart_min, row.chart_max) == (62.8, 72.3) and row.in_chart_range
    assert not rep.assessment(23).in_chart_range and not rep.assessment(29).in_chart_range


def test_perimeter_chart_boundary_is_shared_and_the_target_decides():
    fam = CAT.family("self_expanding_thv")
    rep = assess_sizes(_with(perimeter_mm=62.8), fam)
    assert rep.assessment(23).in_chart_range and rep.assessment(26).in_chart_range
    # 23 mm: π·23/62.8 − 1 = 15.1 %; 26 mm: 30.1 %; the target is 20 % → 23 mm
    assert rep.recommended_mm == 23
    # just past the chart's top (94.2 mm) nothing is recommended, and the message says why
    rep = assess_sizes(_with(perimeter_mm=94.3), fam)
    assert rep.recommended_mm is None
    assert "CT annulus perimeter 94.3 mm is outside every size of this family (56.5–94.2 mm)" \
        in rep.warnings[0]


def test_perimeter_warnings_trigger_at_the_familys_limits():
    fam = CAT.family("self_expanding_thv")
    below, above = fam.oversizing_warn_below_pct, fam.oversizing_warn_above_pct
    d = 29.0

    def row(pct):  # the perimeter that gives exactly pct % oversizing for 29 mm
        return assess_sizes(_with(perimeter_mm=math.pi * d / (1 + pct / 100)), fam).assessment(d)

    assert not any("undersized" in w for w in row(below + 0.05).warnings)
    assert any(w.startswith(f"undersized by perimeter ({below - 0.05:+.1f} % < {below:+g} %)")
               for w in row(below - 0.05).warnings)
    assert not any("oversized" in w for w in row(above - 0.05).warnings)
    assert any(w.startswith("oversized by perimeter") and "annular injury" in w
               for w in row(above + 0.05).warnings)


def test_area_warnings_of_the_balloon_valve_trigger_at_its_limits():
    fam = CAT.family("balloon_expandable_thv")
    dev_area = math.pi * 13.0**2

    def row(pct):
        return assess_sizes(_with(area_mm2=dev_area / (1 + pct / 100)), fam).assessment(26)

    assert any("undersized by area (-5.1 % < -5 %)" in w for w in row(-5.1).warnings)
    assert not any("sized by area" in w for w in row(-4.9).warnings + row(19.9).warnings)
    assert any("oversized by area (+20.1 % > +20 %)" in w for w in row(20.1).warnings)


def test_gap_area_is_the_uncovered_annulus():
    fam = CAT.family("balloon_expandable_thv")
    rep = assess_sizes(_with(area_mm2=400.0), fam)
    assert rep.assessment(20).gap_area_mm2 == pytest.approx(400.0 - math.pi * 100.0)
    assert rep.assessment(23).gap_area_mm2 == 0.0  # π·11.5² = 415.5 mm² covers it


def test_coronary_risk_from_ostium_height_and_sinus():
    # registry cut-offs: left 11 mm / 31 mm, right 15 mm / 29 mm
    assert coronary_risk("left", height_mm=9.0, sinus_diameter_mm=28.0).risk == "high"
    assert coronary_risk("left", height_mm=10.9, sinus_diameter_mm=31.0).risk == "elevated"
    assert coronary_risk("left", height_mm=11.0, sinus_diameter_mm=31.0).risk == "low"
    assert coronary_risk("right", height_mm=14.0, sinus_diameter_mm=33.0).risk == "elevated"
    nm = coronary_risk("right", height_mm=None, sinus_diameter_mm=28.0)
    assert nm.risk == "not measured" and "not measured" in nm.note and "28.0 mm < 29" in nm.note
    with pytest.raises(InputError, match="'middle'"):
        coronary_risk("middle", height_mm=10.0, sinus_diameter_mm=30.0)


def test_valve_report_carries_the_coronary_risk_and_the_residual_sinus():
    fam = CAT.family("balloon_expandable_thv")
    rep = assess_sizes(_with(sinus_mm=30.0), fam, coronary_ostia_height_mm={"left": 9.5})
    left, right = rep.coronary
    assert (left.ostium, left.risk, right.risk) == ("left", "high", "not measured")
    assert any("coronary obstruction risk high at the left ostium" in w for w in rep.warnings)
    # residual sinus = 30 − 26 = 4 mm < 5 mm: warned for 26 mm, not for 23 mm (7 mm)
    assert rep.assessment(26).residual_sinus_mm == pytest.approx(4.0)
    assert any("residual sinus 4.0 mm" in w for w in rep.assessment(26).warnings)
    assert not any("residual sinus" in w for w in rep.assessment(23).warnings)
    # nothing measured: both ostia say so
    rep = assess_sizes(_with(), fam)
    assert [c.risk for c in rep.coronary] == ["not measured", "not measured"]


def test_laa_occluder_on_a_user_supplied_ostium():
    fam = CAT.family("laa_occluder")
    rep = assess_sizes_by_diameter(22.0, fam, family_key="laa_occluder")
    assert rep.measurement_source == "user-supplied" and "user-supplied" in rep.notes[0]
    # 27 mm: 27/22 − 1 = 22.7 % (compression 18.5 %), 31 mm: 40.9 %; target 25 % → 27 mm
    assert rep.recommended_mm == 27
    assert rep.assessment(27).diameter_oversizing_pct == pytest.approx((27 / 22 - 1) * 100)
    assert rep.assessment(27).perimeter_oversizing_pct == pytest.approx((27 / 22 - 1) * 100)
    assert rep.assessment(27).area_oversizing_pct == pytest.approx(((27 / 22) ** 2 - 1) * 100)
    # the 20 mm device does not cover the ostium: π(11² − 10²) mm² uncovered
    assert rep.assessment(20).gap_area_mm2 == pytest.approx(math.pi * 21.0)
    # chart boundary 18.0 mm = 10 % compression of the 20 mm device: in range, no warning;
    # 18.2 mm: out of range and under-compressed
    at = assess_sizes_by_diameter(18.0, fam).assessment(20)
    assert at.in_chart_range and not at.warnings
    past = assess_sizes_by_diameter(18.2, fam).assessment(20)
    assert not past.in_chart_range
    assert any(w.startswith("undersized by diameter (+9.9 % < +11.1 %, compression 9 %)")
               for w in past.warnings)
    assert any("device narrower than the ostium" in w for w in rep.assessment(20).warnings)


def test_lobe_and_disc_occluder_on_a_shared_landing_zone_boundary():
    fam = CAT.family("laa_occluder_lobe_disc")
    rep = assess_sizes_by_diameter(22.0, fam)
    assert rep.assessment(25).in_chart_range and rep.assessment(28).in_chart_range
    # 25/22 − 1 = 13.6 %, 28/22 − 1 = 27.3 %: the 20 % target picks 25 mm
    assert rep.recommended_mm == 25
    assert "maximum LAA landing-zone diameter 22.0 mm is user-supplied" in rep.notes[0]


def test_stent_and_septal_occluder_on_a_user_supplied_diameter():
    stent = assess_sizes_by_diameter(17.5, CAT.family("coarctation_stent"))
    assert stent.recommended_mm == 18 and stent.sizing_by == "vessel_diameter"
    assert stent.assessment(18).diameter_oversizing_pct == pytest.approx((18 / 17.5 - 1) * 100)
    assert any("aortic wall injury" in w for w in stent.assessment(24).warnings)
    aso = assess_sizes_by_diameter(16.5, CAT.family("septal_occluder"))
    assert aso.recommended_mm == 18 and aso.coronary == ()


def test_missing_or_bad_diameter_is_a_clear_error():
    with pytest.raises(InputError, match=r"'laa_occluder' \(laa_occluder\) is sized by the maximum "
                                         r"LAA ostium diameter.*--diameter-mm"):
        size_device_family(CAT.family("laa_occluder"), family_key="laa_occluder",
                           landmarks=_landmarks())
    with pytest.raises(InputError, match="--diameter-mm"):
        assess_sizes(_landmarks(), CAT.family("septal_occluder"))
    with pytest.raises(InputError, match="is a valve, sized on the twin's CT annulus"):
        size_device_family(CAT.family("self_expanding_thv"), landmarks=_landmarks(),
                           diameter_mm=23.0)
    for bad in (-3.0, 0.0, float("nan"), 120.0):
        with pytest.raises(InputError, match=f"diameter {bad!r} mm must be a positive number"):
            assess_sizes_by_diameter(bad, CAT.family("coarctation_stent"))


def test_reports_round_trip_and_old_stored_reports_still_load():
    rep = assess_sizes(_with(sinus_mm=30.0), CAT.family("self_expanding_thv"),
                       family_key="self_expanding_thv", coronary_ostia_height_mm={"left": 12.0})
    assert SizingReport.from_dict(rep.to_dict()) == rep
    occl = assess_sizes_by_diameter(22.0, CAT.family("laa_occluder"), family_key="laa_occluder")
    assert SizingReport.from_dict(occl.to_dict()) == occl
    old = {"family": "balloon_expandable_thv", "annulus_area_mm2": 415.0,
           "annulus_perimeter_mm": 72.3, "recommended_mm": 23.0, "warnings": [],
           "sizes": [{"nominal_diameter_mm": 23.0, "area_oversizing_pct": 0.1,
                      "perimeter_oversizing_pct": 0.0, "in_chart_range": True,
                      "gap_area_mm2": 0.0, "warnings": []}]}
    loaded = SizingReport.from_dict(old)
    assert loaded.recommended_mm == 23.0 and loaded.sizing_by == "annulus_area"
    assert loaded.kind == "transcatheter_aortic_valve" and loaded.coronary == ()
    assert loaded.assessment(23).diameter_oversizing_pct is None


@pytest.fixture
def store_dir(tmp_path):
    store = workflows.open_store(tmp_path / "store")
    try:
        store.save_twin(PatientTwin(
            pseudonym=PSEUDO,
            physiology=Physiology(heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130,
                                  diastolic_bp_mmhg=75),
            anatomy={"landmarks": _landmarks(23.0).to_dict(),  # sinus 32 mm
                     "planning": {"coronary_ostia_height_mm": {"left": 10.0, "right": 16.0}}}),
            actor=Actor("dr_s", "clinician", client="pytest"), purpose="treatment planning",
            reason="test twin")
    finally:
        store.close()
    return tmp_path / "store"


def test_workflow_sizes_a_valve_with_the_planning_ostia(store_dir):
    store = workflows.open_store(store_dir)
    try:
        rep = workflows.size_device(PSEUDO, store=store, actor=Actor("dr_s", "clinician"),
                                    family="self_expanding_thv")
    finally:
        store.close()
    left, right = rep.coronary
    # left ostium 10 mm < 11 mm, sinus 32 mm ≥ 31 mm → elevated; right 16 mm ≥ 15, 32 ≥ 29 → low
    assert (left.height_mm, left.risk, right.risk) == (10.0, "elevated", "low")
    assert rep.recommended_mm == 26  # perimeter π·23 = 72.26 mm: 26 mm chart (62.8–72.3)


def test_cli_device_size_for_a_valve_and_an_occluder(store_dir):
    env = {"COLUMNS": "250", "CARDIOTWIN_USER": "dr_s"}
    res = runner.invoke(app, ["device", "size", PSEUDO, "--family", "self_expanding_thv",
                              "--store", str(store_dir)], env=env)
    assert res.exit_code == 0, res.output
    assert "perimeter 72.3 mm" in res.output and "26 ★" in res.output
    assert "recommended: 26 mm" in res.output
    assert "coronary (left): elevated" in res.output and "coronary (right): low" in res.output

    res = runner.invoke(app, ["device", "size", PSEUDO, "--family", "laa_occluder",
                              "--diameter-mm", "22", "--store", str(store_dir)], env=env)
    assert res.exit_code == 0, res.output
    assert "diameter 22.0 mm (user-supplied)" in res.output and "27 ★" in res.output
    assert "user-supplied: the anatomy step does not measure it yet" in res.output
    assert "coronary" not in res.output


def test_cli_device_size_errors_name_what_to_pass(store_dir, tmp_path):
    env = {"COLUMNS": "250", "CARDIOTWIN_USER": "dr_s"}

    def audit_seq():
        store = workflows.open_store(store_dir)
        try:
            return store.audit_head().seq
        finally:
            store.close()

    before = audit_seq()
    res = runner.invoke(app, ["device", "size", PSEUDO, "--family", "septal_occluder",
                              "--store", str(store_dir)], env=env)
    assert res.exit_code == 1 and "--diameter-mm" in res.output
    assert "stretched defect diameter" in res.output
    assert audit_seq() == before  # refused before the patient's record was read
    res = runner.invoke(app, ["device", "size", PSEUDO, "--family", "no_such_valve",
                              "--store", str(store_dir)], env=env)
    assert res.exit_code == 1 and "unknown device family 'no_such_valve'" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[families.mine]\nkind = 'stent'\n")
    res = runner.invoke(app, ["device", "size", PSEUDO, "--catalog", str(bad),
                              "--store", str(store_dir)], env=env)
    assert res.exit_code == 1 and "families.mine.kind" in res.output and "'stent'" in res.output

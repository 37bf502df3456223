"""Complications: paravalvular gap and leak, conduction risk, coronary obstruction (analytic cases)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cardiotwin import units
from cardiotwin.devices.complications import (
    BLOOD_DENSITY_KG_M3,
    ConductionRisk,
    CoronaryObstruction,
    ParavalvularLeak,
    circle_contour_mm,
    conduction_risk,
    coronary_obstruction,
    diastolic_duration_s,
    paravalvular_leak,
    polar_contour_mm,
    project_to_plane_mm,
)
from cardiotwin.errors import DeviceError, InputError

PHYS = {"aortic_diastolic_mmhg": 70.0, "heart_rate_bpm": 70.0}


def _ellipse(a: float, b: float, n: int = 720, centre: tuple[float, float] = (0.0, 0.0)
             ) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.c_[centre[0] + a * np.cos(t), centre[1] + b * np.sin(t)]


def _polygon_ellipse_area(a: float, b: float, n: int) -> float:
    """Exact area of the n-gon inscribed in the ellipse (what _ellipse draws)."""
    return 0.5 * n * a * b * math.sin(2.0 * math.pi / n)


# ------------------------------------------------------------------------------------ PVL


def test_circle_in_ellipse_gap_is_the_analytic_ring():
    # π(ab − r²) for r < b, here for the inscribed polygons (exact), and close to the smooth value
    a, b, r = 13.0, 12.0, 11.5
    res = paravalvular_leak(_ellipse(a, b, 720), _ellipse(r, r, 500), **PHYS)
    exact = _polygon_ellipse_area(a, b, 720) - _polygon_ellipse_area(r, r, 500)
    assert res.gap_area_mm2 == pytest.approx(exact, rel=1e-9)
    assert res.gap_area_mm2 == pytest.approx(math.pi * (a * b - r * r), rel=1e-3)
    assert res.gap_count == 1 and res.gaps[0].angular_extent_deg == 360.0
    assert res.gaps[0].hole_mm                             # a ring: lumen outline, frame hole
    assert res.gaps[0].max_width_mm == pytest.approx(a - r, abs=1e-3)  # polygon chords
    assert res.circumferential_extent_percent == pytest.approx(100.0)


def test_oversized_circle_in_ellipse_leaves_two_crescents():
    # frame r between b and a: gap = ellipse minus (ellipse ∩ circle), two gaps at the long ends
    a, b, r = 13.0, 12.0, 12.5
    res = paravalvular_leak(_ellipse(a, b, 2000), _ellipse(r, r, 2000), **PHYS)
    # ellipse ∩ circle, smooth analytic: the curves cross at angle φ with
    # cos²φ = (r² − b²)/(a² − b²) (param. angle); area via polar integration of min(r_e, r)
    th = np.linspace(0, 2 * np.pi, 400001)[:-1]
    r_e = a * b / np.sqrt((b * np.cos(th)) ** 2 + (a * np.sin(th)) ** 2)
    expected = 0.5 * np.mean(np.maximum(r_e**2 - r * r, 0.0)) * 2 * np.pi
    assert res.gap_area_mm2 == pytest.approx(expected, rel=2e-3)
    assert res.gap_count == 2
    assert res.gaps[0].area_mm2 == pytest.approx(res.gaps[1].area_mm2, rel=1e-6)
    assert res.gaps[0].max_width_mm == pytest.approx(a - r, abs=1e-3)


def test_offset_circles_inside_and_overlapping():
    # inside: π(R² − r²) whatever the offset
    res = paravalvular_leak(_ellipse(12, 12, 1000), _ellipse(10, 10, 1000, (1.5, -0.5)), **PHYS)
    exact = _polygon_ellipse_area(12, 12, 1000) - _polygon_ellipse_area(10, 10, 1000)
    assert res.gap_area_mm2 == pytest.approx(exact, rel=1e-9)
    assert res.gap_count == 1
    # overlapping: annulus area minus the circle–circle lens
    r1, r2, d = 12.0, 11.5, 1.5
    res = paravalvular_leak(_ellipse(r1, r1, 2000), _ellipse(r2, r2, 2000, (d, 0.0)), **PHYS)
    lens = (r1**2 * math.acos((d * d + r1 * r1 - r2 * r2) / (2 * d * r1))
            + r2**2 * math.acos((d * d + r2 * r2 - r1 * r1) / (2 * d * r2))
            - 0.5 * math.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)))
    assert res.gap_area_mm2 == pytest.approx(math.pi * r1**2 - lens, rel=1e-4)
    assert res.gap_count == 1
    assert 90.0 < res.gaps[0].angular_extent_deg < 360.0


def _nodule(alpha_deg: float = 20.0, tip_mm: float = 9.5, wall_mm: float = 12.0) -> np.ndarray:
    """A calcified wedge on the wall at +x with its tip ``tip_mm`` from the centre."""
    al = math.radians(alpha_deg)
    return np.array([[tip_mm, 0.0],
                     [wall_mm * math.cos(al), -wall_mm * math.sin(al)],
                     [(wall_mm + 1) * math.cos(al), -(wall_mm + 1) * math.sin(al)],
                     [wall_mm + 1.5, 0.0],
                     [(wall_mm + 1) * math.cos(al), (wall_mm + 1) * math.sin(al)],
                     [wall_mm * math.cos(al), wall_mm * math.sin(al)]])


def test_calcium_nodule_holds_a_nominal_frame_off_the_wall():
    # a well-sized frame (r = R) seals without calcium; a wedge nodule flattens it along x = tip,
    # leaving two gaps beside the nodule: circular segment beyond the chord, minus the wedge
    # triangle and the wall segment the wedge covers
    R, tip, al = 12.0, 9.5, math.radians(20.0)
    annulus, frame = _ellipse(R, R, 1500), _ellipse(R, R, 1500)
    clean = paravalvular_leak(annulus, frame, **PHYS)
    assert clean.gap_area_mm2 == pytest.approx(0.0, abs=1e-9)
    assert clean.grade == "none" and clean.regurgitant_volume_ml == 0.0
    res = paravalvular_leak(annulus, frame, calcium_contours_mm=[_nodule()], frame_model="nominal",
                            **PHYS)
    segment = R * R * math.acos(tip / R) - tip * math.sqrt(R * R - tip * tip)
    wedge = R * math.sin(al) * (R * math.cos(al) - tip) + 0.5 * R * R * (2 * al - math.sin(2 * al))
    assert res.gap_area_mm2 == pytest.approx(segment - wedge, rel=2e-3)
    assert res.gap_count == 2
    assert res.gaps[0].area_mm2 == pytest.approx(res.gaps[1].area_mm2, rel=1e-6)
    assert res.calcium_area_mm2 > 0 and res.grade in ("mild", "moderate", "severe")
    # the same contour read as an already deformed frame passing through calcium: warned
    deformed = paravalvular_leak(annulus, frame, calcium_contours_mm=[_nodule()], **PHYS)
    assert any("calcium" in w for w in deformed.warnings)


def test_regurgitant_volume_matches_hand_calculation():
    a, b, r = 12.5, 12.0, 11.8
    res = paravalvular_leak(_ellipse(a, b, 720), _ellipse(r, r, 720),
                            aortic_diastolic_mmhg=75.0, lv_diastolic_mmhg=12.0,
                            heart_rate_bpm=60.0, discharge_coefficient=0.7)
    # hand: ΔP = 63 mmHg = 8399.3 Pa, v = sqrt(2ΔP/ρ); diastole = 1 s − (541 − 132) ms = 0.591 s
    dp_pa = 63.0 * 133.322387415
    v = math.sqrt(2 * dp_pa / 1060.0)
    q_ml_s = 0.7 * res.gap_area_mm2 * 1e-6 * v * 1e6
    assert res.diastole_s == pytest.approx(0.591, abs=1e-12)
    assert res.diastolic_gradient_mmhg == pytest.approx(63.0)
    assert res.regurgitant_flow_ml_s == pytest.approx(q_ml_s, rel=1e-12)
    assert res.regurgitant_volume_ml == pytest.approx(q_ml_s * 0.591, rel=1e-12)
    # grades by the VARC-2 regurgitant-volume limits
    assert res.grade == ("mild" if res.regurgitant_volume_ml < 30 else
                         "moderate" if res.regurgitant_volume_ml < 60 else "severe")


def test_grade_thresholds_at_the_varc_limits():
    # choose diastole_s so the volume lands just below / above 30 and 60 mL
    base = paravalvular_leak(_ellipse(12.5, 12.0, 720), _ellipse(11.5, 11.5, 720), **PHYS,
                             diastole_s=0.5)
    per_s = base.regurgitant_volume_ml / 0.5
    for vol, grade in ((29.0, "mild"), (31.0, "moderate"), (59.0, "moderate"), (61.0, "severe")):
        t = vol / per_s
        assert t < 60 / 70
        res = paravalvular_leak(_ellipse(12.5, 12.0, 720), _ellipse(11.5, 11.5, 720), **PHYS,
                                diastole_s=t)
        assert res.regurgitant_volume_ml == pytest.approx(vol)
        assert res.grade == grade


def test_diastolic_duration_from_heart_rate():
    assert diastolic_duration_s(60.0) == pytest.approx(1.0 - 0.409)
    assert diastolic_duration_s(100.0) == pytest.approx(0.6 - 0.321)
    assert diastolic_duration_s(50.0) > diastolic_duration_s(90.0)   # diastole shortens with HR
    with pytest.raises(InputError, match="heart_rate_bpm"):
        diastolic_duration_s(10.0)


def test_pvl_sensitivities_move_the_right_way():
    res = paravalvular_leak(_ellipse(12.6, 12.0, 720), _ellipse(11.7, 11.7, 720), **PHYS)
    cd, gap_area, gap_vol = res.sensitivity
    assert cd.parameter == "discharge_coefficient" and cd.low < cd.nominal < cd.high
    assert cd.figure_at_low < cd.figure_nominal < cd.figure_at_high
    assert cd.figure_at_high / cd.figure_at_low == pytest.approx(cd.high / cd.low)  # Q ∝ Cd
    # a frame 0.5 mm larger leaves a smaller gap, 0.5 mm smaller a larger one
    assert gap_area.figure == "gap_area_mm2" and gap_area.low < 0 < gap_area.high
    assert gap_area.figure_at_low > gap_area.figure_nominal > gap_area.figure_at_high
    assert gap_vol.figure_at_low > gap_vol.figure_nominal > gap_vol.figure_at_high
    # Q ∝ A
    assert gap_vol.figure_at_low / gap_vol.figure_nominal == pytest.approx(
        gap_area.figure_at_low / gap_area.figure_nominal)
    assert gap_area.spread < 0


def test_pvl_result_is_typed_and_serialisable():
    res = paravalvular_leak(_ellipse(12.5, 12.0, 360), _ellipse(11.5, 11.5, 360), **PHYS,
                            level_above_inflow_mm=8.0, skirt_height_mm=6.0)
    assert isinstance(res, ParavalvularLeak)
    assert res.within_skirt is False and any("skirt" in w for w in res.warnings)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["gap_area_mm2"] == pytest.approx(res.gap_area_mm2)
    assert "VARC-2" in d["reference"] and d["method"]
    assert d["sensitivity"][0]["parameter"] == "discharge_coefficient"
    ok = paravalvular_leak(_ellipse(12.5, 12.0, 360), _ellipse(11.5, 11.5, 360), **PHYS,
                           level_above_inflow_mm=3.0, skirt_height_mm=6.0)
    assert ok.within_skirt is True and not ok.warnings


def test_pvl_bad_input_names_the_value():
    ann, frame = _ellipse(12.5, 12.0, 360), _ellipse(11.5, 11.5, 360)
    with pytest.raises(InputError, match="annulus_contour_mm"):
        paravalvular_leak(np.empty((0, 2)), frame, **PHYS)
    with pytest.raises(InputError, match="frame_contour_mm"):
        paravalvular_leak(ann, [[0, 0], [1, 1]], **PHYS)
    with pytest.raises(InputError, match=r"calcium_contours_mm\[0\]"):
        paravalvular_leak(ann, frame, calcium_contours_mm=[[[0, 0], [1, 0], [2, 0]]], **PHYS)
    with pytest.raises(InputError, match="lv_diastolic_mmhg"):
        paravalvular_leak(ann, frame, aortic_diastolic_mmhg=40.0, lv_diastolic_mmhg=45.0,
                          heart_rate_bpm=70.0)
    with pytest.raises(InputError, match="aortic_diastolic_mmhg"):
        paravalvular_leak(ann, frame, aortic_diastolic_mmhg=-5.0, heart_rate_bpm=70.0)
    with pytest.raises(InputError, match="discharge_coefficient"):
        paravalvular_leak(ann, frame, **PHYS, discharge_coefficient=1.5)
    with pytest.raises(InputError, match="frame_model"):
        paravalvular_leak(ann, frame, **PHYS, frame_model="rigid")
    with pytest.raises(DeviceError, match="outside the annulus"):
        paravalvular_leak(ann, _ellipse(11.5, 11.5, 360, (40.0, 0.0)), **PHYS)
    # a C-shaped annulus is not star-shaped about the frame centre
    t = np.linspace(0.3, 2 * np.pi - 0.3, 200)
    c_shape = np.vstack([np.c_[12 * np.cos(t), 12 * np.sin(t)],
                         np.c_[4 * np.cos(t[::-1]), 4 * np.sin(t[::-1])]])
    with pytest.raises(InputError, match="not star-shaped"):
        paravalvular_leak(c_shape, _ellipse(2.0, 2.0, 60, (-8.0, 0.0)), **PHYS)


# ------------------------------------------------------------------------------------ conduction


def _lvot_wall(radius: float = 11.0, z_lo: float = -20.0, z_hi: float = 10.0,
               n_theta: int = 360, n_z: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Facet centres and areas of a cylinder wall about +z (annulus at z = 0), mm."""
    th = (np.arange(n_theta) + 0.5) * 2 * np.pi / n_theta
    dz = (z_hi - z_lo) / n_z
    z = z_lo + (np.arange(n_z) + 0.5) * dz
    T, Z = np.meshgrid(th, z, indexing="ij")
    pts = np.c_[radius * np.cos(T.ravel()), radius * np.sin(T.ravel()), Z.ravel()]
    area = np.full(len(pts), radius * 2 * np.pi / n_theta * dz)
    return pts, area


def _field(pts: np.ndarray, *, z_bottom: float, peak_kpa: float) -> np.ndarray:
    """Contact from the frame inflow (z_bottom) upwards; peak at the septum (+x)."""
    th = np.arctan2(pts[:, 1], pts[:, 0])
    p = peak_kpa * (0.5 + 0.5 * np.cos(th))
    return np.where(pts[:, 2] >= z_bottom, p, 0.0)


CR = {"annulus_centre_mm": (0.0, 0.0, 0.0), "annulus_normal": (0.0, 0.0, 1.0),
      "septum_direction": (1.0, 0.0, 0.0)}


def test_conduction_index_on_a_known_coverage():
    pts, area = _lvot_wall()
    # contact from 6 mm below the annulus up: region 0–10 mm below → 60 % of it in contact
    p = _field(pts, z_bottom=-6.0, peak_kpa=500.0)
    res = conduction_risk(pts, p, area, depth_mm=6.0, **CR)
    assert isinstance(res, ConductionRisk)
    assert res.contact_pressure_index_percent == pytest.approx(60.0, abs=1e-9)
    region = 11.0 * math.radians(60.0) * 10.0                  # arc of ±30° × 10 mm band
    assert res.region_area_mm2 == pytest.approx(region, rel=1e-9)
    assert res.contact_area_mm2 == pytest.approx(0.6 * region, rel=1e-9)
    th = np.arctan2(pts[:, 1], pts[:, 0])
    sel = (np.abs(th) <= math.radians(30)) & (pts[:, 2] <= 0) & (pts[:, 2] >= -10)
    assert res.max_contact_pressure_kpa == pytest.approx(p[sel].max())
    assert res.contact_force_n == pytest.approx((p[sel] * area[sel]).sum() * 1e-3)
    assert res.risk is True                                    # CPI 60 % ≥ 15 %
    assert res.septum_direction_source == "given" and not res.warnings
    assert "modelling assumption" in res.threshold_source
    json.dumps(res.to_dict())


def test_conduction_trend_with_depth_and_low_risk_when_shallow():
    pts, area = _lvot_wall()
    shallow = conduction_risk(pts, _field(pts, z_bottom=-1.0, peak_kpa=100.0), area,
                              depth_mm=1.0, **CR)
    assert shallow.contact_pressure_index_percent == pytest.approx(10.0, abs=1e-9)
    assert shallow.risk is False
    deep = conduction_risk(pts, _field(pts, z_bottom=-6.0, peak_kpa=100.0), area,
                           depth_mm=6.0, **CR)
    # deeper implantation covers more of the septal region
    assert deep.contact_pressure_index_percent > shallow.contact_pressure_index_percent
    cpis = [t.contact_pressure_index_percent for t in deep.depth_trend]
    depths = [t.depth_mm for t in deep.depth_trend]
    assert depths == sorted(depths) and 6.0 in depths
    assert all(b >= a for a, b in zip(cpis, cpis[1:], strict=False))
    assert cpis == pytest.approx([20.0, 40.0, 60.0, 80.0, 100.0], abs=1e-9)
    assert deep.cpi_slope_percent_per_mm == pytest.approx(10.0, rel=1e-6)  # 1 mm = 10 % of band
    at = {t.depth_mm: t.contact_pressure_index_percent for t in deep.depth_trend}
    assert at[6.0] == pytest.approx(deep.contact_pressure_index_percent)


def test_conduction_sensitivity_to_sector_and_band():
    pts, area = _lvot_wall()
    res = conduction_risk(pts, _field(pts, z_bottom=-6.0, peak_kpa=300.0), area, depth_mm=6.0,
                          **CR)
    sector, band = res.sensitivity
    # contact covers the whole circumference in the band: the sector width does not change CPI
    assert sector.parameter == "sector_half_width_deg"
    assert sector.figure_at_low == pytest.approx(sector.figure_at_high)
    # a deeper band bottom adds uncovered wall: CPI falls; a shallower one raises it
    assert band.parameter == "band_bottom_below_annulus_mm"
    assert band.figure_at_low > band.figure_nominal > band.figure_at_high
    assert band.figure_at_low == pytest.approx(75.0, abs=1e-9)          # 6 / 8 mm
    assert band.figure_at_high == pytest.approx(50.0, abs=1e-9)         # 6 / 12 mm
    # a contact patch centred on the septum: a wider sector dilutes it
    th = np.arctan2(pts[:, 1], pts[:, 0])
    patch = np.where((np.abs(th) < math.radians(20)) & (pts[:, 2] < 0) & (pts[:, 2] > -10),
                     200.0, 0.0)
    res = conduction_risk(pts, patch, area, depth_mm=6.0, **CR)
    sector = res.sensitivity[0]
    assert sector.figure_at_low > sector.figure_nominal > sector.figure_at_high


def test_conduction_default_septum_direction_is_documented():
    pts, area = _lvot_wall()
    # in LPS the default is patient right (−x): contact on the −x side counts
    p = np.where(pts[:, 0] < -10.0, 100.0, 0.0)
    res = conduction_risk(pts, p, area, annulus_centre_mm=(0, 0, 0), annulus_normal=(0, 0, 1),
                          depth_mm=4.0)
    assert res.septum_direction == pytest.approx((-1.0, 0.0, 0.0))
    assert res.septum_direction_source.startswith("default")
    assert res.warnings and res.contact_pressure_index_percent > 0


def test_conduction_bad_input_names_the_value():
    pts, area = _lvot_wall(n_theta=36, n_z=30)
    p = np.zeros(len(pts))
    bad = p.copy()
    bad[5] = -3.0
    with pytest.raises(InputError, match=r"pressure_kpa\[5\]"):
        conduction_risk(pts, bad, area, depth_mm=4.0, **CR)
    bad[5] = np.nan
    with pytest.raises(InputError, match=r"pressure_kpa\[5\]"):
        conduction_risk(pts, bad, area, depth_mm=4.0, **CR)
    with pytest.raises(InputError, match="kPa expected"):
        conduction_risk(pts, p + 2e5, area, depth_mm=4.0, **CR)
    a2 = area.copy()
    a2[3] = 0.0
    with pytest.raises(InputError, match=r"area_mm2\[3\]"):
        conduction_risk(pts, p, a2, depth_mm=4.0, **CR)
    with pytest.raises(InputError, match="one value per point"):
        conduction_risk(pts, p[:-1], area, depth_mm=4.0, **CR)
    with pytest.raises(InputError, match="points_mm"):
        conduction_risk(np.empty((0, 3)), [], [], depth_mm=4.0, **CR)
    with pytest.raises(InputError, match="septum_direction"):
        conduction_risk(pts, p, area, depth_mm=4.0, annulus_centre_mm=(0, 0, 0),
                        annulus_normal=(0, 0, 1), septum_direction=(0, 0, 2))
    with pytest.raises(InputError, match="septal region"):
        conduction_risk(pts + [0, 0, 100.0], p, area, depth_mm=4.0, **CR)
    with pytest.raises(InputError, match="band_below_annulus_mm"):
        conduction_risk(pts, p, area, depth_mm=4.0, band_below_annulus_mm=(5.0, 2.0), **CR)


# ------------------------------------------------------------------------------------ coronary


def test_vtc_for_a_known_geometry():
    # frame radius 13 mm, 20 mm tall, inflow 4 mm below the annulus; ostia on a 30 mm sinus
    # (radial 15 mm; sinus 29 mm for the simple rule): left at 11 mm (below the frame top 16 mm), right at 17 mm (above it)
    res = coronary_obstruction(frame_radius_mm=13.0, frame_height_mm=20.0, depth_mm=4.0,
                               leaflet_length_mm=14.0,
                               ostia_mm={"left": (15.0, 0.0, 11.0), "right": (0.0, -15.0, 17.0)},
                               sinus_diameter_mm=29.0)
    assert isinstance(res, CoronaryObstruction)
    left, right = res.ostia
    assert left.height_mm == pytest.approx(11.0) and left.radial_distance_mm == pytest.approx(15.0)
    assert left.valve_to_coronary_distance_mm == pytest.approx(2.0)
    assert left.cusp_reaches_ostium and left.risk                 # cusp 14 ≥ 11, VTC 2 ≤ 4
    assert right.valve_to_coronary_distance_mm == pytest.approx(math.hypot(2.0, 1.0))
    assert not right.cusp_reaches_ostium and not right.risk      # cusp 14 < 17
    assert res.risk and res.valve_to_coronary_distance_mm == pytest.approx(2.0)
    assert left.simple_rule_risk is True and right.simple_rule_risk is False  # 11 < 12 ≤ 17
    assert res.frame_z_range_mm == (-4.0, 16.0)
    assert "Khan" in res.reference and "Ribeiro" in res.reference
    json.dumps(res.to_dict())


def test_coronary_from_heights_and_sinus_and_tilted_axis():
    res = coronary_obstruction(frame_radius_mm=12.0, frame_height_mm=18.0, depth_mm=3.0,
                               leaflet_length_mm=12.0, ostium_heights_mm={"left": 10.0},
                               sinus_diameter_mm=28.0, leaflet_thickness_mm=1.0)
    (left,) = res.ostia
    assert left.valve_to_coronary_distance_mm == pytest.approx(14.0 - 12.0 - 1.0)
    assert left.risk and left.simple_rule_risk
    # a tilted axis: the same ostium expressed in rotated coordinates gives the same VTC
    rot = np.array([[1, 0, 0], [0, math.cos(0.4), -math.sin(0.4)], [0, math.sin(0.4), math.cos(0.4)]])
    o = np.array([5.0, -3.0, 40.0])
    ost = o + rot @ np.array([14.0, 0.0, 10.0])
    res2 = coronary_obstruction(frame_radius_mm=12.0, frame_height_mm=18.0, depth_mm=3.0,
                                leaflet_length_mm=12.0, ostia_mm={"left": ost},
                                axis_origin_mm=o, axis=rot @ np.array([0, 0, 1.0]),
                                leaflet_thickness_mm=1.0)
    assert res2.valve_to_coronary_distance_mm == pytest.approx(1.0)
    assert res2.simple_rule_risk is None                        # no sinus diameter given


def test_coronary_sensitivity_moves_the_right_way():
    res = coronary_obstruction(frame_radius_mm=12.0, frame_height_mm=18.0, depth_mm=3.0,
                               leaflet_length_mm=10.5, ostium_heights_mm={"left": 11.0},
                               sinus_diameter_mm=34.0)
    radius, cusp = res.sensitivity
    # a larger frame comes closer to the ostium
    assert radius.figure_at_high == pytest.approx(radius.figure_nominal - 0.5)
    assert radius.figure_at_low == pytest.approx(radius.figure_nominal + 0.5)
    # cusp 10.5 mm does not reach the 11 mm ostium; 1 mm longer it would (VTC 5 > 4: no risk)
    assert cusp.figure_nominal == 0.0 and cusp.figure_at_high == 0.0
    res = coronary_obstruction(frame_radius_mm=14.0, frame_height_mm=18.0, depth_mm=3.0,
                               leaflet_length_mm=10.5, ostium_heights_mm={"left": 11.0},
                               sinus_diameter_mm=34.0)
    cusp = res.sensitivity[1]
    assert cusp.figure_at_low == 0.0 and cusp.figure_nominal == 0.0 and cusp.figure_at_high == 1.0


def test_coronary_bad_input_names_the_value():
    kw = {"frame_radius_mm": 12.0, "frame_height_mm": 18.0, "depth_mm": 3.0,
          "leaflet_length_mm": 12.0}
    with pytest.raises(InputError, match="ostia"):
        coronary_obstruction(**kw)
    with pytest.raises(InputError, match="sinus_diameter_mm"):
        coronary_obstruction(**kw, ostium_heights_mm={"left": 10.0})
    with pytest.raises(InputError, match="frame_radius_mm"):
        coronary_obstruction(**{**kw, "frame_radius_mm": -1.0}, ostium_heights_mm={"left": 10.0},
                             sinus_diameter_mm=30.0)
    with pytest.raises(InputError, match=r"ostia_mm\['left'\]"):
        coronary_obstruction(**kw, ostia_mm={"left": (1.0, float("nan"), 3.0)})
    with pytest.raises(InputError, match="axis"):
        coronary_obstruction(**kw, ostia_mm={"left": (15.0, 0.0, 10.0)}, axis=(0, 0, 0))


def test_blood_density_matches_the_physics_default():
    assert BLOOD_DENSITY_KG_M3 == 1060.0
    assert units.mmhg_to_pa(1.0) == pytest.approx(133.322387415)


# ------------------------------------------------------------------------------------ helpers


def test_contour_helpers_build_matching_inputs():
    c = circle_contour_mm(23.0, n_points=720)
    assert np.allclose(np.linalg.norm(c, axis=1), 11.5)
    th = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    p = polar_contour_mm(th[::-1], np.full(720, 11.5))            # any angle order
    assert np.allclose(p, c)
    # a tilted annulus plane: the 3-D ellipse projects back to its 2-D shape
    n = np.array([0.0, math.sin(0.3), math.cos(0.3)])
    e1 = np.array([1.0, 0.0, 0.0])
    e2 = np.cross(n, e1)
    centre = np.array([10.0, -5.0, 40.0])
    ell2 = _ellipse(13.0, 12.0, 360)
    ell3 = centre + ell2[:, :1] * e1 + ell2[:, 1:] * e2
    back = project_to_plane_mm(ell3, centre_mm=centre, normal=n, reference_direction=e1)
    assert np.allclose(back, ell2)
    res = paravalvular_leak(project_to_plane_mm(ell3, centre_mm=centre, normal=n),
                            project_to_plane_mm(centre + 11.5 * (np.cos(th)[:, None] * e1
                                                                 + np.sin(th)[:, None] * e2),
                                                centre_mm=centre, normal=n), **PHYS)
    exact = _polygon_ellipse_area(13.0, 12.0, 360) - _polygon_ellipse_area(11.5, 11.5, 720)
    assert res.gap_area_mm2 == pytest.approx(exact, rel=1e-9)
    with pytest.raises(InputError, match="diameter_mm"):
        circle_contour_mm(0.0)
    with pytest.raises(InputError, match="radii_mm"):
        polar_contour_mm(th, -np.ones(720))

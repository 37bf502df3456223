"""Flow effect of a valve size sweep on the coarse phantom twin (issue 22, item 6).

One module-scoped sweep (native valve + 20/23/26 mm balloon-expandable valve: four steady
solves on the 22 348-cell coarse phantom twin of ``coarse_demo``, measured 36 s on an idle
two-core machine and 60–80 s when it is shared) feeds the assertions:

(a) a larger valve in the same annulus gives a lower peak and net gradient and a larger EOA;
(b) the 3-D gradient agrees with Bernoulli at the computed jet velocity, and the Gorlin area
    from the 3-D gradient and flow agrees with the continuity area, within the tolerances
    stated and justified below;
(c) the outlet flows sum to the inlet flow within 1 %.

Tolerance of (b)
----------------
Physics: along the core streamline of the jet the flow accelerates from the LVOT to the vena
contracta with little loss (thin boundary layers, Re ≈ 10⁴), and the pressure is uniform across a
free jet, so the section-mean vena-contracta gradient is the expanded Bernoulli relation
ΔP = ½ρ(v_jet² − v_LVOT²) = 4(v_jet² − v_LVOT²) [mmHg, m/s] less a few per cent of viscous loss:
the ratio ΔP_3D / that value cannot exceed 1 by more than discretisation noise (upper bound
1.10). The LVOT term is not small here: the inlet profile is parabolic, its core moves at
≈ 1.3 m/s, so the simplified 4v² (which drops it) overstates the gradient of the large valves
several-fold (26 mm: 4v² ≈ 8 mmHg for a measured ≈ 0 mmHg) — the clinical rule is to keep the
proximal term when the jet is below ≈ 3 m/s (Baumgartner H et al., J Am Soc Echocardiogr
2009;22:1–23). The simplified form is therefore checked on the stenotic native valve only,
with its lower bound scaled by the omitted proximal share 1 − v_LVOT²/v_jet².

Discretisation: the steady solver is equal-order P1 with SUPG/PSPG stabilisation; on a
valve-zone mesh of h = 2 mm (h / r_orifice = 0.26–0.40 here) the stabilisation dissipates part of
the jet's kinetic energy, so the 3-D gradient falls short of Bernoulli. The solver documents
the same deficit (0.8 cm² plate at h = 1.2 mm: 18.8 mmHg against 33, ratio 0.57;
physics/steady.py). Measured on this twin before the bound was set: ratio 0.66 (native
valve) and 0.56 (20 mm) at h = 2 mm, 0.72 and 0.75 on the same phantom meshed at h = 1.4 mm —
the deficit shrinks as the mesh is refined, so it is discretisation and not a formula error.
Lower bound: 0.45, about 20 % below the worst measured and documented ratio. The bound still
catches the errors a flow-effect table must not have (a wrong ½ρ, Pa/mmHg, cm²/m² or v vs v²),
which move the ratio by a factor of two or more. Runs where the valve hardly restricts the flow
(expanded Bernoulli below 3 mmHg, i.e. the 23 and 26 mm valves) are left out: there the ratio
divides two numbers of the size of the solver's settling noise.

Gorlin: EOA_G = Q / (44.3 √ΔP) and EOA_cont = Q / v_jet give EOA_G / EOA_cont =
(100 / 44.3) v_jet / √ΔP = 1.129 / √(k (1 − v_LVOT²/v_jet²)) with k the Bernoulli ratio above
(1.129 = 50/44.3: Gorlin's constant leaves out the mmHg → pressure-head factor). The check is
made on the stenotic native valve, the case Gorlin's formula is for (it neglects the proximal
velocity, which dominates the large valves' tiny gradients), with k within the same bounds.
"""

from __future__ import annotations

import logging
import math
import time

import pytest

from cardiotwin.errors import DeviceError
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.study import FlowSummary, SizeSweep, size_sweep
from cardiotwin.workflows.rehearsal import twin_fluid_domain

log = logging.getLogger(__name__)

FAMILY = "balloon_expandable_thv"
SIZES = (20.0, 23.0, 26.0)
"""The phantom annulus (23 mm, 414 mm²) is sized to 23 mm; 20 and 26 mm are the under- and
over-sized neighbours a team would compare. 29 mm is left out: its leaflet orifice (3.95 cm²) is
as large as the annulus (4.1 cm²), so the annulus, not the valve, limits the flow and no
ordering of the gradient is expected."""

BERNOULLI_RATIO = (0.45, 1.10)
"""Bounds of ΔP_3D / 4(v_jet² − v_LVOT²) (module docstring)."""
MIN_BERNOULLI_MMHG = 3.0
"""Runs whose expanded Bernoulli gradient is below this are not ratio-checked."""
GORLIN_OVER_IDEAL = 100.0 / (2 * 44.3)
"""EOA_Gorlin / EOA_continuity for an ideal orifice with no proximal velocity (ΔP = 4 v²)."""


@pytest.fixture(scope="module")
def sweep(coarse_demo, tmp_path_factory) -> SizeSweep:
    store, twin = coarse_demo["store"], coarse_demo["twin"]
    root = tmp_path_factory.mktemp("size_sweep")
    t0 = time.perf_counter()
    result = size_sweep(twin_fluid_domain(twin, store), twin.landmarks, twin.physiology,
                        family=FAMILY, sizes=SIZES, work_dir=lambda name: root / name,
                        pseudonym=twin.pseudonym)
    log.info("size sweep: %.1f s\n%s", time.perf_counter() - t0, result.table())
    return result


def _runs(sweep: SizeSweep) -> list[tuple[str, FlowSummary]]:
    return [("native", sweep.baseline)] + [(f"{p.nominal_diameter_mm:g} mm", p.after)
                                            for p in sweep.points]


def _expanded_bernoulli_mmhg(s: FlowSummary) -> float:
    return 4.0 * (s.peak_jet_velocity_m_s ** 2 - s.lvot_velocity_m_s ** 2)


def test_sweep_has_the_native_valve_and_every_size(sweep):
    assert sweep.sizes_mm == SIZES and sweep.family == FAMILY
    for name, s in _runs(sweep):
        assert s.status in ("converged", "settled"), (name, s.status_reason)
        assert s.peak_jet_velocity_m_s > 0 and s.lvot_velocity_m_s > 0, name
        assert s.eoa_continuity_cm2 > 0, name
    for p in sweep.points:
        assert p.comparison.before is sweep.baseline
        rows = {r.metric: r for r in p.rows()}
        assert rows["EOA, continuity (Q / peak jet velocity)"].after == p.after.eoa_continuity_cm2
        assert p.after.orifice_area_cm2 == pytest.approx(
            p.comparison.placement["orifice_area_mm2"] / 100.0)
    table = sweep.table()
    assert all(f"{d:g} mm" in table for d in SIZES) and "native" in table
    assert sweep.point(23.0).in_chart_range and not sweep.point(20.0).in_chart_range


def test_a_larger_valve_gives_a_lower_gradient_and_a_larger_eoa(sweep):
    # precondition of the physics: the valve, not the annulus, is the narrowest section
    for p in sweep.points:
        assert p.after.orifice_area_cm2 < sweep.annulus_area_mm2 / 100.0
    peaks = [p.after.peak_gradient_mmhg for p in sweep.points]
    nets = [p.after.net_gradient_mmhg for p in sweep.points]
    eoas = [p.after.eoa_continuity_cm2 for p in sweep.points]
    assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == len(peaks), peaks
    assert nets == sorted(nets, reverse=True) and len(set(nets)) == len(nets), nets
    assert eoas == sorted(eoas) and len(set(eoas)) == len(eoas), eoas
    # and every valve relieves the 0.8 cm² native stenosis
    assert peaks[0] < sweep.baseline.peak_gradient_mmhg
    assert max(eoas) > 1.5 * sweep.baseline.eoa_continuity_cm2


def test_gradient_agrees_with_bernoulli_at_the_jet_velocity(sweep):
    checked = []
    for name, s in _runs(sweep):
        expanded = _expanded_bernoulli_mmhg(s)
        if expanded < MIN_BERNOULLI_MMHG:
            continue
        ratio = s.peak_gradient_mmhg / expanded
        checked.append(name)
        assert BERNOULLI_RATIO[0] <= ratio <= BERNOULLI_RATIO[1], (
            f"{name}: 3-D {s.peak_gradient_mmhg:.2f} mmHg vs 4(v_jet² − v_LVOT²) = "
            f"{expanded:.2f} mmHg (ratio {ratio:.2f})")
    assert checked[:2] == ["native", "20 mm"], checked
    # the simplified 4v² on the stenotic native valve, its lower bound scaled by the share of
    # the jet's kinetic energy the simplified form attributes to the valve
    s = sweep.baseline
    share = 1.0 - (s.lvot_velocity_m_s / s.peak_jet_velocity_m_s) ** 2
    simplified = 4.0 * s.peak_jet_velocity_m_s ** 2
    assert BERNOULLI_RATIO[0] * share <= s.peak_gradient_mmhg / simplified <= BERNOULLI_RATIO[1]


def test_gorlin_area_agrees_with_the_continuity_area(sweep):
    s = sweep.baseline
    # Gorlin's area is computed from the 3-D gradient and flow as documented
    assert s.eoa_gorlin_cm2 == pytest.approx(
        s.inflow_ml_s / (44.3 * math.sqrt(s.peak_gradient_mmhg)), rel=1e-12)
    share = 1.0 - (s.lvot_velocity_m_s / s.peak_jet_velocity_m_s) ** 2
    lo = GORLIN_OVER_IDEAL / math.sqrt(BERNOULLI_RATIO[1] * share)
    hi = GORLIN_OVER_IDEAL / math.sqrt(BERNOULLI_RATIO[0] * share)
    ratio = s.eoa_gorlin_cm2 / s.eoa_continuity_cm2
    assert lo <= ratio <= hi, (s.eoa_gorlin_cm2, s.eoa_continuity_cm2, lo, hi)
    # continuity EOA of the 0.8 cm² stenosis: a jet is never wider than the hole (contraction
    # coefficient ≤ 1), with 10 % for the under-resolved jet (measured 1.02 at h = 2 mm)
    assert s.eoa_continuity_cm2 <= 1.10 * s.orifice_area_cm2


def test_outlet_flows_sum_to_the_inlet_flow(sweep):
    for name, s in _runs(sweep):
        total = sum(s.outlet_flows_l_min.values())
        assert abs(total - s.inflow_l_min) <= 0.01 * s.inflow_l_min, (name, total, s.inflow_l_min)


def test_sweep_round_trips_through_its_stored_form(sweep):
    again = SizeSweep.from_dict(sweep.to_dict(), pseudonym=sweep.points[0].comparison.pseudonym)
    assert again.table() == sweep.table()
    assert again.point(26.0).after == sweep.point(26.0).after


def test_old_flow_summaries_without_eoa_still_load():
    stored = {"label": "baseline", "peak_gradient_mmhg": 40.0, "net_gradient_mmhg": 30.0,
              "inflow_ml_s": 230.0, "outlet_flows_l_min": {"outlet:descending": 13.8}}
    s = FlowSummary.from_dict(stored)
    assert s.eoa_continuity_cm2 is None and s.eoa_gorlin_cm2 is None
    assert s.peak_jet_velocity_m_s is None and s.lvot_velocity_m_s is None
    out = s.to_dict()
    assert not {"eoa_continuity_cm2", "eoa_gorlin_cm2", "peak_jet_velocity_m_s",
                "lvot_velocity_m_s"} & set(out)


def test_a_size_not_in_the_catalog_is_refused_before_any_solve():
    d = 23.0
    lms = AorticRootLandmarks(
        annulus_centre_mm=(0.0, 0.0, 40.0), annulus_normal=(0.0, 0.0, 1.0),
        annulus_area_mm2=math.pi * (d / 2) ** 2, annulus_perimeter_mm=math.pi * d,
        annulus_diameter_mm=d, annulus_perimeter_diameter_mm=d, annulus_min_diameter_mm=d,
        annulus_max_diameter_mm=d, lvot_diameter_mm=d - 2, sinus_diameter_mm=d + 9,
        valve_orifice_area_mm2=80.0, valve_orifice_centre_mm=(0.0, 0.0, 50.0),
        valve_orifice_height_mm=10.0, calcium_volume_mm3=300.0)

    def no_runs(name):
        raise AssertionError(f"a run was started ({name})")

    with pytest.raises(DeviceError, match="available sizes"):
        size_sweep(None, lms, None, family=FAMILY, sizes=[23.0, 24.0], work_dir=no_runs)

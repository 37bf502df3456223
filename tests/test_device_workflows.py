"""The device use cases on a stored twin (issue 22): place, simulate — through the audited store."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from cardiotwin import workflows
from cardiotwin.errors import DeviceError


def test_placed_valve_is_stored_with_its_surface(coarse_demo):
    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    placed = workflows.place_on_twin(twin.pseudonym, store=store, actor=actor, depth_mm=4.0)
    pl = placed.placement
    # the recommended size of the sizing chart, 4 mm below the annulus along its normal
    assert pl.nominal_diameter_mm == placed.sizing.recommended_mm
    lms = twin.landmarks
    inflow = np.asarray(lms.annulus_centre_mm) - 4.0 * np.asarray(lms.annulus_normal)
    assert np.allclose(pl.inflow_centre_mm, inflow, atol=1e-9)
    # the exported surface: closed, and the frame's outer radius is the nominal one
    mesh = trimesh.load(placed.surface_files["stl"], force="mesh")
    radial = mesh.vertices - np.asarray(pl.inflow_centre_mm)
    radial -= np.outer(radial @ np.asarray(pl.axis), pl.axis)
    assert np.linalg.norm(radial, axis=1).max() == pytest.approx(pl.nominal_diameter_mm / 2, rel=0.02)
    stored = store.list_results(twin.pseudonym, actor=actor, purpose="test",
                                kind="device.placement")
    assert stored[-1]["id"] == placed.result_id
    assert stored[-1]["summary"]["placement"]["nominal_diameter_mm"] == pl.nominal_diameter_mm
    assert {"device.stl", "device.vtp"} <= set(stored[-1]["artifacts"])


def test_a_pose_outside_the_root_is_refused_and_nothing_is_stored(coarse_demo):
    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    before = len(store.list_results(twin.pseudonym, actor=actor, purpose="test",
                                    kind="device.placement"))
    with pytest.raises(DeviceError, match="size 24 mm is not in the catalog"):
        workflows.place_on_twin(twin.pseudonym, store=store, actor=actor, nominal_diameter_mm=24.0)
    after = store.list_results(twin.pseudonym, actor=actor, purpose="test", kind="device.placement")
    assert len(after) == before


def test_device_place_command_and_its_errors(coarse_demo):
    from typer.testing import CliRunner

    from cardiotwin.cli import app

    runner = CliRunner()
    pseudonym = coarse_demo["twin"].pseudonym
    store_dir = str(coarse_demo["store"].root)
    res = runner.invoke(app, ["device", "place", pseudonym, "--size", "23", "--tilt", "5",
                              "--store", store_dir])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "balloon_expandable_thv 23 mm" in out and "device surface (STL)" in out
    # an occluder needs its landing site, which the anatomy step cannot give: said, not guessed
    res = runner.invoke(app, ["device", "place", pseudonym, "--family", "laa_occluder",
                              "--size", "24", "--store", store_dir])
    assert res.exit_code == 1
    out = " ".join(res.output.split())
    assert "ostium" in out.lower() and "cannot" in out.lower()
    res = runner.invoke(app, ["device", "place", pseudonym, "--family", "laa_occluder",
                              "--size", "24", "--site-centre", "1,2", "--store", store_dir])
    assert res.exit_code != 0 and "three comma-separated numbers" in " ".join(res.output.split())


@pytest.fixture(scope="module")
def simulated(coarse_demo):
    """An undersized (20 mm) and an oversized (26 mm) valve expanded in the coarse twin's root
    (annulus 414 mm², area-derived diameter 23 mm), mechanics only (the flow effect of sizes is
    tested in tests/devices/test_flow_effect.py)."""
    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    return {size: workflows.simulate_on_twin(twin.pseudonym, store=store, actor=actor,
                                             nominal_diameter_mm=size, flow=False,
                                             wall_size_mm=2.0)
            for size in (20.0, 26.0)}


def test_an_oversized_frame_is_held_by_the_wall_in_equilibrium(simulated):
    from cardiotwin.devices.catalog import load_catalog

    m = simulated[26.0].mechanics
    fam = load_catalog().family("balloon_expandable_thv")
    k0 = fam.radial_stiffness_of(fam.size(26.0))
    # the wall stops the frame short of its nominal 26 mm, above the 23 mm annulus
    assert 23.0 < m.frame_final_diameter_mm < 26.0
    assert m.solution.converged and m.radial_force_n > 0
    # frame equilibrium: the wall's radial force is the frame's K0 × diameter reduction (2 %)
    assert m.radial_force_n == pytest.approx(k0 * (26.0 - m.frame_final_diameter_mm), rel=0.02)
    # the wall is loaded: contact over a band, stress and strain positive and finite
    assert m.contact_area_mm2 > 20.0 and m.max_contact_pressure_kpa > 0
    assert 0 < m.max_wall_stress_kpa < 1e5 and 0 < m.max_wall_strain < 1.0
    assert m.rupture_risk == (m.max_wall_stress_kpa > m.rupture_threshold_kpa)


def test_an_undersized_frame_is_reported_and_leaks_more(simulated):
    small, big = simulated[20.0], simulated[26.0]
    # 20 mm in a 23 mm annulus: said so by the sizing, and the frame barely touches the wall
    # (at most where the LVOT narrows): it keeps its nominal diameter, with a small fraction of
    # the 26 mm frame's force
    assert any("undersized" in w for w in small.sizing.assessment(20.0).warnings)
    assert small.mechanics.frame_final_diameter_mm > 0.99 * 20.0
    assert small.mechanics.radial_force_n < 0.05 * big.mechanics.radial_force_n
    # the paravalvular gap and the regurgitant volume fall as the valve grows
    gap_small = small.complications.paravalvular_leak.gap_area_mm2
    gap_big = big.complications.paravalvular_leak.gap_area_mm2
    assert gap_small > 40.0 and gap_big < gap_small
    assert (big.complications.paravalvular_leak.regurgitant_volume_ml
            < small.complications.paravalvular_leak.regurgitant_volume_ml)


def test_the_simulation_is_stored_with_its_files(simulated, coarse_demo):
    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    stored = {r["id"]: r for r in store.list_results(twin.pseudonym, actor=actor, purpose="test",
                                                     kind="device.simulation")}
    sim = simulated[26.0]
    rec = stored[sim.result_id]
    assert rec["summary"]["mechanics"]["radial_force_n"] == pytest.approx(sim.mechanics.radial_force_n)
    assert {"wall.msh", "device.stl", "contact_pressure.png", "contact_pressure.csv"} <= set(rec["artifacts"])
    assert rec["provenance"]["parameters"]["nominal_diameter_mm"] == 26.0


def test_simulate_refuses_what_it_does_not_model(coarse_demo):
    store, actor, twin = coarse_demo["store"], coarse_demo["actor"], coarse_demo["twin"]
    with pytest.raises(DeviceError, match="use `device place`"):
        workflows.simulate_on_twin(twin.pseudonym, store=store, actor=actor,
                                   family="laa_occluder", nominal_diameter_mm=24.0)


def test_the_report_shows_the_device_in_the_wall(simulated):
    from cardiotwin import report

    sim = simulated[26.0]
    html = "\n".join(report.device_section(sim))
    # the numbers of the simulation, its notes, and the contact map as an embedded image
    assert f"{sim.mechanics.radial_force_n:.1f}" in html
    assert f"{sim.complications.paravalvular_leak.gap_area_mm2:.1f}" in html
    assert all(n in html for n in sim.complications.notes)
    assert "data:image/png;base64," in html
    assert report.device_section(None) == []


def test_device_simulate_command_prints_the_mechanics_and_complications(coarse_demo):
    from typer.testing import CliRunner

    from cardiotwin.cli import app

    pseudonym = coarse_demo["twin"].pseudonym
    res = CliRunner().invoke(app, ["device", "simulate", pseudonym, "--size", "23", "--no-flow",
                                   "--wall-size", "2", "--store", str(coarse_demo["store"].root)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    for row in ("frame diameter, final (mm)", "radial force (N)", "wall stress, max principal",
                "rupture risk", "paravalvular gap area", "contact map"):
        assert row in out, row
    bad = CliRunner().invoke(app, ["device", "simulate", pseudonym, "--size", "24", "--no-flow",
                                   "--store", str(coarse_demo["store"].root)])
    assert bad.exit_code == 1 and "size 24 mm is not in the catalog" in " ".join(bad.output.split())

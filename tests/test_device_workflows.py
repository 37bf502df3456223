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

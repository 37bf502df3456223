"""Device surfaces: geometry against analytic solids, pose, watertightness and file round trips.

The surfaces revolve (r, z) profiles with n facets, so each cross-section is a regular n-gon
inscribed in the circle: its area is f·πr² with f = n·sin(2π/n)/(2π), its perimeter
2n·r·sin(π/n). Volumes and areas below are the exact ones of these polygonal solids (tight
tolerances), and the circular solids' (cylinder, cone frustum) at n = 1024 within the polygon error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from cardiotwin.devices.catalog import load_catalog
from cardiotwin.devices.placement import place_device
from cardiotwin.devices.surfaces import (
    LEAFLET_THICKNESS_MM,
    PART_GAP_MM,
    PART_IDS,
    SKIRT_THICKNESS_MM,
    DeviceShape,
    device_shape,
    device_surface,
    part_profiles,
    read_device_surface,
    revolve_profile,
    save_device_surface,
)
from cardiotwin.errors import DeviceError, InputError
from tests.devices.placement_fixtures import CATALOG, curved_centreline, landmarks

BALLOON = "balloon_expandable_thv"


def _f(n: int) -> float:
    """Area of the regular n-gon inscribed in the unit circle, over π."""
    return n * math.sin(2 * math.pi / n) / (2 * math.pi)


def _frustum_shell(r1: float, r2: float, h: float, t: float, n: int) -> tuple[float, float]:
    """Volume and area of the n-gonal shell between outer radii r1 → r2 and r − t over height h."""
    def solid(a, b):
        return math.pi * h / 3 * (a * a + a * b + b * b)
    vol = _f(n) * (solid(r1, r2) - solid(r1 - t, r2 - t))
    # the facets between two n-gons are trapezoids of slant height sqrt(h² + (Δr·cos(π/n))²)
    slant = math.sqrt(h**2 + ((r2 - r1) * math.cos(math.pi / n)) ** 2)
    lateral = n * math.sin(math.pi / n) * slant * ((r1 + r2) + (r1 + r2 - 2 * t))
    caps = _f(n) * math.pi * ((r1**2 - (r1 - t) ** 2) + (r2**2 - (r2 - t) ** 2))
    return vol, lateral + caps


def _valve(family: str = BALLOON, d: float = 23.0, **kw):
    cat = None if family == BALLOON else CATALOG
    return place_device(landmarks(), family=family, nominal_diameter_mm=d, catalog=cat, **kw)


@pytest.mark.parametrize("segments", [64, 128])
def test_balloon_frame_is_the_cylindrical_shell(segments):
    pl = _valve(depth_mm=4.0)
    frame = device_surface(pl, segments=segments).part_mesh("frame")
    # SAPIEN-3-like 23 mm: outer radius 11.5, wall 0.6 mm (catalog), height 18 mm
    vol, area = _frustum_shell(11.5, 11.5, 18.0, 0.6, segments)
    assert frame.volume == pytest.approx(vol, rel=1e-9)
    assert frame.area == pytest.approx(area, rel=1e-9)
    # exact cylinder formulas: V = πh(R² − r²), A = 2πh(R + r) + 2π(R² − r²)
    assert frame.volume == pytest.approx(math.pi * 18 * (11.5**2 - 10.9**2), rel=2e-3)


def test_tapered_frame_is_the_cone_frustum_shell():
    pl = _valve("tapered_thv", depth_mm=3.0)
    frame = device_surface(pl, segments=1024).part_mesh("frame")
    r1, r2, h, t = 11.5, 12.5, 18.0, 0.6
    vol, area = _frustum_shell(r1, r2, h, t, 1024)
    assert frame.volume == pytest.approx(vol, rel=1e-9)
    assert frame.area == pytest.approx(area, rel=1e-9)
    # circular frustum: V = πh/3 (R1² + R1R2 + R2²) − same for the inner radii;
    # lateral area π(R1 + R2)·sqrt(h² + (R2 − R1)²) for each wall
    v_exact = math.pi * h / 3 * ((r1**2 + r1 * r2 + r2**2) - ((r1 - t) ** 2 + (r1 - t) * (r2 - t)
                                                             + (r2 - t) ** 2))
    slant = math.sqrt(h**2 + (r2 - r1) ** 2)
    a_exact = (math.pi * slant * ((r1 + r2) + (r1 + r2 - 2 * t))
               + math.pi * (r1**2 - (r1 - t) ** 2 + r2**2 - (r2 - t) ** 2))
    assert frame.volume == pytest.approx(v_exact, rel=1e-5)
    assert frame.area == pytest.approx(a_exact, rel=1e-5)


def test_self_expanding_frame_flares_from_the_skirt_top_to_the_outflow():
    pl = _valve("self_thv", d=26.0)
    frame = device_surface(pl, segments=256).part_mesh("frame")
    # cylinder 13 mm radius over the 12 mm skirt, then a frustum 13 → 17 mm over 33 mm
    v1, a1 = _frustum_shell(13.0, 13.0, 12.0, 0.5, 256)
    v2, a2 = _frustum_shell(13.0, 17.0, 33.0, 0.5, 256)
    assert frame.volume == pytest.approx(v1 + v2, rel=1e-9)
    inner_cap = _f(256) * math.pi * (13.0**2 - 12.5**2)   # the two internal caps are not surface
    assert frame.area == pytest.approx(a1 + a2 - 2 * inner_cap, rel=1e-9)
    # widest at the outflow: the outer radius there is the outflow diameter / 2
    z, r = _axial_radial(pl, frame.vertices)
    assert r[np.isclose(z, 45.0)].max() == pytest.approx(17.0 * math.cos(0), rel=1e-9)


def _axial_radial(pl, points):
    a = np.asarray(pl.axis)
    v = np.asarray(points) - np.asarray(pl.inflow_centre_mm)
    z = v @ a
    return z, np.linalg.norm(v - np.outer(z, a), axis=1)


@pytest.mark.parametrize("family", [BALLOON, "tapered_thv", "self_thv"])
def test_surface_axis_and_inflow_centre_are_the_placements(family):
    pl = _valve(family, d=26.0 if family == "self_thv" else 23.0, tilt_deg=12.0,
                rotation_deg=70.0)
    surf = device_surface(pl, segments=96)
    frame = surf.part_mesh("frame")
    z, r = _axial_radial(pl, frame.vertices)
    # every frame vertex lies on the outer or inner profile around the placement's axis
    shape = pl.shape
    outer = np.interp(z, [0.0, shape.skirt_height_mm if family == "self_thv" else 0.0,
                          shape.height_mm],
                      [shape.inflow_diameter_mm / 2, shape.inflow_diameter_mm / 2,
                       shape.outflow_diameter_mm / 2])
    on_wall = np.isclose(r, outer, atol=1e-9) | np.isclose(r, outer - shape.wall_mm, atol=1e-9)
    assert on_wall.all()
    assert z.min() == pytest.approx(0.0, abs=1e-9) and z.max() == pytest.approx(shape.height_mm)
    # the centre of the inflow ring is the placement's inflow centre
    ring = frame.vertices[np.isclose(z, 0.0, atol=1e-9)]
    np.testing.assert_allclose(ring.mean(axis=0), pl.inflow_centre_mm, atol=1e-9)
    # the axis through the inflow and outflow ring centres is the placement's axis
    top = frame.vertices[np.isclose(z, shape.height_mm, atol=1e-9)].mean(axis=0)
    axis = (top - ring.mean(axis=0)) / np.linalg.norm(top - ring.mean(axis=0))
    np.testing.assert_allclose(axis, pl.axis, atol=1e-12)


def test_skirt_and_leaflets_sit_on_the_frame():
    pl = _valve(depth_mm=4.0)
    surf = device_surface(pl, segments=128)
    s = pl.shape
    z, r = _axial_radial(pl, surf.part_mesh("skirt").vertices)
    assert z.max() == pytest.approx(s.skirt_height_mm)        # 0.45 × 18 mm (catalog fraction)
    assert s.skirt_height_mm == pytest.approx(0.45 * 18.0)
    np.testing.assert_allclose(np.unique(np.round(r, 9)),
                               [11.5 + PART_GAP_MM, 11.5 + PART_GAP_MM + SKIRT_THICKNESS_MM])
    z, r = _axial_radial(pl, surf.part_mesh("leaflets").vertices)
    # open leaflets narrow to the orifice at the outflow edge: r = inner·sqrt(0.65)
    assert r[np.isclose(z, 18.0)].min() == pytest.approx(10.9 * math.sqrt(0.65))
    assert r.max() == pytest.approx(10.9 - PART_GAP_MM)
    assert pl.orifice_radius_mm == pytest.approx(10.9 * math.sqrt(0.65))


def _placed(kind: str):
    if kind == "stent":
        return place_device(landmarks(centreline=curved_centreline()), family="stent",
                            nominal_diameter_mm=20.0, arc_length_mm=15.0, catalog=CATALOG)
    if kind == "laa":
        return place_device(None, family="laa", nominal_diameter_mm=22.0, catalog=CATALOG,
                            ostium_centre_mm=(-30.0, 20.0, 60.0), ostium_normal=(1.0, 1.0, 0.0))
    if kind == "septal":
        return place_device(None, family="septal", nominal_diameter_mm=12.0, catalog=CATALOG,
                            defect_centre_mm=(0.0, 10.0, 70.0), defect_normal=(0.0, 1.0, 0.2))
    return _valve(kind if kind != "balloon" else BALLOON, d=26.0 if kind == "self_thv" else 23.0)


@pytest.mark.parametrize("kind, parts", [
    ("balloon", ("frame", "skirt", "leaflets")), ("self_thv", ("frame", "skirt", "leaflets")),
    ("stent", ("frame",)), ("laa", ("disc", "lobe")), ("septal", ("frame",))])
def test_every_part_is_a_closed_separate_body(kind, parts):
    surf = device_surface(_placed(kind), segments=64)
    assert surf.part_names == parts
    whole = trimesh.Trimesh(surf.vertices, surf.faces)   # merges coincident vertices
    assert whole.is_watertight and whole.is_winding_consistent
    assert whole.body_count == len(parts)   # parts stand apart: no vertex shared after merging
    for name in parts:
        m = surf.part_mesh(name)
        assert m.is_watertight and m.volume > 0


def test_occluder_solids_match_their_profiles():
    n = 512
    laa = device_surface(_placed("laa"), segments=n)
    s = _placed("laa").shape
    # disc: cylinder of the disc radius 14 mm, 2 mm thick; lobe: waist 0.4·22 mm over 4 mm, then
    # the 11 mm lobe over its 7.5 mm length
    assert laa.part_mesh("disc").volume == pytest.approx(_f(n) * math.pi * 14.0**2 * 2.0, rel=1e-9)
    v_lobe = _f(n) * math.pi * ((0.2 * 22.0) ** 2 * 4.0 + 11.0**2 * 7.5)
    assert laa.part_mesh("lobe").volume == pytest.approx(v_lobe, rel=1e-9)
    assert s.inflow_diameter_mm == 28.0 and s.waist_diameter_mm == pytest.approx(8.8)
    sep = device_surface(_placed("septal"), segments=n).part_mesh("frame")
    # right disc 10 mm radius, left 12 mm, each 1.5 mm thick; waist 6 mm radius over 4 mm
    v = _f(n) * math.pi * (10.0**2 * 1.5 + 12.0**2 * 1.5 + 6.0**2 * 4.0)
    assert sep.volume == pytest.approx(v, rel=1e-9)


@pytest.mark.parametrize("suffix", [".stl", ".vtp", ".vtk"])
@pytest.mark.parametrize("kind", ["balloon", "laa"])
def test_file_round_trip_keeps_geometry_and_part_ids(tmp_path, suffix, kind):
    surf = device_surface(_placed(kind), segments=48)
    path = save_device_surface(surf, tmp_path / f"device{suffix}")
    back = read_device_surface(path)
    assert not list(tmp_path.glob("*.part*"))
    assert sorted(back.part_names) == sorted(surf.part_names)
    np.testing.assert_array_equal(np.bincount(back.part), np.bincount(surf.part))
    tol = 1e-6 if suffix == ".stl" else 1e-12    # STL stores float32
    for name in surf.part_names:
        a, b = surf.part_mesh(name), back.part_mesh(name)
        assert b.is_watertight
        assert b.volume == pytest.approx(a.volume, rel=tol)
        np.testing.assert_allclose(b.bounds, a.bounds, atol=1e-4)
    # other readers see the same closed solid
    other = trimesh.load(path, force="mesh") if suffix == ".stl" else None
    if other is not None:
        assert other.is_watertight and other.volume == pytest.approx(surf.mesh.volume, rel=1e-6)
    if suffix != ".stl":
        assert back.label == surf.label


def test_bad_files_and_parts_are_refused(tmp_path):
    surf = device_surface(_placed("stent"), segments=16)
    with pytest.raises(InputError, match="'.obj'"):
        save_device_surface(surf, tmp_path / "d.obj")
    with pytest.raises(InputError, match="does not exist"):
        read_device_surface(tmp_path / "missing.vtp")
    (tmp_path / "bad.stl").write_bytes(b"solid x\nendsolid x\n")
    with pytest.raises(InputError, match="not a binary STL"):
        read_device_surface(tmp_path / "bad.stl")
    with pytest.raises(DeviceError, match="no part 'skirt'; parts: frame"):
        surf.part_mesh("skirt")


def test_shape_from_the_shipped_catalog_uses_the_documented_fallbacks():
    fam = load_catalog().family(BALLOON)
    s = device_shape(fam, fam.size(26.0))
    assert (s.kind, s.expansion) == ("transcatheter_aortic_valve", "balloon")
    assert s.inflow_diameter_mm == s.outflow_diameter_mm == 26.0
    assert s.skirt_height_mm == pytest.approx(fam.skirt_fraction * 20.0)
    assert s.leaflet_height_mm == pytest.approx(0.5 * 20.0)
    assert s.orifice_diameter_mm == pytest.approx(2 * (13.0 - 0.6) * math.sqrt(0.65))
    # contract-D fields are read when the catalog has them
    t = device_shape(CATALOG.family("tapered_thv"), CATALOG.family("tapered_thv").sizes[0])
    assert (t.outflow_diameter_mm, t.skirt_height_mm, t.leaflet_height_mm) == (25.0, 8.0, 9.0)


@pytest.mark.parametrize("kw, msg", [
    ({"wall_mm": 12.0}, "frame wall 12 mm is not below the smallest frame radius 11.5"),
    ({"skirt_height_mm": 30.0}, "skirt height 30 mm"),
    ({"orifice_diameter_mm": 22.5}, "orifice diameter 22.5 mm"),
    ({"kind": "pacemaker"}, "kind 'pacemaker'"),
    ({"height_mm": -1.0}, "height_mm must be positive; got -1"),
])
def test_impossible_shapes_are_refused_naming_the_value(kw, msg):
    base = dict(kind="transcatheter_aortic_valve", expansion="balloon", nominal_diameter_mm=23.0,
                height_mm=18.0, inflow_diameter_mm=23.0, outflow_diameter_mm=23.0, wall_mm=0.6,
                skirt_height_mm=8.0, leaflet_height_mm=9.0, orifice_diameter_mm=17.0)
    with pytest.raises(DeviceError, match=msg):
        DeviceShape(**{**base, **kw})


def test_revolve_profile_with_poles_is_closed():
    # a cone: apex and base centre on the axis → V = πr²h/3 for the inscribed n-gon pyramid
    v, f = revolve_profile(np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]), segments=200)
    m = trimesh.Trimesh(v, f, process=False)
    assert m.is_watertight and len(v) == 2 + 200
    assert m.volume == pytest.approx(_f(200) * math.pi * 9.0 * 4.0 / 3.0, rel=1e-12)
    with pytest.raises(InputError, match="segments must be at least 3; got 2"):
        revolve_profile(np.array([[1.0, 0.0], [2.0, 0.0], [2.0, 1.0]]), segments=2)
    assert set(PART_IDS) >= set(part_profiles(_placed("balloon").shape))
    assert LEAFLET_THICKNESS_MM > 0

"""Tests of cardiotwin.geometry.wall_mesh (tetrahedral vessel-wall meshes for device mechanics).

References: the cylindrical shell r_i ≤ r ≤ r_o of length L has volume π(r_o² − r_i²)L, lumen
area 2πr_iL, outer area 2πr_oL and ends π(r_o² − r_i²); the elliptic shell between the ellipses
(a, b) and (a + t, b + t) has volume π((a + t)(b + t) − ab)L and lumen area P·L with P by
Ramanujan's second approximation; a sector θ of the annulus r_i ≤ r ≤ r_i + d over Δz has volume
(θ/2)((r_i + d)² − r_i²)Δz. For the phantom root: distances to the lumen surface by trimesh's
exact closest point, the annulus perimeter from the phantom's landmarks.

Tolerances: a polygonal approximation of a circle of radius r by chords of length h misses
≈ h²/(12 r²) of the area and ≈ h²/(24 r²) of the perimeter (0.1 % at h = 1 mm, r = 10 mm); the
tests allow 0.5 % for the tube (gmsh places the nodes, not exactly uniform chords) and 2 % for
the calcium nodule (a few tetrahedra across it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from cardiotwin.errors import GeometryError, InputError
from cardiotwin.geometry.quality import tet_quality, tet_signed_volumes
from cardiotwin.geometry.surface import FluidSurface
from cardiotwin.geometry.volume_mesh import read_msh_arrays
from cardiotwin.geometry.wall_mesh import (
    WALL_CELLS,
    WALL_FACETS,
    WallDomain,
    tube_wall_domain,
    wall_domain_from_surface,
)
from cardiotwin.imaging.phantom import Phantom

RI, RO, LENGTH = 10.0, 12.0, 16.0
SIZE_MM = 1.0
#: wall thickness and segment of the phantom root
THICKNESS_MM, BELOW_MM, ABOVE_MM = 2.0, 6.0, 16.0


def _area(pts: np.ndarray, tri: np.ndarray) -> float:
    p = pts[tri]
    return float(0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum())


def _volume(pts: np.ndarray, tets: np.ndarray) -> float:
    return float(np.abs(tet_signed_volumes(pts, tets)).sum())


def _cells_by_group(path: str) -> dict[str, np.ndarray]:
    """Tetrahedra per volume group name (meshio)."""
    import meshio

    m = meshio.read(path)
    names = {int(v[0]): k for k, v in m.field_data.items() if int(v[1]) == 3}
    out: dict[str, list[np.ndarray]] = {}
    for block, tags in zip(m.cells, m.cell_data["gmsh:physical"], strict=True):
        if block.type == "tetra":
            for t in np.unique(tags):
                out.setdefault(names[int(t)], []).append(block.data[tags == t])
    return {k: np.concatenate(v) for k, v in out.items()}


# ---- tube ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tube(tmp_path_factory: pytest.TempPathFactory) -> WallDomain:
    out = tmp_path_factory.mktemp("tube") / "tube.msh"
    return tube_wall_domain(RI, RO, LENGTH, out_path=out, size_mm=SIZE_MM,
                            axis_origin_mm=(5.0, -3.0, 2.0), axis=(1.0, 2.0, 2.0), timeout_s=120)


def test_tube_volume_and_facet_areas_match_the_cylinder(tube: WallDomain) -> None:
    pts, tets, facets = read_msh_arrays(tube.mesh_path)
    assert tube.n_cells == len(tets) and tube.n_nodes == len(np.unique(tets))
    assert tube.thickness_mm == pytest.approx(RO - RI)
    assert not tube.has_calcium
    assert tube.axis == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert set(facets) == set(WALL_FACETS)
    assert _volume(pts, tets) == pytest.approx(math.pi * (RO**2 - RI**2) * LENGTH, rel=5e-3)
    assert _area(pts, facets["inner"]) == pytest.approx(2 * math.pi * RI * LENGTH, rel=5e-3)
    assert _area(pts, facets["outer"]) == pytest.approx(2 * math.pi * RO * LENGTH, rel=5e-3)
    for end in ("proximal", "distal"):
        assert _area(pts, facets[end]) == pytest.approx(math.pi * (RO**2 - RI**2), rel=5e-3)
    assert tet_quality(pts, tets)["n_inverted"] == 0


def test_tube_sits_on_its_axis(tube: WallDomain) -> None:
    pts, _, facets = read_msh_arrays(tube.mesh_path)
    n = np.asarray(tube.axis)
    rel = pts - np.asarray(tube.axis_origin_mm)
    z = rel @ n
    r = np.linalg.norm(rel - z[:, None] * n, axis=1)
    assert r.min() >= RI * (1 - 1e-3) and r.max() <= RO * (1 + 1e-6)
    assert np.allclose(z[np.unique(facets["proximal"])], -LENGTH / 2, atol=1e-6)
    assert np.allclose(z[np.unique(facets["distal"])], LENGTH / 2, atol=1e-6)
    assert np.allclose(r[np.unique(facets["inner"])], RI, rtol=1e-3)


def test_tube_domain_round_trips(tube: WallDomain) -> None:
    assert WallDomain.from_dict(tube.to_dict()) == tube


def test_tube_calcium_arc_is_tagged(tmp_path: Path) -> None:
    theta, (z0, z1), depth = (30.0, 90.0), (-3.0, 4.0), 1.0
    dom = tube_wall_domain(RI, RO, LENGTH, out_path=tmp_path / "ca.msh", size_mm=SIZE_MM,
                           calcium_arc=(theta, (z0, z1), depth), timeout_s=120)
    assert dom.has_calcium
    pts, tets, facets = read_msh_arrays(dom.mesh_path)
    cells = _cells_by_group(dom.mesh_path)
    assert set(cells) == set(WALL_CELLS)
    assert len(cells["tissue"]) + len(cells["calcium"]) == len(tets)
    analytic = math.radians(theta[1] - theta[0]) / 2 * ((RI + depth) ** 2 - RI**2) * (z1 - z0)
    assert _volume(pts, cells["calcium"]) == pytest.approx(analytic, rel=2e-2)
    c = pts[cells["calcium"]].mean(axis=1)  # axis (0, 0, 1): e1, e2 from plane_basis
    from cardiotwin.geometry.landmarks import plane_basis

    e1, e2 = plane_basis(np.array([0.0, 0.0, 1.0]))
    angle = np.degrees(np.arctan2(c @ e2, c @ e1))
    assert angle.min() > theta[0] - 1 and angle.max() < theta[1] + 1
    assert np.all((c[:, 2] > z0) & (c[:, 2] < z1))
    assert np.all(np.hypot(c @ e1, c @ e2) < RI + depth)
    # the nodule is inside the wall: the lumen facets keep their full area
    assert _area(pts, facets["inner"]) == pytest.approx(2 * math.pi * RI * LENGTH, rel=5e-3)


def test_elliptic_tube(tmp_path: Path) -> None:
    e = 0.2
    dom = tube_wall_domain(RI, RO, LENGTH, out_path=tmp_path / "ell.msh", size_mm=SIZE_MM,
                           ellipticity=e, timeout_s=120)
    pts, tets, facets = read_msh_arrays(dom.mesh_path)
    a, b, t = RI / math.sqrt(1 - e), RI * math.sqrt(1 - e), RO - RI
    assert b / a == pytest.approx(1 - e)
    assert _volume(pts, tets) == pytest.approx(math.pi * ((a + t) * (b + t) - a * b) * LENGTH,
                                               rel=5e-3)
    hh = ((a - b) / (a + b)) ** 2
    perimeter = math.pi * (a + b) * (1 + 3 * hh / (10 + math.sqrt(4 - 3 * hh)))  # Ramanujan
    assert _area(pts, facets["inner"]) == pytest.approx(perimeter * LENGTH, rel=5e-3)


def test_tube_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "x.msh"
    with pytest.raises(InputError, match="inner_radius_mm"):
        tube_wall_domain(12.0, 10.0, 10.0, out_path=out)
    with pytest.raises(InputError, match="ellipticity"):
        tube_wall_domain(10.0, 12.0, 10.0, out_path=out, ellipticity=0.9)
    with pytest.raises(InputError, match="depth"):
        tube_wall_domain(10.0, 12.0, 10.0, out_path=out, calcium_arc=((0, 90), (-1, 1), 3.0))
    with pytest.raises(InputError, match="θ1 - θ0"):
        tube_wall_domain(10.0, 12.0, 10.0, out_path=out, calcium_arc=((90, 0), (-1, 1), 1.0))
    with pytest.raises(InputError, match="timeout_s"):
        tube_wall_domain(10.0, 12.0, 10.0, out_path=out, timeout_s=0.0)
    with pytest.raises(GeometryError, match="max_cells"):
        tube_wall_domain(10.0, 12.0, 10.0, out_path=out, size_mm=0.1, max_cells=100_000)
    assert not out.exists()


def test_tube_meshing_is_time_bounded(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(GeometryError, match=r"did not finish within 0\.2 s: stopped in gmsh step"):
        tube_wall_domain(RI, RO, LENGTH, out_path=tmp_path / "x.msh", size_mm=0.4,
                         timeout_s=0.2)
    assert time.monotonic() - t0 < 20.0
    assert not (tmp_path / "x.msh").exists()


# ---- the phantom's aortic root ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lumen_stl(phantom_fluid_surface: FluidSurface,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lumen") / "lumen_surface.stl"
    phantom_fluid_surface.mesh.export(path)  # as the anatomy step stores it
    return path


def _frame(phantom: Phantom) -> tuple[np.ndarray, np.ndarray]:
    lm = phantom.truth.landmarks
    return np.asarray(lm.annulus_centre_mm, float), np.asarray(lm.annulus_normal, float)


@pytest.fixture(scope="module")
def calcium_points(lumen_stl: Path, coarse_phantom: Phantom) -> np.ndarray:
    """Two lumen-surface points at the annulus level (as calcium on the annulus would be)."""
    centre, n = _frame(coarse_phantom)
    mesh = trimesh.load(lumen_stl)
    v = np.asarray(mesh.vertices)
    z = (v - centre) @ n
    near = np.flatnonzero(np.abs(z) < 1.5)
    return v[near[[0, len(near) // 2]]]


@pytest.fixture(scope="module")
def root(lumen_stl: Path, coarse_phantom: Phantom, calcium_points: np.ndarray,
         tmp_path_factory: pytest.TempPathFactory) -> WallDomain:
    out = tmp_path_factory.mktemp("root") / "root_wall.msh"
    return wall_domain_from_surface(lumen_stl, coarse_phantom.truth.landmarks, out_path=out,
                                    thickness_mm=THICKNESS_MM, below_mm=BELOW_MM,
                                    above_mm=ABOVE_MM, size_mm=SIZE_MM,
                                    calcium_points_mm=calcium_points, timeout_s=300)


def test_root_wall_tags_and_frame(root: WallDomain, coarse_phantom: Phantom) -> None:
    centre, n = _frame(coarse_phantom)
    assert root.axis_origin_mm == pytest.approx(tuple(centre))
    assert root.axis == pytest.approx(tuple(n))
    assert root.thickness_mm == THICKNESS_MM
    pts, tets, facets = read_msh_arrays(root.mesh_path)
    assert set(facets) == set(WALL_FACETS)
    assert (root.n_cells, root.n_nodes) == (len(tets), len(np.unique(tets)))
    q = tet_quality(pts, tets)
    assert q["n_inverted"] == 0 and q["min_dihedral_deg"] > 2.0
    z = (pts - centre) @ n
    assert np.allclose(z[np.unique(facets["proximal"])], -BELOW_MM, atol=1e-6)
    assert np.allclose(z[np.unique(facets["distal"])], ABOVE_MM, atol=1e-6)
    assert z.min() == pytest.approx(-BELOW_MM, abs=1e-6)
    assert z.max() == pytest.approx(ABOVE_MM, abs=1e-6)


def test_root_wall_has_the_requested_thickness_on_the_lumen(root: WallDomain,
                                                           lumen_stl: Path) -> None:
    pts, _, facets = read_msh_arrays(root.mesh_path)
    lumen = trimesh.load(lumen_stl)
    _, d_in, _ = trimesh.proximity.closest_point(lumen, pts[np.unique(facets["inner"])])
    assert d_in.max() < 1e-3  # the inner facets lie on the lumen surface
    _, d_out, _ = trimesh.proximity.closest_point(lumen, pts[np.unique(facets["outer"])])
    assert np.allclose(d_out, THICKNESS_MM, atol=0.02 * THICKNESS_MM)
    # outside the lumen, not inside it
    assert not np.any(lumen.contains(pts[np.unique(facets["outer"])][::25]))


def test_root_wall_annulus_perimeter_matches_the_landmarks(root: WallDomain,
                                                           coarse_phantom: Phantom) -> None:
    centre, n = _frame(coarse_phantom)
    pts, _, facets = read_msh_arrays(root.mesh_path)
    inner = trimesh.Trimesh(pts, facets["inner"], process=False)
    segments = trimesh.intersections.mesh_plane(inner, n, centre)
    perimeter = float(np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1).sum())
    assert perimeter == pytest.approx(coarse_phantom.truth.landmarks.annulus_perimeter_mm,
                                      rel=0.05)


def test_root_wall_calcium_cells_where_asked(root: WallDomain,
                                             calcium_points: np.ndarray) -> None:
    assert root.has_calcium
    pts = read_msh_arrays(root.mesh_path)[0]
    cells = _cells_by_group(root.mesh_path)
    centroids = pts[cells["calcium"]].mean(axis=1)
    d = np.linalg.norm(centroids[:, None, :] - calcium_points[None], axis=2).min(axis=1)
    assert d.max() <= 1.0  # calcium_radius_mm
    for p in calcium_points:  # each point has calcium around it
        assert np.linalg.norm(centroids - p, axis=1).min() <= 1.0
    tissue = pts[cells["tissue"]].mean(axis=1)
    dt = np.linalg.norm(tissue[:, None, :] - calcium_points[None], axis=2).min(axis=1)
    assert dt.min() > 1.0


def test_root_wall_bad_input(lumen_stl: Path, coarse_phantom: Phantom, tmp_path: Path) -> None:
    lm = coarse_phantom.truth.landmarks
    out = tmp_path / "x.msh"
    kw = {"out_path": out, "size_mm": SIZE_MM, "below_mm": BELOW_MM, "above_mm": ABOVE_MM}
    with pytest.raises(InputError, match="not found"):
        wall_domain_from_surface(tmp_path / "missing.stl", lm, **kw)
    with pytest.raises(InputError, match="thickness_mm"):
        wall_domain_from_surface(lumen_stl, lm, **{**kw, "size_mm": 0.0})
    # a landmark off the surface
    centre, n = _frame(coarse_phantom)
    off = dataclasses.replace(lm, annulus_centre_mm=tuple(centre + 60.0 * np.cross(n, [0, 0, 1])))
    with pytest.raises(GeometryError, match="not inside the lumen|does not reach"):
        wall_domain_from_surface(lumen_stl, off, **kw)
    # past the LVOT inlet cap (12 mm below the annulus)
    with pytest.raises(GeometryError, match="reduce below_mm"):
        wall_domain_from_surface(lumen_stl, lm, **{**kw, "below_mm": 11.0})
    # a mesh over the size limit
    with pytest.raises(GeometryError, match="max_cells"):
        wall_domain_from_surface(lumen_stl, lm, **{**kw, "max_cells": 1000})
    with pytest.raises(InputError, match="calcium_points_mm"):
        wall_domain_from_surface(lumen_stl, lm, **kw, calcium_points_mm=np.zeros((3, 2)))
    assert not out.exists()


def test_root_wall_refuses_open_and_non_manifold_surfaces(lumen_stl: Path,
                                                           coarse_phantom: Phantom,
                                                           tmp_path: Path) -> None:
    lm = coarse_phantom.truth.landmarks
    centre, n = _frame(coarse_phantom)
    mesh = trimesh.load(lumen_stl)
    kw = {"out_path": tmp_path / "x.msh", "below_mm": BELOW_MM, "above_mm": ABOVE_MM}
    # a hole in the wall at the annulus level
    z = (np.asarray(mesh.triangles_center) - centre) @ n
    ring = np.flatnonzero(np.abs(z) < 2.0)
    hole = np.linalg.norm(mesh.triangles_center[ring] - mesh.triangles_center[ring[0]], axis=1)
    keep = np.ones(len(mesh.faces), bool)
    keep[ring[hole < 3.0]] = False
    open_path = tmp_path / "open.stl"
    trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False).export(open_path)
    with pytest.raises(GeometryError, match="open"):
        wall_domain_from_surface(open_path, lm, **kw)
    # a fin: a third triangle on an edge of the wall near the annulus
    f = mesh.faces[ring[0]]
    fin = np.asarray(mesh.vertices)[f[:2]].mean(axis=0) + 3.0 * np.asarray(mesh.face_normals[ring[0]])
    vertices = np.vstack([mesh.vertices, fin])
    faces = np.vstack([mesh.faces, [f[0], f[1], len(mesh.vertices)]])
    nm_path = tmp_path / "nonmanifold.stl"
    trimesh.Trimesh(vertices, faces, process=False).export(nm_path)
    with pytest.raises(GeometryError, match="non-manifold"):
        wall_domain_from_surface(nm_path, lm, **kw)


def test_root_wall_meshing_is_time_bounded(lumen_stl: Path, coarse_phantom: Phantom,
                                           tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(GeometryError, match=r"did not finish within 0\.3 s: stopped in gmsh step"):
        wall_domain_from_surface(lumen_stl, coarse_phantom.truth.landmarks,
                                 out_path=tmp_path / "x.msh", below_mm=BELOW_MM,
                                 above_mm=ABOVE_MM, size_mm=0.5, timeout_s=0.3)
    assert time.monotonic() - t0 < 30.0
    assert not (tmp_path / "x.msh").exists()


# ---- the root wall envelope of the 1.5 mm phantom (regression: gmsh looped on a cut speck) -----


@pytest.fixture(scope="module")
def envelope(coarse_phantom: Phantom, tmp_path_factory: pytest.TempPathFactory):
    """The root wall surface of the 1.5 mm phantom as the twin build makes it, and its landmarks.

    Cut 8 mm below and 20 mm above the annulus, it leaves specks of ~1e-6 mm² on which gmsh's
    reparametrisation looped until the time bound (before ``_clean_cuts``).
    """
    from cardiotwin.geometry.landmarks import measure_aortic_root
    from cardiotwin.geometry.wall_mesh import root_wall_surface
    from cardiotwin.imaging.segment import segment_heart

    seg = segment_heart(coarse_phantom.ct)
    lms = measure_aortic_root(coarse_phantom.ct, seg)
    path = tmp_path_factory.mktemp("envelope") / "root_wall_surface.stl"
    root_wall_surface(seg.labels, lms).export(path)
    return path, lms


@pytest.mark.parametrize("size_mm", [1.5, 1.0])
def test_root_wall_of_the_coarse_phantom_envelope(envelope, size_mm: float,
                                                  tmp_path: Path) -> None:
    path, lms = envelope
    below, above = 8.0, 20.0
    t0 = time.monotonic()
    dom = wall_domain_from_surface(path, lms, out_path=tmp_path / "wall.msh",
                                   thickness_mm=THICKNESS_MM, below_mm=below, above_mm=above,
                                   size_mm=size_mm, timeout_s=60)
    assert time.monotonic() - t0 < 60.0
    pts, tets, facets = read_msh_arrays(dom.mesh_path)
    assert set(facets) == set(WALL_FACETS)
    assert (dom.n_cells, dom.n_nodes) == (len(tets), len(np.unique(tets)))
    q = tet_quality(pts, tets)
    assert q["n_inverted"] == 0 and q["min_dihedral_deg"] > 2.0
    centre, n = np.asarray(lms.annulus_centre_mm), np.asarray(lms.annulus_normal)
    z = (pts - centre) @ n
    assert np.allclose(z[np.unique(facets["proximal"])], -below, atol=1e-6)
    assert np.allclose(z[np.unique(facets["distal"])], above, atol=1e-6)
    lumen = trimesh.load(path)
    _, d_in, _ = trimesh.proximity.closest_point(lumen, pts[np.unique(facets["inner"])])
    assert d_in.max() < 1e-3  # the inner facets lie on the lumen surface
    _, d_out, _ = trimesh.proximity.closest_point(lumen, pts[np.unique(facets["outer"])])
    assert np.allclose(d_out, THICKNESS_MM, atol=0.02 * THICKNESS_MM)
    assert not np.any(lumen.contains(pts[np.unique(facets["outer"])][::25]))


def test_cut_specks_are_removed_on_the_surface() -> None:
    """A cut a micrometre from a vertex: no speck left, every vertex still on the surface."""
    from cardiotwin.geometry.wall_mesh import _CUT_SPECK_AREA, _slab

    tube = trimesh.creation.cylinder(radius=RI, height=LENGTH, sections=48)
    tube = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(tube.vertices, tube.faces, 1.0))
    v = np.asarray(tube.vertices)
    z_cut = float(v[np.argmin(np.abs(v[:, 2] - 2.0)), 2]) + 1e-3  # 1 µm past a vertex
    origin, axis = np.zeros(3), np.array([0.0, 0.0, 1.0])
    raw = trimesh.Trimesh(*trimesh.intersections.slice_faces_plane(v, tube.faces, axis,
                                                                   [0, 0, -4.0])[:2])
    raw = trimesh.Trimesh(*trimesh.intersections.slice_faces_plane(
        raw.vertices, raw.faces, -axis, [0, 0, z_cut])[:2])
    assert raw.area_faces.min() < _CUT_SPECK_AREA * np.median(raw.area_faces)  # specks to remove
    part = _slab(tube, origin, axis, -4.0, z_cut)
    assert part.area_faces.min() >= _CUT_SPECK_AREA * np.median(part.area_faces)
    _, d, _ = trimesh.proximity.closest_point(tube, part.vertices)
    assert d.max() < 1e-9
    assert part.is_winding_consistent and len(part.split(only_watertight=False)) == 1
    z = np.asarray(part.vertices)[:, 2]
    assert z.min() == pytest.approx(-4.0) and z.max() == pytest.approx(z_cut)

"""Vessel-wall meshes for device–wall mechanics: a tetrahedral shell around the lumen, in mm.

A :class:`WallDomain` is the solid counterpart of :class:`~cardiotwin.geometry.volume_mesh.FluidDomain`:
a gmsh ``.msh`` file whose facet physical groups name the lumen side (``inner``), the outside
(``outer``) and the two cut ends, and whose volume groups separate soft tissue from calcium. The
axial coordinate ``z`` is measured along :attr:`WallDomain.axis` from
:attr:`WallDomain.axis_origin_mm` (the annulus centre for an aortic root, so ``z = 0`` is the
annulus plane).

Builders: :func:`tube_wall_domain` (a straight circular or elliptic tube, for verification and
benchmarks; ``-L/2 ≤ z ≤ L/2``) and :func:`wall_domain_from_surface` (the aortic root around the
annulus, ``-below_mm ≤ z ≤ above_mm``, from the twin's lumen surface). gmsh runs in a child
process with a time bound (:func:`cardiotwin.geometry.volume_mesh.run_gmsh_in_child`).

For the solid solver: coordinates in mm (LPS); the facet groups are whole, not split by
patch; the winding of the boundary triangles is not a contract (take outward normals from the
volume cells, e.g. ``ufl.FacetNormal``); the ``calcium`` group is absent when no cell is
calcium; dolfinx reads the file with ``dolfinx.io.gmsh.read_from_msh(path, comm, 0, gdim=3)``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cardiotwin.errors import GeometryError, InputError
from cardiotwin.geometry.quality import tet_quality

if TYPE_CHECKING:
    from cardiotwin.geometry.landmarks import AorticRootLandmarks

__all__ = [
    "DEFAULT_WALL_THICKNESS_MM",
    "WALL_CELLS",
    "WALL_FACETS",
    "WallDomain",
    "tube_wall_domain",
    "wall_domain_from_surface",
]

logger = logging.getLogger(__name__)

WALL_FACETS = {"inner": 1, "outer": 2, "proximal": 3, "distal": 4}
"""Facet physical-group tags of a wall mesh: lumen side, outside, proximal and distal cut ends."""

WALL_CELLS = {"tissue": 1, "calcium": 2}
"""Volume physical-group tags of a wall mesh."""


@dataclass(frozen=True)
class WallDomain:
    """A tetrahedral vessel-wall mesh on disk (mm, LPS).

    Attributes
    ----------
    mesh_path : str
        gmsh ``.msh`` file with the physical groups of :data:`WALL_FACETS` and :data:`WALL_CELLS`.
    axis_origin_mm : (3,) tuple
        A point on the vessel / device axis (``z = 0``).
    axis : (3,) tuple
        Unit axis, proximal → distal (LV → aorta for an aortic root).
    thickness_mm : float
        Wall thickness the mesh was built with.
    n_cells, n_nodes : int
        Mesh size.
    has_calcium : bool
        Whether any cell carries the ``calcium`` tag.
    """

    mesh_path: str
    axis_origin_mm: tuple[float, float, float]
    axis: tuple[float, float, float]
    thickness_mm: float
    n_cells: int
    n_nodes: int
    has_calcium: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WallDomain:
        d = dict(d)
        d["axis_origin_mm"] = tuple(float(v) for v in d["axis_origin_mm"])
        d["axis"] = tuple(float(v) for v in d["axis"])
        return cls(**d)


# ------------------------------------------------------------------------------------------------
# builders (functions below the contract dataclass)
# ------------------------------------------------------------------------------------------------

DEFAULT_WALL_THICKNESS_MM = 2.0
"""Default wall thickness (mm) of :func:`wall_domain_from_surface`.

A modelling assumption, not a measurement: contrast CT does not resolve the aortic-root wall, so
the wall is given one uniform thickness. 2 mm is of the order of the adult thoracic-aortic wall
thickness seen on MRI and of the uniform root-wall thicknesses used in finite-element TAVI models;
the LVOT side (myocardium and membranous septum) is thicker in reality. Pass the value the study
needs; its effect on wall stress is roughly inverse (thin-wall hoop stress ``p·r/t``)."""

DEFAULT_TIMEOUT_S = 300.0
"""Default time bound (s) of the gmsh part of :func:`wall_domain_from_surface`."""

DEFAULT_MAX_CELLS = 2_000_000
"""Largest estimated tetrahedron count the builders accept before meshing."""

#: what to try when a gmsh step of a wall mesh runs out of time or dies, by step
_WALL_ADVICE = {
    "start": "the meshing process did not start; check that gmsh imports in a fresh Python",
    "geometry": "the wall geometry could not be built in time; check the radii and lengths",
    "classify": ("gmsh's surface classification is stuck, which happens on noisy or very fine "
                 "surfaces: smooth or decimate the lumen surface, or raise size_mm"),
    "mesh_2d": "raise size_mm",
    "offset": "the lumen surface is very fine; raise size_mm",
    "mesh_3d": "raise size_mm",
    "tag": "the mesh is too large to tag; raise size_mm",
    "write": "the mesh is too large to write; raise size_mm",
}

#: relative tolerance of the geometric surface classification of the tube
_TUBE_TOL = 1e-6


def _frame(axis_origin_mm: Any, axis: Any) -> tuple[np.ndarray, np.ndarray]:
    """Origin and rotation (columns ``e1, e2, n``) of the local frame of an axis (mm).

    ``e1, e2`` come from :func:`cardiotwin.geometry.landmarks.plane_basis`, so the angles of
    :func:`tube_wall_domain` are polar angles from ``e1`` towards ``e2``.
    """
    from cardiotwin.geometry.landmarks import plane_basis

    o = np.asarray(axis_origin_mm, dtype=float).reshape(-1)
    n = np.asarray(axis, dtype=float).reshape(-1)
    if o.shape != (3,) or n.shape != (3,) or not np.all(np.isfinite(np.r_[o, n])):
        raise InputError(f"axis_origin_mm and axis must be finite 3-vectors; got {o}, {n}")
    norm = float(np.linalg.norm(n))
    if norm < 1e-9:
        raise InputError("axis must be a non-zero 3-vector")
    n = n / norm
    e1, e2 = plane_basis(n)
    return o, np.column_stack([e1, e2, n])


def _check_timeout(timeout_s: float | None) -> None:
    if timeout_s is not None and not timeout_s > 0:
        raise InputError(f"timeout_s must be > 0 or None; got {timeout_s}")


def _run(target: str, args: tuple[Any, ...], timeout_s: float | None, what: str,
         out_path: Path) -> Any:
    """Call a gmsh builder of this module, bounded in a child process unless ``timeout_s`` is None."""
    from cardiotwin.geometry import volume_mesh

    if timeout_s is None:
        return globals()[target](*args, lambda step: None)
    return volume_mesh.run_gmsh_in_child(
        f"{__name__}:{target}", args, timeout_s=float(timeout_s), advice=_WALL_ADVICE,
        bound_hint=f"{what}(timeout_s=...)",
        partial_path=out_path.with_name(out_path.name + ".part.msh"))


def _write_msh(gmsh: Any, out_path: Path) -> None:
    opt = gmsh.option.setNumber
    opt("Mesh.MshFileVersion", 4.1)
    opt("Mesh.Binary", 0)
    opt("Mesh.SaveAll", 0)
    tmp = out_path.with_name(out_path.name + ".part.msh")
    gmsh.write(str(tmp))
    tmp.replace(out_path)


def _mesh_options(gmsh: Any, size_mm: float) -> None:
    opt = gmsh.option.setNumber
    opt("Mesh.RandomSeed", 0)
    opt("Mesh.MeshSizeMin", float(size_mm))
    opt("Mesh.MeshSizeMax", float(size_mm))
    opt("Mesh.MeshSizeFromPoints", 0)
    opt("Mesh.MeshSizeExtendFromBoundary", 0)
    opt("Mesh.MeshSizeFromCurvature", 0)
    opt("Mesh.Algorithm3D", 1)
    opt("Mesh.Optimize", 1)
    opt("Mesh.OptimizeNetgen", 1)


def _count_mesh(gmsh: Any) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Tetrahedron and node counts of the current model, with node coordinates and tets."""
    node_tags, xyz, _ = gmsh.model.mesh.getNodes()
    pts = np.asarray(xyz, dtype=float).reshape(-1, 3)
    index = np.full(int(node_tags.max()) + 1, -1, dtype=np.int64)
    index[np.asarray(node_tags, dtype=np.int64)] = np.arange(len(node_tags))
    _, tet_nodes = gmsh.model.mesh.getElementsByType(4)
    tets = index[np.asarray(tet_nodes, dtype=np.int64).reshape(-1, 4)]
    if len(tets) == 0:
        raise GeometryError("gmsh produced no tetrahedra; the wall does not enclose a volume")
    return len(tets), len(np.unique(tets)), pts, tets


def _check_quality(pts: np.ndarray, tets: np.ndarray, name: str) -> None:
    quality = tet_quality(pts, tets)
    if quality["n_inverted"]:
        raise GeometryError(f"the wall mesh {name} has {quality['n_inverted']} inverted tetrahedra")
    logger.info("wall mesh %s: %d tets, min dihedral %.1f°, min radius ratio %.3f", name,
                len(tets), quality["min_dihedral_deg"], quality["min_radius_ratio"])


def _estimated_cells(volume_mm3: float, size_mm: float) -> int:
    """Tetrahedra of edge ``size_mm`` (regular, ``√2/12·h³`` each) that fill ``volume_mm3``."""
    return int(volume_mm3 / (math.sqrt(2.0) / 12.0 * size_mm**3))


def _check_size(volume_mm3: float, size_mm: float, max_cells: int) -> None:
    n_est = _estimated_cells(volume_mm3, size_mm)
    if n_est > max_cells:
        raise GeometryError(
            f"the wall mesh would have about {n_est:,} tetrahedra (wall volume "
            f"{volume_mm3:.0f} mm³ at size_mm={size_mm:g}), more than max_cells={max_cells:,}: "
            "raise size_mm, shorten the segment (below_mm/above_mm or length_mm) or raise "
            "max_cells")


# ---- a straight tube ---------------------------------------------------------------------------


def tube_wall_domain(
    inner_radius_mm: float,
    outer_radius_mm: float,
    length_mm: float,
    *,
    out_path: str | Path,
    size_mm: float = 1.0,
    ellipticity: float = 0.0,
    axis_origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0),
    calcium_arc: tuple[tuple[float, float], tuple[float, float], float] | None = None,
    timeout_s: float | None = 120.0,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> WallDomain:
    """Tetrahedral mesh of a straight, circular or elliptic tube wall (gmsh OpenCASCADE), mm.

    The tube runs from ``z = -length_mm/2`` (``proximal``) to ``z = +length_mm/2`` (``distal``)
    along ``axis`` about ``axis_origin_mm``. The lumen is an ellipse of semi-axes
    ``a = r_i/sqrt(1-e)`` along ``e1`` and ``b = r_i·sqrt(1-e)`` along ``e2`` (``e1, e2`` from
    :func:`cardiotwin.geometry.landmarks.plane_basis`), so its area is ``π·r_i²`` whatever the
    ellipticity ``e = 1 - b/a`` (the clinical eccentricity index ``1 - D_min/D_max``); the outside
    is the ellipse of semi-axes ``a + t, b + t`` with ``t = r_o - r_i``. For ``e = 0`` the wall is
    the cylinder shell ``r_i ≤ r ≤ r_o`` of volume ``π(r_o² - r_i²)L``.

    Parameters
    ----------
    inner_radius_mm, outer_radius_mm : lumen radius (area-equivalent when elliptic) and outer
        radius (mm), ``0 < r_i < r_o``.
    length_mm : tube length (mm).
    out_path : ``.msh`` to write (v4.1, mm); written to a temporary name first.
    size_mm : element size (mm).
    ellipticity : ``1 - b/a`` of the lumen, in ``[0, 0.6]``.
    axis_origin_mm, axis : the tube's centre (``z = 0``) and its direction, proximal → distal.
    calcium_arc : ``((θ0_deg, θ1_deg), (z0_mm, z1_mm), depth_mm)``: the part of the wall with polar
        angle θ0..θ1 (degrees from ``e1`` towards ``e2``), axial position z0..z1 and within
        ``depth_mm`` of the lumen is the ``calcium`` cell group (a nodule on the lumen side);
        ``0 < depth_mm ≤ r_o - r_i``.
    timeout_s : time bound (s) of gmsh, which runs in a child process; ``None`` runs it here.
    max_cells : refuse before meshing when the estimated tetrahedron count is larger.

    Returns
    -------
    WallDomain
        ``thickness_mm = r_o - r_i``.

    Raises
    ------
    InputError
        Bad radii, lengths, ellipticity or calcium arc.
    GeometryError
        The mesh would be too large, meshing fails or does not finish within ``timeout_s``.
    """
    ri, ro, length, h = (float(inner_radius_mm), float(outer_radius_mm), float(length_mm),
                         float(size_mm))
    if not (0 < ri < ro and length > 0 and h > 0):
        raise InputError(
            "need 0 < inner_radius_mm < outer_radius_mm, length_mm > 0 and size_mm > 0; got "
            f"{inner_radius_mm}, {outer_radius_mm}, {length_mm}, {size_mm}")
    if not 0.0 <= ellipticity <= 0.6:
        raise InputError(f"ellipticity must be in [0, 0.6] (1 - Dmin/Dmax); got {ellipticity}")
    _check_timeout(timeout_s)
    origin, rot = _frame(axis_origin_mm, axis)
    calcium = None
    if calcium_arc is not None:
        try:
            (t0, t1), (z0, z1), depth = calcium_arc
            t0, t1, z0, z1, depth = (float(v) for v in (t0, t1, z0, z1, depth))
        except (TypeError, ValueError) as exc:
            raise InputError("calcium_arc must be ((theta0_deg, theta1_deg), (z0_mm, z1_mm), "
                             f"depth_mm); got {calcium_arc!r}") from exc
        if not (0 < t1 - t0 <= 360.0):
            raise InputError(f"calcium_arc angles need 0 < θ1 - θ0 ≤ 360°; got {t0}, {t1}")
        z0, z1 = max(z0, -length / 2), min(z1, length / 2)
        if not z0 < z1:
            raise InputError(f"calcium_arc z range must overlap the tube (±{length / 2:g} mm)")
        if not 0 < depth <= ro - ri:
            raise InputError(f"calcium_arc depth must be in (0, {ro - ri:g}] mm; got {depth}")
        calcium = (t0, t1, z0, z1, depth)
    _check_size(math.pi * (ro * ro - ri * ri) * length * (1 + ellipticity), h, int(max_cells))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = {"ri": ri, "ro": ro, "length": length, "size": h, "e": float(ellipticity),
            "origin": origin, "rot": rot, "calcium": calcium}
    t_start = time.monotonic()
    n_cells, n_nodes, has_ca = _run("_tube_with_gmsh", (spec, out), timeout_s,
                                    "tube_wall_domain", out)
    logger.info("tube wall %s: %d tets, %d nodes (%.1f s)", out.name, n_cells, n_nodes,
                time.monotonic() - t_start)
    return WallDomain(mesh_path=str(out), axis_origin_mm=tuple(float(v) for v in origin),
                      axis=tuple(float(v) for v in rot[:, 2]), thickness_mm=ro - ri,
                      n_cells=n_cells, n_nodes=n_nodes, has_calcium=has_ca)


def _tube_with_gmsh(spec: dict[str, Any], out_path: Path, on_step: Any) -> tuple[int, int, bool]:
    """The gmsh part of :func:`tube_wall_domain`; returns (tets, nodes, has calcium)."""
    from cardiotwin.geometry.volume_mesh import gmsh_session

    ri, ro, length, e = spec["ri"], spec["ro"], spec["length"], spec["e"]
    t = ro - ri
    a_in, b_in = ri / math.sqrt(1.0 - e), ri * math.sqrt(1.0 - e)
    z_lo = -length / 2
    with gmsh_session(1, kind="wall") as gmsh:
        occ = gmsh.model.occ
        on_step("geometry")

        def ring(a: float, b: float, z: float, height: float, a_hole: float,
                 b_hole: float) -> list[tuple[int, int]]:
            outer = occ.addCurveLoop([occ.addEllipse(0, 0, z, a, b)])
            hole = occ.addCurveLoop([occ.addEllipse(0, 0, z, a_hole, b_hole)])
            surf = occ.addPlaneSurface([outer, hole])
            out = occ.extrude([(2, surf)], 0, 0, height)
            return [d for d in out if d[0] == 3]

        wall = ring(a_in + t, b_in + t, z_lo, length, a_in, b_in)
        calcium_vols: list[int] = []
        if spec["calcium"] is not None:
            t0, t1, z0, z1, depth = spec["calcium"]
            shell = ring(a_in + depth, b_in + depth, z0, z1 - z0, a_in, b_in)
            if t1 - t0 < 360.0:
                reach = 2.0 * (a_in + t)
                wedge = occ.addCylinder(0, 0, z0 - 1.0, 0, 0, z1 - z0 + 2.0, reach,
                                        angle=math.radians(t1 - t0))
                occ.rotate([(3, wedge)], 0, 0, 0, 0, 0, 1, math.radians(t0))
                shell, _ = occ.intersect(shell, [(3, wedge)])
            _, pieces = occ.fragment(wall, shell)
            calcium_vols = sorted({tag for dim, tag in pieces[1] if dim == 3})
        occ.synchronize()
        volumes = [tag for _, tag in gmsh.model.getEntities(3)]
        tissue_vols = [v for v in volumes if v not in calcium_vols]

        groups: dict[str, list[int]] = {name: [] for name in WALL_FACETS}
        tol = _TUBE_TOL * max(length, a_in + t)
        for _, s in gmsh.model.getEntities(2):
            xmin, ymin, zmin, xmax, ymax, zmax = gmsh.model.getBoundingBox(2, s)
            if zmax - zmin < 1e-3 * length:
                z = 0.5 * (zmin + zmax)
                if abs(z - z_lo) < 1e-3 * length:
                    groups["proximal"].append(s)
                elif abs(z + z_lo) < 1e-3 * length:
                    groups["distal"].append(s)
                continue
            lo, hi = gmsh.model.getParametrizationBounds(2, s)
            x, y, _ = gmsh.model.getValue(2, s, list(0.5 * (np.asarray(lo) + np.asarray(hi))))
            for name, (a, b) in (("inner", (a_in, b_in)), ("outer", (a_in + t, b_in + t))):
                if abs(math.hypot(x / a, y / b) - 1.0) * a < max(tol, 1e-6):
                    groups[name].append(s)
        missing = [n for n, g in groups.items() if not g]
        if missing:
            raise GeometryError(f"tube wall: boundary part(s) {missing} not found after the "
                                "OpenCASCADE booleans; check the calcium arc")
        for name, g in groups.items():
            gmsh.model.addPhysicalGroup(2, g, WALL_FACETS[name], name=name)
        gmsh.model.addPhysicalGroup(3, tissue_vols, WALL_CELLS["tissue"], name="tissue")
        if calcium_vols:
            gmsh.model.addPhysicalGroup(3, calcium_vols, WALL_CELLS["calcium"], name="calcium")
        _mesh_options(gmsh, spec["size"])
        try:
            on_step("mesh_2d")
            gmsh.model.mesh.generate(2)
            on_step("mesh_3d")
            gmsh.model.mesh.generate(3)
        except Exception as exc:  # gmsh raises bare Exception with its own message
            raise GeometryError(f"gmsh failed to mesh the tube wall: {exc}; change size_mm") \
                from exc
        on_step("tag")
        # meshed in the local frame (where the surfaces are recognised), then moved: the node
        # coordinates only, so that the entities keep their tags
        matrix = np.column_stack([spec["rot"], spec["origin"]]).ravel().tolist()
        gmsh.model.mesh.affineTransform(matrix)
        n_cells, n_nodes, pts, tets = _count_mesh(gmsh)
        _check_quality(pts, tets, out_path.name)
        on_step("write")
        _write_msh(gmsh, out_path)
    return n_cells, n_nodes, bool(calcium_vols)


# ---- from the twin's lumen surface -------------------------------------------------------------


def _load_surface(surface_path: str | Path) -> Any:
    import trimesh

    path = Path(surface_path)
    if not path.is_file():
        raise InputError(f"lumen surface {path} not found; the anatomy step writes "
                         "lumen_surface.stl in the twin's work folder")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types on unreadable files
        raise GeometryError(f"cannot read the lumen surface {path}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise GeometryError(f"{path} holds no triangles; export the lumen surface as STL/PLY/OBJ")
    mesh.merge_vertices()
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    return mesh


def _slab(mesh: Any, origin: np.ndarray, n: np.ndarray, z_lo: float, z_hi: float) -> Any:
    """The part of ``mesh`` between the planes ``z = z_lo`` and ``z = z_hi`` along ``n`` (open)."""
    import trimesh
    from trimesh.intersections import slice_faces_plane

    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    for normal, point in ((n, origin + z_lo * n), (-n, origin + z_hi * n)):
        v, f = slice_faces_plane(v, f, normal, point)[:2]
        if len(f) == 0:
            return None
    part = trimesh.Trimesh(v, f, process=False)
    part.merge_vertices(digits_vertex=6)
    part.update_faces(part.nondegenerate_faces())
    part.remove_unreferenced_vertices()
    v, f = np.asarray(part.vertices), np.asarray(part.faces)
    z = (v - origin) @ n
    on_cut = (np.abs(z - z_lo) < 1e-6) | (np.abs(z - z_hi) < 1e-6)
    v, f = _clean_cuts(v, f, on_cut, _CUT_SPECK_AREA * float(np.median(part.area_faces)),
                       _CUT_SPECK_EDGE * float(np.median(part.edges_unique_length)))
    return trimesh.Trimesh(v, f, process=False)


#: a triangle at a cut smaller than this fraction of the median triangle is a speck
#: (:func:`_clean_cuts`). gmsh's reparametrisation looped on specks of 7e-7..3e-6 of it (1.5 mm
#: phantom, cut 8 mm below / 20 mm above) and coped with 3e-5 (50 other cut positions)
_CUT_SPECK_AREA = 1e-5
#: longest move (fraction of the median edge) that :func:`_clean_cuts` makes to remove a speck
_CUT_SPECK_EDGE = 0.01


def _clean_cuts(vertices: np.ndarray, faces: np.ndarray, on_cut: np.ndarray, speck_mm2: float,
                eps_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Remove the specks that cutting a surface by a plane leaves along the cut.

    A plane passing within a hair of a vertex cuts its edges a hair from it: specks, triangles
    of near-zero area (5e-7 mm² on the 1.5 mm phantom's root cut 20 mm above the annulus, a
    micrometre from a vertex). gmsh's reparametrisation of the lumen maps them to triangles
    below its area threshold, splits the surface to get rid of them and, down to three
    triangles, loops forever (``classifySurfaces``: "parametrized triangles are too small").
    Only specks (area below ``speck_mm2``) touching the cut are removed, repeatedly until none
    is left or nothing can be done:

    1. the vertex off the cut opposite a cut edge (a boundary edge) of a speck, within
       ``eps_mm`` of it, moves onto that edge and the speck is dropped;
    2. an edge of a speck shorter than ``eps_mm`` with an end on the cut collapses onto that end
       (two cut ends only along the cut), unless the collapse would pinch the surface (link
       condition), turn a triangle over or lay one in the cut plane.

    Moved vertices land on cut edges or on other vertices, so every vertex stays on the input
    surface; the triangles around a moved vertex tilt by a few micrometres (the speck's size).

    Parameters
    ----------
    vertices, faces : the cut surface (mm); ``on_cut`` marks the vertices on the cut planes.
    speck_mm2 : area (mm²) below which a triangle is a speck.
    eps_mm : longest move (mm).
    """
    v, f, on_cut = vertices.copy(), np.asarray(faces, dtype=np.int64), on_cut.copy()
    for _ in range(20):
        changed = 0
        # 1. vertices a hair from a cut edge move onto it
        e = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        uniq, counts = np.unique(e, axis=0, return_counts=True)
        boundary = {(int(a), int(b)) for a, b in uniq[counts == 1]}
        p3 = v[f]
        speck = 0.5 * np.linalg.norm(np.cross(p3[:, 1] - p3[:, 0], p3[:, 2] - p3[:, 0]),
                                     axis=1) < speck_mm2
        speck &= on_cut[f].any(axis=1)
        if not np.any(speck):
            break
        dead = np.zeros(len(f), dtype=bool)
        for i in np.flatnonzero(speck & (on_cut[f].sum(axis=1) >= 2)):
            for k in range(3):
                a, b, p = (int(f[i, (k + j) % 3]) for j in range(3))
                if on_cut[p] or (min(a, b), max(a, b)) not in boundary:
                    continue
                ab = v[b] - v[a]
                s = float(np.dot(v[p] - v[a], ab) / np.dot(ab, ab))
                foot = v[a] + s * ab
                if not (0.0 < s < 1.0 and np.linalg.norm(v[p] - foot) < eps_mm):
                    continue
                others = f[np.any(f == p, axis=1) & ~dead]
                others = others[np.all(others != a, axis=1) | np.all(others != b, axis=1)]
                if np.any(np.sum(on_cut[others] | (others == p), axis=1) == 3):
                    break  # a triangle would lie in the cut plane
                v[p], on_cut[p], dead[i] = foot, True, True
                changed += 1
                break
        f, speck = f[~dead], speck[~dead]
        # 2. short edges of specks collapse onto their cut end
        e = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        uniq, inverse, counts = np.unique(e, axis=0, return_inverse=True, return_counts=True)
        of_speck = np.zeros(len(uniq), dtype=bool)
        of_speck[inverse.reshape(-1)[np.repeat(speck, 3)]] = True
        length = np.linalg.norm(v[uniq[:, 0]] - v[uniq[:, 1]], axis=1)
        cand = np.flatnonzero(of_speck & (length < eps_mm)
                              & (on_cut[uniq[:, 0]] | on_cut[uniq[:, 1]]))
        if len(cand):
            vf: dict[int, list[int]] = {}
            for i, tri in enumerate(f):
                for w in tri:
                    vf.setdefault(int(w), []).append(i)
            remap = np.arange(len(v))
            dead = np.zeros(len(f), dtype=bool)
            touched: set[int] = set()
            for k in cand[np.argsort(length[cand])]:
                a, b = int(uniq[k, 0]), int(uniq[k, 1])
                if not on_cut[a]:
                    a, b = b, a  # a stays (on the cut), b goes
                if on_cut[b] and counts[k] != 1:
                    continue  # two cut vertices across the surface: would pinch it
                ring = {int(w) for i in vf[a] + vf[b] for w in f[i]}
                if ring & touched:
                    continue
                shared = set(vf[a]) & set(vf[b])
                opposite = {int(w) for i in shared for w in f[i]} - {a, b}
                around_a = {int(w) for i in vf[a] for w in f[i]} - {a, b}
                around_b = {int(w) for i in vf[b] for w in f[i]} - {a, b}
                if around_a & around_b != opposite:
                    continue  # link condition
                moved = [i for i in vf[b] if i not in shared]
                if np.any(np.sum(on_cut[f[moved]] | (f[moved] == b), axis=1) == 3):
                    continue  # a triangle would lie in the cut plane
                p = v[f[moved]]
                q = p.copy()
                q[f[moved] == b] = v[a]
                n0 = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
                n1 = np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])
                if np.any(np.einsum("ij,ij->i", n0, n1) <= 0):
                    continue  # a triangle would turn over
                remap[b] = a
                dead[list(shared)] = True
                touched |= ring
                changed += 1
            f = remap[f[~dead]]
        if not changed:
            break
    used = np.unique(f)
    index = np.full(len(v), -1, dtype=np.int64)
    index[used] = np.arange(len(used))
    return v[used], index[f]


def _encloses(mesh: Any, origin: np.ndarray, rot: np.ndarray) -> tuple[bool, float]:
    """Whether the section of ``mesh`` by the plane ``z = 0`` encloses the axis, and its length.

    Parity of the crossings of the ray from the axis along ``e1`` with the section segments (no
    need for consistent orientation); the length is the total length of the section (mm).
    """
    local = (np.asarray(mesh.vertices) - origin) @ rot
    z = local[:, 2][mesh.faces]
    segs = []
    for i, j in ((0, 1), (1, 2), (2, 0)):
        zi, zj = z[:, i], z[:, j]
        cross = (zi < 0) != (zj < 0)
        w = zi[cross] / (zi[cross] - zj[cross])
        pi, pj = local[mesh.faces[cross, i], :2], local[mesh.faces[cross, j], :2]
        segs.append((np.flatnonzero(cross), pi + w[:, None] * (pj - pi)))
    faces = np.concatenate([s[0] for s in segs])
    pts = np.concatenate([s[1] for s in segs])
    if len(faces) == 0:
        return False, 0.0
    order = np.argsort(faces, kind="stable")
    faces, pts = faces[order], pts[order]
    keep = np.r_[faces[1:] == faces[:-1], False]  # a crossing triangle has exactly two points
    p, q = pts[keep], pts[np.r_[False, keep[:-1]]]
    length = float(np.linalg.norm(q - p, axis=1).sum())
    # ray from (0, 0) along +e1: segments straddling v = 0 crossed at u > 0
    straddle = (p[:, 1] < 0) != (q[:, 1] < 0)
    u = p[straddle, 0] + (q[straddle, 0] - p[straddle, 0]) * (
        p[straddle, 1] / (p[straddle, 1] - q[straddle, 1]))
    return bool(np.count_nonzero(u > 0) % 2 == 1), length


def _check_manifold(faces: np.ndarray) -> None:
    """Refuse edges shared by more than two triangles."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    if np.any(counts > 2):
        raise GeometryError(
            f"the lumen surface has {int(np.count_nonzero(counts > 2))} non-manifold edge(s) "
            "(shared by more than two triangles) near the annulus; repair it (e.g. "
            "cardiotwin.geometry.surface.repair_surface, or MeshLab) or rebuild it from labels")


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of vertex indices along the boundary edges of a triangle mesh."""
    _check_manifold(faces)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    bnd = uniq[counts == 1]
    neighbours: dict[int, list[int]] = {}
    for a, b in bnd:
        neighbours.setdefault(int(a), []).append(int(b))
        neighbours.setdefault(int(b), []).append(int(a))
    if any(len(v) != 2 for v in neighbours.values()):
        raise GeometryError("the lumen surface's boundary near the annulus is not a set of simple "
                            "loops (a vertex touches more than two open edges); repair the surface")
    loops, seen = [], set()
    for start in neighbours:
        if start in seen:
            continue
        loop, prev, cur = [start], -1, start
        seen.add(start)
        while True:
            a, b = neighbours[cur]
            nxt = a if a != prev else b
            if nxt == start:
                break
            loop.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def _tube_component(mesh: Any, origin: np.ndarray, rot: np.ndarray, z_lo: float, z_hi: float,
                    what: str) -> Any:
    """The part of ``mesh`` between two planes that surrounds the axis, checked to be a tube.

    Returns the component, outward-oriented (normals away from the axis), with exactly one
    boundary loop on each plane.
    """
    import trimesh

    n = rot[:, 2]
    part = _slab(mesh, origin, n, z_lo, z_hi)
    if part is None:
        raise GeometryError(
            f"the lumen surface does not reach the annulus plane: no triangle within {what} of "
            f"the annulus centre {np.round(origin, 1).tolist()} mm. Is the surface in the same "
            "patient coordinates (LPS mm) as the landmarks?")
    _check_manifold(np.asarray(part.faces))
    parts = part.split(only_watertight=False) if part.body_count > 1 else [part]
    around = [(p, length) for p in parts for inside, length in [_encloses(p, origin, rot)]
              if inside]
    if not around:
        raise GeometryError(
            f"the annulus centre {np.round(origin, 1).tolist()} mm is not inside the lumen "
            "surface (a landmark off the surface): check that the landmarks and the surface "
            "belong to the same twin and use the same coordinates (LPS mm)")
    comp = max(around, key=lambda pl: len(pl[0].faces))[0]
    if not comp.is_winding_consistent:
        trimesh.repair.fix_winding(comp)
    if not comp.is_winding_consistent:
        raise GeometryError("the lumen surface's triangles near the annulus are not consistently "
                            "oriented and could not be fixed; repair the surface")
    loops = _boundary_loops(np.asarray(comp.faces))
    local = (np.asarray(comp.vertices) - origin) @ rot
    tol = 1e-4 * max(1.0, z_hi - z_lo)
    ends = {"lo": [], "hi": [], "open": []}
    for loop in loops:
        z = local[loop, 2]
        key = "lo" if np.all(np.abs(z - z_lo) < tol) else (
            "hi" if np.all(np.abs(z - z_hi) < tol) else "open")
        ends[key].append(loop)
    if ends["open"]:
        raise GeometryError(
            f"the lumen surface is open (a hole of {len(ends['open'])} loop(s)) within {what} of "
            "the annulus; close it (cardiotwin.geometry.surface.repair_surface fills holes) or "
            "export a watertight surface")
    for key, side, option in (("lo", "below", "below_mm"), ("hi", "above", "above_mm")):
        if len(ends[key]) != 1:
            raise GeometryError(
                f"the lumen surface {side} the annulus is not one tube across the segment "
                f"({len(ends[key])} cut loops at {z_lo if key == 'lo' else z_hi:+.1f} mm; a cap, "
                f"branch or end of the surface lies within {what}): reduce {option}")
    # outward: normals point away from the axis on the whole
    centroids = (np.asarray(comp.triangles_center) - origin) @ rot
    radial = centroids[:, :2] / np.maximum(np.linalg.norm(centroids[:, :2], axis=1), 1e-9)[:, None]
    normals = np.asarray(comp.face_normals) @ rot
    if float(np.sum(comp.area_faces * np.einsum("ij,ij->i", normals[:, :2], radial))) < 0:
        comp.invert()
    return comp


def _fine_triangles(mesh: Any, max_edge_mm: float) -> np.ndarray:
    """(F, 3, 3) triangles of ``mesh`` subdivided to edges ≤ ``max_edge_mm`` (same surface)."""
    import trimesh

    v, f = trimesh.remesh.subdivide_to_size(np.asarray(mesh.vertices), np.asarray(mesh.faces),
                                            max_edge=max_edge_mm, max_iter=20)
    return np.asarray(v)[np.asarray(f)]


def _signed_distance_near(triangles: np.ndarray, points: np.ndarray, band_mm: float,
                          k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm, + outside) from ``points`` to a triangle surface, and closest points.

    Exact point–triangle distances to the ``k`` triangles with the nearest centroids (k-d tree);
    the sign is the side of the nearest triangle's outward normal. NaN beyond ``band_mm``.
    """
    from scipy.spatial import cKDTree
    from trimesh.triangles import closest_point

    centres = triangles.mean(axis=1)
    edge = float(np.linalg.norm(triangles[:, 1] - triangles[:, 0], axis=1).max())
    _, cand = cKDTree(centres).query(points, k=k, distance_upper_bound=band_mm + edge)
    out = np.full(len(points), np.nan)
    closest = np.full((len(points), 3), np.nan)
    hit = np.flatnonzero(cand[:, 0] < len(centres))
    if len(hit) == 0:
        return out, closest
    c = cand[hit]
    valid = c < len(centres)
    c = np.where(valid, c, 0)
    q = np.repeat(points[hit], k, axis=0)
    cp = closest_point(triangles[c.ravel()], q)
    d = np.linalg.norm(q - cp, axis=1).reshape(-1, k)
    d[~valid] = np.inf
    best = np.argmin(d, axis=1)
    rows = np.arange(len(hit))
    tri = triangles[c[rows, best]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    side = np.einsum("ij,ij->i", points[hit] - cp.reshape(-1, k, 3)[rows, best], normal)
    dist = d[rows, best]
    out[hit] = np.where(dist <= band_mm, np.where(side < 0, -dist, dist), np.nan)
    closest[hit] = cp.reshape(-1, k, 3)[rows, best]
    return out, closest


def wall_domain_from_surface(
    surface_path: str | Path,
    landmarks: AorticRootLandmarks,
    *,
    out_path: str | Path,
    thickness_mm: float = DEFAULT_WALL_THICKNESS_MM,
    below_mm: float = 8.0,
    above_mm: float = 20.0,
    size_mm: float = 1.0,
    calcium_points_mm: np.ndarray | None = None,
    calcium_radius_mm: float = 1.0,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> WallDomain:
    """Tetrahedral aortic-root wall around the annulus, built outward from the lumen surface.

    Method
    ------
    1. The lumen surface (``lumen_surface.stl`` of the anatomy step, or any triangle surface in
       LPS mm) is cut by two planes normal to the annulus normal, ``below_mm`` below the annulus
       plane (LVOT) and ``above_mm`` above it (root, sinuses); the connected part around the
       annulus centre is kept and must be one tube (one cut loop at each plane, no hole).
       Specks that a cut leaves where it passes a hair from a vertex (triangles under 1e-5 of
       the median area) are removed by moving that vertex onto the cut (by micrometres): gmsh's
       reparametrisation loops forever on them (see ``_clean_cuts``).
    2. gmsh reparametrises that tube and remeshes it at ``size_mm``; its nodes stay on the input
       triangles, so the ``inner`` facets lie on the lumen surface.
    3. Each lumen node is moved outward, along its neighbour-smoothed normal, to the point whose
       exact distance to the lumen (the tube extended ``thickness_mm`` + 1 mm past the cuts) is
       ``thickness_mm``; near the cuts the direction is turned into the cut plane so that the
       ends are flat. Where a concave crease tighter than the thickness would fold the offset
       surface, the offset nodes are relaxed and pulled back onto the ``thickness_mm`` level set
       until nothing folds (else a GeometryError). The outer facets repeat the lumen
       triangulation (one node per lumen node) and the ends are the strips between the cut
       loops and their offsets.
       Why: a signed-distance level set (marching cubes) is also robust on bumpy surfaces, but
       its many ill-shaped triangles made gmsh's reparametrisation stall on the phantom root;
       the node-to-node offset keeps the lumen's triangle quality, gives flat ends exactly in the
       cut planes and puts every outer node at exactly ``thickness_mm`` from the lumen.
    4. The closed wall surface (triangles kept as they are) is filled with tetrahedra by gmsh
       (Delaunay, gmsh + Netgen optimisation).
    5. Cells whose centroid lies within ``calcium_radius_mm`` of a calcium point form the
       ``calcium`` group (a separate discrete volume of the same mesh), the rest ``tissue``.

    Parameters
    ----------
    surface_path : triangle surface of the lumen (STL, PLY, OBJ; LPS mm). It may be open or
        capped away from the segment; within it, it must be a manifold tube.
    landmarks : :class:`~cardiotwin.geometry.landmarks.AorticRootLandmarks` of the same twin
        (annulus centre, normal and perimeter).
    out_path : ``.msh`` to write (v4.1, mm).
    thickness_mm : wall thickness (mm); see :data:`DEFAULT_WALL_THICKNESS_MM` (a modelling
        assumption: CT does not resolve the wall).
    below_mm, above_mm : extent of the segment below (LVOT) and above (aorta) the annulus plane
        (mm). The lumen surface must continue ``thickness_mm`` + 1 mm beyond both cuts.
    size_mm : element size (mm); ``size_mm ≤ thickness_mm / 2`` gives at least two elements
        across the wall.
    calcium_points_mm : (K, 3) LPS positions of calcium (e.g. the centres of the segmentation's
        ``calcium`` voxels); ``None`` = no calcium group.
    calcium_radius_mm : cells within this distance (mm) of a calcium point are calcium.
    timeout_s : time bound (s) of gmsh, which runs in a child process; ``None`` runs it here.
    max_cells : refuse before meshing when the estimated tetrahedron count is larger.

    Returns
    -------
    WallDomain
        ``axis_origin_mm`` = annulus centre, ``axis`` = annulus normal (LV → aorta); facets
        ``inner`` (lumen side), ``outer``, ``proximal`` (``z = -below_mm``), ``distal``
        (``z = +above_mm``); cells ``tissue`` and, when any, ``calcium``.

    Raises
    ------
    InputError
        Bad sizes, missing surface file, bad calcium points.
    GeometryError
        Unreadable, open or non-manifold surface near the annulus, annulus centre outside the
        lumen, a cap or branch within the segment, a mesh over ``max_cells``, a gmsh failure or
        a run longer than ``timeout_s`` (the message names the step).
    """
    t, below, above, h = (float(thickness_mm), float(below_mm), float(above_mm), float(size_mm))
    if not (t > 0 and below > 0 and above > 0 and h > 0 and calcium_radius_mm > 0):
        raise InputError(
            "thickness_mm, below_mm, above_mm, size_mm and calcium_radius_mm must be > 0; got "
            f"{thickness_mm}, {below_mm}, {above_mm}, {size_mm}, {calcium_radius_mm}")
    _check_timeout(timeout_s)
    calcium = None
    if calcium_points_mm is not None:
        calcium = np.asarray(calcium_points_mm, dtype=float)
        if calcium.ndim != 2 or calcium.shape[1] != 3 or not np.all(np.isfinite(calcium)):
            raise InputError(f"calcium_points_mm must be a finite (K, 3) array; got shape "
                             f"{calcium.shape}")
    origin, rot = _frame(landmarks.annulus_centre_mm, landmarks.annulus_normal)
    t_start = time.monotonic()
    mesh = _load_surface(surface_path)
    margin = t + 1.0
    extended = _tube_component(mesh, origin, rot, -below - margin, above + margin,
                               f"{below + margin:g} mm below / {above + margin:g} mm above")
    inner = _tube_component(extended, origin, rot, -below, above,
                            f"{below:g} mm below / {above:g} mm above")
    _, perimeter = _encloses(inner, origin, rot)
    ref = float(landmarks.annulus_perimeter_mm)
    if ref > 0 and abs(perimeter / ref - 1.0) > 0.25:
        raise GeometryError(
            f"the lumen surface's perimeter at the annulus plane is {perimeter:.1f} mm but the "
            f"landmarks say {ref:.1f} mm: the landmarks do not belong to this surface (or the "
            "annulus normal is wrong); re-measure the root on the twin's own segmentation")
    _check_size(float(inner.area) * t, h, int(max_cells))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = {"inner_vertices": np.asarray(inner.vertices, dtype=float),
            "inner_faces": np.asarray(inner.faces, dtype=np.int64),
            "lumen_triangles": _fine_triangles(extended, 1.0), "origin": origin, "rot": rot,
            "z_range": (-below, above), "thickness": t, "size": h, "calcium": calcium,
            "calcium_radius": float(calcium_radius_mm)}
    logger.info("lumen segment: %d triangles, perimeter at the annulus %.1f mm (landmarks "
                "%.1f mm), %.1f s", len(inner.faces), perimeter, ref, time.monotonic() - t_start)
    n_cells, n_nodes, has_ca = _run("_surface_wall_with_gmsh", (spec, out), timeout_s,
                                    "wall_domain_from_surface", out)
    if calcium is not None and len(calcium) and not has_ca:
        logger.warning("none of the %d calcium points lies within %.1f mm of the wall between "
                       "%.0f mm below and %.0f mm above the annulus", len(calcium),
                       calcium_radius_mm, below, above)
    logger.info("root wall %s: %d tets, %d nodes, thickness %.1f mm (%.1f s)", out.name,
                n_cells, n_nodes, t, time.monotonic() - t_start)
    return WallDomain(mesh_path=str(out), axis_origin_mm=tuple(float(v) for v in origin),
                      axis=tuple(float(v) for v in rot[:, 2]), thickness_mm=t, n_cells=n_cells,
                      n_nodes=n_nodes, has_calcium=has_ca)


def _closed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume enclosed by a closed, outward-oriented triangle surface (divergence theorem)."""
    p = vertices[faces]
    return float(np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6.0)


def _consistent_winding(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``faces`` with one winding across the remeshed patches (trimesh's fix when needed)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    if not mesh.is_winding_consistent:
        trimesh.repair.fix_winding(mesh)
        if not mesh.is_winding_consistent:
            raise GeometryError("the remeshed lumen surface near the annulus cannot be given a "
                                "consistent orientation; check the surface or change size_mm")
    return np.asarray(mesh.faces, dtype=np.int64)


def _oriented_tube(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray,
                   rot: np.ndarray) -> np.ndarray:
    """``faces`` wound so that the normals point away from the axis on the whole."""
    p = (vertices[faces] - origin) @ rot
    cross = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    radial = p.mean(axis=1)[:, :2]
    if float(np.sum(np.einsum("ij,ij->i", cross[:, :2], radial))) < 0:
        return faces[:, [0, 2, 1]]
    return faces


def _umbrella(faces: np.ndarray, n_nodes: int) -> Any:
    """Sparse averaging operator over the edge neighbours of each node."""
    from scipy import sparse

    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    a = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_nodes, n_nodes)).tocsr()
    a = ((a + a.T) > 0).astype(float)
    deg = np.asarray(a.sum(axis=1)).ravel()
    return sparse.diags(1.0 / np.maximum(deg, 1.0)) @ a


def _folded(inner_v: np.ndarray, outer_v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Triangles whose offset copy is flipped with respect to the lumen triangle."""
    n_in = np.cross(inner_v[faces[:, 1]] - inner_v[faces[:, 0]],
                    inner_v[faces[:, 2]] - inner_v[faces[:, 0]])
    n_out = np.cross(outer_v[faces[:, 1]] - outer_v[faces[:, 0]],
                     outer_v[faces[:, 2]] - outer_v[faces[:, 0]])
    return np.einsum("ij,ij->i", n_in, n_out) <= 0.05 * np.einsum("ij,ij->i", n_in, n_in)


def _offset_nodes(vertices: np.ndarray, faces: np.ndarray, lumen_triangles: np.ndarray,
                  origin: np.ndarray, rot: np.ndarray, z_range: tuple[float, float],
                  thickness_mm: float) -> np.ndarray:
    """Each lumen node moved outward to a point at ``thickness_mm`` from the lumen.

    1. Each node moves along its normal, smoothed over its neighbours (which spreads the rays
       at concave creases); the distance along the ray is solved so that the exact distance to
       the lumen triangles is ``thickness_mm``. Within ``thickness_mm`` of a cut plane the
       direction's axial part is faded out, so that the nodes of a cut stay in its plane.
    2. Where offset triangles still fold (a concave crease tighter than the thickness), the
       interior offset nodes are relaxed (neighbour averaging) and pulled back onto the
       ``thickness_mm`` level set along the distance gradient, until nothing folds.
    """
    import trimesh

    smooth = _umbrella(faces, len(vertices))
    normals = np.asarray(trimesh.Trimesh(vertices, faces, process=False).vertex_normals)
    for _ in range(5):
        normals = 0.5 * normals + 0.5 * (smooth @ normals)
    local_n = normals @ rot
    z = (vertices - origin) @ rot[:, 2]
    gap = np.minimum(z - z_range[0], z_range[1] - z)
    fade = np.clip(gap / thickness_mm, 0.0, 1.0)
    # nodes off the cuts may move freely on the level set; those of the cuts stay in their plane
    interior = np.ones(len(vertices), dtype=bool)
    for loop in _boundary_loops(faces):
        interior[loop] = False
    fade[~interior] = 0.0
    local_n[:, 2] *= fade
    direction = local_n @ rot.T
    direction /= np.maximum(np.linalg.norm(direction, axis=1), 1e-12)[:, None]
    step = np.full(len(vertices), thickness_mm)
    band = 3.0 * thickness_mm
    for _ in range(12):
        d, _ = _signed_distance_near(lumen_triangles, vertices + step[:, None] * direction, band)
        if np.any(~np.isfinite(d)):
            break
        step = np.clip(step + (thickness_mm - d), 0.5 * thickness_mm, 3.0 * thickness_mm)
        if np.max(np.abs(d - thickness_mm)) < 1e-3 * thickness_mm:
            break
    outer = vertices + step[:, None] * direction
    for _ in range(50):
        if not np.any(_folded(vertices, outer, faces)):
            break
        relaxed = 0.5 * outer + 0.5 * (smooth @ outer)
        d, cp = _signed_distance_near(lumen_triangles, relaxed, band)
        ok = interior & np.isfinite(d)
        grad = (relaxed[ok] - cp[ok]) / np.maximum(np.abs(d[ok]), 1e-9)[:, None]
        grad *= np.sign(d[ok])[:, None]
        outer[ok] = relaxed[ok] + (thickness_mm - d[ok])[:, None] * grad
    d, _ = _signed_distance_near(lumen_triangles, outer, band)
    bad = ~np.isfinite(d) | (np.abs(d - thickness_mm) > 0.02 * thickness_mm)
    folded = _folded(vertices, outer, faces)
    if np.any(bad) or np.any(folded):
        where = vertices[np.flatnonzero(bad)[0]] if np.any(bad) else \
            vertices[faces[np.flatnonzero(folded)[0], 0]]
        raise GeometryError(
            f"the wall cannot be offset {thickness_mm:g} mm from the lumen ({int(bad.sum())} "
            f"node(s) off the offset surface, {int(folded.sum())} folded triangle(s), e.g. near "
            f"{np.round(where, 1).tolist()} mm LPS): the lumen surface is too curved or folded "
            "there for this thickness; smooth the surface or reduce thickness_mm")
    return outer


def _assemble_wall(inner_v: np.ndarray, inner_f: np.ndarray, outer_v: np.ndarray,
                   origin: np.ndarray, rot: np.ndarray,
                   z_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One closed, outward-oriented triangle surface of the wall with a group per face.

    ``outer_v[i]`` is the offset of ``inner_v[i]``; the outer triangles repeat the (outward)
    lumen triangles, the lumen triangles are reversed (their normal points out of the wall) and
    each cut end is the strip of quads between a lumen cut loop and its offset. Groups are the
    :data:`WALL_FACETS` tags.
    """
    n = len(inner_v)
    vertices = np.concatenate([inner_v, outer_v])
    parts = [inner_f[:, [0, 2, 1]], inner_f + n]
    groups = [np.full(len(inner_f), WALL_FACETS["inner"]),
              np.full(len(inner_f), WALL_FACETS["outer"])]
    z = (inner_v - origin) @ rot[:, 2]
    tol = 1e-4 * max(1.0, z_range[1] - z_range[0])
    for loop in _boundary_loops(inner_f):
        at_lo = bool(np.all(np.abs(z[loop] - z_range[0]) < tol))
        name, sign = ("proximal", -1.0) if at_lo else ("distal", 1.0)
        a, b = loop, np.roll(loop, -1)
        strip = np.concatenate([np.column_stack([a, b, b + n]), np.column_stack([a, b + n, a + n])])
        p = vertices[strip]
        normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        if float(np.sum(normal @ rot[:, 2])) * sign < 0:
            strip = strip[:, [0, 2, 1]]
        parts.append(strip)
        groups.append(np.full(len(strip), WALL_FACETS[name]))
    return vertices, np.concatenate(parts), np.concatenate(groups).astype(np.int32)


def _remesh_lumen(gmsh: Any, vertices: np.ndarray, faces: np.ndarray,
                  size_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The lumen tube remeshed at ``size_mm`` (nodes on the input triangles)."""
    gmsh.model.addDiscreteEntity(2, 1)
    gmsh.model.mesh.addNodes(2, 1, np.arange(1, len(vertices) + 1), vertices.ravel())
    gmsh.model.mesh.addElementsByType(1, 2, [], (faces + 1).ravel())
    gmsh.model.mesh.createTopology()
    try:
        gmsh.model.mesh.classifySurfaces(math.radians(60.0), True, True, math.pi)
        gmsh.model.mesh.createGeometry()
    except Exception as exc:  # gmsh raises bare Exception with its own message
        raise GeometryError(f"gmsh could not reparametrise the lumen surface near the annulus "
                            f"({exc}); {_WALL_ADVICE['classify']}") from None
    _mesh_options(gmsh, size_mm)
    gmsh.option.setNumber("Mesh.Algorithm", 6)
    gmsh.option.setNumber("Mesh.MinimumCurveNodes", 2)
    try:
        gmsh.model.mesh.generate(2)
    except Exception as exc:
        raise GeometryError(f"gmsh failed to remesh the lumen surface: {exc}; change size_mm") \
            from exc
    tags, xyz, _ = gmsh.model.mesh.getNodes()
    _, tri_nodes = gmsh.model.mesh.getElementsByType(2)
    tags = np.asarray(tags, dtype=np.int64)
    tri_nodes = np.asarray(tri_nodes, dtype=np.int64).reshape(-1, 3)
    used = np.unique(tri_nodes)
    index = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    index[used] = np.arange(len(used))
    pts = np.asarray(xyz, dtype=float).reshape(-1, 3)
    where = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    where[tags] = np.arange(len(tags))
    return pts[where[used]], index[tri_nodes]


def _surface_wall_with_gmsh(spec: dict[str, Any], out_path: Path,
                            on_step: Any) -> tuple[int, int, bool]:
    """The gmsh part of :func:`wall_domain_from_surface`; returns (tets, nodes, has calcium)."""
    from scipy.spatial import cKDTree

    from cardiotwin.geometry.volume_mesh import gmsh_session

    origin, rot, z_range, t = spec["origin"], spec["rot"], spec["z_range"], spec["thickness"]
    with gmsh_session(1, kind="wall") as gmsh:
        on_step("mesh_2d")
        inner_v, inner_f = _remesh_lumen(gmsh, spec["inner_vertices"], spec["inner_faces"],
                                         spec["size"])
        inner_f = _consistent_winding(inner_v, inner_f)
        inner_f = _oriented_tube(inner_v, inner_f, origin, rot)
        on_step("offset")
        outer_v = _offset_nodes(inner_v, inner_f, spec["lumen_triangles"], origin, rot, z_range, t)
        vertices, faces, groups = _assemble_wall(inner_v, inner_f, outer_v, origin, rot, z_range)
        if _closed_volume(vertices, faces) <= 0:
            raise GeometryError("the assembled wall surface does not enclose a volume; check "
                                "the lumen surface near the annulus (self-intersections?)")
        on_step("mesh_3d")
        gmsh.model.add(f"cardiotwin_wall_volume_{time.monotonic_ns()}")
        tags = sorted(WALL_FACETS.values())
        for tag in tags:
            gmsh.model.addDiscreteEntity(2, tag)
        gmsh.model.mesh.addNodes(2, tags[0], np.arange(1, len(vertices) + 1), vertices.ravel())
        for tag in tags:
            gmsh.model.mesh.addElementsByType(tag, 2, [], (faces[groups == tag] + 1).ravel())
        # the surfaces keep these triangles: only the volume is meshed
        loop = gmsh.model.geo.addSurfaceLoop(tags)
        vol = gmsh.model.geo.addVolume([loop])
        gmsh.model.geo.synchronize()
        for name, tag in WALL_FACETS.items():
            gmsh.model.addPhysicalGroup(2, [tag], tag, name=name)
        _mesh_options(gmsh, spec["size"])
        try:
            gmsh.model.mesh.generate(3)
        except Exception as exc:
            raise GeometryError(f"gmsh failed to mesh the wall: {exc}; check the lumen surface "
                                "for self-intersections near the annulus or change size_mm") \
                from exc
        on_step("tag")
        n_cells, n_nodes, pts, tets = _count_mesh(gmsh)
        _check_quality(pts, tets, out_path.name)
        has_calcium = False
        if spec["calcium"] is not None and len(spec["calcium"]):
            elem_types, elem_tags, elem_nodes = gmsh.model.mesh.getElements(3, vol)
            k = list(elem_types).index(4)
            etags = np.asarray(elem_tags[k], dtype=np.int64)
            enodes = np.asarray(elem_nodes[k], dtype=np.int64).reshape(-1, 4)
            coords = _node_coordinates(gmsh, enodes)
            dist, _ = cKDTree(spec["calcium"]).query(coords.mean(axis=1),
                                                     distance_upper_bound=spec["calcium_radius"])
            is_ca = np.isfinite(dist)
            if np.any(is_ca) and not np.all(is_ca):
                # calcium cells move to a discrete volume of their own (same nodes)
                ca_vol = gmsh.model.addDiscreteEntity(3)
                gmsh.model.mesh.removeElements(3, vol, etags[is_ca])
                gmsh.model.mesh.addElementsByType(ca_vol, 4, etags[is_ca], enodes[is_ca].ravel())
                gmsh.model.mesh.reclassifyNodes()
                gmsh.model.addPhysicalGroup(3, [ca_vol], WALL_CELLS["calcium"], name="calcium")
                has_calcium = True
        gmsh.model.addPhysicalGroup(3, [vol], WALL_CELLS["tissue"], name="tissue")
        on_step("write")
        _write_msh(gmsh, out_path)
        gmsh.model.remove()  # the volume model; the session removes the lumen model
    return n_cells, n_nodes, has_calcium


def _node_coordinates(gmsh: Any, node_tags: np.ndarray) -> np.ndarray:
    """Coordinates (mm) of gmsh nodes, shaped like ``node_tags`` + (3,)."""
    tags, xyz, _ = gmsh.model.mesh.getNodes()
    pts = np.asarray(xyz, dtype=float).reshape(-1, 3)
    index = np.full(int(np.max(tags)) + 1, -1, dtype=np.int64)
    index[np.asarray(tags, dtype=np.int64)] = np.arange(len(tags))
    return pts[index[node_tags]]


ROOT_CLOSING_MM = 4.0
"""Radius (mm) of the ball that closes the root's envelope (see :func:`root_wall_surface`)."""


def root_wall_surface(labels, landmarks: AorticRootLandmarks, *, radius_mm: float = 40.0,
                      closing_mm: float = ROOT_CLOSING_MM, voxel_mm: float = 1.0):
    """The inner surface of the aortic-root wall: the envelope of the LVOT, root and native valve.

    The fluid surface wraps the native leaflets, so its section at the annulus has crevices (the
    pockets behind the leaflets) that an outward wall of 2 mm cannot follow without folding, and
    a device crushes the leaflets against the wall anyway. The wall of the mechanics is therefore
    built on the envelope of blood pool, leaflets and calcium (``lv_blood``, ``aorta``, ``valve``,
    ``calcium``) within ``radius_mm`` of the annulus centre: on a grid of about ``voxel_mm``
    (coarsened by whole voxels, a voxel set when any voxel under it is), closed with a ball of
    ``closing_mm`` (which also rounds the concave corner where the LVOT meets the LV), holes
    filled, and meshed by :func:`cardiotwin.geometry.surface.mask_surface`.

    Returns
    -------
    trimesh.Trimesh
        Watertight surface, LPS mm.

    Raises
    ------
    GeometryError
        No blood pool near the annulus.
    """
    from scipy import ndimage

    from cardiotwin.geometry.surface import mask_surface
    from cardiotwin.imaging.volume import Volume

    names = [n for n in ("lv_blood", "aorta", "valve", "calcium") if n in labels.names]
    vol = labels.volume
    centre = np.asarray(landmarks.annulus_centre_mm, dtype=float)
    ijk_c = vol.physical_to_index(centre)
    sp = np.asarray(vol.spacing_mm, dtype=float)
    f = np.maximum(1, np.round(voxel_mm / sp)).astype(int)            # coarsening per i, j, k
    half = np.ceil(radius_mm / sp).astype(int)
    lo = np.maximum(0, np.floor(ijk_c).astype(int) - half)
    hi = np.minimum(np.asarray(vol.shape[::-1]), np.floor(ijk_c).astype(int) + half + 1)
    if np.any(hi - lo < 2 * f):
        raise GeometryError("the annulus centre lies at the edge of the image: no root wall")
    sub = labels.mask(*names)[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    nk, nj, ni = (np.asarray(sub.shape) // f[::-1])
    sub = sub[:nk * f[2], :nj * f[1], :ni * f[0]]
    coarse = sub.reshape(nk, f[2], nj, f[1], ni, f[0]).any(axis=(1, 3, 5))
    c_sp = sp * f
    origin = vol.index_to_physical(lo + (f - 1) / 2.0)
    grid = Volume(np.zeros(coarse.shape, np.int8), tuple(c_sp), tuple(origin), vol.direction)
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in coarse.shape[::-1]), indexing="ij"),
                   axis=-1).transpose(2, 1, 0, 3)
    near = np.linalg.norm(grid.index_to_physical(ijk) - centre, axis=-1) <= radius_mm
    r = np.ceil(closing_mm / c_sp).astype(int)
    zz, yy, xx = np.ogrid[-r[2]:r[2] + 1, -r[1]:r[1] + 1, -r[0]:r[0] + 1]
    ball = (zz * c_sp[2]) ** 2 + (yy * c_sp[1]) ** 2 + (xx * c_sp[0]) ** 2 <= closing_mm ** 2
    pad = int(r.max()) + 1
    closed = ndimage.binary_closing(np.pad(coarse, pad), structure=ball)[pad:-pad, pad:-pad, pad:-pad]
    env = ndimage.binary_fill_holes(closed | coarse) & near
    lab, n = ndimage.label(env)
    if n == 0:
        raise GeometryError("no blood pool within "
                            f"{radius_mm:g} mm of the annulus centre: no root wall can be built")
    k0 = lab[tuple(np.clip(np.round(grid.physical_to_index(centre)[::-1]).astype(int), 0,
                           np.asarray(env.shape) - 1))]
    if k0 == 0:
        sizes = ndimage.sum(env, lab, range(1, n + 1))
        k0 = int(np.argmax(sizes)) + 1
    return mask_surface(lab == k0, grid, smoothing_iterations=30)

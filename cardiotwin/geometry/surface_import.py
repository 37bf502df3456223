"""A lumen surface the user brings (vmtk, SimVascular, 3D Slicer), made ready for meshing.

:func:`import_lumen_surface` reads an STL/PLY/OBJ or VTK PolyData (``.vtp``/``.vtk``) surface,
finds its coordinate convention from its overlap with the segmented lumen of the CT (LPS as DICOM
and cardiotwin, or RAS as most NIfTI-based tools write), opens flat caps it may already carry,
adds a straight flow extension to every open end (so that the inflow profile and the outlet
conditions act away from the anatomy), closes each with a flat cap and names the caps: the inlet
is the end nearest the annulus; outlets pointing inferiorly are the descending aorta, those
pointing superiorly the arch branches from patient right to left (as :func:`fluid_surface`
names them). The result is a :class:`~cardiotwin.geometry.surface.FluidSurface` like the one
built from labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import trimesh

from cardiotwin.errors import GeometryError, InputError
from cardiotwin.geometry.surface import ARCH_BRANCH_NAMES, CapPlane, FluidSurface
from cardiotwin.imaging.anatomy import AorticRootLandmarks
from cardiotwin.imaging.volume import LabelMap

__all__ = ["MIN_OVERLAP_FRACTION", "SurfaceConvention", "detect_convention",
           "import_lumen_surface", "read_surface"]

log = logging.getLogger(__name__)

MIN_OVERLAP_FRACTION = 0.6
"""Share of the surface's vertices that must lie on the segmented lumen (dilated 3 mm) in the
chosen convention; below it the surface belongs to another scan and is refused."""

_RAS = np.array([-1.0, -1.0, 1.0])


def read_surface(path: str | Path) -> trimesh.Trimesh:
    """A triangle surface from STL, PLY, OBJ (trimesh) or VTK PolyData ``.vtp``/``.vtk``
    (pyvista), coordinates as stored.

    Raises
    ------
    InputError
        A missing or unreadable file, or one without triangles.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"surface file {path} does not exist")
    try:
        if path.suffix.lower() in (".vtp", ".vtk"):
            import pyvista as pv

            poly = pv.read(path).extract_surface().triangulate()
            faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
            mesh = trimesh.Trimesh(np.asarray(poly.points, dtype=float), faces, process=True)
        else:
            mesh = trimesh.load(path, force="mesh", process=True)
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise InputError(f"surface file {path} could not be read ({exc})") from None
    if len(mesh.faces) < 4:
        raise InputError(f"surface file {path} holds {len(mesh.faces)} triangles; not a lumen")
    return mesh


@dataclass(frozen=True)
class SurfaceConvention:
    """Which coordinate convention a surface is in, and how well each fits the image."""

    convention: str
    overlap_lps: float
    overlap_ras: float


def detect_convention(mesh: trimesh.Trimesh, lumen: LabelMap, *, declared: str = "auto",
                      near_mm: float = 3.0) -> SurfaceConvention:
    """LPS or RAS: the convention under which the surface's vertices lie on the lumen.

    ``declared`` ("LPS", "RAS" or "auto") is checked against the image either way.

    Raises
    ------
    InputError
        The surface does not lie on the segmented lumen in the declared (or either) convention.
    """
    from scipy import ndimage

    vol = lumen.volume
    mask = lumen.array > 0
    it = max(1, int(round(near_mm / min(vol.spacing_mm))))
    near = ndimage.binary_dilation(mask, iterations=it)
    rng = np.random.default_rng(0)
    v = np.asarray(mesh.vertices)
    v = v[rng.choice(len(v), size=min(len(v), 5000), replace=False)]

    def overlap(points: np.ndarray) -> float:
        ijk = np.rint(vol.physical_to_index(points)).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.asarray(vol.shape[::-1])), axis=1)
        inside = np.zeros(len(points), bool)
        inside[ok] = near[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
        return float(inside.mean())

    lps, ras = overlap(v), overlap(v * _RAS)
    declared = declared.upper()
    if declared not in ("AUTO", "LPS", "RAS"):
        raise InputError(f"surface convention must be LPS, RAS or auto; got {declared!r}")
    choice = declared if declared != "AUTO" else ("LPS" if lps >= ras else "RAS")
    best = lps if choice == "LPS" else ras
    if best < MIN_OVERLAP_FRACTION:
        raise InputError(
            f"the surface does not lie on this scan's lumen: {100 * lps:.0f} % of its vertices "
            f"are on it read as LPS, {100 * ras:.0f} % as RAS (need "
            f"{100 * MIN_OVERLAP_FRACTION:.0f} %). Export it from a segmentation of this series, "
            "in patient coordinates")
    return SurfaceConvention(choice, lps, ras)


def _open_flat_caps(mesh: trimesh.Trimesh, *, min_area_mm2: float = 10.0, min_faces: int = 6,
                    max_angle_deg: float = 0.5) -> trimesh.Trimesh:
    """Remove the flat caps of a closed surface (groups of at least ``min_faces`` coplanar
    faces covering ``min_area_mm2``: a smoothed wall has only a few coplanar neighbours) so
    that its ends are open again."""
    if not mesh.is_watertight:
        return mesh
    adj = mesh.face_adjacency
    flat = mesh.face_adjacency_angles < np.radians(max_angle_deg)
    g = nx.Graph()
    g.add_nodes_from(range(len(mesh.faces)))
    g.add_edges_from(adj[flat].tolist())
    drop = []
    for comp in nx.connected_components(g):
        comp = np.fromiter(comp, int)
        if len(comp) < min_faces or mesh.area_faces[comp].sum() < min_area_mm2:
            continue
        # a cap meets the wall at a sharp rim; a flat strip of wall (a straight extension's
        # long faces) continues into the wall at a small angle
        inside = np.isin(adj, comp)
        rim = inside[:, 0] != inside[:, 1]
        if rim.any() and np.median(mesh.face_adjacency_angles[rim]) > np.radians(45.0):
            drop.append(comp)
    if not drop:
        raise GeometryError("the surface is closed and has no flat caps: cut its inlet and "
                            "outlets open (or cap them flat) in the tool that made it")
    keep = np.ones(len(mesh.faces), bool)
    keep[np.concatenate(drop)] = False
    out = mesh.submesh([np.flatnonzero(keep)], append=True)
    return out


def _boundary_loops(mesh: trimesh.Trimesh) -> list[np.ndarray]:
    """Ordered vertex indices of every open boundary loop."""
    edges = mesh.edges_sorted
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = unique[counts == 1]
    g = nx.Graph()
    g.add_edges_from(boundary.tolist())
    loops = []
    for comp in nx.connected_components(g):
        sub = g.subgraph(comp)
        if any(d != 2 for _, d in sub.degree()):
            raise GeometryError("an open end of the surface is not a simple loop (it touches "
                                "itself); repair the surface in the tool that made it")
        cycle = [e[0] for e in nx.find_cycle(sub)]
        loops.append(np.asarray(cycle, dtype=int))
    return loops


def _plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - c, full_matrices=False)
    return c, vt[2]


def import_lumen_surface(path: str | Path, *, lumen: LabelMap, landmarks: AorticRootLandmarks,
                         convention: str = "auto", extension_diameters: float = 1.0,
                         ) -> FluidSurface:
    """The user's lumen surface as a capped, named :class:`FluidSurface` in LPS mm.

    Parameters
    ----------
    path : path
        STL, PLY, OBJ, VTP or VTK surface of the blood lumen (open ends or flat caps).
    lumen : LabelMap
        The scan's segmented lumen (any non-zero label), to find the convention and to refuse a
        surface of another scan.
    landmarks : AorticRootLandmarks
        The inlet is the open end nearest the annulus centre.
    convention : "auto", "LPS" or "RAS"
    extension_diameters : float
        Length of each flow extension in diameters of its end (0: none).

    Raises
    ------
    InputError, GeometryError
        Unreadable file, surface off the scan, an end that is not a simple loop, fewer than two
        ends.
    """
    raw = read_surface(path)
    conv = detect_convention(raw, lumen, declared=convention)
    verts = np.asarray(raw.vertices) * (_RAS if conv.convention == "RAS" else 1.0)
    mesh = trimesh.Trimesh(verts, np.asarray(raw.faces), process=True)
    mesh = _open_flat_caps(mesh)
    loops = _boundary_loops(mesh)
    if len(loops) < 2:
        raise GeometryError(f"the surface has {len(loops)} open end(s); a lumen needs an inlet "
                            "and at least one outlet")
    v = np.asarray(mesh.vertices)
    new_v = [v]
    faces = [np.asarray(mesh.faces)]
    n_v = len(v)
    ends = []
    for loop in loops:
        pts = v[loop]
        c, n = _plane(pts)
        radius = float(np.sqrt(np.mean(np.sum((pts - c) ** 2, axis=1))))
        near = v[np.linalg.norm(v - c, axis=1) < 2.0 * radius]
        if np.dot(c - near.mean(axis=0), n) < 0:  # outward: away from the lumen behind the end
            n = -n
        length = extension_diameters * 2.0 * radius
        flat = pts - np.outer((pts - c) @ n, n)  # the loop projected on its plane
        ext = flat + length * n
        k = len(loop)
        idx_ext = n_v + np.arange(k)
        idx_c = n_v + k
        new_v += [ext, (c + length * n)[None]]
        n_v += k + 1
        nxt = np.roll(np.arange(k), -1)
        faces.append(np.column_stack([loop, loop[nxt], idx_ext[nxt]]))
        faces.append(np.column_stack([loop, idx_ext[nxt], idx_ext]))
        cap = np.column_stack([np.full(k, idx_c), idx_ext[nxt], idx_ext])
        faces.append(cap)
        ends.append({"centre": c + length * n, "normal": n, "n_cap": k})
    closed = trimesh.Trimesh(np.vstack(new_v), np.vstack(faces), process=False)
    trimesh.repair.fix_winding(closed)
    trimesh.repair.fix_normals(closed)
    if not closed.is_watertight:
        raise GeometryError("the capped surface is not watertight (the surface has holes besides "
                            "its ends); repair it in the tool that made it")
    # cap faces are the last n_cap faces of each end's block, in order
    n_faces_wall = len(mesh.faces)
    offset = n_faces_wall
    cap_idx = []
    for e in ends:
        offset += 2 * e["n_cap"]
        cap_idx.append(np.arange(offset, offset + e["n_cap"]))
        offset += e["n_cap"]
    areas = [float(closed.area_faces[ci].sum()) for ci in cap_idx]
    # naming
    a_c = np.asarray(landmarks.annulus_centre_mm)
    inlet = int(np.argmin([np.linalg.norm(e["centre"] - a_c) for e in ends]))
    names: dict[int, str] = {inlet: "inlet"}
    rest = [i for i in range(len(ends)) if i != inlet]
    down = [i for i in rest if ends[i]["normal"][2] < -0.5]
    up = sorted((i for i in rest if ends[i]["normal"][2] > 0.5), key=lambda i: ends[i]["centre"][0])
    other = [i for i in rest if i not in down and i not in up]
    if len(down) == 1:
        names[down[0]] = "outlet:descending"
    else:
        names.update({i: f"outlet:bottom{k}" for k, i in enumerate(down, start=1)})
    up_names = list(ARCH_BRANCH_NAMES) if len(up) == 3 else [f"outlet:top{k}" for k in
                                                             range(1, len(up) + 1)]
    names.update(dict(zip(up, up_names, strict=True)))
    names.update({i: f"outlet:{k}" for k, i in enumerate(other, start=1)})
    dist = float(np.linalg.norm(ends[inlet]["centre"] - a_c))
    if dist > 40.0:
        log.warning("the surface's inlet lies %.0f mm from the annulus: the valve may not be in "
                    "the fluid domain", dist)
    caps, cap_faces = [], {}
    for i, e in enumerate(ends):
        caps.append(CapPlane(names[i], tuple(float(x) for x in e["centre"]),
                             tuple(float(x) for x in e["normal"]), areas[i]))
        cap_faces[names[i]] = cap_idx[i]
    order = sorted(range(len(caps)), key=lambda i: (caps[i].name != "inlet", caps[i].name))
    caps = [caps[i] for i in order]
    return FluidSurface(closed, caps, cap_faces, provenance={
        "source": Path(path).name, "convention": conv.convention,
        "overlap_lps": conv.overlap_lps, "overlap_ras": conv.overlap_ras,
        "extension_diameters": extension_diameters, "n_ends": len(ends)})

"""Triangle surfaces from label maps: per-label surfaces and the capped fluid (lumen) surface.

All coordinates are DICOM patient coordinates (LPS, mm). Voxel indices are turned into positions
with the :class:`~cardiotwin.imaging.volume.Volume` affine, so oblique or flipped grids are handled.

Pipeline (both functions)
-------------------------
1. binary mask of the wanted labels (largest 6-connected component);
2. marching cubes (:func:`skimage.measure.marching_cubes`, Lewiner variant) at level 0.5 in voxel
   index space, mapped to LPS mm through the affine;
3. Taubin λ|μ smoothing, which removes the voxel staircase without the shrinkage of Laplacian
   smoothing (Taubin 1995);
4. largest connected component, merged vertices, degenerate faces removed, winding and normals made
   consistent (outward), holes filled: a watertight, oriented 2-manifold.

:func:`fluid_surface` adds the clinical part: which voxels are blood for the flow model, where the
inlet is (a plane in the LV outflow tract below the annulus) and the outlets (every vessel leaving the
field of view), each cut by a plane so that the caps are exactly flat.

References
----------
Lewiner T. et al., "Efficient implementation of marching cubes' cases with topological guarantees",
J. Graphics Tools 8 (2003).
Taubin G., "A signal processing approach to fair surface design", SIGGRAPH 1995.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from scipy import ndimage
from skimage import measure

from cardiotwin.errors import GeometryError, InputError
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.imaging.volume import LabelMap, Volume

logger = logging.getLogger(__name__)

__all__ = [
    "CapPlane",
    "FluidSurface",
    "label_surface",
    "fluid_surface",
    "save_surface",
    "mask_surface",
]

#: labels that form the flow lumen besides the LV outflow tract (those present in a map are used)
LUMEN_LABELS: tuple[str, ...] = ("aorta", "branches", "valve", "calcium")

#: names of the three arch branches from patient right to left
ARCH_BRANCH_NAMES: tuple[str, str, str] = (
    "outlet:brachiocephalic",
    "outlet:left_common_carotid",
    "outlet:left_subclavian",
)


@dataclass(frozen=True)
class CapPlane:
    """A flat cap (inlet or outlet) of a closed fluid surface.

    Attributes
    ----------
    name : ``"inlet"`` or ``"outlet:<name>"``.
    centre_mm : (3,) area-weighted centroid of the cap (LPS mm).
    normal : (3,) unit normal pointing out of the fluid.
    area_mm2 : cap area in mm².
    """

    name: str
    centre_mm: tuple[float, float, float]
    normal: tuple[float, float, float]
    area_mm2: float

    @property
    def equivalent_diameter_mm(self) -> float:
        """Diameter of the disc with the cap's area, ``2·sqrt(A/π)`` (mm)."""
        return 2.0 * math.sqrt(self.area_mm2 / math.pi)


@dataclass(frozen=True, eq=False)
class FluidSurface:
    """Closed, outward-oriented lumen surface with flat caps (LPS mm).

    Attributes
    ----------
    mesh : trimesh.Trimesh
        Watertight, consistently oriented triangle mesh; the caps are planar.
    caps : list of CapPlane
        Inlet first, then outlets sorted by name.
    cap_faces : dict
        Cap name → indices of the faces of ``mesh`` that form it (every other face is wall).
    provenance : dict
        Parameters and figures of the extraction (voxel volume of the lumen mask, timings...).
    """

    mesh: trimesh.Trimesh
    caps: list[CapPlane]
    cap_faces: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def inlet(self) -> CapPlane:
        """The inlet cap."""
        return next(c for c in self.caps if c.name == "inlet")

    @property
    def outlets(self) -> list[CapPlane]:
        """The outlet caps."""
        return [c for c in self.caps if c.name.startswith("outlet:")]

    def cap(self, name: str) -> CapPlane:
        """The cap called ``name``; :class:`InputError` when there is none."""
        for c in self.caps:
            if c.name == name:
                return c
        raise InputError(f"no cap named {name!r}; caps are {[c.name for c in self.caps]}")

    def face_markers(self) -> np.ndarray:
        """Per-face integer marker: 0 for wall, ``i + 1`` for ``caps[i]``."""
        m = np.zeros(len(self.mesh.faces), dtype=np.int32)
        for i, c in enumerate(self.caps):
            m[self.cap_faces.get(c.name, np.zeros(0, int))] = i + 1
        return m


# --------------------------------------------------------------------------------------------
# mask → surface
# --------------------------------------------------------------------------------------------


def _bounding_box(mask: np.ndarray, *, margin: int = 0) -> tuple[slice, ...] | None:
    """Index box of the True voxels of ``mask`` grown by ``margin`` within the array (None: empty)."""
    box = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        box.append(
            slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, mask.shape[ax]))
        )
    return tuple(box)


def _largest_component_mask(mask: np.ndarray) -> np.ndarray:
    """Largest 6-connected component (labelled inside the mask's bounding box only)."""
    mask = np.asarray(mask, dtype=bool)
    box = _bounding_box(mask)
    if box is None:
        return mask
    lab, n = ndimage.label(mask[box])
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    out = np.zeros_like(mask)
    out[box] = lab == int(np.argmax(sizes))
    return out


def _extend_mask(
    mask: np.ndarray, extend_faces: dict[tuple[int, int], int]
) -> tuple[np.ndarray, np.ndarray]:
    """Replicate boundary slices outward (flow extensions), then pad one zero voxel everywhere.

    ``extend_faces`` maps (array axis, side 0=low/1=high) → number of voxels. Returns the new mask and
    the offset (per array axis) of original index 0 in the new array.
    """
    out = mask
    offset = np.zeros(3, dtype=int)
    for (axis, side), n in sorted(extend_faces.items()):
        if n <= 0:
            continue
        sl = [slice(None)] * 3
        sl[axis] = slice(0, 1) if side == 0 else slice(-1, None)
        block = np.repeat(out[tuple(sl)], n, axis=axis)
        out = np.concatenate([block, out] if side == 0 else [out, block], axis=axis)
        if side == 0:
            offset[axis] += n
    out = np.pad(out, 1, mode="constant", constant_values=False)
    return out, offset + 1


def repair_surface(mesh: trimesh.Trimesh, *, keep_largest: bool = True) -> trimesh.Trimesh:
    """Make a triangle mesh a watertight, consistently outward-oriented 2-manifold.

    Merges duplicate vertices, drops degenerate and duplicate faces, keeps the largest connected
    component (by face count) when ``keep_largest``, fixes winding and normals, fills small holes.

    Raises
    ------
    GeometryError
        When the result is still not watertight or not consistently oriented.
    """
    m = mesh.copy()
    m.merge_vertices()
    m.update_faces(m.nondegenerate_faces())
    m.update_faces(m.unique_faces())
    m.remove_unreferenced_vertices()
    if keep_largest:
        # split (which copies the mesh) only when there is more than one part
        part = trimesh.graph.connected_component_labels(m.face_adjacency, node_count=len(m.faces))
        if len(part) and part.max() > 0:
            parts = m.split(only_watertight=False)
            if len(parts) > 1:
                m = max(parts, key=lambda p: len(p.faces))
    trimesh.repair.fix_winding(m)
    trimesh.repair.fix_inversion(m)
    if not m.is_watertight:
        trimesh.repair.fill_holes(m)
        trimesh.repair.fix_winding(m)
        trimesh.repair.fix_inversion(m)
    if not (m.is_watertight and m.is_winding_consistent):
        raise GeometryError(
            f"surface repair failed: watertight={m.is_watertight}, "
            f"winding consistent={m.is_winding_consistent} ({len(m.faces)} faces). "
            "Check the label map for thin bridges or single-voxel features; a morphological "
            "opening of the labels or more smoothing usually helps."
        )
    if m.volume < 0:
        m.invert()
    return m


MAX_ANISOTROPY = 1.25
"""Largest ratio of the voxel sizes that :func:`mask_surface` meshes as it is; a more
anisotropic mask (thick slices) is interpolated to cubic voxels before marching cubes."""


def mask_surface(
    mask: np.ndarray,
    volume: Volume,
    *,
    smoothing_iterations: int = 20,
    smoothing_lambda: float = 0.5,
    smoothing_mu: float = 0.53,
    extend_faces: dict[tuple[int, int], int] | None = None,
    target_edge_mm: float | None = None,
) -> trimesh.Trimesh:
    """Watertight LPS-mm surface of a boolean mask on the grid of ``volume``.

    Parameters
    ----------
    mask : (nk, nj, ni) bool array on the grid of ``volume``.
    volume : Volume giving the voxel → LPS affine.
    smoothing_iterations : number of Taubin λ|μ iterations (0 = raw marching cubes).
    smoothing_lambda, smoothing_mu : Taubin factors (μ applied with a negative sign; μ > λ keeps
        the volume).
    extend_faces : optional (array axis, side) → voxels; the mask is extruded beyond those faces of
        the array before meshing, so that later cuts inside the field of view are not distorted by
        the smoothing of a closed end.
    target_edge_mm : when given, quadric decimation down to about this mean edge length (mm)
        after smoothing; at 1 mm voxels and 1.2 mm edges the surface moves < 0.1 mm. Needs the
        ``fast_simplification`` package; skipped with a warning when it is missing.

    Returns
    -------
    trimesh.Trimesh
        Watertight, outward-oriented mesh of the largest component.

    Raises
    ------
    GeometryError
        When the mask is empty or the surface cannot be repaired.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise InputError(f"mask shape {mask.shape} does not match the volume grid {volume.shape}")
    if not mask.any():
        raise GeometryError("the mask is empty: no voxel carries the requested label(s)")
    mask = _largest_component_mask(mask)
    extend_faces = extend_faces or {}
    sp_kji = np.asarray(volume.spacing_mm, dtype=float)[::-1]
    zoom = sp_kji / sp_kji.min()
    thick = bool(sp_kji.max() / sp_kji.min() > MAX_ANISOTROPY)
    # Only the mask's bounding box (plus two empty voxels) is extruded and interpolated, which
    # gives the same field: along an extruded side the box stays at the array's face (whose
    # slice the extrusion replicates), and along an axis that is interpolated below it keeps the
    # whole axis (the samples of the interpolation depend on the axis length).
    box = list(_bounding_box(mask, margin=2))  # type: ignore[arg-type]
    for (axis, side), n in extend_faces.items():
        if n > 0:
            b = box[axis]
            box[axis] = slice(0, b.stop) if side == 0 else slice(b.start, mask.shape[axis])
    for axis in range(3):
        if thick and zoom[axis] != 1.0:
            box[axis] = slice(0, mask.shape[axis])
    start = np.array([b.start for b in box])
    padded, offset = _extend_mask(mask[tuple(box)], extend_faces)
    field = padded.astype(np.float32)
    scale = np.ones(3)
    if thick:
        # Thick slices: interpolate the mask linearly to cubic voxels first, so the iso-surface
        # has no slice-thick steps (a stepped lumen cannot be reparametrised by gmsh).
        field = ndimage.zoom(field, zoom, order=1)
        scale = (np.asarray(padded.shape) - 1) / np.maximum(np.asarray(field.shape) - 1, 1)
    if start.any():
        # marching cubes rounds its vertices (float32) at their index in the array it is given:
        # the box goes back to its own index, after empty rows (start is 0 on zoomed axes), so
        # that they are the very vertices of the whole grid
        whole = np.zeros(tuple(start + np.asarray(field.shape)), dtype=np.float32)
        whole[tuple(slice(int(a), None) for a in start)] = field
        field = whole
    verts_kji, faces, _, _ = measure.marching_cubes(field, level=0.5, allow_degenerate=False)
    del field
    verts_kji = verts_kji * scale[None, :]
    ijk = (verts_kji - offset[None, :])[:, ::-1]
    verts = volume.index_to_physical(ijk)
    mesh = trimesh.Trimesh(verts, faces, process=True)
    mesh = repair_surface(mesh)
    if smoothing_iterations > 0:
        trimesh.smoothing.filter_taubin(
            mesh, lamb=smoothing_lambda, nu=smoothing_mu, iterations=int(smoothing_iterations)
        )
        mesh = repair_surface(mesh)
    if target_edge_mm is not None:
        mesh = _decimate(mesh, target_edge_mm)
    return mesh


def _decimate(mesh: trimesh.Trimesh, target_edge_mm: float) -> trimesh.Trimesh:
    """Quadric decimation to a mean edge of about ``target_edge_mm``, repaired."""
    if not target_edge_mm > 0:
        raise InputError(f"target_edge_mm must be > 0; got {target_edge_mm}")
    # equilateral triangles of edge e have area e²·√3/4
    n_target = int(mesh.area / (target_edge_mm**2 * math.sqrt(3.0) / 4.0))
    if n_target >= 0.9 * len(mesh.faces):
        return mesh
    try:
        import fast_simplification  # noqa: F401  (backend of trimesh's quadric decimation)
    except ImportError:
        logger.warning("fast_simplification is not installed: surface not decimated")
        return mesh
    dec = mesh.simplify_quadric_decimation(face_count=max(n_target, 100))
    try:
        return repair_surface(dec)
    except GeometryError:
        logger.warning(
            "decimated surface could not be repaired; keeping the full-resolution surface"
        )
        return mesh


def label_surface(
    labels: LabelMap,
    names: Sequence[str],
    *,
    smoothing_iterations: int = 20,
    smoothing_lambda: float = 0.5,
    smoothing_mu: float = 0.53,
    target_edge_mm: float | None = None,
) -> trimesh.Trimesh:
    """Surface of the union of labels: marching cubes, Taubin smoothing, repair (LPS mm).

    Parameters
    ----------
    labels : LabelMap
    names : label names whose union is meshed (e.g. ``["aorta", "branches"]``).
    smoothing_iterations : Taubin iterations (default 20; 0 keeps the voxel staircase).
    smoothing_lambda, smoothing_mu : Taubin factors (0 < λ < μ).
    target_edge_mm : optional mean edge length (mm) of a quadric decimation after smoothing.

    Returns
    -------
    trimesh.Trimesh
        Watertight, consistently outward-oriented 2-manifold of the largest connected component.

    Raises
    ------
    InputError
        Unknown label names.
    GeometryError
        Empty labels or a surface that cannot be repaired.

    Examples
    --------
    >>> mesh = label_surface(labels, ["aorta"])  # doctest: +SKIP
    >>> mesh.is_watertight, mesh.volume  # mm³  # doctest: +SKIP
    """
    if isinstance(names, str):
        names = [names]
    mask = labels.mask(*names)
    if not mask.any():
        raise GeometryError(f"labels {list(names)} are empty in this label map")
    return mask_surface(
        mask,
        labels.volume,
        smoothing_iterations=smoothing_iterations,
        smoothing_lambda=smoothing_lambda,
        smoothing_mu=smoothing_mu,
        target_edge_mm=target_edge_mm,
    )


# --------------------------------------------------------------------------------------------
# fluid lumen
# --------------------------------------------------------------------------------------------


def _axial_radial(
    volume: Volume,
    centre: np.ndarray,
    axis: np.ndarray,
    box: tuple[slice, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed axial distance ``d`` and radial distance ``r`` (mm) of every voxel centre to a line.

    Uses separability of the orthonormal affine so only (nk, nj, ni) float32 arrays are allocated;
    with ``box`` (array ``[k, j, i]`` slices) only for the voxels of that box.
    """
    box = box or tuple(slice(0, n) for n in volume.shape)
    sp = np.asarray(volume.spacing_mm)
    dirs = volume.direction
    e = dirs.T @ (np.asarray(volume.origin_mm) - centre)  # offset in grid-aligned frame
    ai = dirs.T @ axis  # axis in grid frame
    comps = [
        np.arange(box[2 - a].start, box[2 - a].stop, dtype=np.float64) * sp[a] + e[a]
        for a in range(3)
    ]
    ci = comps[0][None, None, :]
    cj = comps[1][None, :, None]
    ck = comps[2][:, None, None]
    d = (ai[0] * ci + ai[1] * cj + ai[2] * ck).astype(np.float32)
    r2 = (ci**2 + cj**2 + ck**2).astype(np.float32) - d**2
    return d, np.sqrt(np.maximum(r2, 0.0))


def _box_around(volume: Volume, centre: np.ndarray, radius_mm: float) -> tuple[slice, ...] | None:
    """Array ``[k, j, i]`` box of the voxels within ``radius_mm`` (+ 2 voxels) of ``centre``."""
    c = volume.physical_to_index(np.asarray(centre, float))  # (i, j, k)
    half = radius_mm / np.asarray(volume.spacing_mm) + 2.0  # the axes are orthonormal
    box = []
    for a_arr in range(3):
        a = 2 - a_arr
        lo = max(int(math.floor(c[a] - half[a])), 0)
        hi = min(int(math.ceil(c[a] + half[a])) + 1, volume.shape[a_arr])
        if hi <= lo:
            return None
        box.append(slice(lo, hi))
    return tuple(box)


def _ball(radius_mm: float, spacing_kji: np.ndarray) -> np.ndarray:
    n = np.maximum(np.floor(radius_mm / spacing_kji).astype(int), 1)
    g = np.meshgrid(
        *[np.arange(-m, m + 1) * s for m, s in zip(n, spacing_kji, strict=True)], indexing="ij"
    )
    return (g[0] ** 2 + g[1] ** 2 + g[2] ** 2) <= radius_mm**2 + 1e-9


def _close_locally(
    lumen: np.ndarray, region: np.ndarray, radius_mm: float, spacing_kji: np.ndarray
) -> np.ndarray:
    """Morphological closing + hole filling of ``lumen`` whose additions are confined to ``region``."""
    if not region.any():
        return lumen
    ball = _ball(radius_mm, spacing_kji)
    margin = np.array(ball.shape) // 2 + 2
    idx = np.argwhere(region)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, lumen.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sub = lumen[box]
    closed = ndimage.binary_closing(np.pad(sub, margin.max()), structure=ball)
    m = margin.max()
    closed = closed[m:-m, m:-m, m:-m]
    closed = ndimage.binary_fill_holes(closed)
    out = lumen.copy()
    out[box] |= closed & region[box]
    return out


@dataclass(frozen=True)
class _Cut:
    """A planar cut: keep the side ``normal`` points to; ``kind`` in {inlet, bottom, top, side}."""

    kind: str
    origin: np.ndarray
    normal: np.ndarray  # unit, towards the kept fluid
    cutter: trimesh.Trimesh
    face_label: str = ""


def _cylinder_cutter(
    origin: np.ndarray, keep_normal: np.ndarray, radius: float, depth: float
) -> trimesh.Trimesh:
    """Solid cylinder whose top disc lies on the plane and which extends ``depth`` to the cut side."""
    n = -np.asarray(keep_normal, float)
    centre = origin + 0.5 * depth * n
    t = trimesh.geometry.align_vectors([0, 0, 1], n)
    t[:3, 3] = centre
    return trimesh.creation.cylinder(radius=radius, height=depth, sections=96, transform=t)


def _face_box_cutter(
    volume: Volume, axis_ijk: int, side: int, inset_mm: float, beyond_mm: float
) -> tuple[trimesh.Trimesh, np.ndarray, np.ndarray]:
    """Box removing everything beyond a plane ``inset_mm`` inside one face of the grid.

    Returns the cutter (LPS mm), a point of the plane, and the unit normal towards the kept side.
    """
    shape_ijk = np.array(volume.shape[::-1])
    sp = np.asarray(volume.spacing_mm)
    margin_vox = np.ceil(30.0 / sp).astype(int)
    lo = -margin_vox.astype(float)
    hi = (shape_ijk - 1 + margin_vox).astype(float)
    inset_vox = inset_mm / sp[axis_ijk]
    beyond_vox = beyond_mm / sp[axis_ijk]
    if side == 0:
        lo[axis_ijk], hi[axis_ijk] = -beyond_vox, inset_vox
        plane_idx = inset_vox
        keep_sign = 1.0
    else:
        last = shape_ijk[axis_ijk] - 1
        lo[axis_ijk], hi[axis_ijk] = last - inset_vox, last + beyond_vox
        plane_idx = last - inset_vox
        keep_sign = -1.0
    box = trimesh.creation.box(bounds=np.array([lo, hi]))
    box.vertices = volume.index_to_physical(box.vertices)
    if box.volume < 0:
        box.invert()
    p = np.zeros(3)
    p[axis_ijk] = plane_idx
    origin = volume.index_to_physical(p)
    normal = keep_sign * volume.direction[:, axis_ijk]
    return box, origin, normal / np.linalg.norm(normal)


def _cap_components(
    mesh: trimesh.Trimesh, origin: np.ndarray, keep_normal: np.ndarray, tol_mm: float
) -> list[np.ndarray]:
    """Connected groups of faces lying on a plane with outward normal ``-keep_normal``."""
    dist = np.abs((mesh.triangles_center - origin) @ keep_normal)
    vdist = np.abs((mesh.vertices - origin) @ keep_normal)
    on_plane = (vdist[mesh.faces] < tol_mm).all(axis=1) & (dist < tol_mm)
    # Slivers left by the boolean cut have unreliable normals: accept them by area.
    tiny = mesh.area_faces < 1e-4 * float(np.median(mesh.area_faces))
    facing = (mesh.face_normals @ (-keep_normal) > 0.99) | tiny
    sel = np.flatnonzero(on_plane & facing)
    if len(sel) == 0:
        return []
    # Group by shared vertices (robust to slivers that break edge adjacency).
    f = mesh.faces[sel]
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    vgroups = trimesh.graph.connected_components(edges, min_len=1)
    vlabel = np.full(len(mesh.vertices), -1)
    for i, g in enumerate(vgroups):
        vlabel[np.asarray(g)] = i
    flabel = vlabel[f[:, 0]]
    return [np.sort(sel[flabel == i]) for i in np.unique(flabel)]


def _cap_plane(mesh: trimesh.Trimesh, faces: np.ndarray, name: str, normal: np.ndarray) -> CapPlane:
    areas = mesh.area_faces[faces]
    centre = (mesh.triangles_center[faces] * areas[:, None]).sum(axis=0) / areas.sum()
    return CapPlane(
        name=name,
        centre_mm=tuple(float(v) for v in centre),
        normal=tuple(float(v) for v in normal),
        area_mm2=float(areas.sum()),
    )


def _lvot_radius_mm(landmarks: AorticRootLandmarks, factor: float) -> float:
    """Radius of the inlet tube: ``factor`` × LVOT radius (annulus radius when the LVOT is unknown)."""
    d = float(landmarks.lvot_diameter_mm or 0.0)
    if not (d > 0):
        d = float(landmarks.annulus_diameter_mm or 0.0)
    if not (d > 0 and factor > 0):
        raise InputError(
            f"need lvot_diameter_mm or annulus_diameter_mm > 0 and lvot_radius_factor > 0; got "
            f"{landmarks.lvot_diameter_mm}, {landmarks.annulus_diameter_mm}, {factor}"
        )
    return 0.5 * d * factor


def fluid_lumen_mask(
    labels: LabelMap,
    landmarks: AorticRootLandmarks,
    *,
    inlet_offset_mm: float = 12.0,
    inlet_extension_mm: float = 6.0,
    lvot_radius_factor: float = 1.05,
    closing_radius_mm: float = 2.0,
    root_height_mm: float = 30.0,
) -> np.ndarray:
    """Boolean mask of the blood that the flow model sees (before the planar cuts).

    Aorta ∪ branches ∪ valve ∪ calcium (those present in the map) ∪ the LV outflow tract: the
    ``lv_blood`` voxels above a plane ``inlet_offset_mm + inlet_extension_mm`` below the annulus and
    within ``lvot_radius_factor`` × LVOT radius (landmark ``lvot_diameter_mm``; the annulus
    diameter when it is 0) of the annulus axis. The bound matters: ``lv_blood`` does not separate
    the outflow tract from the LV cavity, which opens a few mm below the annulus, and the flow
    inlet must be the outflow tract alone. Leaflet gaps are closed by a
    morphological closing (ball of ``closing_radius_mm``) and hole filling confined to a cylinder
    around the aortic root (from the inlet to ``root_height_mm`` above the annulus), so separate
    vessels elsewhere are never bridged. The largest 6-connected component is returned.

    Parameters are in mm; see :func:`fluid_surface`.
    """
    vol = labels.volume
    centre = np.asarray(landmarks.annulus_centre_mm, float)
    axis = np.asarray(landmarks.annulus_normal, float)
    axis = axis / np.linalg.norm(axis)
    r_lvot = _lvot_radius_mm(landmarks, lvot_radius_factor)
    if "lv_blood" not in labels.names:
        raise GeometryError(
            "label map has no 'lv_blood' label: the inlet (LV outflow tract) cannot be built"
        )
    present = [n for n in LUMEN_LABELS if n in labels.names]
    if "aorta" not in present:
        raise GeometryError("label map has no 'aorta' label: there is no lumen to mesh")
    lumen = labels.mask(*present)
    # d and r (distances along and from the annulus axis) are computed only where they are used:
    # in the bounding box of lv_blood, and in that of the sphere holding the closing's cylinder
    lv = labels.mask("lv_blood")
    box = _bounding_box(lv)
    if box is not None:
        d, r = _axial_radial(vol, centre, axis, box)
        lumen[box] |= lv[box] & (d >= -(inlet_offset_mm + inlet_extension_mm)) & (r <= r_lvot)
    del lv
    if closing_radius_mm > 0:
        r_root = (
            max(
                r_lvot,
                0.5 * float(landmarks.annulus_max_diameter_mm or 0.0),
                0.5 * float(landmarks.sinus_diameter_mm or 0.0),
            )
            + 4.0
        )
        h_lo = -(inlet_offset_mm + inlet_extension_mm)
        reach = math.hypot(r_root, max(abs(h_lo), abs(root_height_mm)))
        region = np.zeros(lumen.shape, dtype=bool)
        box = _box_around(vol, centre, reach)
        if box is not None:
            d, r = _axial_radial(vol, centre, axis, box)
            region[box] = (d >= h_lo) & (d <= root_height_mm) & (r <= r_root)
        lumen = _close_locally(lumen, region, closing_radius_mm, np.asarray(vol.spacing_mm)[::-1])
    return _largest_component_mask(lumen)


def fluid_surface(
    labels: LabelMap,
    landmarks: AorticRootLandmarks,
    *,
    inlet_offset_mm: float = 12.0,
    inlet_extension_mm: float = 6.0,
    lvot_radius_factor: float = 1.05,
    closing_radius_mm: float = 2.0,
    root_height_mm: float = 30.0,
    outlet_inset_mm: float = 3.0,
    outlet_extension_mm: float = 8.0,
    smoothing_iterations: int = 20,
    smoothing_lambda: float = 0.5,
    smoothing_mu: float = 0.53,
    target_edge_mm: float | None = 1.8,
) -> FluidSurface:
    """Closed lumen surface of the LV outflow tract, aortic root, aorta and arch branches.

    The inlet is the plane ``inlet_offset_mm`` below the annulus (normal ``-annulus_normal``), in
    the LV outflow tract; every vessel that leaves the field of view is cut by a plane
    ``outlet_inset_mm`` inside that face of the grid. Caps are flat. Outlets on the bottom face
    (most inferior) are ``outlet:descending``; on the top face, sorted from patient right (−x in
    LPS) to left, ``outlet:brachiocephalic``, ``outlet:left_common_carotid``,
    ``outlet:left_subclavian`` when there are exactly three, else ``outlet:top1``…; any other
    outlet ``outlet:<k>``.

    Parameters
    ----------
    labels : LabelMap
        Labels with ``lv_blood`` and ``aorta`` (``branches``, ``valve``, ``calcium`` used when
        present: leaflets and calcium are filled, the model ignores them).
    landmarks : AorticRootLandmarks
        Annulus centre, normal (LV → aorta), diameter and sinus diameter are used.
    inlet_offset_mm : distance of the inlet plane below the annulus (mm, > 0).
    inlet_extension_mm : LVOT length kept beyond the inlet plane before cutting (mm).
    lvot_radius_factor : ``lv_blood`` voxels farther than this × LVOT radius (``lvot_diameter_mm``
        / 2, or the annulus radius when unknown) from the annulus axis are not fluid.
    closing_radius_mm : ball radius of the local closing that fills unlabelled leaflet gaps (mm;
        0 disables).
    root_height_mm : height above the annulus of the region where the closing acts (mm).
    outlet_inset_mm : distance of the outlet planes inside the field-of-view faces (mm).
    outlet_extension_mm : length by which vessels are extruded beyond the field of view before
        smoothing, so that the cuts meet an undistorted tube (mm).
    smoothing_iterations, smoothing_lambda, smoothing_mu : Taubin smoothing.
    target_edge_mm : mean edge length (mm) of a quadric decimation before the cuts (the volume
        mesher remeshes the surface anyway; fewer faces make it faster); ``None`` = none.

    Returns
    -------
    FluidSurface

    Raises
    ------
    GeometryError
        No lumen, no inlet, several inlet pieces, or a surface that is not watertight after the
        cuts — the message names the step.
    """
    t0 = time.perf_counter()
    if inlet_offset_mm <= 0:
        raise InputError(
            f"inlet_offset_mm must be > 0 (mm below the annulus); got {inlet_offset_mm}"
        )
    if outlet_inset_mm <= 0:
        raise InputError(f"outlet_inset_mm must be > 0; got {outlet_inset_mm}")
    vol = labels.volume
    lumen = fluid_lumen_mask(
        labels,
        landmarks,
        inlet_offset_mm=inlet_offset_mm,
        inlet_extension_mm=inlet_extension_mm,
        lvot_radius_factor=lvot_radius_factor,
        closing_radius_mm=closing_radius_mm,
        root_height_mm=root_height_mm,
    )
    t_mask = time.perf_counter() - t0

    # Faces of the grid the lumen touches: vessels leaving the field of view.
    sp = np.asarray(vol.spacing_mm)
    touched: list[tuple[int, int]] = []  # (ijk axis, side)
    extend: dict[tuple[int, int], int] = {}
    for a_ijk in range(3):
        a_arr = 2 - a_ijk
        for side in (0, 1):
            sl = [slice(None)] * 3
            sl[a_arr] = 0 if side == 0 else -1
            if lumen[tuple(sl)].any():
                touched.append((a_ijk, side))
                extend[(a_arr, side)] = int(math.ceil(outlet_extension_mm / sp[a_ijk]))
    surf = mask_surface(
        lumen,
        vol,
        smoothing_iterations=smoothing_iterations,
        smoothing_lambda=smoothing_lambda,
        smoothing_mu=smoothing_mu,
        extend_faces=extend,
        target_edge_mm=target_edge_mm,
    )
    t_surf = time.perf_counter() - t0 - t_mask

    # Planar cuts.
    centre = np.asarray(landmarks.annulus_centre_mm, float)
    axis = np.asarray(landmarks.annulus_normal, float)
    axis = axis / np.linalg.norm(axis)
    r_lvot = _lvot_radius_mm(landmarks, lvot_radius_factor)
    cuts: list[_Cut] = []
    inlet_origin = centre - inlet_offset_mm * axis
    cuts.append(
        _Cut(
            "inlet",
            inlet_origin,
            axis,
            _cylinder_cutter(
                inlet_origin,
                axis,
                r_lvot + 3.0 + float(sp.max()),
                inlet_extension_mm + 10.0,
            ),
        )
    )
    for a_ijk, side in touched:
        box, origin, normal = _face_box_cutter(
            vol, a_ijk, side, outlet_inset_mm, outlet_extension_mm + 10.0
        )
        outward_z = -normal[2]
        kind = "bottom" if outward_z < -0.7 else "top" if outward_z > 0.7 else "side"
        cuts.append(_Cut(kind, origin, normal, box, face_label=f"{'ijk'[a_ijk]}{'-+'[side]}"))
    try:
        cut = trimesh.boolean.difference([surf, *[c.cutter for c in cuts]], engine="manifold")
    except Exception as exc:  # manifold raises plain exceptions on invalid input
        raise GeometryError(
            f"cutting the lumen surface by the inlet/outlet planes failed: {exc}"
        ) from exc
    cut = repair_surface(cut, keep_largest=True)
    t_cut = time.perf_counter() - t0 - t_mask - t_surf

    # Identify the caps.
    tol = 1e-3 * max(1.0, float(np.ptp(cut.bounds, axis=0).max()) / 100.0)
    found: dict[str, list[tuple[np.ndarray, _Cut]]] = {
        "inlet": [],
        "bottom": [],
        "top": [],
        "side": [],
    }
    for c in cuts:
        for g in _cap_components(cut, c.origin, c.normal, tol):
            found[c.kind].append((g, c))
    if not found["inlet"]:
        raise GeometryError(
            f"no inlet: the plane {inlet_offset_mm} mm below the annulus does not cut the lumen. "
            "Check that 'lv_blood' covers the LV outflow tract there and that the annulus landmarks "
            "(centre, normal pointing LV → aorta) are right, or reduce inlet_offset_mm "
            "(`twin build --inlet-offset`)."
        )
    if len(found["inlet"]) > 1:
        areas = [float(cut.area_faces[g].sum()) for g, _ in found["inlet"]]
        raise GeometryError(
            f"the inlet plane cuts the lumen in {len(areas)} pieces (areas {np.round(areas, 1)} mm²); "
            "expected one LV outflow tract. Check the lv_blood segmentation or change inlet_offset_mm."
        )
    named: list[tuple[str, np.ndarray, _Cut]] = []
    g, c = found["inlet"][0]
    named.append(("inlet", g, c))
    bottoms = found["bottom"]
    if len(bottoms) == 1:
        named.append(("outlet:descending", bottoms[0][0], bottoms[0][1]))
    else:
        for i, (g, c) in enumerate(bottoms, start=1):
            named.append((f"outlet:bottom{i}", g, c))
    tops = sorted(found["top"], key=lambda gc: float(cut.triangles_center[gc[0]][:, 0].mean()))
    top_names = (
        list(ARCH_BRANCH_NAMES)
        if len(tops) == 3
        else [f"outlet:top{i}" for i in range(1, len(tops) + 1)]
    )
    for name, (g, c) in zip(top_names, tops, strict=True):
        named.append((name, g, c))
    for i, (g, c) in enumerate(found["side"], start=1):
        named.append((f"outlet:{i}", g, c))
    if len(named) < 2:
        raise GeometryError(
            "the lumen has an inlet but no outlet: no vessel leaves the field of view. "
            "The aorta must reach a face of the image (e.g. the descending aorta through the bottom)."
        )
    # The boolean engine works in single precision: put cap vertices exactly on their planes.
    verts = np.array(cut.vertices)
    for _, g, c in named:
        vi = np.unique(cut.faces[g])
        verts[vi] -= np.outer((verts[vi] - c.origin) @ c.normal, c.normal)
    cut.vertices = verts
    caps = [_cap_plane(cut, g, name, -c.normal) for name, g, c in named]
    cap_faces = {name: g for name, g, _ in named}
    order = sorted(range(len(caps)), key=lambda i: (caps[i].name != "inlet", caps[i].name))
    caps = [caps[i] for i in order]
    if not cut.is_watertight or not cut.is_winding_consistent or cut.volume <= 0:
        raise GeometryError("the capped lumen surface is not a closed, outward-oriented manifold")
    prov = {
        "step": "geometry.fluid_surface",
        "parameters": {
            "inlet_offset_mm": inlet_offset_mm,
            "inlet_extension_mm": inlet_extension_mm,
            "lvot_radius_factor": lvot_radius_factor,
            "closing_radius_mm": closing_radius_mm,
            "root_height_mm": root_height_mm,
            "outlet_inset_mm": outlet_inset_mm,
            "outlet_extension_mm": outlet_extension_mm,
            "smoothing_iterations": smoothing_iterations,
            "smoothing_lambda": smoothing_lambda,
            "smoothing_mu": smoothing_mu,
            "target_edge_mm": target_edge_mm,
        },
        "lumen_mask_volume_mm3": float(lumen.sum() * vol.voxel_volume_mm3),
        "faces_cut": [c.face_label for c in cuts if c.face_label],
        "timings_s": {"mask": t_mask, "surface": t_surf, "cut": t_cut},
    }
    logger.info(
        "fluid surface: %d faces, volume %.1f mL, caps %s (%.2f s)",
        len(cut.faces),
        cut.volume * 1e-3,
        ", ".join(f"{c.name} {c.area_mm2:.0f} mm²" for c in caps),
        time.perf_counter() - t0,
    )
    return FluidSurface(mesh=cut, caps=caps, cap_faces=cap_faces, provenance=prov)


def save_surface(surface: FluidSurface | trimesh.Trimesh, path: str | Path) -> Path:
    """Write a surface for viewing: ``.stl``, ``.ply``, ``.obj`` (trimesh) or ``.vtp``/``.vtk``
    (pyvista, with a per-face ``cap`` array: 0 wall, i + 1 for ``caps[i]``).

    The file is written to a temporary name and renamed, so a failure leaves no partial file.
    """
    path = Path(path)
    mesh = surface.mesh if isinstance(surface, FluidSurface) else surface
    tmp = path.with_name(path.name + ".part")
    suffix = path.suffix.lower()
    if suffix in (".vtp", ".vtk"):
        import pyvista as pv

        faces = np.hstack([np.full((len(mesh.faces), 1), 3), mesh.faces]).ravel()
        poly = pv.PolyData(np.asarray(mesh.vertices), faces)
        if isinstance(surface, FluidSurface):
            poly.cell_data["cap"] = surface.face_markers()
        poly.save(str(tmp) + suffix)
        Path(str(tmp) + suffix).replace(path)
        return path
    if suffix not in (".stl", ".ply", ".obj", ".off"):
        raise InputError(
            f"unsupported surface format {suffix!r}; use .stl, .ply, .obj, .off, .vtp or .vtk"
        )
    mesh.export(str(tmp), file_type=suffix[1:])
    tmp.replace(path)
    return path

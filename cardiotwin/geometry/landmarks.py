"""Aortic-root landmarks: the numbers a TAVR planner sizes with.

All positions in DICOM patient coordinates (LPS, mm); directions are unit vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

# The record type lives in imaging (the phantom's ground truth uses it too, and imaging never
# imports geometry); measure_aortic_root returns it and this module re-exports it.
from cardiotwin.imaging.anatomy import AorticRootLandmarks

# ============================================================================================
# Measurement from a contrast CT and its segmentation
# ============================================================================================
#
# Method (measure_aortic_root)
# ----------------------------
# 1. Valve axis. The LV/aorta interface of the segmentation (voxels of one label touching the
#    other) is a disc across the outflow tract; the eigenvector of its smallest spread (PCA) is the
#    first axis, oriented from the LV centroid to the aortic centroid nearby. The axis is then
#    refined twice as the line fitted through the centroids of the *filled* lumen in planes
#    perpendicular to it (LVOT and root, -12..+18 mm): the root's own centreline.
# 2. Cross-sections. The CT and masks are resampled on planes perpendicular to the axis
#    (``scipy.ndimage.map_coordinates``, linear for the CT, nearest for labels) at
#    ``pixel_mm`` (0.4 mm) so areas are measured below the voxel size. In each plane:
#    blood = CT ≥ blood threshold (and below the calcium threshold) near the segmented lumen;
#    filled lumen = blood ∪ calcium with enclosed holes filled (leaflets and calcium inside the
#    lumen become lumen), its component around the axis.
# 3. Annulus = plane of the leaflet hinges: walking up from the LVOT, the first level where
#    valve tissue is *enclosed* inside the filled lumen (holes of ≥ ``min_tissue_mm2``, on two
#    consecutive levels) is where sinus blood first appears between leaflet and wall, i.e. just
#    above the hinge. Area, perimeter (contour length), min/max diameters (second moments of the
#    region: 4·sqrt(eigenvalue) for an ellipse) of the filled lumen are measured there.
# 4. LVOT diameter: area-derived diameter of the filled lumen ``lvot_offset_mm`` below.
# 5. Sinus diameter: largest area-derived filled-lumen diameter up to ``sinus_search_mm`` above.
# 6. Orifice (planimetry): in planes from the annulus to ``orifice_search_mm`` above, the area of
#    the blood component around the axis while it is enclosed by leaflets (smaller than 80 % of
#    the filled lumen); the smallest such area is the anatomic orifice.
# 7. Calcium: calcium voxels inside a cylinder of radius (sinus radius + 5 mm) from 10 mm below
#    to ``sinus_search_mm`` above the annulus.
# 8. Centreline: plane centroids from 10 mm below the annulus, then tracked up the aorta (2 mm
#    steps, planes perpendicular to the running direction) for ``centreline_length_mm``.

_LOG = logging.getLogger(__name__)


def unit_vector(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1."""
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def plane_basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``(e1, e2)`` spanning the plane with unit normal ``n`` (right-handed:
    ``e1 × e2 = n``); ``e1`` is perpendicular to patient y (or x when ``n`` is along y)."""
    ref = np.array([0.0, 1.0, 0.0]) if abs(n[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = unit_vector(np.cross(n, ref))
    return e1, np.cross(n, e1)


class _Sampler:
    """Resamples CT and masks (cropped to a region of interest) on oblique planes."""

    def __init__(self, ct, lumen_near, calcium, *, t_blood, t_ca, peak, half_mm, pixel_mm):
        self.ct = ct
        self.peak = peak
        self.a = np.asarray(ct.array, dtype=np.float32)
        self.near = lumen_near.astype(np.uint8)
        self.ca = calcium.astype(np.uint8)
        self.t_blood, self.t_ca = t_blood, t_ca
        self.half, self.pix = half_mm, pixel_mm
        g = np.arange(-half_mm, half_mm + 1e-9, pixel_mm)
        self.gu, self.gv = np.meshgrid(g, g, indexing="ij")
        self.inv = np.linalg.inv(ct.affine[:3, :3])
        self.org = ct.affine[:3, 3]

    def plane(self, centre: np.ndarray, n: np.ndarray):
        e1, e2 = plane_basis(n)
        pts = centre + self.gu[..., None] * e1 + self.gv[..., None] * e2
        ijk = (pts - self.org) @ self.inv.T
        coords = ijk[..., ::-1].reshape(-1, 3).T

        hu = ndi.map_coordinates(self.a, coords, order=1, mode="constant", cval=-1000.0)
        near = ndi.map_coordinates(self.near, coords, order=0, mode="constant", cval=0)
        ca = ndi.map_coordinates(self.ca, coords, order=0, mode="constant", cval=0)
        shp = self.gu.shape
        hu, near, ca = hu.reshape(shp), near.reshape(shp) > 0, ca.reshape(shp) > 0
        ca = ca | ((hu >= self.t_ca) & near)
        # Local half-maximum edge: the lumen edge lies where the CT value is halfway between the
        # blood pool and the tissue just outside (background by normalised convolution over the
        # sub-threshold pixels, clipped to fat, -100 HU, as the lumen never borders lung directly).
        core = (hu >= self.t_blood) & near
        # background from pixels ≥ 1.2 mm outside the lumen core (beyond the blur/partial volume)
        out_m = ~ndi.binary_dilation(core, iterations=max(1, int(round(1.2 / self.pix))))
        out = out_m.astype(np.float32)
        sig = 2.0 / self.pix
        bg = ndi.gaussian_filter(np.where(~out_m, 0.0, np.maximum(hu, -100.0)), sig) / np.maximum(
            ndi.gaussian_filter(out, sig), 1e-3)
        t_local = np.clip(0.5 * (self.peak + bg), 0.5 * (self.peak - 100.0), self.t_blood + 50.0)
        # calcium blooming (partial-volume halo) is not blood: it would bridge leaflet gaps
        halo = ndi.binary_dilation(ca, iterations=max(1, int(round(1.0 / self.pix))))
        blood = (hu >= self.t_blood) & (hu < self.t_ca) & near & ~halo
        blood_edge = (hu >= t_local) & near
        return blood, ca, blood_edge, (e1, e2)


def _component_at_centre(mask: np.ndarray, max_dist_px: float) -> np.ndarray:

    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    c = np.array(mask.shape) // 2
    if lab[tuple(c)] > 0:
        return lab == lab[tuple(c)]
    idx = np.argwhere(mask)
    d = np.linalg.norm(idx - c, axis=1)
    k = int(np.argmin(d))
    if d[k] > max_dist_px:
        return np.zeros_like(mask)
    return lab == lab[tuple(idx[k])]


def _section(sampler: _Sampler, centre: np.ndarray, n: np.ndarray) -> dict[str, Any]:
    """Measurements of one cross-section (areas in mm², centroid in LPS mm)."""

    blood, ca, blood_edge, (e1, e2) = sampler.plane(centre, n)
    px2 = sampler.pix**2
    # Lumen = blood and calcium with the leaflets between them: a closing of 2 mm radius bridges
    # leaflets that touch the wall at the commissures, then enclosed tissue is filled.
    rc = max(1, int(round(2.0 / sampler.pix)))
    disk = np.hypot(*np.mgrid[-rc:rc + 1, -rc:rc + 1]) <= rc
    joined = ndi.binary_closing(np.pad(blood | ca, rc + 1), structure=disk)[rc + 1:-rc - 1, rc + 1:-rc - 1]
    filled = _component_at_centre(ndi.binary_fill_holes(joined), 8.0 / sampler.pix)
    # outer edge at the local half maximum (a 2-pixel band around the global-threshold lumen)
    band = ndi.binary_dilation(filled, iterations=2)
    filled = ndi.binary_fill_holes(filled | (blood_edge & band & ~filled & ndi.binary_dilation(filled)))
    filled = ndi.binary_fill_holes(filled | (blood_edge & band & ndi.binary_dilation(filled)))
    out: dict[str, Any] = {"filled": filled, "e1": e1, "e2": e2}
    area = float(filled.sum()) * px2
    out["area_mm2"] = area
    if area == 0:
        out.update(tissue_mm2=0.0, central_mm2=0.0, centroid_mm=centre.copy())
        return out
    tissue = filled & ~blood
    filled = ndi.binary_fill_holes(filled)
    # enclosed tissue only (holes), not a notch at the rim
    tissue_holes = tissue & ndi.binary_erosion(filled, iterations=1)
    out["tissue_mm2"] = float(tissue_holes.sum()) * px2
    central = _component_at_centre(blood & filled, 3.0 / sampler.pix)
    out["central_mm2"] = float(central.sum()) * px2
    out["central"] = central
    if central.any():
        cij = np.argwhere(central).mean(axis=0)
        cuv = (cij - (np.array(central.shape) - 1) / 2.0) * sampler.pix
        out["central_centroid_mm"] = centre + cuv[0] * e1 + cuv[1] * e2
    ij = np.argwhere(filled).astype(float)
    m = ij.mean(axis=0)
    c_uv = (m - (np.array(filled.shape) - 1) / 2.0) * sampler.pix
    out["centroid_mm"] = centre + c_uv[0] * e1 + c_uv[1] * e2
    cov = np.cov((ij - m).T) * px2 if len(ij) > 2 else np.zeros((2, 2))
    lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
    out["max_diameter_mm"] = 4.0 * float(np.sqrt(max(lam[0], 0.0)))
    out["min_diameter_mm"] = 4.0 * float(np.sqrt(max(lam[1], 0.0)))
    return out


def _median_diameter_mm(mask: np.ndarray, pixel_mm: float, n_rays: int = 180) -> float:
    """2 × median distance from the plane centre to the lumen edge along ``n_rays`` rays.

    Robust to a one-sided opening (e.g. the LVOT merging with the LV cavity on one side).
    """
    c = (np.array(mask.shape) - 1) / 2.0
    ang = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    steps = np.arange(0.0, min(mask.shape) / 2.0 - 1, 0.25)
    ii = np.rint(c[0] + np.outer(np.cos(ang), steps)).astype(int)
    jj = np.rint(c[1] + np.outer(np.sin(ang), steps)).astype(int)
    inside = mask[ii, jj]
    first_out = np.argmax(~inside, axis=1)
    first_out[inside.all(axis=1)] = len(steps) - 1
    return 2.0 * float(np.median(steps[first_out])) * pixel_mm


def _perimeter_mm(mask: np.ndarray, pixel_mm: float) -> float:
    from skimage import measure

    f = ndi.gaussian_filter(np.pad(mask, 2).astype(float), 1.0)
    contours = measure.find_contours(f, 0.5)
    if not contours:
        return 0.0
    c = max(contours, key=len)
    return float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum()) * pixel_mm


#: Side branches narrower than this (coronary arteries, 2-5 mm) are opened away from a section
#: before its diameter enters the lumen profile of :func:`_hinge_level`: a coronary ostium adds
#: area to the sinus sections it leaves from and would break the profile's descent to the waist.
_SIDE_BRANCH_MM = 6.0


def _trunk_area_mm2(sec: dict[str, Any], pixel_mm: float) -> float:
    """Area of a section's filled lumen without side branches narrower than ``_SIDE_BRANCH_MM``."""
    filled = sec.get("filled")
    if filled is None or not filled.any():
        return float(sec["area_mm2"])
    r = max(1, int(round(0.5 * _SIDE_BRANCH_MM / pixel_mm)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    opened = ndi.binary_opening(filled, structure=(xx**2 + yy**2) <= r * r)
    # the opening also trims the lumen's own corners and crescents; a branch is a removed part
    # that reaches at least 4 mm beyond the farthest point of the opened trunk from its centre
    # (a coronary leaves the sinus wall outwards; the crescents between the leaflet bases and
    # the wall reach < 3 mm out on the phantoms)
    removed = filled & ~opened
    lab, n = ndi.label(removed)
    if n == 0 or not opened.any():
        return float(sec["area_mm2"])
    ij = np.argwhere(opened)
    c = ij.mean(axis=0)
    reach = float(np.sqrt(((ij - c) ** 2).sum(axis=1)).max()) + 4.0 / pixel_mm
    thin = np.zeros_like(filled)
    for i in range(1, n + 1):
        pts = np.argwhere(lab == i)
        if float(np.sqrt(((pts - c) ** 2).sum(axis=1)).max()) >= reach:
            thin[pts[:, 0], pts[:, 1]] = True
    return float((filled & ~thin).sum()) * pixel_mm**2


def _hinge_level(hs: np.ndarray, secs: list[dict[str, Any]], onset: int, *,
                 noise_mm: float = 0.15, below_mm: float = 4.0,
                 pixel_mm: float = 0.4) -> tuple[int, list[int]]:
    """Level of the leaflet hinges and of the annulus section, from the lumen diameter profile.

    Going down from the sinus (the widest filled lumen within 15 mm above ``onset``, the first
    level with enclosed leaflet tissue), the lumen narrows to a waist: just above the hinges the
    leaflet bases, attached to the wall, are not yet enclosed by sinus blood and take the rim of
    the lumen. Below the waist the section widens again to the annulus and then the LVOT.

    Returns
    -------
    k_hinge : int
        Index into ``hs`` of the hinge level: ``onset`` when it lies between the widest section
        below the waist and the waist, else the highest level below the waist whose diameter is
        within ``noise_mm`` of the widest (the top of the annulus plateau).
    candidates : list of int
        Levels from ``below_mm`` below the waist up to the waist: the annulus section is the
        widest of them (the leaflet bases above, the narrower LVOT below); the ``below_mm``
        below ``onset`` when no waist is found.
    """
    d = np.array([2.0 * np.sqrt(_trunk_area_mm2(s, pixel_mm) / np.pi) for s in secs])
    step = float(hs[1] - hs[0])
    lo = max(0, onset - int(round(3.0 / step)))
    hi = min(len(hs) - 1, onset + int(round(15.0 / step)))
    k = k_sinus = onset + int(np.argmax(d[onset:hi + 1]))
    # down to the waist, on the profile smoothed over 1.5 mm (calcium makes it bumpy)
    ds = ndi.uniform_filter1d(d, size=3, mode="nearest")
    while k - 1 >= lo and ds[k - 1] <= ds[k:k_sinus + 1].min() + noise_mm:
        k -= 1
    if k == lo:  # no waist above the LVOT: the hinges at the first level with leaflet tissue
        return onset, list(range(max(0, onset - int(round(below_mm / step))), onset + 1))
    waist = k
    k0 = max(lo, waist - int(round(below_mm / step)))
    k_sec = k0 + int(np.argmax(d[k0:waist + 1]))
    candidates = list(range(k0, waist + 1))
    if k_sec <= onset <= waist:  # leaflet tissue first enclosed between the annulus and the waist
        return onset, candidates
    k_hinge = max(j for j in range(k_sec, waist + 1) if d[j] >= d[k_sec] - noise_mm)
    return k_hinge, candidates


def _edge_contour(sampler: _Sampler, section: dict[str, Any], centre: np.ndarray, n: np.ndarray,
                  *, n_rays: int = 360, window_mm: float = 2.5, step_mm: float = 0.1
                  ) -> np.ndarray | None:
    """Sub-voxel lumen contour of a cross-section: ``(n_rays, 2)`` points (mm, in the section's
    ``(e1, e2)`` frame about ``centre``), or None when too few rays give an edge.

    Along each ray from the filled lumen's centroid, the CT is sampled every ``step_mm`` within
    ``window_mm`` of the filled lumen's edge; the edge is the outermost crossing of the half
    maximum between the blood peak and the lowest value just outside (the wall or fat, not a
    neighbouring pool farther out). Rays through calcium (≥ the calcium threshold near the
    edge: it hides the lumen edge and blooms) are dropped and filled in from their neighbours.
    """
    filled = section["filled"]
    e1, e2 = section["e1"], section["e2"]
    pix = sampler.pix
    ij = np.argwhere(filled).astype(float)
    c_px = ij.mean(axis=0)
    half_px = (np.array(filled.shape) - 1) / 2.0
    c_mm = (c_px - half_px) * pix  # centroid in (e1, e2) mm
    ang = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    # outermost filled pixel along each ray (mask edge)
    r_grid = np.arange(0.0, sampler.half - 1.0, pix / 2)
    pts_px = c_px + (r_grid[None, :, None] * dirs[:, None, :]) / pix
    ii = np.clip(np.rint(pts_px).astype(int), 0, np.array(filled.shape) - 1)
    inside = filled[ii[..., 0], ii[..., 1]]
    if not inside.any():
        return None
    last = np.where(inside.any(axis=1), inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
    r_mask = r_grid[last]
    # CT along each ray around the mask edge
    off = np.arange(-window_mm, 2 * window_mm + 1e-9, step_mm)
    rr = np.maximum(r_mask[:, None] + off[None, :], 0.0)
    uv = c_mm + rr[..., None] * dirs[:, None, :]
    xyz = centre + uv[..., 0, None] * e1 + uv[..., 1, None] * e2
    ijk = (xyz - sampler.org) @ sampler.inv.T
    prof = ndi.map_coordinates(sampler.a, ijk[..., ::-1].reshape(-1, 3).T, order=1, mode="nearest"
                               ).reshape(rr.shape)
    prof = ndi.uniform_filter1d(prof, size=max(1, int(round(0.5 / step_mm))), axis=1)
    outside = (off >= 0.0) & (off <= window_mm)
    low = np.min(np.where(outside[None, :], prof, np.inf), axis=1)
    level = 0.5 * (sampler.peak + low)
    above = prof >= level[:, None]
    # downward crossings (inside → outside) within the window; the one nearest the mask edge
    down = above[:, :-1] & ~above[:, 1:]
    down[:, off[:-1] > window_mm] = False
    dist = np.where(down, np.abs(off[None, :-1]), np.inf)
    ok = np.isfinite(dist).any(axis=1)
    j = np.argmin(dist, axis=1)
    rows = np.arange(n_rays)
    f0, f1 = prof[rows, j], prof[rows, j + 1]
    frac = np.clip((f0 - level) / np.maximum(f0 - f1, 1e-6), 0.0, 1.0)
    r_edge = rr[rows, j] + frac * step_mm
    ca = np.max(prof[:, off <= window_mm], axis=1) >= sampler.t_ca
    ca = ndi.binary_dilation(np.concatenate([ca[-4:], ca, ca[:4]]), iterations=4)[4:-4]
    ok &= ~ca
    if ok.sum() < 0.4 * n_rays:
        return None
    # fill dropped rays from an ellipse fitted to the others (a gap across the end of the major
    # axis would be cut short by interpolating the radius), then smooth single-ray noise
    r_fill = _ellipse_radii(r_edge[ok, None] * dirs[ok], dirs)
    if r_fill is None:
        good = np.flatnonzero(ok)
        r_fill = np.interp(ang, ang[good], r_edge[good], period=2 * np.pi)
    r_edge = np.where(ok, r_edge, r_fill)
    r_edge = ndi.median_filter(r_edge, size=5, mode="wrap")
    r_edge = ndi.gaussian_filter1d(r_edge, 2.0, mode="wrap")
    return c_mm + r_edge[:, None] * dirs


def _ellipse_radii(points: np.ndarray, dirs: np.ndarray) -> np.ndarray | None:
    """Distances from the origin along unit ``dirs`` to the ellipse fitted (least squares, conic
    ``a x² + b xy + c y² + d x + e y = 1``) to ``points`` (mm); None if the fit is no ellipse
    around the origin."""
    x, y = points[:, 0], points[:, 1]
    design = np.stack([x * x, x * y, y * y, x, y], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.ones(len(x)), rcond=None)
    a, b, c, d, e = coef
    if 4 * a * c - b * b <= 0:
        return None
    u, v = dirs[:, 0], dirs[:, 1]
    qa = a * u * u + b * u * v + c * v * v  # qa r² + qb r - 1 = 0
    qb = d * u + e * v
    disc = qb * qb + 4 * qa
    if np.any(qa <= 0) or np.any(disc < 0):
        return None
    return (-qb + np.sqrt(disc)) / (2 * qa)


def _polygon_measures(poly: np.ndarray) -> dict[str, float]:
    """Area (mm²), perimeter (mm), and min/max diameters (4·sqrt of the eigenvalues of the
    second moments: exact for an ellipse) of a closed polygon ``(n, 2)`` in mm."""
    a, b = poly, np.roll(poly, -1, axis=0)
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    area = 0.5 * float(cross.sum())
    if area < 0:
        poly = poly[::-1]
        a, b = poly, np.roll(poly, -1, axis=0)
        cross = -cross[::-1]
        area = -area
    cx = float(((a[:, 0] + b[:, 0]) * cross).sum()) / (6.0 * area)
    cy = float(((a[:, 1] + b[:, 1]) * cross).sum()) / (6.0 * area)
    sxx = float(((a[:, 0] ** 2 + a[:, 0] * b[:, 0] + b[:, 0] ** 2) * cross).sum()) / 12.0
    syy = float(((a[:, 1] ** 2 + a[:, 1] * b[:, 1] + b[:, 1] ** 2) * cross).sum()) / 12.0
    sxy = float(((a[:, 0] * b[:, 1] + 2 * a[:, 0] * a[:, 1] + 2 * b[:, 0] * b[:, 1]
                  + b[:, 0] * a[:, 1]) * cross).sum()) / 24.0
    cov = np.array([[sxx / area - cx**2, sxy / area - cx * cy],
                    [sxy / area - cx * cy, syy / area - cy**2]])
    lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
    return {"area_mm2": area,
            "perimeter_mm": float(np.linalg.norm(b - a, axis=1).sum()),
            "max_diameter_mm": 4.0 * float(np.sqrt(max(lam[0], 0.0))),
            "min_diameter_mm": 4.0 * float(np.sqrt(max(lam[1], 0.0)))}


@dataclass(frozen=True)
class PlanningLandmarks:
    """Landmarks a planning tool placed on the scan (LPS mm): the three basal leaflet hinge
    points of the annulus and, when given, the coronary ostia (name → point)."""

    hinge_points_mm: tuple[tuple[float, float, float], ...]
    coronary_ostia_mm: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)

    def ostium_heights_mm(self, landmarks: AorticRootLandmarks) -> dict[str, float]:
        """Height of each ostium above the annulus plane along its normal (mm)."""
        c = np.asarray(landmarks.annulus_centre_mm)
        n = np.asarray(landmarks.annulus_normal)
        return {k: float(np.dot(np.asarray(v) - c, n)) for k, v in self.coronary_ostia_mm.items()}


def read_planning_landmarks(path: str | Path) -> PlanningLandmarks:
    """Read hinge points and coronary ostia from a JSON file.

    Two layouts are read:

    * cardiotwin's: ``{"coordinates": "LPS" | "RAS", "annulus_hinge_points_mm": [[x, y, z] × 3],
      "coronary_ostia_mm": {"left": [x, y, z], "right": [x, y, z]}}`` (ostia optional);
    * a 3D Slicer markups file (``.mrk.json``): control points labelled ``hinge…`` (three) and
      optionally ``LCA``/``left…`` and ``RCA``/``right…`` (the ostia), in the file's
      ``coordinateSystem``.

    RAS points (NIfTI tools, Slicer's default) are converted to LPS (x and y negated).

    Raises
    ------
    InputError
        Unreadable JSON, a missing key, not three hinge points, an unknown coordinate system;
        the message names the key.
    """
    import json

    from cardiotwin.errors import InputError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"landmarks file {path}: not readable JSON ({exc})") from None

    def lps(point: Any, system: str, key: str) -> tuple[float, float, float]:
        v = np.asarray(point, dtype=float).reshape(-1)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise InputError(f"landmarks file {path}: {key} must be [x, y, z] in mm; got {point!r}")
        if system == "RAS":
            v = v * np.array([-1.0, -1.0, 1.0])
        return (float(v[0]), float(v[1]), float(v[2]))

    def system_of(value: Any) -> str:
        system = str(value or "LPS").upper()
        if system not in ("LPS", "RAS"):
            raise InputError(f"landmarks file {path}: coordinates must be LPS or RAS; got {value!r}")
        return system

    if "markups" in data:  # 3D Slicer
        hinges, ostia = [], {}
        for m in data["markups"]:
            system = system_of(m.get("coordinateSystem", "LPS"))
            for cp in m.get("controlPoints", []):
                label = str(cp.get("label", "")).lower()
                pos = lps(cp.get("position"), system, f"control point {cp.get('label')!r}")
                if label.startswith("hinge"):
                    hinges.append(pos)
                elif label.startswith(("lca", "left")):
                    ostia["left"] = pos
                elif label.startswith(("rca", "right")):
                    ostia["right"] = pos
    else:
        system = system_of(data.get("coordinates", "LPS"))
        if "annulus_hinge_points_mm" not in data:
            raise InputError(f"landmarks file {path}: no 'annulus_hinge_points_mm' (three "
                             "[x, y, z] points of the leaflet hinges)")
        hinges = [lps(p, system, "annulus_hinge_points_mm") for p in data["annulus_hinge_points_mm"]]
        ostia = {str(k): lps(v, system, f"coronary_ostia_mm.{k}")
                 for k, v in (data.get("coronary_ostia_mm") or {}).items()}
    if len(hinges) != 3:
        raise InputError(f"landmarks file {path}: {len(hinges)} hinge points; need exactly 3 "
                         "(the basal hinge of each leaflet)")
    return PlanningLandmarks(tuple(hinges), ostia)


MAX_HINGE_DISTANCE_MM = 20.0
"""The user's hinge plane must pass within this distance of the LV/aorta interface found in the
segmentation; farther, the points belong to another scan or another coordinate convention."""


def _hinge_plane(points_mm: Any, *, axis: np.ndarray, interface_centre: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Centre (centroid) and unit normal (oriented like ``axis``, LV → aorta) of the plane
    through three hinge points; refused when degenerate or far from the valve."""
    from cardiotwin.errors import GeometryError

    p = np.asarray(points_mm, dtype=float)
    if p.shape != (3, 3) or not np.all(np.isfinite(p)):
        raise GeometryError(f"need three hinge points (3 × 3 LPS mm); got shape {p.shape}")
    normal = np.cross(p[1] - p[0], p[2] - p[0])
    span = min(np.linalg.norm(p[i] - p[j]) for i, j in ((0, 1), (1, 2), (0, 2)))
    if np.linalg.norm(normal) < 1e-6 or span < 5.0:
        raise GeometryError(f"the hinge points are {span:.1f} mm apart or on one line; give the "
                            "three leaflet hinge points of the annulus (10–20 mm apart)")
    n = unit_vector(normal)
    if np.dot(n, axis) < 0:
        n = -n
    centre = p.mean(axis=0)
    dist = float(np.linalg.norm(centre - interface_centre))
    if dist > MAX_HINGE_DISTANCE_MM:
        raise GeometryError(
            f"the hinge points' centre lies {dist:.0f} mm from the valve found in the scan "
            f"(more than {MAX_HINGE_DISTANCE_MM:g} mm): they belong to another scan or another "
            "coordinate convention (LPS as DICOM, or RAS as NIfTI tools; say which in the file)")
    tilt = float(np.degrees(np.arccos(min(1.0, abs(np.dot(n, axis))))))
    if tilt > 45.0:
        _LOG.warning("the hinge plane is tilted %.0f° from the valve axis found in the scan", tilt)
    return centre, n


def resolve_labels(ct: Any, seg: Any, *, blood_threshold_hu: float | None = None,
                   calcium_threshold_hu: float | None = None) -> tuple[Any, float, float, Any]:
    """The label map and the blood / calcium thresholds (HU) a measurement of ``seg`` uses.

    Parameters
    ----------
    ct : Volume
        Contrast CT in HU.
    seg : Segmentation or LabelMap
        With ``lv_blood`` and ``aorta`` on the CT grid.
    blood_threshold_hu, calcium_threshold_hu : float, optional, keyword-only
        Overrides; default: those of the ``Segmentation``, or estimated from the CT
        (:func:`cardiotwin.imaging.segment.estimate_intensities`) for a bare ``LabelMap``.

    Returns
    -------
    (LabelMap, float, float, BloodPoolIntensities or None)
        The labels, the blood and calcium thresholds, and the intensity model when it had to be
        estimated from the CT (None otherwise).

    Raises
    ------
    GeometryError
        ``seg`` of another type, labels off the CT grid, or without ``lv_blood`` / ``aorta``.
    """
    from cardiotwin.errors import GeometryError
    from cardiotwin.imaging.segment import Segmentation, estimate_intensities
    from cardiotwin.imaging.volume import LabelMap

    inten = None
    if isinstance(seg, Segmentation):
        labels = seg.labels
        t_blood = seg.blood_threshold_hu if blood_threshold_hu is None else blood_threshold_hu
        t_ca = seg.calcium_threshold_hu if calcium_threshold_hu is None else calcium_threshold_hu
    elif isinstance(seg, LabelMap):
        labels = seg
        t_blood, t_ca = blood_threshold_hu, calcium_threshold_hu
        if t_blood is None or t_ca is None:
            inten = estimate_intensities(ct)
            t_blood = inten.blood_threshold_hu if t_blood is None else t_blood
            t_ca = inten.calcium_threshold_hu if t_ca is None else t_ca
    else:
        raise GeometryError(f"seg must be a Segmentation or LabelMap; got {type(seg).__name__}")
    if not labels.volume.same_grid(ct):
        raise GeometryError("the labels are not on the CT grid; resample them onto the CT first")
    for name in ("lv_blood", "aorta"):
        if name not in labels.names:
            raise GeometryError(f"the label map has no '{name}' label (has {sorted(labels.names)}); "
                                "measurements need the LV blood pool and the aorta")
    return labels, float(t_blood), float(t_ca), inten


def measure_aortic_root(
    ct: Any,
    seg: Any,
    *,
    blood_threshold_hu: float | None = None,
    calcium_threshold_hu: float | None = None,
    pixel_mm: float = 0.4,
    lvot_offset_mm: float = 5.0,
    sinus_search_mm: float = 25.0,
    orifice_search_mm: float = 20.0,
    min_tissue_mm2: float = 4.0,
    centreline_length_mm: float = 60.0,
    hinge_points_mm: Any = None,
) -> AorticRootLandmarks:
    """Measure the aortic root (annulus, LVOT, sinus, valve orifice, calcium) in a contrast CT.

    The method is described step by step in the comment block above this function.

    Parameters
    ----------
    ct : Volume
        Contrast CT in HU.
    seg : Segmentation or LabelMap
        Labels ``lv_blood`` and ``aorta`` (and optionally ``branches``, ``calcium``) on the CT grid.
    blood_threshold_hu, calcium_threshold_hu : float, optional, keyword-only
        Thresholds for the cross-sections; default: those of the ``Segmentation``, or estimated
        from the CT histogram (:func:`cardiotwin.imaging.segment.estimate_intensities`).
    pixel_mm : float, keyword-only
        Pixel size of the resampled cross-sections (mm).
    lvot_offset_mm : float, keyword-only
        Distance below the annulus where the LVOT diameter is measured (mm).
    sinus_search_mm, orifice_search_mm : float, keyword-only
        Heights above the annulus searched for the sinus maximum / the valve orifice (mm).
    min_tissue_mm2 : float, keyword-only
        Smallest enclosed valve-tissue area that marks the leaflets in a cross-section (mm²).
    centreline_length_mm : float, keyword-only
        Length of the centreline tracked above the annulus (mm).
    hinge_points_mm : (3, 3) array, keyword-only, optional
        The three basal hinge points of the leaflets (LPS mm) from a planning tool: the annulus
        is then the plane through them (the virtual basal ring, as TAVR planners define it)
        instead of the first level with leaflet tissue; everything else is measured from it.

    Returns
    -------
    AorticRootLandmarks

    Raises
    ------
    GeometryError
        If the LV/aorta interface, the lumen or the annulus cannot be found.
    """

    from cardiotwin.errors import GeometryError
    from cardiotwin.imaging.segment import Segmentation, estimate_intensities

    labels, t_blood, t_ca, inten = resolve_labels(
        ct, seg, blood_threshold_hu=blood_threshold_hu, calcium_threshold_hu=calcium_threshold_hu)
    arr = labels.array
    lv = arr == labels.names["lv_blood"]
    ao_vals = [labels.names[k] for k in ("aorta", "branches") if k in labels.names]
    ao = np.isin(arr, ao_vals)
    ca = (arr == labels.names["calcium"]) if "calcium" in labels.names else np.zeros_like(lv)

    # ---- 1. interface and first axis ----------------------------------------------------------
    iface = (lv & ndi.binary_dilation(ao)) | (ao & ndi.binary_dilation(lv))
    if iface.sum() < 10:
        raise GeometryError(
            f"the LV and aorta labels touch in only {int(iface.sum())} voxels; the valve interface "
            "cannot be located. Check the segmentation (lv_blood and aorta must share the valve plane).")
    pts = ct.index_to_physical(np.argwhere(iface)[:, ::-1])
    c0 = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c0, full_matrices=False)
    n = vt[2]
    sp = np.asarray(ct.spacing_mm)

    def centroid_near(mask: np.ndarray, radius_mm: float) -> np.ndarray:
        lo = np.floor(ct.physical_to_index(c0 - radius_mm)).astype(int)
        hi = np.ceil(ct.physical_to_index(c0 + radius_mm)).astype(int)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        sl = tuple(slice(max(lo[d], 0), max(hi[d] + 1, 0)) for d in (2, 1, 0))
        idx = np.argwhere(mask[sl]) + np.array([s.start for s in sl])
        if len(idx) == 0:
            raise GeometryError("no LV or aorta voxels near the valve interface")
        p = ct.index_to_physical(idx[:, ::-1])
        return p[np.linalg.norm(p - c0, axis=1) <= radius_mm].mean(axis=0)

    d_lv_ao = centroid_near(ao, 25.0) - centroid_near(lv, 25.0)
    if np.dot(n, d_lv_ao) < 0:
        n = -n
    if abs(np.dot(n, unit_vector(d_lv_ao))) < 0.5:  # interface not disc-like: trust the centroids
        n = unit_vector(d_lv_ao)

    # ---- 2. ROI crop and sampler --------------------------------------------------------------
    roi = 60.0
    lo = np.floor(ct.physical_to_index(c0 - roi)).astype(int)
    hi = np.ceil(ct.physical_to_index(c0 + roi)).astype(int)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    sl = tuple(slice(max(lo[d], 0), max(hi[d] + 1, 0)) for d in (2, 1, 0))
    from cardiotwin.imaging.volume import Volume

    origin = ct.index_to_physical(np.array([sl[2].start, sl[1].start, sl[0].start]))
    sub_ct = Volume(np.asarray(ct.array)[sl], ct.spacing_mm, tuple(origin), ct.direction)
    lumen = (lv | ao | ca)[sl]
    near = ndi.binary_dilation(lumen, iterations=max(1, int(round(2.0 / sp.min()))))
    # the blood peak the segmentation found; estimated from the CT (once) only without one
    peak = ((seg.report.get("intensities") or {}).get("blood_peak_hu")
            if isinstance(seg, Segmentation) else None)
    if peak is None:
        peak = (inten if inten is not None else estimate_intensities(ct)).blood_peak_hu
    sampler = _Sampler(sub_ct, near, ca[sl], t_blood=float(t_blood), t_ca=float(t_ca), peak=peak,
                       half_mm=28.0, pixel_mm=pixel_mm)

    # ---- axis refinement through lumen centroids -----------------------------------------------
    centre = c0.copy()
    for _ in range(2):
        cs = []
        for h in np.arange(-9.0, 10.51, 1.5):
            s = _section(sampler, centre + h * n, n)
            if s.get("central_mm2", 0.0) > 0:
                cs.append(s["central_centroid_mm"])
        if len(cs) < 5:
            raise GeometryError("the aortic-root lumen was not found in planes across the valve axis")
        cs = np.asarray(cs)
        m = cs.mean(axis=0)
        _, _, vt = np.linalg.svd(cs - m, full_matrices=False)
        n_new = vt[0] if np.dot(vt[0], n) > 0 else -vt[0]
        centre = m + np.dot(centre - m, n_new) * n_new
        n = n_new

    if hinge_points_mm is not None:
        centre, n = _hinge_plane(hinge_points_mm, axis=n, interface_centre=c0)

    # ---- 3. annulus: first level with leaflet tissue enclosed in the lumen -----------------------
    hs = np.arange(-15.0, 20.01, 0.5)
    secs = [_section(sampler, centre + h * n, n) for h in hs]
    has_tissue = np.array([s["tissue_mm2"] >= max(min_tissue_mm2, 0.05 * s["area_mm2"]) for s in secs])
    # leaflets persist from the hinge up to the orifice: require 3 mm of consecutive levels
    run = int(round(3.0 / 0.5))
    onset = None
    for k in range(len(hs) - run):
        if has_tissue[k:k + run].all() and hs[k] > -12.0:
            onset = k
            break
    if hinge_points_mm is not None:  # the user's annulus plane is the level h = 0
        onset = int(np.argmin(np.abs(hs)))
    if onset is None:
        raise GeometryError(
            "no valve leaflets found inside the lumen within 15 mm of the LV/aorta interface; "
            "the annulus plane cannot be located (is the valve visible, is this a contrast CT?)")
    candidates = [onset]
    if hinge_points_mm is None:
        onset, candidates = _hinge_level(hs, secs, onset, pixel_mm=pixel_mm)
    ann = secs[candidates[0]]
    h_ann = float(hs[onset])
    a_centre = secs[onset]["centroid_mm"]
    area = ann["area_mm2"]
    perim = _perimeter_mm(ann["filled"], pixel_mm)
    d_min, d_max = ann["min_diameter_mm"], ann["max_diameter_mm"]
    # sub-voxel contour; the widest of the candidate levels (below the hinges, above the LVOT)
    best = None
    for k in candidates:
        if secs[k]["area_mm2"] == 0:
            continue
        contour = _edge_contour(sampler, secs[k], centre + hs[k] * n, n)
        if contour is not None:
            pm = _polygon_measures(contour)
            if best is None or pm["area_mm2"] > best["area_mm2"]:
                best = pm
    if best is not None:
        area, perim = best["area_mm2"], best["perimeter_mm"]
        d_min, d_max = best["min_diameter_mm"], best["max_diameter_mm"]

    # ---- 4./5. LVOT and sinus ---------------------------------------------------------------
    lvot = _section(sampler, a_centre - lvot_offset_mm * n, n)
    sinus_areas = [s["area_mm2"] for s, h in zip(secs, hs, strict=True) if h_ann <= h <= h_ann + sinus_search_mm]
    if h_ann + sinus_search_mm > hs[-1]:
        for h in np.arange(hs[-1] + 0.5, h_ann + sinus_search_mm + 0.01, 0.5):
            sinus_areas.append(_section(sampler, centre + h * n, n)["area_mm2"])

    # ---- 6. orifice -------------------------------------------------------------------------
    best = None
    for s, h in zip(secs, hs, strict=True):
        if not (h_ann < h <= h_ann + orifice_search_mm) or s["area_mm2"] == 0:
            continue
        if s["central_mm2"] > 0 and s["central_mm2"] < 0.8 * s["area_mm2"] and s["tissue_mm2"] >= min_tissue_mm2:
            if best is None or s["central_mm2"] < best[0]:
                best = (s["central_mm2"], h, s)
    if best is None:
        raise GeometryError("no valve orifice (blood enclosed by leaflets) found above the annulus")
    o_area, o_h, o_sec = best
    ij = np.argwhere(o_sec["central"]).astype(float).mean(axis=0)
    uv = (ij - (np.array(o_sec["central"].shape) - 1) / 2.0) * pixel_mm
    o_centre = centre + o_h * n + uv[0] * o_sec["e1"] + uv[1] * o_sec["e2"]

    # ---- 7. calcium ---------------------------------------------------------------------------
    ca_idx = np.argwhere(ca)
    ca_vol = 0.0
    if len(ca_idx):
        p = ct.index_to_physical(ca_idx[:, ::-1]) - a_centre
        hh = p @ n
        rr = np.linalg.norm(p - np.outer(hh, n), axis=1)
        r_lim = 0.5 * 2.0 * np.sqrt(max(sinus_areas + [area]) / np.pi) + 5.0
        sel = (hh >= -10.0) & (hh <= sinus_search_mm) & (rr <= r_lim)
        ca_vol = float(sel.sum()) * ct.voxel_volume_mm3

    # ---- 8. centreline ------------------------------------------------------------------------
    cl = [s["centroid_mm"] for s, h in zip(secs, hs, strict=True)
          if h_ann - 10.0 <= h <= h_ann + 10.0 and s["area_mm2"] > 0 and abs(h - round(h)) < 1e-6]
    p, d = np.asarray(cl[-1]), n.copy()
    travelled = 10.0
    while travelled < centreline_length_mm:
        s = _section(sampler, p + 2.0 * d, d)
        if s["area_mm2"] == 0:
            break
        q = s["centroid_mm"]
        d = unit_vector(0.5 * d + 0.5 * unit_vector(q - p))
        travelled += float(np.linalg.norm(q - p))
        p = q
        cl.append(q)

    _LOG.info("annulus at %.1f mm from the interface: area %.0f mm², orifice %.0f mm² at +%.1f mm",
              h_ann, area, o_area, o_h - h_ann)
    return AorticRootLandmarks(
        annulus_centre_mm=tuple(float(v) for v in a_centre),
        annulus_normal=tuple(float(v) for v in n),
        annulus_area_mm2=area,
        annulus_perimeter_mm=perim,
        annulus_diameter_mm=2.0 * float(np.sqrt(area / np.pi)),
        annulus_perimeter_diameter_mm=perim / np.pi,
        annulus_min_diameter_mm=d_min,
        annulus_max_diameter_mm=d_max,
        lvot_diameter_mm=_median_diameter_mm(lvot["filled"], pixel_mm),
        sinus_diameter_mm=2.0 * float(np.sqrt(max(sinus_areas) / np.pi)),
        valve_orifice_area_mm2=float(o_area),
        valve_orifice_centre_mm=tuple(float(v) for v in o_centre),
        valve_orifice_height_mm=float(o_h - h_ann),
        calcium_volume_mm3=ca_vol,
        centreline_mm=np.asarray(cl, dtype=float),
    )

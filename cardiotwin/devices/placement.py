"""Placing a device on the patient's landmarks, checking the pose against the lumen, and the
device's Brinkman region for the flow model.

Pose convention: every device has an axis from its delivery (upstream) side to its far side and an
*inflow centre* on it, the origin of its surface (:mod:`cardiotwin.devices.surfaces`):

* transcatheter aortic valve: the axis starts as the annulus normal (LV → aorta); the inflow edge
  of the frame sits ``depth_mm`` below the annulus plane.
* aortic stent: the proximal end sits ``arc_length_mm`` along the aortic centreline from the
  annulus plane; the axis starts as the chord of the centreline over the stent's length.
* LAA occluder: the user gives the ostium centre and its normal (left atrium → appendage); the
  disc lies on the atrial side of the ostium plane, the lobe in the appendage; ``depth_mm`` moves
  the device into the appendage. The anatomy step does not measure the LAA ostium yet, so it is
  never guessed.
* septal occluder: the user gives the defect centre and the septum's normal (right → left
  atrium); the waist centre sits there, ``depth_mm`` moves it along the normal.

The starting axis is then tilted by ``tilt_deg`` towards the direction ``rotation_deg`` (measured
around the axis from a reference direction perpendicular to it).

A pose whose inflow centre or far end is outside the vessel is refused: against the lumen surface
when one is given, otherwise against the measured aortic centreline and the widest lumen radius the
landmarks measured (annulus, LVOT, sinus), which catches a device placed beside the vessel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import trimesh

from cardiotwin.devices.catalog import Catalog, load_catalog
from cardiotwin.devices.surfaces import LAA, SEPTAL, STENT, VALVE, DeviceShape, device_shape
from cardiotwin.errors import DeviceError
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.physics.brinkman import AnnularCylinder, BrinkmanRegion

__all__ = ["DEFAULT_VALVE_DEPTH_MM", "DEPTH_RANGE_MM", "MAX_TILT_DEG", "OCCLUDER_DEPTH_RANGE_MM",
           "DevicePlacement", "check_pose_in_lumen", "centreline_point", "device_region", "place_device"]

log = logging.getLogger(__name__)

MAX_TILT_DEG = 20.0
DEPTH_RANGE_MM = (-2.0, 10.0)
"""Valve inflow edge below the annulus plane (mm) the model supports."""
DEFAULT_VALVE_DEPTH_MM = {"balloon": 3.5, "self": 4.0}
"""Valve depth when neither the call nor the catalog family (``nominal_depth_mm``) gives one:
modelling values after the usual targets, ~3–4 mm below the annulus for balloon-expandable valves
(an 80/20 aortic/ventricular frame position) and 3–5 mm for self-expanding ones."""
OCCLUDER_DEPTH_RANGE_MM = (-10.0, 10.0)
"""Occluder offset from the given ostium/defect centre along its normal (mm)."""

Vector = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class DevicePlacement:
    """A device of the catalog at a pose on the patient's anatomy (LPS mm).

    Attributes
    ----------
    family : catalog key of the family.
    nominal_diameter_mm : size.
    depth_mm : valves: inflow edge below the annulus plane (positive = into the LVOT); occluders:
        offset along the site normal; stents: 0.
    tilt_deg, rotation_deg : axis tilt from the landmark axis and its azimuth.
    inflow_centre_mm : centre of the frame's inflow edge (stents: proximal end; occluders: the
        ostium/defect point the device is centred on).
    axis : unit device axis (inflow → outflow; occluders: atrium → appendage, right → left atrium).
    frame_height_mm, inner_radius_mm, orifice_radius_mm, skirt_height_mm : resulting geometry
        (valves; for other kinds the frame height is the stent/lobe/waist length and the other
        radii describe the frame's inflow end).
    kind : catalog kind (``transcatheter_aortic_valve``, ``aortic_stent``, ``laa_occluder``,
        ``septal_occluder``).
    arc_length_mm : stents: position of the proximal end along the centreline from the annulus
        plane; None otherwise.
    shape : the dimensions the device surface is built from.
    """

    family: str
    nominal_diameter_mm: float
    depth_mm: float
    tilt_deg: float
    rotation_deg: float
    inflow_centre_mm: tuple[float, float, float]
    axis: tuple[float, float, float]
    frame_height_mm: float
    inner_radius_mm: float
    orifice_radius_mm: float
    skirt_height_mm: float
    kind: str = VALVE
    arc_length_mm: float | None = None
    shape: DeviceShape | None = None

    @property
    def orifice_area_mm2(self) -> float:
        return math.pi * self.orifice_radius_mm**2

    @property
    def outflow_centre_mm(self) -> tuple[float, float, float]:
        """The point on the axis at the device's far end (valve outflow edge, stent distal end,
        LAA lobe end, septal left-disc face), mm."""
        return tuple(float(v) for v in np.asarray(self.inflow_centre_mm)
                     + _far_end_mm(self) * np.asarray(self.axis))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "orifice_area_mm2": self.orifice_area_mm2}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DevicePlacement:
        """Inverse of :meth:`to_dict` (the form stored with a twin; unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("inflow_centre_mm", "axis"):
            kw[k] = tuple(float(v) for v in kw[k])
        if kw.get("shape") is not None:
            kw["shape"] = DeviceShape.from_dict(kw["shape"])
        return cls(**kw)


def _far_end_mm(p: DevicePlacement) -> float:
    s = p.shape
    if s is None or s.kind in (VALVE, STENT):
        return p.frame_height_mm
    if s.kind == LAA:
        return s.waist_length_mm + s.height_mm
    return s.waist_length_mm / 2 + s.wall_mm


def _unit(v: Vector, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=float).reshape(-1)
    n = float(np.linalg.norm(a)) if a.shape == (3,) else 0.0
    if a.shape != (3,) or not np.isfinite(n) or n == 0:
        raise DeviceError(f"{name} must be a non-zero 3-vector (LPS); got {v!r}")
    return a / n


def _perpendicular(n: np.ndarray) -> np.ndarray:
    ref = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e = ref - (ref @ n) * n
    return e / np.linalg.norm(e)


def _tilted(n: np.ndarray, tilt_deg: float, rotation_deg: float) -> np.ndarray:
    e1 = _perpendicular(n)
    e2 = np.cross(n, e1)
    phi = math.radians(rotation_deg)
    tdir = math.cos(phi) * e1 + math.sin(phi) * e2
    t = math.radians(tilt_deg)
    return math.cos(t) * n + math.sin(t) * tdir


# ---------------------------------------------------------------------------------------------
# Centreline
# ---------------------------------------------------------------------------------------------

def _centreline(landmarks: AorticRootLandmarks) -> tuple[np.ndarray, np.ndarray, float]:
    """Centreline points, cumulative arc length, and the arc length where it crosses the annulus
    plane (0 when it starts above it)."""
    pts = np.asarray(landmarks.centreline_mm, dtype=float).reshape(-1, 3)
    if len(pts) < 2:
        raise DeviceError(
            "the landmarks hold no aortic centreline (fewer than 2 points), which aortic stents "
            "are positioned along; measure the aortic root again (measure_aortic_root records it)")
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    n = _unit(landmarks.annulus_normal, "annulus_normal")
    h = (pts - np.asarray(landmarks.annulus_centre_mm)) @ n
    s0 = 0.0
    for i in range(len(h) - 1):
        if h[i] < 0 <= h[i + 1]:
            s0 = float(s[i] + (s[i + 1] - s[i]) * (-h[i]) / (h[i + 1] - h[i]))
            break
    return pts, s, s0


def centreline_point(landmarks: AorticRootLandmarks, arc_length_mm: float) -> np.ndarray:
    """The point ``arc_length_mm`` along the aortic centreline from the annulus plane (LPS mm).

    The arc length is measured along the polyline from where it crosses the annulus plane
    (from its first point when it starts above the plane); negative values go into the LVOT.

    Raises
    ------
    DeviceError
        No centreline, or the arc length beyond either end of it (the message gives the range).
    """
    pts, s, s0 = _centreline(landmarks)
    target = s0 + float(arc_length_mm)
    if not -1e-9 <= target <= s[-1] + 1e-9:
        raise DeviceError(
            f"arc length {arc_length_mm:g} mm is beyond the measured centreline, which runs "
            f"{-s0:.1f} to {s[-1] - s0:.1f} mm from the annulus plane")
    return np.array([np.interp(target, s, pts[:, k]) for k in range(3)])


def _distance_to_polyline(p: np.ndarray, pts: np.ndarray) -> float:
    a, b = pts[:-1], pts[1:]
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab),
                                                              1e-30), 0.0, 1.0)
    return float(np.linalg.norm(a + t[:, None] * ab - p, axis=1).min())


# ---------------------------------------------------------------------------------------------
# Lumen check
# ---------------------------------------------------------------------------------------------

def _lumen_radius_mm(landmarks: AorticRootLandmarks) -> float:
    return 0.5 * max(landmarks.annulus_max_diameter_mm, landmarks.sinus_diameter_mm,
                     landmarks.lvot_diameter_mm)


def _outside_surface_mm(points: np.ndarray, surface: trimesh.Trimesh) -> np.ndarray:
    """Distance of each point outside the closed or open lumen surface (0 inside), mm."""
    closest, dist, tri = trimesh.proximity.closest_point(surface, points)
    if surface.is_watertight:
        inside = surface.contains(points)   # ray parity: independent of the face orientation
    else:
        # open lumen (cut ends): the side of the nearest face. The faces' orientation is taken
        # from the sign of the volume they sweep seen from the centroid (positive when the
        # normals face out of the lumen, also with the ends open).
        tris = surface.triangles - surface.vertices.mean(axis=0)
        swept = np.einsum("ij,ij->i", tris[:, 0], np.cross(tris[:, 1], tris[:, 2])).sum()
        side = np.einsum("ij,ij->i", points - closest, surface.face_normals[tri])
        inside = side * np.sign(swept) <= 0
    return np.where(inside, 0.0, dist)


def check_pose_in_lumen(points_mm: Mapping[str, Vector], *,
                        landmarks: AorticRootLandmarks | None = None,
                        lumen_surface: trimesh.Trimesh | None = None) -> None:
    """Refuse points of a device pose that lie outside the vessel.

    Parameters
    ----------
    points_mm : name → point (LPS mm), e.g. ``{"inflow centre": ..., "outflow centre": ...}``.
    landmarks : aortic root; a point farther from its centreline (or, without one, from the line
        through the annulus centre along its normal) than the widest measured lumen radius
        (half the largest of annulus max, LVOT and sinus diameters) is outside.
    lumen_surface : the lumen surface (LPS mm), closed (capped) or with open ends; when given it
        decides alone.

    Raises
    ------
    DeviceError
        Naming the point, its distance outside the wall (surface) or from the centreline, and the
        allowed radius.
    """
    if lumen_surface is not None:
        names = list(points_mm)
        pts = np.array([np.asarray(points_mm[k], dtype=float) for k in names])
        out = _outside_surface_mm(pts, lumen_surface)
        for name, p, d in zip(names, pts, out, strict=True):
            if d > 0:
                raise DeviceError(
                    f"the device's {name} ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm lies "
                    f"{d:.1f} mm outside the lumen surface: the pose is outside the vessel; "
                    "check the landing point, depth, tilt and rotation")
        return
    if landmarks is None:
        return
    cl = np.asarray(landmarks.centreline_mm, dtype=float).reshape(-1, 3)
    r_max = _lumen_radius_mm(landmarks)
    c = np.asarray(landmarks.annulus_centre_mm, dtype=float)
    n = _unit(landmarks.annulus_normal, "annulus_normal")
    for name, p in points_mm.items():
        p = np.asarray(p, dtype=float)
        if len(cl) >= 2:
            d, ref = _distance_to_polyline(p, cl), "aortic centreline"
        else:
            v = p - c
            d, ref = float(np.linalg.norm(v - (v @ n) * n)), "annulus axis"
        if d > r_max:
            raise DeviceError(
                f"the device's {name} lies {d:.1f} mm from the {ref}, beyond the widest measured "
                f"lumen radius {r_max:.1f} mm: the pose is outside the vessel; check depth, "
                "tilt, rotation and the position along the centreline")


# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------

def place_device(landmarks: AorticRootLandmarks | None, *, family: str, nominal_diameter_mm: float,
                 depth_mm: float | None = None, tilt_deg: float = 0.0, rotation_deg: float = 0.0,
                 catalog: Catalog | None = None, arc_length_mm: float | None = None,
                 ostium_centre_mm: Vector | None = None, ostium_normal: Vector | None = None,
                 defect_centre_mm: Vector | None = None, defect_normal: Vector | None = None,
                 lumen_surface: trimesh.Trimesh | None = None) -> DevicePlacement:
    """Pose a device on the landmarks, with user offsets, and check it lies in the vessel.

    Parameters
    ----------
    landmarks : the measured aortic root (valves, stents); may be None for occluders.
    family, nominal_diameter_mm : which device (see ``cardiotwin device list``).
    depth_mm : valves: inflow edge below the annulus (mm, −2 to 10; when None the family's
        nominal depth, else :data:`DEFAULT_VALVE_DEPTH_MM`); occluders: offset along the
        ostium/defect normal (mm, −10 to 10; 0 when None); not used by stents.
    tilt_deg : 0–20° tilt of the device axis from the landmark axis.
    rotation_deg : azimuth of the tilt around that axis.
    catalog : the catalog (the shipped one when None).
    arc_length_mm : stents (required): distance of the proximal end along the aortic centreline
        from the annulus plane.
    ostium_centre_mm, ostium_normal : LAA occluders (required): LAA ostium centre (LPS mm) and
        its normal pointing from the left atrium into the appendage.
    defect_centre_mm, defect_normal : septal occluders (required): defect centre (LPS mm) and the
        septum's normal pointing from the right into the left atrium.
    lumen_surface : the lumen surface (LPS mm); when given, the pose is checked against it instead
        of the centreline.

    Raises
    ------
    DeviceError
        Unknown family or size; depth, tilt or arc length outside the range the model supports;
        a landing site missing or given to the wrong kind; a pose outside the vessel (the message
        names the distance).
    """
    cat = catalog or load_catalog()
    fam = cat.family(family)
    size = fam.size(nominal_diameter_mm)
    shape = device_shape(fam, size)
    kind = shape.kind
    _check_site_arguments(kind, family, arc_length_mm=arc_length_mm,
                          ostium=(ostium_centre_mm, ostium_normal),
                          defect=(defect_centre_mm, defect_normal), depth_mm=depth_mm)
    if not 0.0 <= tilt_deg <= MAX_TILT_DEG:
        raise DeviceError(
            f"tilt {tilt_deg:g}° must be within 0–{MAX_TILT_DEG:g}° of the landmark axis")
    if kind in (VALVE, STENT) and landmarks is None:
        raise DeviceError(f"placing {family!r} ({kind}) needs the aortic-root landmarks; measure "
                          "the root first (cardiotwin measure)")
    depth = 0.0
    if kind == VALVE:
        depth = depth_mm if depth_mm is not None else getattr(fam, "nominal_depth_mm", None)
        if depth is None:
            depth = DEFAULT_VALVE_DEPTH_MM.get(shape.expansion, 3.5)
        depth = float(depth)
        if not DEPTH_RANGE_MM[0] <= depth <= DEPTH_RANGE_MM[1]:
            raise DeviceError(
                f"implantation depth {depth:g} mm is outside {DEPTH_RANGE_MM[0]:g}–"
                f"{DEPTH_RANGE_MM[1]:g} mm below the annulus: the frame would leave the aortic "
                "root / LVOT landing zone")
        n = _unit(landmarks.annulus_normal, "annulus_normal")
        origin = np.asarray(landmarks.annulus_centre_mm, dtype=float) - depth * n
    elif kind == STENT:
        origin = centreline_point(landmarks, arc_length_mm)
        _, s, s0 = _centreline(landmarks)
        if s0 + arc_length_mm + shape.height_mm > s[-1] + 1e-9:
            raise DeviceError(
                f"the stent's distal end at arc length {arc_length_mm + shape.height_mm:g} mm "
                f"({arc_length_mm:g} mm + {shape.height_mm:g} mm stent) is beyond the measured "
                f"centreline, which ends {s[-1] - s0:.1f} mm from the annulus plane; place it at "
                f"most {s[-1] - s0 - shape.height_mm:.1f} mm along")
        end = centreline_point(landmarks, arc_length_mm + shape.height_mm)
        n = _unit(end - origin, "centreline chord")
    else:
        centre, normal, what = ((ostium_centre_mm, ostium_normal, "ostium") if kind == LAA
                                else (defect_centre_mm, defect_normal, "defect"))
        depth = 0.0 if depth_mm is None else float(depth_mm)
        if not OCCLUDER_DEPTH_RANGE_MM[0] <= depth <= OCCLUDER_DEPTH_RANGE_MM[1]:
            raise DeviceError(
                f"occluder offset depth_mm {depth:g} mm is outside {OCCLUDER_DEPTH_RANGE_MM[0]:g}"
                f"–{OCCLUDER_DEPTH_RANGE_MM[1]:g} mm from the {what} centre")
        n = _unit(normal, f"{what}_normal")
        c = np.asarray(centre, dtype=float).reshape(-1)
        if c.shape != (3,) or not np.isfinite(c).all():
            raise DeviceError(
                f"{what}_centre_mm must be a finite 3-vector (LPS mm); got {centre!r}")
        origin = c + depth * n
    axis = _tilted(n, tilt_deg, rotation_deg)
    placement = DevicePlacement(
        family=family, nominal_diameter_mm=float(size.nominal_diameter_mm), depth_mm=depth,
        tilt_deg=float(tilt_deg), rotation_deg=float(rotation_deg),
        inflow_centre_mm=tuple(float(v) for v in origin), axis=tuple(float(v) for v in axis),
        frame_height_mm=shape.height_mm,
        inner_radius_mm=shape.inner_radius_mm if kind in (VALVE, STENT) else 0.0,
        orifice_radius_mm=shape.orifice_diameter_mm / 2 if kind == VALVE
        else (shape.inner_radius_mm if kind == STENT else 0.0),
        skirt_height_mm=shape.skirt_height_mm, kind=kind,
        arc_length_mm=None if arc_length_mm is None else float(arc_length_mm), shape=shape)
    checks = {"inflow centre": placement.inflow_centre_mm}
    if kind != SEPTAL:   # a septal occluder's discs lie outside the defect by design
        checks["outflow centre" if kind in (VALVE, STENT) else "far end"] = \
            placement.outflow_centre_mm
    check_pose_in_lumen(checks, landmarks=landmarks if kind in (VALVE, STENT) else None,
                        lumen_surface=lumen_surface)
    log.info("placed %s %g mm (%s) at %s, axis %s", family, placement.nominal_diameter_mm, kind,
             np.round(origin, 1).tolist(), np.round(axis, 3).tolist())
    return placement


def _check_site_arguments(kind: str, family: str, *, arc_length_mm: float | None,
                          ostium: tuple[Any, Any], defect: tuple[Any, Any],
                          depth_mm: float | None) -> None:
    given_ostium = any(v is not None for v in ostium)
    given_defect = any(v is not None for v in defect)
    if kind == LAA:
        if ostium[0] is None or ostium[1] is None:
            raise DeviceError(
                f"placing {family!r} (LAA occluder) needs the LAA ostium, which the anatomy step "
                "does not measure yet (it is not guessed): pass ostium_centre_mm (LPS mm) and "
                "ostium_normal (unit vector from the left atrium into the appendage), e.g. read "
                "off the CT in a viewer")
    elif given_ostium:
        raise DeviceError(f"ostium_centre_mm / ostium_normal apply to LAA occluders, not to "
                          f"{family!r} ({kind})")
    if kind == SEPTAL:
        if defect[0] is None or defect[1] is None:
            raise DeviceError(
                f"placing {family!r} (septal occluder) needs the septal defect, which the anatomy "
                "step does not measure yet (it is not guessed): pass defect_centre_mm (LPS mm) and "
                "defect_normal (unit vector from the right into the left atrium)")
    elif given_defect:
        raise DeviceError(f"defect_centre_mm / defect_normal apply to septal occluders, not to "
                          f"{family!r} ({kind})")
    if kind == STENT:
        if arc_length_mm is None:
            raise DeviceError(
                f"placing {family!r} (aortic stent) needs arc_length_mm: the distance of the "
                "stent's proximal end along the aortic centreline from the annulus plane (mm)")
        if depth_mm is not None:
            raise DeviceError("depth_mm does not apply to aortic stents; position them with "
                              "arc_length_mm along the centreline")
    elif arc_length_mm is not None:
        raise DeviceError(f"arc_length_mm applies to aortic stents, not to {family!r} ({kind}); "
                          "use depth_mm")


# ---------------------------------------------------------------------------------------------
# Flow region
# ---------------------------------------------------------------------------------------------

def device_region(placement: DevicePlacement, landmarks: AorticRootLandmarks, *,
                  permeability_m2: float = 1e-12, leaflet_thickness_mm: float = 4.0) -> BrinkmanRegion:
    """The device as a porous region for the flow model.

    Valves: sealing ring plus open leaflets.

    * Sealing ring: from the frame's inner radius out beyond the vessel wall, from the inflow edge
      up to the top of the native leaflets (which the frame pins against the wall) or of the frame.
    * Leaflets: a plate near the outflow end whose hole is the open-leaflet orifice.

    Aortic stents: the thin tube of the frame wall only (an open lumen; on flow meshes coarser than
    the wall, or with the wall beyond the vessel's, it leaves the flow unobstructed).

    Raises
    ------
    DeviceError
        For occluders, which the flow model does not represent yet.
    """
    label = f"{placement.family} {placement.nominal_diameter_mm:g} mm"
    c = placement.inflow_centre_mm
    if placement.kind == STENT:
        shape = placement.shape
        r_lo = min(shape.inflow_diameter_mm, shape.outflow_diameter_mm) / 2 - shape.wall_mm
        r_hi = max(shape.inflow_diameter_mm, shape.outflow_diameter_mm) / 2
        tube = AnnularCylinder(c, placement.axis, r_lo, r_hi, 0.0, placement.frame_height_mm)
        return BrinkmanRegion(label, (tube,), permeability_m2, {"placement": placement.to_dict()})
    if placement.kind != VALVE:
        raise DeviceError(
            f"{placement.kind.replace('_', ' ')}s are not modelled in the flow yet: the flow model "
            "covers the aortic root; view the placed surface instead")
    r_wall = 1.6 * max(landmarks.annulus_max_diameter_mm, landmarks.sinus_diameter_mm) / 2
    top_native = placement.depth_mm + landmarks.valve_orifice_height_mm + 1.0
    ring_top = min(placement.frame_height_mm, max(top_native, placement.skirt_height_mm))
    z_leaf = placement.frame_height_mm - leaflet_thickness_mm
    ring = AnnularCylinder(c, placement.axis, placement.inner_radius_mm, r_wall, 0.0, ring_top)
    leaflets = AnnularCylinder(c, placement.axis, placement.orifice_radius_mm,
                               placement.inner_radius_mm + 0.5, z_leaf - leaflet_thickness_mm / 2,
                               z_leaf + leaflet_thickness_mm / 2)
    return BrinkmanRegion(label, (ring, leaflets), permeability_m2, {"placement": placement.to_dict()})

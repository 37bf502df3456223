"""Placing a device on the aortic-root landmarks, and its Brinkman region for the flow model.

Pose convention: the device axis starts as the annulus normal (LV → aorta) and is tilted by
``tilt_deg`` towards the direction ``rotation_deg`` (measured around the normal from a reference
direction perpendicular to it); the inflow edge of the frame sits ``depth_mm`` below the annulus plane.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cardiotwin.devices.catalog import Catalog, load_catalog
from cardiotwin.errors import DeviceError
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.physics.brinkman import AnnularCylinder, BrinkmanRegion

MAX_TILT_DEG = 20.0
DEPTH_RANGE_MM = (-2.0, 10.0)


@dataclass(frozen=True)
class DevicePlacement:
    """A device of the catalog at a pose on the patient's anatomy (LPS mm).

    Attributes
    ----------
    family : catalog key of the family.
    nominal_diameter_mm : size.
    depth_mm : inflow edge below the annulus plane (positive = into the LVOT).
    tilt_deg, rotation_deg : axis tilt from the annulus normal and its azimuth.
    inflow_centre_mm : centre of the frame's inflow edge.
    axis : unit device axis (inflow → outflow).
    frame_height_mm, inner_radius_mm, orifice_radius_mm : resulting geometry.
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

    @property
    def orifice_area_mm2(self) -> float:
        return math.pi * self.orifice_radius_mm**2

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "orifice_area_mm2": self.orifice_area_mm2}


def _perpendicular(n: np.ndarray) -> np.ndarray:
    ref = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e = ref - (ref @ n) * n
    return e / np.linalg.norm(e)


def place_device(landmarks: AorticRootLandmarks, *, family: str, nominal_diameter_mm: float,
                 depth_mm: float | None = None, tilt_deg: float = 0.0, rotation_deg: float = 0.0,
                 catalog: Catalog | None = None) -> DevicePlacement:
    """Pose a device coaxially at the annulus, with user offsets.

    Parameters
    ----------
    landmarks : the measured aortic root.
    family, nominal_diameter_mm : which device (see ``cardiotwin device list``).
    depth_mm : inflow edge below the annulus (mm); the family's nominal depth when None.
    tilt_deg : 0–20° tilt of the device axis from the annulus normal.
    rotation_deg : azimuth of the tilt around the normal.

    Raises
    ------
    DeviceError
        Unknown family or size, depth or tilt outside the range the model supports.
    """
    cat = catalog or load_catalog()
    fam = cat.family(family)
    size = fam.size(nominal_diameter_mm)
    depth = fam.nominal_depth_mm if depth_mm is None else float(depth_mm)
    if not DEPTH_RANGE_MM[0] <= depth <= DEPTH_RANGE_MM[1]:
        raise DeviceError(
            f"implantation depth {depth:g} mm is outside {DEPTH_RANGE_MM[0]:g}–{DEPTH_RANGE_MM[1]:g} mm "
            "below the annulus: the frame would leave the aortic root / LVOT landing zone")
    if not 0.0 <= tilt_deg <= MAX_TILT_DEG:
        raise DeviceError(f"tilt {tilt_deg:g}° must be within 0–{MAX_TILT_DEG:g}° of the annulus normal")
    n = np.asarray(landmarks.annulus_normal, dtype=float)
    n /= np.linalg.norm(n)
    e1 = _perpendicular(n)
    e2 = np.cross(n, e1)
    phi = math.radians(rotation_deg)
    tdir = math.cos(phi) * e1 + math.sin(phi) * e2
    t = math.radians(tilt_deg)
    axis = math.cos(t) * n + math.sin(t) * tdir
    inflow = np.asarray(landmarks.annulus_centre_mm) - depth * n
    inner = size.nominal_diameter_mm / 2 - fam.frame_wall_mm
    orifice = inner * math.sqrt(fam.leaflet_orifice_fraction)
    return DevicePlacement(
        family=family, nominal_diameter_mm=size.nominal_diameter_mm, depth_mm=depth,
        tilt_deg=float(tilt_deg), rotation_deg=float(rotation_deg),
        inflow_centre_mm=tuple(float(v) for v in inflow), axis=tuple(float(v) for v in axis),
        frame_height_mm=size.frame_height_mm, inner_radius_mm=inner, orifice_radius_mm=orifice,
        skirt_height_mm=fam.skirt_fraction * size.frame_height_mm)


def device_region(placement: DevicePlacement, landmarks: AorticRootLandmarks, *,
                  permeability_m2: float = 1e-12, leaflet_thickness_mm: float = 4.0) -> BrinkmanRegion:
    """The device as a porous region: sealing ring plus open leaflets.

    * Sealing ring: from the frame's inner radius out beyond the vessel wall, from the inflow edge
      up to the top of the native leaflets (which the frame pins against the wall) or of the frame.
    * Leaflets: a plate near the outflow end whose hole is the open-leaflet orifice.
    """
    r_wall = 1.6 * max(landmarks.annulus_max_diameter_mm, landmarks.sinus_diameter_mm) / 2
    top_native = placement.depth_mm + landmarks.valve_orifice_height_mm + 1.0
    ring_top = min(placement.frame_height_mm, max(top_native, placement.skirt_height_mm))
    z_leaf = placement.frame_height_mm - leaflet_thickness_mm
    c = placement.inflow_centre_mm
    ring = AnnularCylinder(c, placement.axis, placement.inner_radius_mm, r_wall, 0.0, ring_top)
    leaflets = AnnularCylinder(c, placement.axis, placement.orifice_radius_mm,
                               placement.inner_radius_mm + 0.5, z_leaf - leaflet_thickness_mm / 2,
                               z_leaf + leaflet_thickness_mm / 2)
    label = f"{placement.family} {placement.nominal_diameter_mm:g} mm"
    return BrinkmanRegion(label, (ring, leaflets), permeability_m2, {"placement": placement.to_dict()})

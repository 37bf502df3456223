"""Test devices of every kind, as a stand-in catalog with the fields of contract D (issue 22).

The shipped catalog gains these families in parallel work; the placement and surface code reads
the same attributes (``kind``, ``expansion``, per-size inflow/outflow/skirt/leaflet dimensions),
so these tests do not depend on which families the shipped catalog holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cardiotwin.errors import DeviceError
from cardiotwin.geometry.landmarks import AorticRootLandmarks


@dataclass(frozen=True)
class Size:
    nominal_diameter_mm: float
    frame_height_mm: float
    inflow_diameter_mm: float | None = None
    outflow_diameter_mm: float | None = None
    skirt_height_mm: float | None = None
    leaflet_height_mm: float | None = None


@dataclass(frozen=True)
class Family:
    kind: str
    sizes: tuple[Size, ...]
    expansion: str | None = None
    frame_wall_mm: float | None = None
    leaflet_orifice_fraction: float | None = None
    nominal_depth_mm: float | None = None
    label: str = ""

    def size(self, nominal_diameter_mm: float) -> Size:
        for s in self.sizes:
            if abs(s.nominal_diameter_mm - nominal_diameter_mm) < 1e-6:
                return s
        raise DeviceError(f"size {nominal_diameter_mm:g} mm is not in the catalog")


@dataclass(frozen=True)
class Catalog:
    families: dict[str, Family] = field(default_factory=dict)

    def family(self, key: str) -> Family:
        try:
            return self.families[key]
        except KeyError:
            raise DeviceError(f"unknown device family {key!r}") from None


CATALOG = Catalog({
    # a balloon frame tapering from 23 to 25 mm: the frame is a frustum shell
    "tapered_thv": Family("transcatheter_aortic_valve", (Size(23.0, 18.0, 23.0, 25.0, 8.0, 9.0),),
                          expansion="balloon", frame_wall_mm=0.6, leaflet_orifice_fraction=0.65,
                          nominal_depth_mm=3.5),
    # self-expanding: 26 mm inflow up to the skirt top (12 mm), flaring to 34 mm at 45 mm
    "self_thv": Family("transcatheter_aortic_valve", (Size(26.0, 45.0, 26.0, 34.0, 12.0, 14.0),),
                       expansion="self", frame_wall_mm=0.5, leaflet_orifice_fraction=0.7,
                       nominal_depth_mm=4.0),
    "stent": Family("aortic_stent", (Size(20.0, 30.0),), frame_wall_mm=0.5),
    "laa": Family("laa_occluder", (Size(22.0, 7.5, 28.0, 22.0),), frame_wall_mm=2.0),
    "septal": Family("septal_occluder", (Size(12.0, 4.0, 20.0, 24.0),), frame_wall_mm=1.5),
})

ARC_RADIUS_MM = 40.0
CENTRE = np.array([10.0, -5.0, 40.0])


def landmarks(diameter_mm: float = 23.0, *, centreline: np.ndarray | None = None
              ) -> AorticRootLandmarks:
    """An aortic root at ``CENTRE`` with the normal +z; lumen radius bound 16 mm (sinus 32 mm)."""
    area = math.pi * (diameter_mm / 2) ** 2
    return AorticRootLandmarks(
        annulus_centre_mm=tuple(CENTRE), annulus_normal=(0.0, 0.0, 1.0),
        annulus_area_mm2=area, annulus_perimeter_mm=math.pi * diameter_mm,
        annulus_diameter_mm=diameter_mm, annulus_perimeter_diameter_mm=diameter_mm,
        annulus_min_diameter_mm=diameter_mm, annulus_max_diameter_mm=diameter_mm,
        lvot_diameter_mm=diameter_mm - 2, sinus_diameter_mm=diameter_mm + 9,
        valve_orifice_area_mm2=80.0, valve_orifice_centre_mm=tuple(CENTRE + [0, 0, 10.0]),
        valve_orifice_height_mm=10.0, calcium_volume_mm3=300.0,
        centreline_mm=np.zeros((0, 3)) if centreline is None else centreline)


def arc_point(s_mm: float) -> np.ndarray:
    """Point at arc length ``s_mm`` from the annulus on :func:`curved_centreline` (exact)."""
    if s_mm <= 0:
        return CENTRE + [0.0, 0.0, s_mm]
    th = s_mm / ARC_RADIUS_MM
    return CENTRE + ARC_RADIUS_MM * np.array([1 - math.cos(th), 0.0, math.sin(th)])


def curved_centreline(n: int = 4000) -> np.ndarray:
    """10 mm straight up the LVOT to the annulus, then a quarter circle of radius 40 mm bending
    towards +x (arc length π·20 ≈ 62.8 mm above the annulus)."""
    below = [CENTRE + [0.0, 0.0, z] for z in np.linspace(-10.0, 0.0, 11)[:-1]]
    arc = [arc_point(s) for s in np.linspace(0.0, math.pi / 2 * ARC_RADIUS_MM, n)]
    return np.array(below + arc)

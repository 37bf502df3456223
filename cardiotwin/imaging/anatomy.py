"""Anatomical measurement records in DICOM patient coordinates (LPS, mm).

:class:`AorticRootLandmarks` is what :func:`cardiotwin.geometry.landmarks.measure_aortic_root`
measures from a segmented CT and what the phantom (:mod:`cardiotwin.imaging.phantom`) knows
exactly as its ground truth. It lives here, below both, because geometry sits above imaging
(DESIGN.md §3): imaging never imports geometry. ``cardiotwin.geometry.landmarks`` re-exports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cardiotwin import units

__all__ = ["AorticRootLandmarks"]


@dataclass(frozen=True)
class AorticRootLandmarks:
    """Aortic-root measurements from a segmented contrast CT.

    Attributes
    ----------
    annulus_centre_mm : (3,) LPS position of the centre of the annulus (virtual basal ring) plane.
    annulus_normal : (3,) unit normal of the annulus plane, pointing from the LV into the aorta.
    annulus_area_mm2 : lumen area in the annulus plane.
    annulus_perimeter_mm : lumen perimeter in the annulus plane.
    annulus_diameter_mm : area-derived diameter, 2·sqrt(A/π).
    annulus_perimeter_diameter_mm : perimeter-derived diameter, P/π.
    annulus_min_diameter_mm, annulus_max_diameter_mm : minor/major diameters of the annulus.
    lvot_diameter_mm : area-derived LVOT diameter a few mm below the annulus.
    sinus_diameter_mm : largest area-derived diameter of the sinus of Valsalva segment.
    valve_orifice_area_mm2 : native (anatomic) valve orifice area by planimetry.
    valve_orifice_centre_mm : (3,) centre of the narrowest orifice cross-section.
    valve_orifice_height_mm : distance of that cross-section above the annulus plane along the normal.
    calcium_volume_mm3 : volume of calcium in the valve region.
    centreline_mm : (N, 3) points from the LVOT along the aorta (may be short).
    """

    annulus_centre_mm: tuple[float, float, float]
    annulus_normal: tuple[float, float, float]
    annulus_area_mm2: float
    annulus_perimeter_mm: float
    annulus_diameter_mm: float
    annulus_perimeter_diameter_mm: float
    annulus_min_diameter_mm: float
    annulus_max_diameter_mm: float
    lvot_diameter_mm: float
    sinus_diameter_mm: float
    valve_orifice_area_mm2: float
    valve_orifice_centre_mm: tuple[float, float, float]
    valve_orifice_height_mm: float
    calcium_volume_mm3: float
    centreline_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    @property
    def valve_orifice_area_cm2(self) -> float:
        """The native valve's anatomic orifice area in cm²."""
        return units.mm2_to_cm2(self.valve_orifice_area_mm2)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["centreline_mm"] = np.asarray(self.centreline_mm).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AorticRootLandmarks:
        d = dict(d)
        d["centreline_mm"] = np.asarray(d.get("centreline_mm", []), dtype=float).reshape(-1, 3)
        for k in ("annulus_centre_mm", "annulus_normal", "valve_orifice_centre_mm"):
            d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

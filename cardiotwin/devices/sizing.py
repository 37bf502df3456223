"""Device sizing from the measured annulus: oversizing per size, recommendation and warnings."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cardiotwin.devices.catalog import DeviceFamily
from cardiotwin.geometry.landmarks import AorticRootLandmarks


@dataclass(frozen=True)
class SizeAssessment:
    """How one size fits the annulus.

    ``area_oversizing_pct`` = (nominal area / annulus area − 1)·100; likewise for the perimeter.
    ``gap_area_mm2`` is the annulus area the nominal device does not cover (0 when oversized): a crude
    indicator of paravalvular-leak risk (the calcium-driven gap comes with issue 6).
    """

    nominal_diameter_mm: float
    area_oversizing_pct: float
    perimeter_oversizing_pct: float
    in_chart_range: bool
    gap_area_mm2: float
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class SizingReport:
    """Assessment of every size of a family, and the recommended one (None when none fits)."""

    family: str
    annulus_area_mm2: float
    annulus_perimeter_mm: float
    recommended_mm: float | None
    sizes: tuple[SizeAssessment, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SizingReport:
        """Inverse of :meth:`to_dict` (the form stored with a twin)."""
        sizes = tuple(SizeAssessment(**{**s, "warnings": tuple(s.get("warnings", ()))})
                      for s in data["sizes"])
        return cls(data["family"], data["annulus_area_mm2"], data["annulus_perimeter_mm"],
                   data["recommended_mm"], sizes, tuple(data.get("warnings", ())))

    def assessment(self, nominal_diameter_mm: float) -> SizeAssessment:
        return next(s for s in self.sizes if abs(s.nominal_diameter_mm - nominal_diameter_mm) < 1e-6)


def assess_sizes(landmarks: AorticRootLandmarks, family: DeviceFamily, *,
                 family_key: str = "") -> SizingReport:
    """Area- and perimeter-based oversizing of every size against the annulus.

    The recommended size is the one whose chart range contains the annulus area; where two ranges
    overlap, the one with area oversizing closest to +5 % (the middle of the 0–10 % band the SCCT
    consensus describes for balloon-expandable valves; Blanke P et al., JACC Cardiovasc Imaging
    2019;12:1–24).
    """
    area = landmarks.annulus_area_mm2
    perim = landmarks.annulus_perimeter_mm
    rows = []
    for s in family.sizes:
        dev_area = math.pi * (s.nominal_diameter_mm / 2) ** 2
        dev_perim = math.pi * s.nominal_diameter_mm
        a_pct = (dev_area / area - 1.0) * 100.0
        p_pct = (dev_perim / perim - 1.0) * 100.0
        in_range = s.annulus_area_min_mm2 <= area <= s.annulus_area_max_mm2
        warns = []
        if a_pct < family.oversizing_warn_below_pct:
            warns.append(f"undersized by area ({a_pct:+.1f} %): risk of paravalvular leak and embolisation")
        if a_pct > family.oversizing_warn_above_pct:
            warns.append(f"oversized by area ({a_pct:+.1f} %): risk of annular injury / rupture")
        if not in_range:
            warns.append(
                f"annulus area {area:.0f} mm² outside the chart range "
                f"{s.annulus_area_min_mm2:.0f}–{s.annulus_area_max_mm2:.0f} mm² for this size")
        rows.append(SizeAssessment(s.nominal_diameter_mm, a_pct, p_pct, in_range,
                                   max(0.0, area - dev_area), tuple(warns)))
    fitting = [r for r in rows if r.in_chart_range]
    recommended = min(fitting, key=lambda r: abs(r.area_oversizing_pct - 5.0)).nominal_diameter_mm \
        if fitting else None
    warnings: tuple[str, ...] = ()
    if recommended is None:
        lo = min(s.annulus_area_min_mm2 for s in family.sizes)
        hi = max(s.annulus_area_max_mm2 for s in family.sizes)
        warnings = (f"annulus area {area:.0f} mm² is outside every size of this family "
                    f"({lo:.0f}–{hi:.0f} mm²): no size recommended",)
    return SizingReport(family_key or family.label, area, perim, recommended, tuple(rows), warnings)

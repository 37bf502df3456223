"""TAVR-planning measurements of a contrast CT: what a 3mensio-like planner reports.

:func:`measure_anatomy` takes a contrast CT, its segmentation (``lv_blood`` and ``aorta``, optionally
``branches`` and ``calcium``) and, optionally, the three basal hinge points a planner placed, and
returns an :class:`AnatomyMeasurements`: the aortic centreline, the annulus (area, perimeter, area-
and perimeter-derived diameters, minimum and maximum diameters), the LVOT, sinus of Valsalva,
sinotubular junction, ascending-aorta and arch diameters at the standard levels, the coronary ostia
heights where the coronary arteries are visible, and the valve calcium (volume and an
Agatston-like score), each with an uncertainty. All positions in DICOM patient coordinates (LPS, mm).

Levels (where each diameter is measured)
----------------------------------------
Root levels follow the SCCT expert consensus on CT for TAVI/TAVR (Blanke P, et al. J Cardiovasc
Comput Tomogr 2019;13:1-20); the aortic levels follow the 2010 ACCF/AHA/AATS/ACR/ASA/SCA/SCAI/SIR/
STS/SVM thoracic aortic disease guideline (Hiratzka LF, et al. Circulation 2010;121:e266-e369,
its figure of the standard measurement levels). Every diameter of the aorta is measured in the plane
perpendicular to the centreline.

* **Annulus** (virtual basal ring): the plane through the three basal leaflet hinge points when
  given (as planners define it), else the automatic annulus of
  :func:`cardiotwin.geometry.landmarks.measure_aortic_root`, whose own section and contour give
  the values then (their uncertainty from the threshold shifts below). With hinge points, the
  contour is the lumen boundary at
  ``annulus_offset_mm`` (default 1.5 mm, about one voxel of a cardiac CTA) below that plane, on
  the LVOT side: in the hinge plane itself the leaflet bases lie on the lumen edge and, blurred
  into it, shrink the contour (by 0.3-0.9 mm on the minor axis of the phantoms at 1.5 mm); the
  price is that a tapering LVOT is measured 1.5 mm lower. The contour is smoothed to its
  first 8 Fourier harmonics in polar form (the smooth spline a planner draws). Area, perimeter,
  area-derived diameter 2·sqrt(A/π), perimeter-derived diameter P/π, minimum and maximum
  caliper diameters through the centroid.
* **LVOT**: ``lvot_offset_mm`` (default 5 mm) below the annulus plane, area-derived.
* **Sinus of Valsalva**: the largest area-derived diameter between the annulus and the STJ
  (SCCT reports cusp-to-commissure distances too; the area-derived value is given here).
* **Sinotubular junction**: the waist above the sinus maximum (within 25 mm): the first level
  whose area-derived diameter is within 0.25 mm of the smallest, i.e. where the narrowing from
  the sinus ends; its height above the annulus is reported.
* **Mid-ascending aorta** (guideline level 4): midway along the centreline between the STJ and
  the brachiocephalic origin.
* **Proximal arch** (level 5): at the brachiocephalic origin. **Mid arch** (level 6): midway
  between the left common carotid and left subclavian origins. **Proximal descending aorta**
  (level 7): 20 mm distal to the left subclavian origin. The branch origins are found as side
  branches of the aortic lumen (below); with fewer than three, the mid arch is measured at the
  highest point of the centreline and the other arch levels are not reported.

Lumen edge and diameters
------------------------
Cross-sections are resampled from the CT (linear interpolation, ``pixel_mm`` pixels) and the lumen
edge is the local half maximum between the blood pool (its median HU in the segmented lumen) and the
tissue outside (averaged over pixels more than 2.5 mm outside the lumen and below the blood
threshold, so neighbouring bright vessels do not count, clipped at -100 HU), within 3 mm of the
labels, so
it does not depend on the blood threshold's exact value; calcium inside the lumen and leaflets
enclosed by it count as lumen (holes filled). Side-branch necks (coronary arteries, arch
branches) are cut off by a 2-D opening of radius half the section's equivalent radius before the
area is taken.

Coronary ostia
--------------
The lumen in the root region is the ``aorta`` label and the filled root lumen of the
cross-sections (leaflets and calcium inside count as lumen), plus every voxel above the blood
threshold connected to them (coronaries a segmentation cut off). A 3-D opening by a ball of ``coronary_opening_mm`` (3.5 mm) keeps the root and
removes vessels thinner than 7 mm; a removed part that reaches at least 5 mm out of the root is a
side branch, and each patch where it touches the root is an ostium: its height and direction
are those of the centroid of the branch's first 3 mm (on its axis beside the wall), its
distance from the valve axis that of the junction patch. Ostia on the
sinus wall (at least 0.6 × the sinus radius from the axis) between the annulus and 10 mm above
the STJ are coronary ostia; the one farther to the patient's left is the left. None found: the result says "not visible" (a segmentation that cut them off, a thin or
unenhanced artery, or thick slices).

Calcium
-------
Valve calcium: CT values ≥ the calcium threshold near the segmented lumen, from 10 mm below the
annulus to the STJ, within the sinus radius + 5 mm of the valve axis. The Agatston-like score is
computed per slice of the volume (axial for an axial series) as in Agatston et al. (J Am Coll
Cardiol 1990;15:827-832): each 2-D lesion (8-connected, ≥ 1 mm²) contributes its area (mm²) ×
a density weight 1 / 2 / 3 / 4 for a peak of 130-199 / 200-299 / 300-399 / ≥ 400 HU, and the sum
is scaled by slice thickness / 3 mm. **It is not the Agatston score**: that is defined on a
non-contrast, 3 mm, 120 kVp scan with a 130 HU threshold; on a contrast CT the threshold must lie
above the enhanced blood, so small and faint calcium is missed, and nearly every lesion weighs 4.
Use it to compare scans of one protocol, not against Agatston thresholds for aortic stenosis.

Uncertainty
-----------
Every measurement is repeated with the blood-edge and calcium thresholds moved by
± ``threshold_delta_hu`` (default: one standard deviation of the blood pool) with the annulus plane
and the centreline held; half the range of the three values is combined in quadrature with a
voxel-size floor: s/√12 for a length or a height (s the largest voxel size), π·s/√12 for a
perimeter, (π·d/2)·s/√12 for the area of diameter d, the boundary voxels' volume / √12 for a
calcium volume (its surface times s/√12; the same fraction of the score). Coronary ostium heights carry the voxel
floor only (the branch search is not repeated).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cardiotwin.errors import GeometryError
from cardiotwin.geometry.landmarks import (
    measure_aortic_root,
    plane_basis,
    resolve_labels,
    unit_vector,
)

__all__ = [
    "AnatomyMeasurements",
    "CoronaryOstium",
    "Measurement",
    "agatston_like_score",
    "measure_anatomy",
]

_LOG = logging.getLogger(__name__)

#: Agatston density weights: (lower peak HU, weight).
AGATSTON_WEIGHTS: tuple[tuple[float, int], ...] = ((130.0, 1), (200.0, 2), (300.0, 3), (400.0, 4))


# ============================================================================================
# Result types
# ============================================================================================


@dataclass(frozen=True)
class Measurement:
    """One measured value with its uncertainty.

    Attributes
    ----------
    value : float or None
        The value (None: not measured, ``note`` says why).
    uncertainty : float
        Its uncertainty (± half-range of the threshold perturbations combined with the voxel
        floor; same unit).
    unit : str
        ``"mm"``, ``"mm²"``, ``"mm³"`` or ``""`` (a score).
    level : str
        Where or how it was measured.
    note : str
        Why a value is missing, or a caveat.
    """

    value: float | None
    uncertainty: float
    unit: str
    level: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.value is not None and not math.isfinite(self.value):
            raise GeometryError(f"measurement at {self.level!r} is not finite ({self.value})")
        if not (self.uncertainty >= 0.0):
            raise GeometryError(f"uncertainty must be >= 0; got {self.uncertainty}")

    def text(self, digits: int = 1) -> str:
        """``"23.1 ± 0.4 mm"``, or ``"not measured"`` (``note`` says why)."""
        if self.value is None:
            return "not measured"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.value:.{digits}f} ± {self.uncertainty:.{digits}f}{unit}"


@dataclass(frozen=True)
class CoronaryOstium:
    """A coronary ostium found as a side branch of the aortic root.

    Attributes
    ----------
    name : str
        ``"left"`` or ``"right"`` (by position: the one farther to the patient's left is left).
    position_mm : (3,) LPS point of the ostium (centroid of the branch's junction with the root).
    height : Measurement
        Height above the annulus plane along its normal (mm).
    """

    name: str
    position_mm: tuple[float, float, float]
    height: Measurement


_ROWS: tuple[tuple[str, str], ...] = (
    ("annulus_area_mm2", "annulus area"),
    ("annulus_perimeter_mm", "annulus perimeter"),
    ("annulus_area_diameter_mm", "annulus diameter (area-derived)"),
    ("annulus_perimeter_diameter_mm", "annulus diameter (perimeter-derived)"),
    ("annulus_min_diameter_mm", "annulus minimum diameter"),
    ("annulus_max_diameter_mm", "annulus maximum diameter"),
    ("lvot_diameter_mm", "LVOT diameter"),
    ("sinus_diameter_mm", "sinus of Valsalva diameter"),
    ("stj_diameter_mm", "sinotubular junction diameter"),
    ("stj_height_mm", "sinotubular junction height"),
    ("ascending_diameter_mm", "mid-ascending aorta diameter"),
    ("proximal_arch_diameter_mm", "proximal arch diameter"),
    ("mid_arch_diameter_mm", "mid arch diameter"),
    ("proximal_descending_diameter_mm", "proximal descending aorta diameter"),
    ("calcium_volume_mm3", "valve calcium volume"),
    ("agatston_like_score", "Agatston-like score (contrast CT)"),
)


@dataclass(frozen=True, eq=False)
class AnatomyMeasurements:
    """TAVR-planning measurements of one contrast CT (see the module docstring for the levels).

    Attributes
    ----------
    annulus_source : str
        ``"hinge points"`` (the planner's) or ``"automatic"``.
    annulus_centre_mm, annulus_normal : (3,) tuples
        Centre of the annulus contour and the plane's unit normal (LV → aorta), LPS.
    annulus_area_mm2 … proximal_descending_diameter_mm : Measurement
        The diameters and the annulus measures (the row names of :meth:`table`).
    stj_height_mm : Measurement
        Height of the sinotubular junction above the annulus plane.
    coronary_ostia : tuple of CoronaryOstium
        The ostia found (may be empty: see ``coronary_note``).
    coronary_note : str
        ``"not visible: …"`` when no ostium was found, else a summary.
    calcium_volume_mm3, agatston_like_score : Measurement
        Valve calcium.
    centreline_mm : (N, 3) array
        Aortic centreline from the annulus (1 mm steps up to the STJ, then 2 mm) through the
        ascending aorta and arch down the descending aorta, as far as the lumen is in the image.
    centreline_diameters_mm : (N,) array
        Area-derived lumen diameter along it.
    level_points_mm : dict
        Level name → centreline point where it was measured.
    branch_origins_mm : tuple of (3,) tuples
        Arch branch origins found, proximal to distal.
    blood_threshold_hu, calcium_threshold_hu, threshold_delta_hu : float
        Thresholds used and the perturbation of the uncertainty.
    voxel_size_mm : (3,) tuple
        The CT's voxel size (x, y, z).
    """

    annulus_source: str
    annulus_centre_mm: tuple[float, float, float]
    annulus_normal: tuple[float, float, float]
    annulus_area_mm2: Measurement
    annulus_perimeter_mm: Measurement
    annulus_area_diameter_mm: Measurement
    annulus_perimeter_diameter_mm: Measurement
    annulus_min_diameter_mm: Measurement
    annulus_max_diameter_mm: Measurement
    lvot_diameter_mm: Measurement
    sinus_diameter_mm: Measurement
    stj_diameter_mm: Measurement
    stj_height_mm: Measurement
    ascending_diameter_mm: Measurement
    proximal_arch_diameter_mm: Measurement
    mid_arch_diameter_mm: Measurement
    proximal_descending_diameter_mm: Measurement
    coronary_ostia: tuple[CoronaryOstium, ...]
    coronary_note: str
    calcium_volume_mm3: Measurement
    agatston_like_score: Measurement
    centreline_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    centreline_diameters_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    level_points_mm: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    branch_origins_mm: tuple[tuple[float, float, float], ...] = ()
    blood_threshold_hu: float = 0.0
    calcium_threshold_hu: float = 0.0
    threshold_delta_hu: float = 0.0
    voxel_size_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.annulus_source not in ("hinge points", "automatic"):
            raise GeometryError(f"annulus_source must be 'hinge points' or 'automatic'; got "
                                f"{self.annulus_source!r}")
        n = np.asarray(self.annulus_normal, dtype=float)
        if n.shape != (3,) or abs(np.linalg.norm(n) - 1.0) > 1e-6:
            raise GeometryError(f"annulus_normal must be a unit 3-vector; got {self.annulus_normal}")

    def ostium(self, name: str) -> CoronaryOstium | None:
        """The ``"left"`` or ``"right"`` coronary ostium, or None when not found."""
        return next((o for o in self.coronary_ostia if o.name == name), None)

    def rows(self) -> list[tuple[str, Measurement]]:
        """(label, measurement) of every row of the table, the ostia included."""
        out = [(label, getattr(self, key)) for key, label in _ROWS]
        for name in ("left", "right"):
            o = self.ostium(name)
            out.insert(-2, (f"{name} coronary ostium height", o.height if o else
                            Measurement(None, 0.0, "mm", "", "not visible")))
        return out

    def table(self) -> str:
        """A plain-text table: measurement, value ± uncertainty with units, level."""
        rows = [(label, m.text(0 if label.startswith("Agatston") else 1), m.level or m.note)
                for label, m in self.rows()]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = [f"annulus from {self.annulus_source}; thresholds blood {self.blood_threshold_hu:.0f}"
                 f" HU, calcium {self.calcium_threshold_hu:.0f} HU (± {self.threshold_delta_hu:.0f}"
                 " HU for the uncertainties)"]
        lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
        lines.append(f"coronary ostia: {self.coronary_note}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """CSV text: measurement, value, uncertainty, unit, level, note."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["measurement", "value", "uncertainty", "unit", "level", "note"])
        for label, m in self.rows():
            w.writerow([label, "" if m.value is None else f"{m.value:.3f}",
                        f"{m.uncertainty:.3f}", m.unit, m.level, m.note])
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (round-trips through :meth:`from_dict`)."""
        def meas(m: Measurement) -> dict[str, Any]:
            return {"value": m.value, "uncertainty": m.uncertainty, "unit": m.unit,
                    "level": m.level, "note": m.note}

        d: dict[str, Any] = {"annulus_source": self.annulus_source,
                             "annulus_centre_mm": list(self.annulus_centre_mm),
                             "annulus_normal": list(self.annulus_normal)}
        for key, _ in _ROWS:
            d[key] = meas(getattr(self, key))
        d["coronary_ostia"] = [{"name": o.name, "position_mm": list(o.position_mm),
                                "height": meas(o.height)} for o in self.coronary_ostia]
        d["coronary_note"] = self.coronary_note
        d["centreline_mm"] = np.asarray(self.centreline_mm).tolist()
        d["centreline_diameters_mm"] = np.asarray(self.centreline_diameters_mm).tolist()
        d["level_points_mm"] = {k: list(v) for k, v in self.level_points_mm.items()}
        d["branch_origins_mm"] = [list(p) for p in self.branch_origins_mm]
        for k in ("blood_threshold_hu", "calcium_threshold_hu", "threshold_delta_hu"):
            d[k] = float(getattr(self, k))
        d["voxel_size_mm"] = list(self.voxel_size_mm)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AnatomyMeasurements:
        """Inverse of :meth:`to_dict`."""
        def meas(x: Mapping[str, Any]) -> Measurement:
            return Measurement(None if x["value"] is None else float(x["value"]),
                               float(x["uncertainty"]), str(x["unit"]), str(x.get("level", "")),
                               str(x.get("note", "")))

        def t3(v: Any) -> tuple[float, float, float]:
            return tuple(float(a) for a in v)  # type: ignore[return-value]

        kw: dict[str, Any] = {key: meas(d[key]) for key, _ in _ROWS}
        return cls(
            annulus_source=str(d["annulus_source"]), annulus_centre_mm=t3(d["annulus_centre_mm"]),
            annulus_normal=t3(d["annulus_normal"]),
            coronary_ostia=tuple(CoronaryOstium(str(o["name"]), t3(o["position_mm"]),
                                                meas(o["height"])) for o in d["coronary_ostia"]),
            coronary_note=str(d.get("coronary_note", "")),
            centreline_mm=np.asarray(d.get("centreline_mm", []), dtype=float).reshape(-1, 3),
            centreline_diameters_mm=np.asarray(d.get("centreline_diameters_mm", []), dtype=float),
            level_points_mm={k: t3(v) for k, v in d.get("level_points_mm", {}).items()},
            branch_origins_mm=tuple(t3(p) for p in d.get("branch_origins_mm", [])),
            blood_threshold_hu=float(d.get("blood_threshold_hu", 0.0)),
            calcium_threshold_hu=float(d.get("calcium_threshold_hu", 0.0)),
            threshold_delta_hu=float(d.get("threshold_delta_hu", 0.0)),
            voxel_size_mm=t3(d.get("voxel_size_mm", (0.0, 0.0, 0.0))), **kw)


# ============================================================================================
# Agatston-like score
# ============================================================================================


def agatston_like_score(ct: Any, mask: np.ndarray, *, min_lesion_area_mm2: float = 1.0) -> float:
    """Agatston-like calcium score of the voxels in ``mask``, slice by slice.

    Per slice of the volume (array axis 0; axial for an axial series), every 8-connected lesion
    of at least ``min_lesion_area_mm2`` contributes area (mm²) × weight, the weight 1 / 2 / 3 / 4
    for a peak CT value of 130-199 / 200-299 / 300-399 / ≥ 400 HU (0 below 130 HU); the sum is
    scaled by slice thickness / 3 mm (Agatston AS, et al. J Am Coll Cardiol 1990;15:827-832).
    On a contrast CT this is *not* the Agatston score (see the module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU.
    mask : (nk, nj, ni) bool array
        Calcium voxels on the CT grid.
    min_lesion_area_mm2 : float, keyword-only
        Smallest lesion counted, per slice (mm²).

    Returns
    -------
    float
        The score (dimensionless, mm²-weighted).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != ct.array.shape:
        raise GeometryError(f"calcium mask shape {mask.shape} differs from the CT's {ct.array.shape}")
    di, dj, dk = (float(s) for s in ct.spacing_mm)
    pixel_mm2 = di * dj
    a = np.asarray(ct.array)
    total = 0.0
    eight = np.ones((3, 3), dtype=bool)
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        lab, n = ndi.label(mask[k], structure=eight)
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        area = ndi.sum_labels(np.ones_like(lab), lab, idx) * pixel_mm2
        peak = ndi.maximum(a[k], lab, idx)
        w = np.zeros(n)
        for lo, weight in AGATSTON_WEIGHTS:
            w[np.asarray(peak) >= lo] = weight
        keep = np.asarray(area) >= min_lesion_area_mm2
        total += float(np.sum(np.asarray(area)[keep] * w[keep]))
    return total * dk / 3.0


# ============================================================================================
# Cross-sections
# ============================================================================================


def _open_2d(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Binary opening by a disc, through two distance transforms (fast for large discs)."""
    if radius_px <= 0 or not mask.any():
        return mask
    core = ndi.distance_transform_edt(np.pad(mask, 1)) > radius_px
    if not core.any():
        return np.zeros_like(mask)
    return (ndi.distance_transform_edt(~core) <= radius_px)[1:-1, 1:-1] & mask


@dataclass
class _Section:
    mask: np.ndarray
    centroid_mm: np.ndarray
    area_mm2: float
    e1: np.ndarray
    e2: np.ndarray


class _Planes:
    """Samples the CT on planes and finds the lumen in them (half-maximum edge)."""

    def __init__(self, ct: Any, near: np.ndarray, *, peak_hu: float, t_blood: float,
                 pixel_mm: float, half_mm: float) -> None:
        self.a = np.asarray(ct.array, dtype=np.float32)
        self.near = near.astype(np.uint8)
        self.inv = np.linalg.inv(ct.affine[:3, :3])
        self.org = ct.affine[:3, 3]
        self.peak, self.t_blood = float(peak_hu), float(t_blood)
        self.pix = float(pixel_mm)
        g = np.arange(-half_mm, half_mm + 1e-9, pixel_mm)
        self.gu, self.gv = np.meshgrid(g, g, indexing="ij")
        self._cache: dict[tuple, tuple] = {}

    def sample(self, centre: np.ndarray, n: np.ndarray):
        key = (tuple(np.round(centre, 6)), tuple(np.round(n, 9)))
        if key in self._cache:
            return self._cache[key]
        e1, e2 = plane_basis(n)
        pts = centre + self.gu[..., None] * e1 + self.gv[..., None] * e2
        coords = ((pts - self.org) @ self.inv.T)[..., ::-1].reshape(-1, 3).T
        hu = ndi.map_coordinates(self.a, coords, order=1, mode="constant", cval=-1000.0)
        near = ndi.map_coordinates(self.near, coords, order=0, mode="constant", cval=0)
        hu = ndi.gaussian_filter(hu.reshape(self.gu.shape), 0.5 / self.pix)  # noise, not edges
        out = (hu, near.reshape(self.gu.shape) > 0, e1, e2)
        if len(self._cache) > 4000:
            self._cache.clear()
        self._cache[key] = out
        return out

    def section(self, centre: np.ndarray, n: np.ndarray, *, shift_hu: float = 0.0,
                open_fraction: float = 0.0) -> _Section:
        hu, near, e1, e2 = self.sample(centre, n)
        core = (hu >= self.t_blood + shift_hu) & near
        # background: tissue ≥ 2.5 mm outside the lumen, below the blood threshold (other bright
        # vessels nearby, the SVC or pulmonary artery, are not this lumen's background)
        out_m = ~ndi.binary_dilation(core, iterations=max(1, round(2.5 / self.pix)))
        out_m &= hu < self.t_blood + shift_hu
        sig = 2.0 / self.pix
        bg = ndi.gaussian_filter(np.where(out_m, np.maximum(hu, -100.0), 0.0), sig) / np.maximum(
            ndi.gaussian_filter(out_m.astype(np.float32), sig), 1e-3)
        t_edge = np.clip(0.5 * (self.peak + bg), 0.5 * (self.peak - 100.0), self.t_blood + 50.0)
        lumen = (hu >= t_edge + shift_hu) & near
        # close thin dark gaps (streak artefacts across the lumen) before filling enclosed holes
        r_close = 1.5 / self.pix
        lumen = ~_open_2d(~np.pad(lumen, int(r_close) + 2), r_close)[
            int(r_close) + 2:-int(r_close) - 2, int(r_close) + 2:-int(r_close) - 2] & near
        lumen = ndi.binary_fill_holes(lumen)
        lab, nl = ndi.label(lumen)
        c = np.array(lumen.shape) // 2
        if nl == 0:
            return _Section(np.zeros_like(lumen), centre.copy(), 0.0, e1, e2)
        k = lab[tuple(c)]
        if k == 0:
            idx = np.argwhere(lumen)
            d = np.linalg.norm(idx - c, axis=1)
            j = int(np.argmin(d))
            if d[j] * self.pix > 8.0:
                return _Section(np.zeros_like(lumen), centre.copy(), 0.0, e1, e2)
            k = lab[tuple(idx[j])]
        m = lab == k
        if open_fraction > 0:
            r_eq = math.sqrt(m.sum() / math.pi)
            opened = _open_2d(m, open_fraction * r_eq)
            if opened.any():
                lab2, _ = ndi.label(opened)
                sizes = np.bincount(lab2.ravel())
                sizes[0] = 0
                m = lab2 == int(np.argmax(sizes))
        ij = np.argwhere(m).astype(float)
        uv = (ij.mean(axis=0) - (np.array(m.shape) - 1) / 2.0) * self.pix
        return _Section(m, centre + uv[0] * e1 + uv[1] * e2, float(m.sum()) * self.pix**2, e1, e2)


def _polar_contour(mask: np.ndarray, pixel_mm: float, *, harmonics: int = 8, n_rays: int = 360
                   ) -> dict[str, float]:
    """Area, perimeter and caliper diameters of a smoothed polar contour around the centroid."""
    from skimage import measure

    f = ndi.gaussian_filter(np.pad(mask, 3).astype(float), 1.0)
    contours = measure.find_contours(f, 0.5)
    if not contours:
        return {"area": 0.0, "perimeter": 0.0, "dmin": 0.0, "dmax": 0.0}
    c = max(contours, key=len)
    cen = np.argwhere(mask).mean(axis=0) + 3.0
    d = c - cen
    ang = np.arctan2(d[:, 1], d[:, 0])
    r = np.hypot(d[:, 0], d[:, 1])
    order = np.argsort(ang)
    th = np.linspace(-np.pi, np.pi, n_rays, endpoint=False)
    rr = np.interp(th, ang[order], r[order], period=2 * np.pi)
    spec = np.fft.rfft(rr)
    spec[harmonics + 1:] = 0.0
    rs = np.fft.irfft(spec, n_rays) * pixel_mm
    x, y = rs * np.cos(th), rs * np.sin(th)
    area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    per = float(np.sum(np.hypot(np.diff(x, append=x[0]), np.diff(y, append=y[0]))))
    cal = rs[: n_rays // 2] + rs[n_rays // 2:]
    return {"area": abs(area), "perimeter": per, "dmin": float(cal.min()), "dmax": float(cal.max())}


def _eq_diameter(area_mm2: float) -> float:
    return 2.0 * math.sqrt(max(area_mm2, 0.0) / math.pi)


# ============================================================================================
# Side branches (coronary ostia, arch branch origins)
# ============================================================================================


def _branch_axis_origin(comp: np.ndarray, reach: np.ndarray, patch_centre: np.ndarray,
                        spacing_kji: np.ndarray) -> np.ndarray:
    """The centroid of the branch's first 3 mm (its voxels 0-3 mm out of the lumen, within 8 mm
    of the junction patch): on the branch axis next to the wall. The junction patch alone is
    skewed by the fillet where the branch wall meets a curved root wall, by up to a voxel or two
    on coarse grids. Falls back to the patch centre."""
    idx = np.argwhere(comp)
    near = np.linalg.norm((idx - patch_centre) * spacing_kji, axis=1) <= 8.0
    idx = idx[near]
    r = reach[tuple(idx.T)]
    first = (r > 0.0) & (r <= 3.0)
    if first.sum() < 3:
        return patch_centre
    return idx[first].mean(axis=0)


def _side_branches(mask: np.ndarray, spacing_kji: np.ndarray, radius_mm: float, *,
                   min_reach_mm: float, extrapolate: bool = False
                   ) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Side branches thinner than 2 × ``radius_mm`` of a lumen mask.

    The mask is opened by a ball of ``radius_mm``; each part the opening removed that reaches at
    least ``min_reach_mm`` out of the opened lumen is a branch, and each patch where it touches
    the opened lumen is an origin (two branches joined further out, through a neighbouring
    structure, still give two origins). Returns (centroid of the patch in array index (k, j, i)
    as floats, number of patch voxels) per origin.
    """
    inside = ndi.distance_transform_edt(np.pad(mask, 1), sampling=spacing_kji)
    core = inside > radius_mm
    if not core.any():
        return []
    opened = (ndi.distance_transform_edt(~core, sampling=spacing_kji) <= radius_mm)[
        1:-1, 1:-1, 1:-1] & mask
    rest = mask & ~opened
    full = ndi.generate_binary_structure(3, 3)
    lab, n = ndi.label(rest, structure=full)
    if n == 0:
        return []
    reach = ndi.distance_transform_edt(~opened, sampling=spacing_kji)
    touch = rest & ndi.binary_dilation(opened)
    patches, n_p = ndi.label(touch, structure=full)
    out = []
    for k in range(1, n + 1):
        comp = lab == k
        if reach[comp].max() < min_reach_mm:
            continue
        ids, counts = np.unique(patches[comp & touch], return_counts=True)
        if len(ids) == 0:
            continue
        for pid, cnt in zip(ids, counts, strict=True):
            if cnt < 2:  # a single-voxel speck
                continue
            wall = np.argwhere(patches == pid).mean(axis=0)
            c = _branch_axis_origin(comp, reach, wall, spacing_kji) if extrapolate else wall
            out.append((c, int(cnt), wall))
    # one junction split into patches by the voxel grid: keep the largest within 4 mm
    out.sort(key=lambda o: -o[1])
    kept: list[tuple[np.ndarray, int, np.ndarray]] = []
    for c, cnt, wall in out:
        if all(np.linalg.norm((c - k[0]) * spacing_kji) > 4.0 for k in kept):
            kept.append((c, cnt, wall))
    return kept


# ============================================================================================
# The measurement
# ============================================================================================


def _combine(values: list[float | None], floor: float) -> tuple[float | None, float]:
    """Nominal value (the first) and sqrt(half-range² + floor²)."""
    if values[0] is None:
        return None, 0.0
    ok = [v for v in values if v is not None]
    half = 0.5 * (max(ok) - min(ok))
    return float(values[0]), float(math.hypot(half, floor))


def measure_anatomy(
    ct: Any,
    seg: Any,
    *,
    landmarks: Any = None,
    blood_threshold_hu: float | None = None,
    calcium_threshold_hu: float | None = None,
    threshold_delta_hu: float | None = None,
    pixel_mm: float = 0.3,
    annulus_offset_mm: float = 1.5,
    lvot_offset_mm: float = 5.0,
    coronary_opening_mm: float = 3.5,
    step_mm: float = 1.0,
    track_step_mm: float = 2.0,
    max_centreline_mm: float = 600.0,
) -> AnatomyMeasurements:
    """Measure what a TAVR planner reports from a contrast CT and its segmentation.

    The method and the measurement levels (with their sources) are in the module docstring.

    Parameters
    ----------
    ct : Volume
        Contrast CT in HU.
    seg : Segmentation or LabelMap
        On the CT grid, with ``lv_blood`` and ``aorta`` (``branches``, ``calcium`` optional).
    landmarks : PlanningLandmarks, keyword-only, optional
        The planner's three basal hinge points (:func:`cardiotwin.geometry.landmarks.
        read_planning_landmarks`); they set the annulus plane. Without them the automatic
        annulus of :func:`~cardiotwin.geometry.landmarks.measure_aortic_root` is used.
    blood_threshold_hu, calcium_threshold_hu : float, keyword-only, optional
        Thresholds (default: the segmentation's, or estimated from the CT).
    threshold_delta_hu : float, keyword-only, optional
        Perturbation of the thresholds for the uncertainties (default: one standard deviation of
        the blood pool, at least 10 HU).
    pixel_mm : float, keyword-only
        Pixel size of the resampled cross-sections (mm).
    annulus_offset_mm : float, keyword-only
        The annulus contour is taken this far below the annulus plane (mm, ≥ 0).
    lvot_offset_mm : float, keyword-only
        Distance of the LVOT level below the annulus plane (mm).
    coronary_opening_mm : float, keyword-only
        Radius of the ball that separates the coronary arteries from the root (mm).
    step_mm, track_step_mm, max_centreline_mm : float, keyword-only
        Step of the root profile (annulus to STJ) and of the centreline tracked beyond it, and
        the longest centreline tracked (mm).

    Returns
    -------
    AnatomyMeasurements

    Raises
    ------
    GeometryError
        Labels missing or off the CT grid, no LV/aorta interface, no annulus, no lumen.
    """
    labels, t_blood, t_ca, _ = resolve_labels(ct, seg, blood_threshold_hu=blood_threshold_hu,
                                              calcium_threshold_hu=calcium_threshold_hu)
    arr = labels.array
    names = labels.names
    lv = arr == names["lv_blood"]
    ao = arr == names["aorta"]
    br = (arr == names["branches"]) if "branches" in names else np.zeros_like(ao)
    ca_lab = (arr == names["calcium"]) if "calcium" in names else np.zeros_like(ao)
    if ao.sum() == 0 or lv.sum() == 0:
        raise GeometryError("the aorta or LV label is empty; nothing to measure")
    sp_xyz = np.asarray(ct.spacing_mm, dtype=float)
    sp_kji = sp_xyz[::-1]
    s_max = float(sp_xyz.max())
    floor = s_max / math.sqrt(12.0)

    # blood pool statistics from the segmented lumen (away from its edge)
    inner = ndi.binary_erosion(lv | ao, iterations=2)
    vals = np.asarray(ct.array)[inner if inner.sum() > 50 else (lv | ao)]
    peak = float(np.median(vals))
    sd = float(1.4826 * np.median(np.abs(vals - peak)))
    delta = float(threshold_delta_hu) if threshold_delta_hu is not None else max(sd, 10.0)
    shifts = (0.0, -delta, delta)

    # ---- annulus plane ----------------------------------------------------------------------
    root = measure_aortic_root(ct, seg, blood_threshold_hu=t_blood, calcium_threshold_hu=t_ca,
                               hinge_points_mm=None if landmarks is None
                               else landmarks.hinge_points_mm)
    n = np.asarray(root.annulus_normal, dtype=float)
    centre = np.asarray(root.annulus_centre_mm, dtype=float)
    source = "automatic" if landmarks is None else "hinge points"  # (the plane through them)

    near_lab = lv | ao | br | ca_lab
    near = ndi.binary_dilation(near_lab, iterations=max(2, math.ceil(3.0 / float(sp_xyz.min()))))
    r_sinus = 0.5 * root.sinus_diameter_mm
    planes = _Planes(ct, near, peak_hu=peak, t_blood=t_blood, pixel_mm=pixel_mm,
                     half_mm=max(25.0, r_sinus + 8.0))
    # re-centre the annulus on the lumen in its plane (the hinge centroid is not the centre of
    # an elliptic annulus)
    for _ in range(2):
        s0 = planes.section(centre - annulus_offset_mm * n, n)
        if s0.area_mm2 == 0:
            raise GeometryError("no lumen in the annulus plane; check the hinge points and labels")
        centre = s0.centroid_mm + annulus_offset_mm * n

    def at(h: float, shift: float, normal: np.ndarray = n, base: np.ndarray = centre,
           open_fraction: float = 0.0) -> _Section:
        return planes.section(base + h * normal, normal, shift_hu=shift,
                              open_fraction=open_fraction)

    # ---- annulus, LVOT ---------------------------------------------------------------------
    ann = []
    for s in shifts:
        sec = at(-annulus_offset_mm, s, open_fraction=0.3)
        ann.append(_polar_contour(sec.mask, pixel_mm))
    out: dict[str, Measurement] = {}
    lvl_ann = f"{annulus_offset_mm:g} mm below the " + (
        "hinge plane" if source == "hinge points" else "annulus plane")
    a_vals = [a["area"] for a in ann]
    v, u = _combine(a_vals, 0.5 * math.pi * _eq_diameter(a_vals[0]) * floor)
    out["annulus_area_mm2"] = Measurement(v, u, "mm²", lvl_ann)
    v, u = _combine([a["perimeter"] for a in ann], math.pi * floor)
    out["annulus_perimeter_mm"] = Measurement(v, u, "mm", lvl_ann)
    v, u = _combine([_eq_diameter(a) for a in a_vals], floor)
    out["annulus_area_diameter_mm"] = Measurement(v, u, "mm", lvl_ann)
    v, u = _combine([a["perimeter"] / math.pi for a in ann], floor)
    out["annulus_perimeter_diameter_mm"] = Measurement(v, u, "mm", lvl_ann)
    v, u = _combine([a["dmin"] for a in ann], floor)
    out["annulus_min_diameter_mm"] = Measurement(v, u, "mm", lvl_ann)
    v, u = _combine([a["dmax"] for a in ann], floor)
    out["annulus_max_diameter_mm"] = Measurement(v, u, "mm", lvl_ann)
    if source == "automatic":
        # The automatic annulus of measure_aortic_root is measured in its own section (the widest
        # below the leaflet hinges, sub-voxel half-maximum contour; validated in
        # docs/validation.md): its values are the ones reported, the spread over the threshold
        # shifts of the contour here gives their uncertainty.
        for key, value in (("annulus_area_mm2", root.annulus_area_mm2),
                           ("annulus_perimeter_mm", root.annulus_perimeter_mm),
                           ("annulus_area_diameter_mm", root.annulus_diameter_mm),
                           ("annulus_perimeter_diameter_mm", root.annulus_perimeter_diameter_mm),
                           ("annulus_min_diameter_mm", root.annulus_min_diameter_mm),
                           ("annulus_max_diameter_mm", root.annulus_max_diameter_mm)):
            m = out[key]
            out[key] = Measurement(float(value), m.uncertainty, m.unit,
                                   "automatic annulus section (widest below the leaflet hinges)")
    v, u = _combine([_eq_diameter(at(-lvot_offset_mm, s, open_fraction=0.3).area_mm2)
                     for s in shifts], floor)
    out["lvot_diameter_mm"] = Measurement(v, u, "mm", f"{lvot_offset_mm:g} mm below the annulus")

    # ---- centreline: root (planes ⟂ the valve axis), then tracked along the aorta ---------------
    hs = np.arange(0.0, 45.0 + 1e-9, step_mm)
    root_secs = [at(h, 0.0, open_fraction=0.3) for h in hs]
    d_root = np.array([_eq_diameter(s.area_mm2) for s in root_secs])
    if d_root[0] == 0:
        raise GeometryError("no aortic lumen above the annulus plane")
    # sinus maximum below the first waist; STJ = the waist above it
    k_sin = int(np.argmax(np.where(hs <= 30.0, d_root, 0.0)))
    win = np.flatnonzero((hs > hs[k_sin]) & (hs <= hs[k_sin] + 25.0) & (d_root > 0))
    k_stj = int(win[np.argmin(d_root[win])]) if len(win) else None
    stj_note = ""
    if k_stj is not None and k_stj == win[-1]:
        stj_note = "no waist above the sinus (effaced STJ); the narrowest level searched"
    elif k_stj is not None:
        # the tubular aorta above the junction is nearly as narrow: the junction is where the
        # narrowing from the sinus ends (the first level within 0.25 mm of the waist), not the
        # noisy minimum of that flat stretch
        k_stj = int(win[np.flatnonzero(d_root[win] <= d_root[k_stj] + 0.25)[0]])

    # tracking from the STJ (or the top of the root) along the running direction, on coarser
    # planes (the levels are re-measured on the fine ones)
    coarse = _Planes(ct, near, peak_hu=peak, t_blood=t_blood, pixel_mm=max(pixel_mm, 0.5),
                     half_mm=max(25.0, r_sinus + 8.0))
    k0 = k_stj if k_stj is not None else len(hs) - 1
    cl = [s.centroid_mm for s in root_secs[: k0 + 1]]
    dia = list(d_root[: k0 + 1])
    normals = [n.copy()] * (k0 + 1)
    p, d = np.asarray(cl[-1]), n.copy()
    travelled = float(hs[k0])
    while travelled < max_centreline_mm:
        s = coarse.section(p + track_step_mm * d, d, open_fraction=0.5)
        if s.area_mm2 < 10.0:
            break
        q = s.centroid_mm
        step = q - p
        if np.linalg.norm(step) < 1e-6:
            break
        d = unit_vector(0.6 * d + 0.4 * unit_vector(step))
        travelled += float(np.linalg.norm(step))
        p = q
        cl.append(q)
        dia.append(_eq_diameter(s.area_mm2))
        normals.append(d.copy())
        if len(cl) > 20 and np.linalg.norm(q - cl[-15]) < 3.0:  # stuck (dead end)
            break
    cl_arr = np.asarray(cl)
    s_arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(cl_arr, axis=0), axis=1))])

    def level(i: int, name: str, text: str, k: float = 0.5) -> Measurement:
        vals = [_eq_diameter(planes.section(cl_arr[i], normals[i], shift_hu=s,
                                            open_fraction=k).area_mm2) for s in shifts]
        v, u = _combine(vals, floor)
        levels[name] = tuple(float(x) for x in cl_arr[i])
        return Measurement(v, u, "mm", text)

    levels: dict[str, tuple[float, float, float]] = {}
    vals = [_eq_diameter(at(hs[k_sin], s, open_fraction=0.3).area_mm2) for s in shifts]
    v, u = _combine(vals, floor)
    out["sinus_diameter_mm"] = Measurement(v, u, "mm", f"largest, {hs[k_sin]:.0f} mm above the "
                                           "annulus")
    levels["sinus"] = tuple(float(x) for x in root_secs[k_sin].centroid_mm)
    if k_stj is not None:
        vals = [_eq_diameter(at(hs[k_stj], s, open_fraction=0.3).area_mm2) for s in shifts]
        v, u = _combine(vals, floor)
        out["stj_diameter_mm"] = Measurement(v, u, "mm", "waist above the sinus", stj_note)
        # the height: where the profile crosses (waist + 0.25 mm), interpolated between levels
        h_stj = float(hs[k_stj])
        if not stj_note and k_stj > 0:
            y0, y1 = d_root[k_stj - 1], d_root[k_stj]
            level_d = float(np.min(d_root[win])) + 0.25
            if y0 > level_d >= y1:
                h_stj -= step_mm * (level_d - y1) / (y0 - y1)
        out["stj_height_mm"] = Measurement(float(h_stj), math.hypot(floor, 0.5 * step_mm), "mm",
                                           "above the annulus plane", stj_note)
        levels["stj"] = tuple(float(x) for x in root_secs[k_stj].centroid_mm)
    else:
        out["stj_diameter_mm"] = Measurement(None, 0.0, "mm", "", "no lumen above the sinus")
        out["stj_height_mm"] = Measurement(None, 0.0, "mm", "", "no lumen above the sinus")

    # ---- arch branch origins -------------------------------------------------------------------
    origins = _arch_branches(ct, ao | br, cl_arr, s_arc, k0, sp_kji)
    i_stj = k0

    def index_at(s_mm: float) -> int | None:
        if s_mm > s_arc[-1] or s_mm < 0:
            return None
        return int(np.argmin(np.abs(s_arc - s_mm)))

    missing = "fewer than three arch branch origins found"
    if len(origins) >= 3:
        s_b = [o[1] for o in origins[:3]]
        i_asc = index_at(0.5 * (s_arc[i_stj] + s_b[0]))
        out["ascending_diameter_mm"] = level(i_asc, "mid_ascending",
                                             "midway STJ – brachiocephalic origin")
        out["proximal_arch_diameter_mm"] = level(index_at(s_b[0]), "proximal_arch",
                                                 "brachiocephalic origin")
        out["mid_arch_diameter_mm"] = level(index_at(0.5 * (s_b[1] + s_b[2])), "mid_arch",
                                            "between left carotid and subclavian origins")
        i_pd = index_at(s_b[2] + 20.0)
        out["proximal_descending_diameter_mm"] = (
            level(i_pd, "proximal_descending", "20 mm distal to the left subclavian origin")
            if i_pd is not None else Measurement(None, 0.0, "mm", "", "centreline too short"))
    else:
        i_top = int(np.argmax(cl_arr[:, 2]))
        i_asc = index_at(0.5 * (s_arc[i_stj] + s_arc[i_top]))
        out["ascending_diameter_mm"] = level(i_asc, "mid_ascending",
                                             "midway STJ – arch top (no branch origins)")
        out["proximal_arch_diameter_mm"] = Measurement(None, 0.0, "mm", "", missing)
        out["mid_arch_diameter_mm"] = level(i_top, "mid_arch", "highest point of the arch "
                                            "(no branch origins)")
        out["proximal_descending_diameter_mm"] = Measurement(None, 0.0, "mm", "", missing)

    # ---- coronary ostia -------------------------------------------------------------------------
    h_top = (out["stj_height_mm"].value or 25.0) + 10.0
    ostia, cor_note = _coronary_ostia(ct, ao | br, lv, centre, n, r_sinus=r_sinus, h_top=h_top,
                                      t_blood=t_blood, t_ca=t_ca, radius_mm=coronary_opening_mm,
                                      floor=floor, root=(hs, [s.mask for s in root_secs],
                                                         planes.pix))

    # ---- calcium (in a box around the valve region) ------------------------------------------
    r_ca = r_sinus + 5.0
    h_ca = (-10.0, h_top - 10.0)
    corners = np.array([centre + hq * n + sx * r_ca * e for hq in h_ca for e in plane_basis(n)
                        for sx in (-1.0, 1.0)])
    lo = np.floor(ct.physical_to_index(corners).min(axis=0)).astype(int)
    hi = np.ceil(ct.physical_to_index(corners).max(axis=0)).astype(int)
    box = tuple(slice(max(int(lo[d]), 0), max(int(hi[d]) + 2, 0)) for d in (2, 1, 0))
    a_box = np.asarray(ct.array)[box]
    idx = np.indices(a_box.shape).reshape(3, -1).T + np.array([b.start for b in box])
    rel = ct.index_to_physical(idx[:, ::-1]) - centre
    hh = rel @ n
    rr = np.linalg.norm(rel - np.outer(hh, n), axis=1)
    region = ((hh >= h_ca[0]) & (hh <= h_ca[1]) & (rr <= r_ca)).reshape(a_box.shape) & near[box]
    from cardiotwin.imaging.volume import Volume

    origin = ct.index_to_physical(np.array([box[2].start, box[1].start, box[0].start]))
    ct_box = Volume(a_box, ct.spacing_mm, tuple(origin), ct.direction)
    vols, scores, bounds = [], [], []
    for s in shifts:
        m = region & (a_box >= t_ca + s)
        vols.append(float(m.sum()) * ct.voxel_volume_mm3)
        scores.append(agatston_like_score(ct_box, m))
        bounds.append(float((m & ~ndi.binary_erosion(m)).sum()) * ct.voxel_volume_mm3)
    v, u = _combine(vols, bounds[0] / math.sqrt(12.0))
    lvl_ca = "≥ calcium threshold, 10 mm below the annulus to the STJ"
    out["calcium_volume_mm3"] = Measurement(v, u, "mm³", lvl_ca)
    rel = bounds[0] / math.sqrt(12.0) / vols[0] if vols[0] > 0 else 0.0
    v, u = _combine(scores, rel * scores[0])
    out["agatston_like_score"] = Measurement(
        v, u, "", "per slice, weights 1-4 by peak HU, × slice/3 mm",
        "contrast CT: not the non-contrast Agatston score")

    _LOG.info("annulus %.1f mm (area-derived), STJ %s mm, %d arch branches, %d coronary ostia",
              out["annulus_area_diameter_mm"].value, out["stj_diameter_mm"].value, len(origins),
              len(ostia))
    return AnatomyMeasurements(
        annulus_source=source,
        annulus_centre_mm=tuple(float(x) for x in centre),
        annulus_normal=tuple(float(x) for x in n),
        coronary_ostia=tuple(ostia), coronary_note=cor_note,
        centreline_mm=cl_arr, centreline_diameters_mm=np.asarray(dia, dtype=float),
        level_points_mm=levels,
        branch_origins_mm=tuple(tuple(float(x) for x in o[0]) for o in origins),
        blood_threshold_hu=t_blood, calcium_threshold_hu=t_ca, threshold_delta_hu=delta,
        voxel_size_mm=tuple(float(x) for x in sp_xyz),
        **out)


def _crop(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _arch_branches(ct: Any, lumen: np.ndarray, cl: np.ndarray, s_arc: np.ndarray, i_stj: int,
                   sp_kji: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Origins (LPS point, arc length on the centreline) of side branches beyond the STJ that
    leave upwards (the arch branches), proximal to distal."""
    if len(cl) <= i_stj + 5 or not lumen.any():
        return []
    sl = _crop(lumen)
    sub = lumen[sl]
    offset = np.array([s.start for s in sl], dtype=float)
    found = _side_branches(sub, sp_kji, 7.0, min_reach_mm=8.0)
    out = []
    for kji, _, _ in found:
        p = ct.index_to_physical((kji + offset)[::-1])
        j = int(np.argmin(np.linalg.norm(cl - p, axis=1)))
        if j <= i_stj + 2:
            continue
        out.append((p, float(s_arc[j])))
    out.sort(key=lambda o: o[1])
    return out


def _coronary_ostia(ct: Any, aorta: np.ndarray, lv: np.ndarray, centre: np.ndarray,
                    n: np.ndarray, *, r_sinus: float, h_top: float, t_blood: float, t_ca: float,
                    radius_mm: float, floor: float,
                    root: tuple[np.ndarray, list[np.ndarray], float] | None = None,
                    ) -> tuple[list[CoronaryOstium], str]:
    """Coronary ostia as thin side branches of the aortic root (see the module docstring)."""
    # region of interest: a box around the root, up to 30 mm beyond the sinus
    r_roi = r_sinus + 30.0
    lo = ct.physical_to_index(centre - r_roi - abs(h_top) * np.abs(n))
    hi = ct.physical_to_index(centre + r_roi + abs(h_top) * np.abs(n))
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    shp = np.array(aorta.shape)
    sl = tuple(slice(int(max(np.floor(lo[d]), 0)), int(min(np.ceil(hi[d]) + 1, shp[2 - d])))
               for d in (2, 1, 0))
    a = np.asarray(ct.array)[sl]
    ao = aorta[sl]
    idx = np.indices(ao.shape).reshape(3, -1).T + np.array([s.start for s in sl])
    rel = ct.index_to_physical(idx[:, ::-1]) - centre
    h = (rel @ n).reshape(ao.shape)
    r = np.linalg.norm(rel - np.outer(rel @ n, n), axis=1).reshape(ao.shape)
    in_roi = (h >= -1.0) & (h <= h_top) & (r <= r_roi)
    # the aortic lumen plus the blood connected to it (coronaries a segmentation cut off)
    bright = ((a >= t_blood) & (a < t_ca) & in_roi & ~lv[sl]) | (ao & in_roi)
    if root is not None:
        # the filled root lumen of the cross-sections (leaflets and calcium inside it are lumen
        # here, so the opening keeps the whole root and only true branches stand out)
        hs_root, masks, pix = root
        e1, e2 = plane_basis(n)
        hh = np.clip(np.rint((h - hs_root[0]) / (hs_root[1] - hs_root[0])), 0, len(hs_root) - 1)
        half = (masks[0].shape[0] - 1) / 2.0
        uu = np.rint((rel @ e1).reshape(ao.shape) / pix + half).astype(int)
        vv = np.rint((rel @ e2).reshape(ao.shape) / pix + half).astype(int)
        ok = in_roi & (uu >= 0) & (vv >= 0) & (uu < masks[0].shape[0]) & (vv < masks[0].shape[1])
        stack = np.stack(masks)
        filled = np.zeros(ao.shape, dtype=bool)
        filled[ok] = stack[hh[ok].astype(int), uu[ok], vv[ok]]
        bright |= filled
        seeds = (ao | filled) & in_roi
    else:
        seeds = ao & in_roi
    lab, _ = ndi.label(bright)
    keep = np.unique(lab[seeds])
    lumen = np.isin(lab, keep[keep > 0])
    sp_kji = np.asarray(ct.spacing_mm, dtype=float)[::-1]
    found = _side_branches(lumen, sp_kji, radius_mm, min_reach_mm=5.0, extrapolate=True)
    cands = []
    start = np.array([s.start for s in sl])
    for kji, _, wall in found:
        # height and direction from the branch's axis, distance from the axis from its junction
        q = ct.index_to_physical((kji + start)[::-1]) - centre
        hq = float(q @ n)
        radial = q - hq * n
        w = ct.index_to_physical((wall + start)[::-1]) - centre
        rq = float(np.linalg.norm(w - (w @ n) * n))
        p = centre + hq * n + rq * radial / max(float(np.linalg.norm(radial)), 1e-9)
        # on the sinus wall (not a leaflet or calcium hole inside the lumen a segmentation left)
        if 0.0 <= hq <= h_top and 0.6 * r_sinus <= rq <= r_sinus + 6.0:
            cands.append((p, hq))
    if not cands:
        return [], ("not visible: no side branch of the aortic root between the annulus and "
                    f"{h_top:.0f} mm above it (coronaries cut off by the segmentation, unenhanced "
                    "or thinner than the voxels)")
    # the left coronary arises from the left (posterior-left) sinus: farther to the patient's left
    left_dir = np.array([1.0, 0.0, 0.0]) - n[0] * n
    cands.sort(key=lambda c: -float((c[0] - centre) @ left_dir))
    if len(cands) > 2:
        _LOG.warning("%d side branches of the aortic root; the two farthest left/right are taken "
                     "as the coronary ostia", len(cands))
        cands = [cands[0], cands[-1]]
    names = ["left", "right"] if len(cands) == 2 else [
        "left" if float((cands[0][0] - centre) @ left_dir) > 0 else "right"]
    ostia = [CoronaryOstium(nm, tuple(float(x) for x in p),
                            Measurement(hq, floor, "mm", "above the annulus plane"))
             for nm, (p, hq) in zip(names, cands, strict=True)]
    note = ", ".join(f"{o.name} ostium {o.height.value:.1f} mm" for o in ostia)
    return ostia, note

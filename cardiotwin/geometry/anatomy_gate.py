"""Quality gate of a segmented anatomy before anything is meshed.

Pure functions that check a segmentation (:class:`~cardiotwin.imaging.volume.LabelMap`), the
aortic-root landmarks (:class:`~cardiotwin.geometry.landmarks.AorticRootLandmarks`) and the caps of
a fluid surface against documented ranges, each returning :class:`GateCheck` items with a status
``"pass"``, ``"warn"`` or ``"fail"``, the measured value, the range and its source, and a message
saying what looks wrong and what to do. :func:`run_gate` runs them all and returns a frozen
:class:`GateResult`; :meth:`GateResult.raise_if_failed` stops with a
:class:`~cardiotwin.errors.SegmentationError` naming every failure.

Ranges (:data:`RANGES`) are deliberately wide: a *warning* means "unusual for an adult, check it";
a *failure* means "not an adult left heart and aorta — the segmentation is wrong" (e.g. the
15 mm annulus and the labels 100 mm below the heart of the issue-20 report).

Nothing here is wired into the workflows; callers decide what to do with a result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import ndimage as ndi

from cardiotwin.errors import InputError, SegmentationError

if TYPE_CHECKING:
    from cardiotwin.geometry.landmarks import AorticRootLandmarks
    from cardiotwin.imaging.volume import LabelMap

__all__ = [
    "RANGES",
    "GateCheck",
    "GateRange",
    "GateResult",
    "check_annulus",
    "check_aortic_continuity",
    "check_caps",
    "check_relative_positions",
    "check_structure_volumes",
    "run_gate",
]

Status = Literal["pass", "warn", "fail"]
_ORDER = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class GateRange:
    """A plausible range: inside ``[warn_low, warn_high]`` passes, outside
    ``[fail_low, fail_high]`` fails, in between warns.

    Attributes
    ----------
    warn_low, warn_high, fail_low, fail_high : float
        Bounds in ``unit``; ``fail_low <= warn_low <= warn_high <= fail_high``.
    unit : str
    source : str
        Where the range comes from (reference or reasoning).
    """

    warn_low: float
    warn_high: float
    fail_low: float
    fail_high: float
    unit: str
    source: str

    def __post_init__(self) -> None:
        if not self.fail_low <= self.warn_low <= self.warn_high <= self.fail_high:
            raise InputError(f"GateRange bounds out of order: {self}")

    def status(self, value: float) -> Status:
        """``"pass"``, ``"warn"`` or ``"fail"`` for ``value`` (NaN fails)."""
        if not math.isfinite(value) or value < self.fail_low or value > self.fail_high:
            return "fail"
        if value < self.warn_low or value > self.warn_high:
            return "warn"
        return "pass"

    def describe(self) -> str:
        """``"18–30 mm (fail outside 15–35 mm)"``."""
        return (f"{self.warn_low:g}–{self.warn_high:g} {self.unit} "
                f"(fail outside {self.fail_low:g}–{self.fail_high:g} {self.unit})")


_TAVR_CT = ("Blanke P. et al., SCCT expert consensus on CT for TAVI/TAVR, J Cardiovasc Comput "
            "Tomogr 13(1):1-20 (2019): annulus sizing by CT; current transcatheter valves cover "
            "area-derived annulus diameters of about 18-30 mm (areas about 250-700 mm2)")
_CMR_NORMALS = ("Kawel-Boehm N. et al., Reference ranges for cardiovascular magnetic resonance "
                "in adults and children: 2020 update, J Cardiovasc Magn Reson 22:87 (2020): LV "
                "end-diastolic volume about 100-215 mL, end-systolic about 25-85 mL (adults)")

#: Documented ranges of the checks, by check name.
RANGES: dict[str, GateRange] = {
    "lv_blood_volume": GateRange(
        20.0, 300.0, 8.0, 500.0, "mL",
        _CMR_NORMALS + "; widened for any cardiac phase, dilated and hypertrophied hearts"),
    "aorta_volume": GateRange(
        10.0, 600.0, 3.0, 1500.0, "mL",
        "plausibility only: depends on the field of view (a 25 mm aorta holds about 5 mL per "
        "10 mm of length)"),
    "annulus_diameter": GateRange(18.0, 30.0, 15.0, 35.0, "mm", _TAVR_CT),
    "annulus_area": GateRange(250.0, 710.0, 175.0, 960.0, "mm²", _TAVR_CT),
    "annulus_ellipticity": GateRange(
        0.65, 1.0, 0.45, 1.0, "min/max diameter",
        "the annulus is elliptical with minor/major ratios of about 0.7-0.9 on CT (Blanke et "
        "al. 2019 above)"),
    "sinus_to_annulus": GateRange(
        1.05, 1.8, 0.9, 2.5, "ratio",
        "the sinus of Valsalva is wider than the annulus (normal sinus diameter about 1.3-1.5 x "
        "annulus; Blanke et al. 2019 above)"),
    "outlet_count": GateRange(
        1.0, 6.0, 1.0, 10.0, "outlets",
        "the thoracic aorta in a chest CT leaves the field of view through the descending aorta "
        "and up to three arch branches (brachiocephalic, left carotid, left subclavian) plus "
        "occasional variants; many more outlets are islands or a leak"),
    "cap_diameter": GateRange(
        3.0, 45.0, 1.0, 60.0, "mm",
        "area-equivalent diameter of an inlet/outlet: arch branches are about 5-15 mm and the "
        "aorta 20-40 mm in adults; < 1 mm is a degenerate cap"),
    "aorta_components": GateRange(
        1.0, 1.0, 1.0, 3.0, "components",
        "one connected aorta label; more pieces mean a gap (low contrast, streaks) or islands"),
    "centreline_gap": GateRange(
        0.0, 3.0, 0.0, 8.0, "mm",
        "largest step between consecutive centreline points (1 mm sampling); a jump is a "
        "broken centreline"),
}


@dataclass(frozen=True)
class GateCheck:
    """One check of the gate.

    Attributes
    ----------
    name : str
        Check name (a key of :data:`RANGES` where a range applies).
    status : {"pass", "warn", "fail"}
    value : float or None
        The measured value, in ``unit``.
    unit : str
    expected : str
        The range or rule that was applied.
    message : str
        What was found, and for warnings and failures what to do.
    source : str
        The reference or reasoning behind the range.
    """

    name: str
    status: Status
    value: float | None
    unit: str
    expected: str
    message: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "value": self.value, "unit": self.unit,
                "expected": self.expected, "message": self.message, "source": self.source}


@dataclass(frozen=True)
class GateResult:
    """All checks of :func:`run_gate`.

    Attributes
    ----------
    checks : tuple of GateCheck
    """

    checks: tuple[GateCheck, ...] = field(default_factory=tuple)

    @property
    def status(self) -> Status:
        """The worst status of the checks (``"pass"`` if there are none)."""
        worst: Status = "pass"
        for c in self.checks:
            if _ORDER[c.status] > _ORDER[worst]:
                worst = c.status
        return worst

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def warnings(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if c.status == "warn")

    def messages(self) -> list[str]:
        """``"<status>: <name>: <message>"`` of every warning and failure."""
        return [f"{c.status}: {c.name}: {c.message}" for c in self.checks if c.status != "pass"]

    def raise_if_failed(self) -> None:
        """Raise :class:`SegmentationError` listing every failure (warnings do not raise)."""
        if self.failures:
            lines = "; ".join(f"{c.name}: {c.message}" for c in self.failures)
            raise SegmentationError(
                f"the anatomy failed {len(self.failures)} quality check(s): {lines}. Nothing was "
                "meshed. Try another series (arterial-phase chest CT angiogram covering the "
                "heart and aortic root; `--series`), or give labels or landmarks of your own "
                "(`--labels FILE --label-map ...`, `--landmarks FILE`).")

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [c.to_dict() for c in self.checks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        """Inverse of :meth:`to_dict` (the form stored with a twin)."""
        return cls(tuple(GateCheck(**c) for c in data.get("checks", ())))


def _ranged(name: str, value: float, what: str, advice: str) -> GateCheck:
    rng = RANGES[name]
    st = rng.status(value)
    if st == "pass":
        msg = f"{what} {value:.1f} {rng.unit} is within {rng.warn_low:g}–{rng.warn_high:g}"
    else:
        kind = "implausible" if st == "fail" else "unusual"
        msg = f"{what} {value:.1f} {rng.unit} is {kind} (expected {rng.describe()}); {advice}"
    return GateCheck(name, st, float(value), rng.unit, rng.describe(), msg, rng.source)


# --------------------------------------------------------------------------------------------
# checks (pure functions)
# --------------------------------------------------------------------------------------------


def check_structure_volumes(labels: LabelMap) -> tuple[GateCheck, ...]:
    """Volumes of the LV blood pool and of the aorta (mL) against :data:`RANGES`.

    Parameters
    ----------
    labels : LabelMap
        With ``lv_blood`` and ``aorta`` (a missing structure fails).

    Returns
    -------
    tuple of GateCheck
    """
    out = []
    for key, name, what in (("lv_blood", "lv_blood_volume", "LV blood-pool volume"),
                            ("aorta", "aorta_volume", "aorta volume")):
        vol = labels.volume_ml(key) if key in labels.names else 0.0
        out.append(_ranged(name, vol, what,
                           "check that the labels are the LV cavity and the aorta of a contrast "
                           "CT covering the heart (not bowel, kidney or bone)"))
    return tuple(out)


def _centroid_mm(labels: LabelMap, mask: np.ndarray) -> np.ndarray:
    kji = np.argwhere(mask)
    return labels.volume.index_to_physical(kji[:, ::-1].astype(float)).mean(axis=0)


def check_relative_positions(labels: LabelMap, landmarks: AorticRootLandmarks, *,
                             near_mm: float = 30.0) -> tuple[GateCheck, ...]:
    """The LV lies below the valve, the aortic root above it, the valve axis points up.

    Rules (LPS, +z superior; supine CT): the annulus normal (LV → aorta) has a superior
    component (fails if it points down); within ``near_mm`` of the annulus centre the aorta
    voxels lie on the aortic side of the annulus plane and the LV voxels on the LV side (mean
    signed distance; fails if reversed); the LV centroid is inferior to the annulus centre;
    the LV does not touch the inferior face of the volume (warns: apex cut off).

    Parameters
    ----------
    labels : LabelMap
    landmarks : AorticRootLandmarks
    near_mm : float, keyword-only

    Returns
    -------
    tuple of GateCheck
    """
    src = ("anatomy: the aortic valve sits between the LV below and the aortic root above; the "
           "valve axis points superiorly (and to the right and anterior) in a supine patient")
    c = np.asarray(landmarks.annulus_centre_mm, dtype=float)
    n = np.asarray(landmarks.annulus_normal, dtype=float)
    out = []
    nz = float(n[2] / (np.linalg.norm(n) + 1e-12))
    st: Status = "pass" if nz > 0.2 else ("warn" if nz > 0.0 else "fail")
    out.append(GateCheck(
        "valve_axis_superior", st, nz, "cos to +z", "> 0.2 (fail ≤ 0)",
        f"the valve axis (LV → aorta) has a superior component {nz:.2f}" + (
            "" if st == "pass" else
            "; the LV and aorta labels are probably swapped or misplaced — check the labels"),
        src))
    lv, ao = labels.mask("lv_blood"), labels.mask("aorta")
    if not lv.any() or not ao.any():
        out.append(GateCheck("sides_of_valve", "fail", None, "mm", "LV below, aorta above",
                             "the LV or the aorta label is empty", src))
        return tuple(out)
    vol = labels.volume
    sides = {}
    for key, m in (("lv", lv), ("aorta", ao)):
        kji = np.argwhere(m)
        pts = vol.index_to_physical(kji[:, ::-1].astype(float))
        near = np.linalg.norm(pts - c, axis=1) <= near_mm
        sides[key] = float(((pts[near] - c) @ n).mean()) if near.any() else float("nan")
    ok = sides["lv"] < 0.0 < sides["aorta"]
    out.append(GateCheck(
        "sides_of_valve", "pass" if ok else "fail", sides["aorta"] - sides["lv"], "mm",
        "LV voxels below and aorta voxels above the annulus plane (within "
        f"{near_mm:g} mm)",
        f"mean signed distance to the annulus plane: LV {sides['lv']:.1f} mm, aorta "
        f"{sides['aorta']:.1f} mm" + ("" if ok else
                                      "; the annulus is not between the LV and the aorta — "
                                      "the labels or the landmarks are wrong"), src))
    lv_c = _centroid_mm(labels, lv)
    dz = float(c[2] - lv_c[2])
    st = "pass" if dz > 0.0 else "fail"
    out.append(GateCheck(
        "lv_below_annulus", st, dz, "mm", "> 0 (the annulus is superior to the LV centroid)",
        f"the annulus is {dz:.1f} mm above the LV centroid" + (
            "" if st == "pass" else "; the LV label lies above the valve — check the labels"),
        src))
    nk = lv.shape[0]
    z_first, z_last = (float(vol.index_to_physical(np.array([0.0, 0.0, k]))[2]) for k in (0, nk - 1))
    touches = bool(lv[0 if z_first <= z_last else nk - 1].any())
    out.append(GateCheck(
        "lv_in_field_of_view", "warn" if touches else "pass", float(touches), "", "LV does not "
        "touch the inferior face of the volume",
        "the LV touches the inferior face of the volume (apex cut off?); its volume is too small"
        if touches else "the LV is inside the field of view",
        "a complete LV needs the apex in the field of view"))
    return tuple(out)


def check_annulus(landmarks: AorticRootLandmarks) -> tuple[GateCheck, ...]:
    """Annulus diameter, area, ellipticity and the sinus/annulus ratio against :data:`RANGES`."""
    lm = landmarks
    advice = ("check that the annulus plane was found at the hinge points (give landmarks of "
              "your own) and that the segmentation holds the aortic root")
    out = [
        _ranged("annulus_diameter", float(lm.annulus_diameter_mm), "area-derived annulus "
                "diameter", advice),
        _ranged("annulus_area", float(lm.annulus_area_mm2), "annulus area", advice),
    ]
    ratio = float(lm.annulus_min_diameter_mm / lm.annulus_max_diameter_mm) \
        if lm.annulus_max_diameter_mm > 0 else float("nan")
    out.append(_ranged("annulus_ellipticity", ratio, "annulus minor/major diameter", advice))
    sinus = float(lm.sinus_diameter_mm / lm.annulus_diameter_mm) \
        if lm.annulus_diameter_mm > 0 else float("nan")
    out.append(_ranged("sinus_to_annulus", sinus, "sinus/annulus diameter ratio", advice))
    return tuple(out)


def check_aortic_continuity(labels: LabelMap, landmarks: AorticRootLandmarks | None = None
                            ) -> tuple[GateCheck, ...]:
    """The aorta label is one connected piece and its centreline has no jumps.

    Parameters
    ----------
    labels : LabelMap
    landmarks : AorticRootLandmarks, optional
        Its ``centreline_mm`` is checked for steps larger than :data:`RANGES` ``centreline_gap``.
    """
    out = []
    ao = labels.mask("aorta")
    lab, n = ndi.label(ao)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        frac = float(sizes.max() / sizes.sum())
        big = int(np.sum(sizes >= 0.01 * sizes.sum()))
    else:
        frac, big = 0.0, 0
    chk = _ranged("aorta_components", float(max(big, 0)), "pieces of the aorta label (≥ 1 % "
                  "of it)", "the aorta is interrupted: check the contrast and streaks, or give "
                  "labels of your own")
    if n and frac < 0.9 and chk.status == "pass":
        chk = GateCheck(chk.name, "warn", chk.value, chk.unit, chk.expected,
                        f"the largest piece holds only {100 * frac:.0f} % of the aorta label",
                        chk.source)
    out.append(chk)
    if landmarks is not None and len(landmarks.centreline_mm) >= 2:
        cl = np.asarray(landmarks.centreline_mm, dtype=float)
        gap = float(np.linalg.norm(np.diff(cl, axis=0), axis=1).max())
        out.append(_ranged("centreline_gap", gap, "largest centreline step",
                           "the centreline jumps: the aorta is interrupted or branches were "
                           "mistaken for it"))
    return tuple(out)


def check_caps(caps: Iterable[Any]) -> tuple[GateCheck, ...]:
    """Outlet count and the size of every cap of a fluid surface.

    Parameters
    ----------
    caps : iterable
        Objects with ``name`` (``"inlet"`` / ``"outlet:<name>"``) and ``area_mm2``, e.g.
        :attr:`cardiotwin.geometry.surface.FluidSurface.caps`.

    Returns
    -------
    tuple of GateCheck
        ``outlet_count`` and one ``cap_diameter`` check per cap (named ``cap_diameter:<cap>``).
    """
    caps = list(caps)
    outlets = [c for c in caps if str(c.name).startswith("outlet:")]
    out = [_ranged("outlet_count", float(len(outlets)), "number of outlets",
                   "small islands or a leak into a neighbouring vessel make extra outlets: "
                   "check the segmentation")]
    if not any(c.name == "inlet" for c in caps):
        out.append(GateCheck("inlet_present", "fail", 0.0, "caps", "one inlet",
                             "the surface has no inlet", "a fluid domain needs one inlet"))
    rng = RANGES["cap_diameter"]
    for c in caps:
        d = 2.0 * math.sqrt(max(float(c.area_mm2), 0.0) / math.pi)
        chk = _ranged("cap_diameter", d, f"cap {c.name} (area {float(c.area_mm2):.1f} mm²) "
                      "diameter", "a degenerate or tiny cap: remove the island or vessel stub, "
                      "crop the labels, or give a surface of your own")
        out.append(GateCheck(f"cap_diameter:{c.name}", chk.status, chk.value, rng.unit,
                             chk.expected, chk.message, chk.source))
    return tuple(out)


def run_gate(labels: LabelMap, landmarks: AorticRootLandmarks, *,
             caps: Sequence[Any] | None = None) -> GateResult:
    """Run every check on a segmentation, its landmarks and (optionally) the surface caps.

    Parameters
    ----------
    labels : LabelMap
        With ``lv_blood`` and ``aorta``.
    landmarks : AorticRootLandmarks
    caps : sequence, keyword-only, optional
        Caps of the fluid surface (``FluidSurface.caps``).

    Returns
    -------
    GateResult
    """
    checks: list[GateCheck] = []
    checks += check_structure_volumes(labels)
    checks += check_relative_positions(labels, landmarks)
    checks += check_annulus(landmarks)
    checks += check_aortic_continuity(labels, landmarks)
    if caps is not None:
        checks += check_caps(caps)
    return GateResult(tuple(checks))

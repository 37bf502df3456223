"""Device sizing: oversizing of every size of a family, the recommended size, warnings, the
uncovered (paravalvular gap) area and the coronary-obstruction risk.

Valves are sized on the twin's CT annulus (:func:`assess_sizes`): area oversizing
``(π(D/2)²/A − 1)·100`` and perimeter oversizing ``(πD/P − 1)·100`` for every size, the family's
chart range in its ``sizing_by`` quantity (annulus area or perimeter). Stents, LAA occluders and
septal occluders are sized by a diameter the anatomy step cannot measure yet (reference vessel,
LAA ostium, stretched defect): :func:`assess_sizes_by_diameter` takes it from the user and the
report says so. :func:`size_device_family` chooses between the two.

Coronary obstruction (valves): the coronary ostium heights above the annulus and the sinus of
Valsalva diameter against the optimal cut-offs of two global registries of TAVR coronary
obstruction (60 obstructed vs 1381 unobstructed patients with CT; left coronary: height 11 mm,
sinus 31 mm; right: 15 mm, 29 mm; residual sinus = sinus − valve size: 5 mm) — JACC Cardiovasc
Interv 2023 (PMC9991077), cut-offs as summarised by SCAI; the classic risk markers (low ostium,
narrow sinus) go back to Ribeiro HB et al., J Am Coll Cardiol 2013;62:1552-62. Where a height is
not measured (the twin has ostium heights only when planning landmarks with the ostia were
given), the report says "not measured" rather than guess.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cardiotwin.devices.catalog import SIZING_FIELDS, DeviceFamily
from cardiotwin.errors import InputError
from cardiotwin.geometry.landmarks import AorticRootLandmarks

#: Cut-offs below which the coronary-obstruction risk rises: ostium -> (height mm, sinus mm).
CORONARY_CUTOFFS_MM: dict[str, tuple[float, float]] = {"left": (11.0, 31.0), "right": (15.0, 29.0)}
#: Residual sinus (sinus of Valsalva diameter − valve nominal diameter) below which risk rises (mm).
RESIDUAL_SINUS_CUTOFF_MM = 5.0
CORONARY_REFERENCE = (
    "optimal cut-offs of two global registries of TAVR coronary obstruction, JACC Cardiovasc "
    "Interv 2023 (PMC9991077; summarised by SCAI): left ostium height 11 mm / sinus 31 mm, "
    "right 15 mm / 29 mm, residual sinus 5 mm; Ribeiro HB et al., J Am Coll Cardiol "
    "2013;62:1552-62")

USER_SUPPLIED = "user-supplied"
_MAX_DIAMETER_MM = 80.0

_RISKS = {
    "transcatheter_aortic_valve": ("paravalvular leak and embolisation",
                                   "annular injury / rupture"),
    "aortic_stent": ("malapposition and migration", "aortic wall injury (dissection, aneurysm)"),
    "laa_occluder": ("peri-device leak and embolisation", "protrusion and LAA wall injury"),
    "septal_occluder": ("residual shunt and embolisation", "erosion by an oversized device"),
}


@dataclass(frozen=True)
class SizeAssessment:
    """How one size fits the measured anatomy.

    ``area_oversizing_pct`` = (nominal area / measured area − 1)·100; likewise for the perimeter
    and (stents and occluders) the diameter. For a user-supplied diameter ``d`` the measured area
    and perimeter are those of the circle of diameter ``d``. ``gap_area_mm2`` is the measured
    area the nominal device does not cover (0 when oversized): the uncovered (paravalvular) gap of
    a circular device in the measured cross-section, a crude paravalvular-leak indicator
    (the calcium-driven gap comes from the mechanics). ``chart_min`` / ``chart_max`` are the
    size's range in the family's ``sizing_by`` quantity. ``residual_sinus_mm`` = sinus of Valsalva
    diameter − nominal diameter (valves, when the sinus is measured).
    """

    nominal_diameter_mm: float
    area_oversizing_pct: float
    perimeter_oversizing_pct: float
    in_chart_range: bool
    gap_area_mm2: float
    warnings: tuple[str, ...]
    diameter_oversizing_pct: float | None = None
    chart_min: float | None = None
    chart_max: float | None = None
    residual_sinus_mm: float | None = None


@dataclass(frozen=True)
class CoronaryRisk:
    """Coronary-obstruction risk at one ostium (valves).

    ``risk`` is ``"high"`` (height and sinus both below their cut-offs), ``"elevated"`` (one of
    them), ``"low"`` (neither) or ``"not measured"`` (the ostium height is not known).
    """

    ostium: str
    height_mm: float | None
    sinus_diameter_mm: float | None
    height_cutoff_mm: float
    sinus_cutoff_mm: float
    risk: str
    note: str
    reference: str = CORONARY_REFERENCE


@dataclass(frozen=True)
class SizingReport:
    """Assessment of every size of a family, and the recommended one (None when none fits).

    ``annulus_area_mm2`` / ``annulus_perimeter_mm`` are the measured cross-section: the CT
    annulus for valves, the circle of the user-supplied diameter for stents and occluders.
    ``sizing_by`` and ``measured_value`` give the quantity the chart is read in (its unit: mm² for
    the area, mm otherwise) and ``measurement_source`` where it came from (``"CT annulus (twin
    landmarks)"`` or ``"user-supplied"``). Reports stored before these fields existed load with
    their defaults (a balloon-expandable valve sized by the CT annulus area).
    """

    family: str
    annulus_area_mm2: float
    annulus_perimeter_mm: float
    recommended_mm: float | None
    sizes: tuple[SizeAssessment, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    kind: str = "transcatheter_aortic_valve"
    sizing_by: str = "annulus_area"
    measured_value: float | None = None
    measurement_source: str = "CT annulus (twin landmarks)"
    coronary: tuple[CoronaryRisk, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SizingReport:
        """Inverse of :meth:`to_dict` (the form stored with a twin); older dicts load too."""
        size_keys = {f.name for f in fields(SizeAssessment)}
        sizes = tuple(SizeAssessment(**{**{k: v for k, v in s.items() if k in size_keys},
                                        "warnings": tuple(s.get("warnings", ()))})
                      for s in data["sizes"])
        coronary = tuple(CoronaryRisk(**c) for c in data.get("coronary", ()))
        extra = {k: data[k] for k in ("kind", "sizing_by", "measured_value", "measurement_source")
                 if k in data}
        return cls(data["family"], data["annulus_area_mm2"], data["annulus_perimeter_mm"],
                   data["recommended_mm"], sizes, tuple(data.get("warnings", ())),
                   coronary=coronary, notes=tuple(data.get("notes", ())), **extra)

    def assessment(self, nominal_diameter_mm: float) -> SizeAssessment:
        return next(s for s in self.sizes if abs(s.nominal_diameter_mm - nominal_diameter_mm) < 1e-6)


def coronary_risk(ostium: str, *, height_mm: float | None,
                  sinus_diameter_mm: float | None) -> CoronaryRisk:
    """The coronary-obstruction risk at the ``"left"`` or ``"right"`` ostium.

    Parameters
    ----------
    ostium : ``"left"`` or ``"right"``.
    height_mm : ostium height above the annulus plane (mm); None when not measured.
    sinus_diameter_mm : sinus of Valsalva diameter (mm); None when not measured.
    """
    if ostium not in CORONARY_CUTOFFS_MM:
        raise InputError(f"coronary ostium {ostium!r} must be 'left' or 'right'")
    h_cut, s_cut = CORONARY_CUTOFFS_MM[ostium]
    sinus_low = sinus_diameter_mm is not None and sinus_diameter_mm < s_cut
    sinus_txt = ("sinus not measured" if sinus_diameter_mm is None else
                 f"sinus {sinus_diameter_mm:.1f} mm {'<' if sinus_low else '≥'} {s_cut:g} mm")
    if height_mm is None:
        return CoronaryRisk(ostium, None, sinus_diameter_mm, h_cut, s_cut, "not measured",
                            f"{ostium} ostium height not measured ({sinus_txt}); give planning "
                            "landmarks with the coronary ostia (twin build --landmarks)")
    height_low = height_mm < h_cut
    n_low = int(height_low) + int(sinus_low)
    risk = {2: "high", 1: "elevated", 0: "low"}[n_low]
    note = (f"{ostium} ostium {height_mm:.1f} mm above the annulus "
            f"{'<' if height_low else '≥'} {h_cut:g} mm; {sinus_txt}")
    return CoronaryRisk(ostium, float(height_mm), sinus_diameter_mm, h_cut, s_cut, risk, note)


def _oversizing(family: DeviceFamily, area_pct: float, perim_pct: float,
                diam_pct: float | None) -> float:
    return {"area": area_pct, "perimeter": perim_pct}.get(family.oversizing_metric,
                                                          diam_pct if diam_pct is not None
                                                          else perim_pct)


def _target(family: DeviceFamily) -> float:
    if family.oversizing_target_pct is not None:
        return family.oversizing_target_pct
    return 0.5 * (family.oversizing_warn_below_pct + family.oversizing_warn_above_pct)


def _fmt(value: float, sizing_by: str) -> str:
    return f"{value:.0f}" if sizing_by == "annulus_area" else f"{value:.1f}"


def _assess(family: DeviceFamily, *, family_key: str, area: float, perim: float,
            diameter: float | None, sinus_mm: float | None, source: str,
            coronary: tuple[CoronaryRisk, ...] = (), notes: tuple[str, ...] = ()) -> SizingReport:
    by = family.sizing_by
    value = {"annulus_area": area, "annulus_perimeter": perim}.get(by, diameter)
    _, _, unit, text = SIZING_FIELDS[by]
    under_risk, over_risk = _RISKS[family.kind]
    metric = family.oversizing_metric
    valve = family.kind == "transcatheter_aortic_valve"
    rows = []
    for s in family.sizes:
        d = s.nominal_diameter_mm
        dev_area = math.pi * (d / 2) ** 2
        a_pct = (dev_area / area - 1.0) * 100.0
        p_pct = (math.pi * d / perim - 1.0) * 100.0
        d_pct = None if diameter is None else (d / diameter - 1.0) * 100.0
        pct = _oversizing(family, a_pct, p_pct, d_pct)
        lo, hi = s.sizing_range(by)
        in_range = lo <= value <= hi
        extra = ""
        if family.kind == "laa_occluder" and diameter is not None:
            compression = (1.0 - diameter / d) * 100.0
            extra = (f", compression {compression:.0f} %" if compression >= 0
                     else ", device narrower than the ostium")
        warns = []
        lo_lim, hi_lim = family.oversizing_warn_below_pct, family.oversizing_warn_above_pct
        if pct < lo_lim:
            warns.append(f"undersized by {metric} ({pct:+.1f} % < {lo_lim:+g} %{extra}): "
                         f"risk of {under_risk}")
        if pct > hi_lim:
            warns.append(f"oversized by {metric} ({pct:+.1f} % > {hi_lim:+g} %{extra}): "
                         f"risk of {over_risk}")
        if not in_range:
            warns.append(f"{text} {_fmt(value, by)} {unit} outside the chart range "
                         f"{_fmt(lo, by)}–{_fmt(hi, by)} {unit} for this size")
        residual = None
        if valve and sinus_mm is not None:
            residual = sinus_mm - d
            if residual < RESIDUAL_SINUS_CUTOFF_MM:
                warns.append(f"residual sinus {residual:.1f} mm (sinus {sinus_mm:.1f} − valve "
                             f"{d:g} mm) < {RESIDUAL_SINUS_CUTOFF_MM:g} mm: coronary-obstruction "
                             "risk")
        rows.append(SizeAssessment(d, a_pct, p_pct, in_range, max(0.0, area - dev_area),
                                   tuple(warns), d_pct, lo, hi, residual))
    fitting = [r for r in rows if r.in_chart_range]
    target = _target(family)
    recommended = min(
        fitting, key=lambda r: abs(_oversizing(family, r.area_oversizing_pct,
                                               r.perimeter_oversizing_pct,
                                               r.diameter_oversizing_pct) - target)
    ).nominal_diameter_mm if fitting else None
    warnings: tuple[str, ...] = ()
    if recommended is None:
        lo = min(s.sizing_range(by)[0] for s in family.sizes)
        hi = max(s.sizing_range(by)[1] for s in family.sizes)
        if by == "annulus_area":  # the wording reports stored with twins have used
            warnings = (f"annulus area {area:.0f} mm² is outside every size of this family "
                        f"({lo:.0f}–{hi:.0f} mm²): no size recommended",)
        else:
            warnings = (f"{text} {_fmt(value, by)} {unit} is outside every size of this family "
                        f"({_fmt(lo, by)}–{_fmt(hi, by)} {unit}): no size recommended",)
    warnings += tuple(f"coronary obstruction risk {c.risk} at the {c.ostium} ostium: {c.note}"
                      for c in coronary if c.risk in ("high", "elevated"))
    return SizingReport(family_key or family.label, area, perim, recommended, tuple(rows),
                        warnings, kind=family.kind, sizing_by=by, measured_value=value,
                        measurement_source=source, coronary=coronary, notes=notes)


def assess_sizes(landmarks: AorticRootLandmarks, family: DeviceFamily, *, family_key: str = "",
                 coronary_ostia_height_mm: dict[str, float] | None = None,
                 sinus_diameter_mm: float | None = None) -> SizingReport:
    """Area- and perimeter-based oversizing of every size of a valve family on the CT annulus.

    The recommended size is the one whose chart range (annulus area or perimeter, the family's
    ``sizing_by``) contains the measurement; where two ranges overlap, the one whose oversizing
    (in the family's metric) is closest to the family's ``oversizing_target_pct`` — for the
    balloon-expandable family +5 % by area, the middle of the 0–10 % band the SCCT consensus
    describes (Blanke P et al., JACC Cardiovasc Imaging 2019;12:1–24).

    Parameters
    ----------
    landmarks : the measured aortic root (annulus area mm², perimeter mm, sinus diameter mm).
    family : a ``transcatheter_aortic_valve`` family of the catalog.
    family_key : the catalog key, recorded in the report.
    coronary_ostia_height_mm : ``{"left": h, "right": h}`` ostium heights above the annulus (mm);
        None or a missing ostium: reported as "not measured".
    sinus_diameter_mm : sinus of Valsalva diameter (mm); the landmarks' when None.

    Raises
    ------
    InputError
        If the family is not a valve (stents and occluders need a user-supplied diameter:
        :func:`assess_sizes_by_diameter`).
    """
    if family.kind != "transcatheter_aortic_valve":
        raise InputError(_needs_diameter(family, family_key))
    sinus = landmarks.sinus_diameter_mm if sinus_diameter_mm is None else sinus_diameter_mm
    sinus = float(sinus) if sinus is not None and math.isfinite(sinus) and sinus > 0 else None
    heights = dict(coronary_ostia_height_mm or {})
    coronary = tuple(coronary_risk(o, height_mm=heights.get(o), sinus_diameter_mm=sinus)
                     for o in ("left", "right"))
    return _assess(family, family_key=family_key, area=landmarks.annulus_area_mm2,
                   perim=landmarks.annulus_perimeter_mm, diameter=None, sinus_mm=sinus,
                   source="CT annulus (twin landmarks)", coronary=coronary)


def assess_sizes_by_diameter(diameter_mm: float, family: DeviceFamily, *,
                             family_key: str = "") -> SizingReport:
    """Oversizing of every size of a stent or occluder family on a user-supplied diameter.

    The anatomy step does not measure the reference vessel, the LAA ostium or the atrial septal
    defect yet, so the diameter (mm: reference vessel diameter, maximum LAA ostium diameter or
    stretched defect diameter, the family's ``sizing_by``) comes from the user; the report's
    ``measurement_source`` is ``"user-supplied"``. Area and perimeter oversizing are those of the
    circle of that diameter. The recommended size is the one whose chart range contains the
    diameter, closest to the family's ``oversizing_target_pct`` where ranges overlap.

    Raises
    ------
    InputError
        A diameter that is not a positive number below 80 mm, or a valve family (valves are sized
        on the CT annulus: :func:`assess_sizes`).
    """
    try:
        d = float(diameter_mm)
    except (TypeError, ValueError):
        raise InputError(f"diameter {diameter_mm!r} must be a number in mm") from None
    if not (math.isfinite(d) and 0.0 < d < _MAX_DIAMETER_MM):
        raise InputError(f"diameter {diameter_mm!r} mm must be a positive number below "
                         f"{_MAX_DIAMETER_MM:g} mm")
    if family.kind == "transcatheter_aortic_valve":
        raise InputError(f"{family_key or family.label!r} is a valve, sized on the twin's CT "
                         f"annulus ({family.sizing_label}); a diameter applies only to stents "
                         "and occluders — leave it out")
    _, _, _, text = SIZING_FIELDS[family.sizing_by]
    note = (f"{text} {d:.1f} mm is {USER_SUPPLIED}: the anatomy step does not measure it yet")
    return _assess(family, family_key=family_key, area=math.pi * d * d / 4.0, perim=math.pi * d,
                   diameter=d, sinus_mm=None, source=USER_SUPPLIED, notes=(note,))


def size_device_family(family: DeviceFamily, *, family_key: str = "",
                       landmarks: AorticRootLandmarks | None = None,
                       diameter_mm: float | None = None,
                       coronary_ostia_height_mm: dict[str, float] | None = None) -> SizingReport:
    """Size any family: valves on the landmarks' annulus, others on ``diameter_mm``.

    Raises
    ------
    InputError
        A stent or occluder without ``diameter_mm`` (the message names what to pass), a valve
        with ``diameter_mm``, or a valve without landmarks.
    """
    if family.kind == "transcatheter_aortic_valve":
        if diameter_mm is not None:
            return assess_sizes_by_diameter(diameter_mm, family, family_key=family_key)  # raises
        if landmarks is None:
            raise InputError(f"{family_key or family.label!r} is sized on the CT annulus: the twin "
                             "has no aortic-root landmarks; rebuild it with `cardiotwin twin build`")
        return assess_sizes(landmarks, family, family_key=family_key,
                            coronary_ostia_height_mm=coronary_ostia_height_mm)
    if diameter_mm is None:
        raise InputError(_needs_diameter(family, family_key))
    return assess_sizes_by_diameter(diameter_mm, family, family_key=family_key)


def _needs_diameter(family: DeviceFamily, family_key: str) -> str:
    _, _, _, text = SIZING_FIELDS[family.sizing_by]
    return (f"{family_key or family.label!r} ({family.kind}) is sized by the {text}, which the "
            f"anatomy step cannot measure yet: pass it in mm with --diameter-mm (Python: "
            f"diameter_mm=...), e.g. measured on CT or TEE")

"""Complications a team plans against: paravalvular leak, conduction disturbance, coronary obstruction.

Pure functions on plain arrays (mm, kPa, mmHg); each returns a frozen dataclass that carries the
figure, the ``method`` in words, the ``reference`` it rests on (or "modelling assumption" where
no published value was checked) and a ``sensitivity``: the figure recomputed with its most
uncertain input moved by a stated amount (:class:`Sensitivity`).

* :func:`paravalvular_leak` — gap area between the annulus lumen (with calcium) and the frame at
  one level, the gaps as polygons, and a regurgitant volume over diastole from the orifice
  equation, graded by the VARC regurgitant-volume thresholds.
* :func:`conduction_risk` — contact pressure index and maximum contact pressure over the
  membranous-septum region of the LVOT below the annulus, its trend with implantation depth and a
  risk flag.
* :func:`coronary_obstruction` — virtual valve-to-coronary distance (VTC) per ostium, whether the
  displaced cusp reaches the ostium, and the coronary-height / sinus-width screening rule.

Geometry of the paravalvular gap
--------------------------------
Both contours are read in polar form about the frame centre ``c`` (area centroid of the frame
contour): ``r_L(θ)`` is the distance along the ray to the first lumen boundary (annulus contour or a
calcium contour, whichever is nearer), ``r_F(θ)`` the distance to the frame. Rays are cast at a
uniform set of angles plus every vertex angle (and the annulus/calcium edge crossings), so between
two rays each curve is one straight segment; the area between them is then exact (difference of
two triangles, split at the crossing point where the curves cross). Gaps are the angular runs
where ``r_L > r_F``. This needs the annulus contour to be star-shaped about ``c`` (every ray meets
it once), which CT annulus contours are; a contour that is not is refused with
:class:`~cardiotwin.errors.InputError`. Blood hidden behind a free-floating calcium nodule (not
touching the wall) is not counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cardiotwin import units
from cardiotwin.errors import DeviceError, InputError
from cardiotwin.geometry.landmarks import plane_basis

log = logging.getLogger(__name__)

#: Blood density used by the orifice equation, kg/m³ (the project's default fluid, physics.newton).
BLOOD_DENSITY_KG_M3 = 1060.0

#: Regurgitant-volume limits of the PVL grades, mL/beat: mild < 30, moderate 30–59, severe ≥ 60.
PVL_GRADE_LIMITS_ML = (30.0, 60.0)

PVL_REFERENCE = (
    "Grades: VARC-2 quantitative criteria for prosthetic (paravalvular) aortic regurgitation after "
    "TAVI, regurgitant volume <30 mL mild, 30-59 mL moderate, >=60 mL severe (Kappetein AP et al., "
    "Updated standardized endpoint definitions for TAVI: the VARC-2 consensus document, "
    "J Thorac Cardiovasc Surg 2012, doi:10.1016/j.jtcvs.2012.09.002; same limits in VARC-1, Leon MB "
    "et al., Eur Heart J 2011;32:205-217, Table 9). Diastolic duration = RR - QS2 with QS2 = 541 - "
    "2.2*HR ms (Chest 1981;80(5):613-617, doi:10.1378/chest.80.5.613). Orifice equation "
    "Q = Cd*A*sqrt(2*dP/rho): standard hydraulics; Cd and the constant diastolic gradient "
    "(aortic diastolic - LV diastolic pressure) are modelling assumptions.")

CONDUCTION_REFERENCE = (
    "Contact pressure and contact pressure index over the membranous-septum region as mechanistic "
    "predictors of new conduction abnormalities: Galli V et al., Towards patient-specific "
    "prediction of conduction abnormalities induced by TAVI, Eur Heart J Digit Health "
    "2021;2(4):606-615, doi:10.1093/ehjdh/ztab063 (both higher in patients with conduction "
    "abnormalities; combined model AUC 0.84), building on Rocatello G et al., Circ Cardiovasc "
    "Interv 2018 (not re-checked here). CPI as the percentage of the region's area under contact "
    "pressure follows that line of work; the region (angular sector, depth band) and the risk "
    "thresholds here are modelling assumptions, not the papers' definitions or cut-offs; "
    "calibrate before clinical use.")

CORONARY_REFERENCE = (
    "VTC and cusp height: Khan JM et al., Coronary obstruction from TAVR in native aortic stenosis: "
    "development and validation of multivariate prediction model, JACC Cardiovasc Interv "
    "2023;16(4):415-425 (obstruction IF cusp height > coronary height AND virtual valve-to-coronary "
    "distance <= 4 mm, or culprit leaflet calcium > 600 mm3; leaflet calcium not modelled here). "
    "Simple rule: coronary height and sinus of Valsalva width, Ribeiro HB et al., JACC "
    "2013;62:1552-1562 (obstruction with low ostia and narrow sinuses); the 12 mm / 30 mm screening "
    "cut-offs are a convention (Heitkemper M et al., J Thorac Cardiovasc Surg 2020;159:829-838 "
    "flagged height < 14 mm and/or sinus < 30 mm as high risk; Khan 2023 optimal cut-offs LCA "
    "11 mm/31 mm, RCA 15 mm/29 mm).")


# --------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sensitivity:
    """A figure recomputed with one uncertain input moved to a low and a high value.

    Parameters
    ----------
    parameter : str
        The input moved (``"discharge_coefficient"``, ``"frame_radius_offset_mm"``, …).
    nominal, low, high : float
        The input's value used for the result and the two moved values (the input's unit).
    figure : str
        The result field recomputed (``"regurgitant_volume_ml"``, …).
    figure_nominal, figure_at_low, figure_at_high : float
        The figure at ``nominal``, ``low`` and ``high``.
    """

    parameter: str
    nominal: float
    low: float
    high: float
    figure: str
    figure_nominal: float
    figure_at_low: float
    figure_at_high: float

    @property
    def spread(self) -> float:
        """``figure_at_high − figure_at_low`` (the figure's unit)."""
        return self.figure_at_high - self.figure_at_low

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gap:
    """One paravalvular gap at the contour level.

    ``outline_mm`` is the gap polygon (lumen side forward, frame side back); for a gap all around
    the frame (a ring) it is the lumen boundary and ``hole_mm`` the frame boundary.
    ``angular_extent_deg`` is the angle it spans about the frame centre, ``max_width_mm`` its
    largest radial width.
    """

    area_mm2: float
    angular_extent_deg: float
    max_width_mm: float
    outline_mm: tuple[tuple[float, float], ...]
    hole_mm: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ParavalvularLeak:
    """Paravalvular gap and regurgitation estimate at one level (see :func:`paravalvular_leak`)."""

    gap_area_mm2: float
    gap_count: int
    gaps: tuple[Gap, ...]
    largest_gap_area_mm2: float
    circumferential_extent_percent: float
    annulus_area_mm2: float
    lumen_area_mm2: float
    frame_area_mm2: float
    calcium_area_mm2: float
    frame_centre_mm: tuple[float, float]
    frame_model: str
    diastolic_gradient_mmhg: float
    diastole_s: float
    heart_rate_bpm: float
    discharge_coefficient: float
    regurgitant_flow_ml_s: float
    regurgitant_volume_ml: float
    grade: str
    within_skirt: bool | None
    method: str
    reference: str
    sensitivity: tuple[Sensitivity, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DepthPoint:
    """Contact figures over the septal region with the device moved to ``depth_mm``."""

    depth_mm: float
    contact_pressure_index_percent: float
    max_contact_pressure_kpa: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConductionRisk:
    """Contact pressure over the membranous-septum region (see :func:`conduction_risk`)."""

    contact_pressure_index_percent: float
    max_contact_pressure_kpa: float
    mean_contact_pressure_kpa: float
    contact_force_n: float
    region_area_mm2: float
    contact_area_mm2: float
    n_region_facets: int
    depth_mm: float
    sector_half_width_deg: float
    band_below_annulus_mm: tuple[float, float]
    septum_direction: tuple[float, float, float]
    septum_direction_source: str
    risk: bool
    cpi_threshold_percent: float
    mcp_threshold_kpa: float
    threshold_source: str
    depth_trend: tuple[DepthPoint, ...]
    cpi_slope_percent_per_mm: float
    method: str
    reference: str
    sensitivity: tuple[Sensitivity, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OstiumRisk:
    """One coronary ostium against the device (see :func:`coronary_obstruction`).

    ``height_mm`` is above the annulus plane; ``radial_distance_mm`` from the device axis;
    ``valve_to_coronary_distance_mm`` (VTC) from the ostium to the frame (plus displaced leaflet
    thickness) at the ostium's height; ``cusp_reaches_ostium`` whether the native cusp, swung up
    against the frame, reaches the ostium's height; ``simple_rule_risk`` the height/sinus-width
    screening rule (``None`` without a sinus diameter).
    """

    name: str
    height_mm: float
    radial_distance_mm: float
    valve_to_coronary_distance_mm: float
    cusp_reaches_ostium: bool
    risk: bool
    simple_rule_risk: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CoronaryObstruction:
    """Coronary-obstruction risk for every ostium (see :func:`coronary_obstruction`)."""

    ostia: tuple[OstiumRisk, ...]
    valve_to_coronary_distance_mm: float
    risk: bool
    simple_rule_risk: bool | None
    vtc_threshold_mm: float
    height_threshold_mm: float
    sinus_threshold_mm: float
    frame_radius_mm: float
    frame_z_range_mm: tuple[float, float]
    leaflet_length_mm: float
    method: str
    reference: str
    sensitivity: tuple[Sensitivity, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _finite(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise InputError(f"{name} must be finite, got {value!r}")
    if lo is not None and (x < lo or (lo_open and x == lo)):
        rel = ">" if lo_open else ">="
        raise InputError(f"{name} = {x:g} is out of range: expected {rel} {lo:g}"
                         + (f" and <= {hi:g}" if hi is not None else ""))
    if hi is not None and x > hi:
        raise InputError(f"{name} = {x:g} is out of range: expected <= {hi:g}")
    return x


def _polygon(name: str, value: Any) -> np.ndarray:
    """(N, 2) float, closing duplicate removed, counter-clockwise, non-degenerate."""
    try:
        p = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an (N, 2) array of in-plane points in mm") from None
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(f"{name} must be an (N, 2) array of in-plane points in mm, "
                         f"got shape {p.shape}")
    if len(p) > 1 and np.allclose(p[0], p[-1]):
        p = p[:-1]
    if len(p) < 3:
        raise InputError(f"{name} has {len(p)} distinct points: a contour needs at least 3 "
                         "(is it empty?)")
    if not np.all(np.isfinite(p)):
        raise InputError(f"{name} contains non-finite coordinates")
    area = _signed_area(p)
    if abs(area) < 1e-9:
        raise InputError(f"{name} encloses no area (points collinear or repeated)")
    return p if area > 0 else p[::-1].copy()


def _signed_area(p: np.ndarray) -> float:
    q = np.roll(p, -1, axis=0)
    return 0.5 * float(np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]))


def _centroid(p: np.ndarray) -> np.ndarray:
    q = np.roll(p, -1, axis=0)
    cr = p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]
    a = 0.5 * cr.sum()
    return np.array([((p[:, 0] + q[:, 0]) * cr).sum(), ((p[:, 1] + q[:, 1]) * cr).sum()]) / (6 * a)


def _inside(point: np.ndarray, poly: np.ndarray) -> bool:
    """Even-odd point-in-polygon test."""
    x, y = point
    a, b = poly, np.roll(poly, -1, axis=0)
    straddle = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return bool(np.count_nonzero(straddle & (x < xc)) % 2)


# --------------------------------------------------------------------------------------------
# polar geometry
# --------------------------------------------------------------------------------------------


def _ray_hits(poly: np.ndarray, centre: np.ndarray, angles: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest boundary distance along each ray from ``centre`` (inf if none) and hit count."""
    a = poly - centre
    d = np.roll(poly, -1, axis=0) - poly
    wxd = a[:, 0] * d[:, 1] - a[:, 1] * d[:, 0]
    near = np.full(len(angles), np.inf)
    count = np.zeros(len(angles), dtype=int)
    for s0 in range(0, len(angles), 512):
        th = angles[s0:s0 + 512]
        ux, uy = np.cos(th)[:, None], np.sin(th)[:, None]
        den = ux * d[None, :, 1] - uy * d[None, :, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = wxd[None, :] / den
            s = (a[None, :, 0] * uy - a[None, :, 1] * ux) / den
        ok = (np.abs(den) > 1e-14) & (s >= -1e-10) & (s <= 1.0 + 1e-10) & (t > 1e-12)
        t = np.where(ok, t, np.inf)
        near[s0:s0 + 512] = t.min(axis=1)
        count[s0:s0 + 512] = ok.sum(axis=1)
    return near, count


def _vertex_angles(poly: np.ndarray, centre: np.ndarray) -> np.ndarray:
    v = poly - centre
    return np.arctan2(v[:, 1], v[:, 0])


def _edge_crossings(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """All intersection points between the edges of polygons ``p`` and ``q`` (K, 2)."""
    a, da = p, np.roll(p, -1, axis=0) - p
    b, db = q, np.roll(q, -1, axis=0) - q
    den = da[:, None, 0] * db[None, :, 1] - da[:, None, 1] * db[None, :, 0]
    w = b[None, :, :] - a[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (w[..., 0] * db[None, :, 1] - w[..., 1] * db[None, :, 0]) / den
        t = (w[..., 0] * da[:, None, 1] - w[..., 1] * da[:, None, 0]) / den
    ok = (np.abs(den) > 1e-14) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
    i, _ = np.nonzero(ok)
    return a[i] + s[ok][:, None] * da[i]


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def _polar_area(theta: np.ndarray, r: np.ndarray) -> float:
    """Area of the closed star-shaped polygon with vertices at (theta, r) about the centre."""
    dth = np.diff(np.append(theta, theta[0] + 2 * np.pi))
    return 0.5 * float(np.sum(r * np.roll(r, -1) * np.sin(dth)))


def _gaps_between(theta: np.ndarray, r_lumen: np.ndarray, r_frame: np.ndarray,
                  centre: np.ndarray) -> list[Gap]:
    """Regions where the lumen lies outside the frame, exactly for piecewise-straight curves."""
    u = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    L, F = r_lumen[:, None] * u, r_frame[:, None] * u
    scale = float(np.max(r_lumen))
    tol = 1e-9 * scale
    d = r_lumen - r_frame
    n = len(theta)
    if np.all(d > tol):                       # a ring all around the frame
        area = _polar_area(theta, r_lumen) - _polar_area(theta, r_frame)
        return [Gap(area_mm2=area, angular_extent_deg=360.0, max_width_mm=float(d.max()),
                    outline_mm=_pts(L + centre), hole_mm=_pts(F + centre))]

    runs: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for i in range(n):
        j = (i + 1) % n
        th_j = theta[j] + (2 * np.pi if j == 0 else 0.0)
        pi, pj = d[i] > tol, d[j] > tol
        if not pi and not pj:
            continue
        if pi and pj:
            if cur is None:
                cur = {"L": [L[i]], "F": [F[i]], "area": 0.0, "th0": theta[i], "open": True,
                       "w": d[i]}
            cur["area"] += 0.5 * (_cross(L[i], L[j]) - _cross(F[i], F[j]))
            cur["L"].append(L[j])
            cur["F"].append(F[j])
            cur["w"] = max(cur["w"], d[j])
            cur["th1"] = th_j
            continue
        x = _crossing(L[i], L[j], F[i], F[j], d[i], d[j])
        th_x = math.atan2(x[1], x[0])
        th_x = theta[i] + ((th_x - theta[i]) % (2 * np.pi))
        if pi:                                 # gap closes inside this interval
            if cur is None:
                cur = {"L": [L[i]], "F": [F[i]], "area": 0.0, "th0": theta[i], "open": True,
                       "w": d[i]}
            cur["area"] += 0.5 * (_cross(L[i], x) - _cross(F[i], x))
            cur["L"].append(x)
            cur["th1"] = th_x
            runs.append(cur)
            cur = None
        else:                                  # gap opens inside this interval
            cur = {"L": [x, L[j]], "F": [F[j]], "area": 0.5 * (_cross(x, L[j]) - _cross(x, F[j])),
                   "th0": th_x, "th1": th_j, "open": False, "w": d[j]}
    if cur is not None:                        # run wrapping past theta[0]
        first = runs.pop(0) if runs and runs[0]["open"] else None
        if first is not None:
            cur["L"] += first["L"][1:]
            cur["F"] += first["F"][1:]
            cur["area"] += first["area"]
            cur["w"] = max(cur["w"], first["w"])
            cur["th1"] = first["th1"] + 2 * np.pi
        runs.append(cur)
    gaps = []
    for run in runs:
        outline = np.vstack([np.asarray(run["L"]), np.asarray(run["F"])[::-1]]) + centre
        extent = math.degrees((run["th1"] - run["th0"]) % (2 * np.pi) or 0.0)
        gaps.append(Gap(area_mm2=float(run["area"]), angular_extent_deg=extent,
                        max_width_mm=float(run["w"]), outline_mm=_pts(outline)))
    return gaps


def _crossing(li: np.ndarray, lj: np.ndarray, fi: np.ndarray, fj: np.ndarray,
              di: float, dj: float) -> np.ndarray:
    """Where segment li→lj crosses segment fi→fj (falls back to interpolating d = r_L − r_F)."""
    dl, df = lj - li, fj - fi
    den = _cross(dl, df)
    if abs(den) > 1e-14:
        s = _cross(fi - li, df) / den
        if -1e-9 <= s <= 1 + 1e-9:
            return li + min(max(s, 0.0), 1.0) * dl
    f = di / (di - dj)
    return li + f * dl


def _pts(a: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in a)


def _clip_half_plane(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Part of ``poly`` with ``x·normal <= offset`` (one Sutherland–Hodgman pass)."""
    out = []
    n = len(poly)
    for k in range(n):
        p, q = poly[k], poly[(k + 1) % n]
        fp, fq = p @ normal - offset, q @ normal - offset
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            out.append(p + fp / (fp - fq) * (q - p))
    return np.asarray(out)


def _closest_point(poly: np.ndarray, c: np.ndarray) -> np.ndarray:
    a, d = poly, np.roll(poly, -1, axis=0) - poly
    t = np.clip(np.einsum("ij,ij->i", c - a, d) / np.einsum("ij,ij->i", d, d), 0.0, 1.0)
    pts = a + t[:, None] * d
    return pts[np.argmin(np.linalg.norm(pts - c, axis=1))]


# --------------------------------------------------------------------------------------------
# contours for the callers
# --------------------------------------------------------------------------------------------


def circle_contour_mm(diameter_mm: float, *, centre_mm: tuple[float, float] = (0.0, 0.0),
                      n_points: int = 360) -> np.ndarray:
    """A circle as an (n, 2) polygon, mm: the unloaded frame for sizing-only leak estimates."""
    d = _finite("diameter_mm", diameter_mm, lo=0.0, lo_open=True)
    if int(n_points) < 8:
        raise InputError(f"n_points = {n_points!r}: expected >= 8")
    t = np.linspace(0.0, 2.0 * np.pi, int(n_points), endpoint=False)
    return np.c_[centre_mm[0] + 0.5 * d * np.cos(t), centre_mm[1] + 0.5 * d * np.sin(t)]


def polar_contour_mm(angles_rad: Any, radii_mm: Any, *,
                     centre_mm: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """An (n, 2) polygon from radius per angle (e.g. the deformed frame radius at one level)."""
    th = np.asarray(angles_rad, dtype=float).reshape(-1)
    r = np.asarray(radii_mm, dtype=float).reshape(-1)
    if len(th) != len(r) or len(th) < 3:
        raise InputError(f"angles_rad ({len(th)}) and radii_mm ({len(r)}) must have the same "
                         "length, at least 3")
    if not (np.all(np.isfinite(th)) and np.all(np.isfinite(r))) or np.any(r <= 0):
        raise InputError("radii_mm must be finite and > 0, angles_rad finite")
    order = np.argsort(np.mod(th, 2.0 * np.pi))
    th, r = th[order], r[order]
    return np.c_[centre_mm[0] + r * np.cos(th), centre_mm[1] + r * np.sin(th)]


def project_to_plane_mm(points_mm: Any, *, centre_mm: Any, normal: Any,
                        reference_direction: Any = None) -> np.ndarray:
    """3-D points (N, 3) → 2-D coordinates (N, 2) in the plane through ``centre_mm``.

    The in-plane axes are ``e1`` = ``reference_direction`` projected on the plane (default:
    :func:`cardiotwin.geometry.landmarks.plane_basis`) and ``e2 = n × e1``; use the same call for
    the annulus, frame and calcium contours so that they share coordinates.
    """
    pts = np.asarray(points_mm, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"points_mm must be an (N, 3) array in mm, got shape {pts.shape}")
    c = _point3("centre_mm", centre_mm)
    n = _unit3("normal", normal)
    if reference_direction is None:
        e1, e2 = plane_basis(n)
    else:
        e1 = _unit3("reference_direction", reference_direction)
        e1 = e1 - (e1 @ n) * n
        if np.linalg.norm(e1) < 1e-6:
            raise InputError("reference_direction is along the normal")
        e1 = e1 / np.linalg.norm(e1)
        e2 = np.cross(n, e1)
    rel = pts - c
    return np.c_[rel @ e1, rel @ e2]


# --------------------------------------------------------------------------------------------
# paravalvular leak
# --------------------------------------------------------------------------------------------


def diastolic_duration_s(heart_rate_bpm: float) -> float:
    """Duration of diastole (aortic valve closure to next ejection) from the heart rate.

    ``RR − QS2`` with total electromechanical systole QS2 = 541 − 2.2·HR ms (men; 540 − 2.0·HR in
    women), a linear regression over the resting heart-rate range.

    Parameters
    ----------
    heart_rate_bpm : float
        Heart rate, beats/min, 30–220.

    Returns
    -------
    float
        Diastolic duration in s.

    Raises
    ------
    InputError
        If the heart rate is outside 30–220 bpm or leaves no diastole.

    References
    ----------
    Linear relationship between electrical systole, mechanical systole, and heart rate.
    Chest 1981;80(5):613–617, doi:10.1378/chest.80.5.613.
    """
    hr = _finite("heart_rate_bpm", heart_rate_bpm, lo=30.0, hi=220.0)
    rr_s = 60.0 / hr
    qs2_s = units.ms_to_s(541.0 - 2.2 * hr)
    if rr_s - qs2_s <= 0.05:
        raise InputError(f"heart_rate_bpm = {hr:g} leaves {1e3 * (rr_s - qs2_s):.0f} ms of diastole "
                         "(QS2 regression out of range); give diastole_s explicitly")
    return rr_s - qs2_s


def _grade(gap_area_mm2: float, volume_ml: float) -> str:
    if gap_area_mm2 <= 0.0:
        return "none"
    if volume_ml < PVL_GRADE_LIMITS_ML[0]:
        return "mild"
    if volume_ml < PVL_GRADE_LIMITS_ML[1]:
        return "moderate"
    return "severe"


def _orifice_flow_ml_s(area_mm2: float, cd: float, dp_mmhg: float, rho: float) -> float:
    v = math.sqrt(2.0 * units.mmhg_to_pa(dp_mmhg) / rho)
    return units.m3_s_to_ml_s(cd * area_mm2 * 1e-6 * v)


def paravalvular_leak(
    annulus_contour_mm: Any,
    frame_contour_mm: Any,
    *,
    aortic_diastolic_mmhg: float,
    heart_rate_bpm: float,
    lv_diastolic_mmhg: float = 10.0,
    calcium_contours_mm: Sequence[Any] = (),
    frame_model: str = "deformed",
    diastole_s: float | None = None,
    discharge_coefficient: float = 0.6,
    discharge_coefficient_range: tuple[float, float] = (0.4, 0.8),
    contour_uncertainty_mm: float = 0.5,
    blood_density_kg_m3: float = BLOOD_DENSITY_KG_M3,
    level_above_inflow_mm: float | None = None,
    skirt_height_mm: float | None = None,
    n_rays: int = 3600,
) -> ParavalvularLeak:
    """Paravalvular gap at one level and the regurgitant volume through it over diastole.

    The gap is the area inside the annulus lumen (outside any calcium) and outside the frame. The
    regurgitant flow is the orifice equation ``Q = Cd·A·sqrt(2·ΔP/ρ)`` with ΔP = aortic diastolic −
    LV diastolic pressure held over the whole diastole; volume = Q · diastole. The grade follows the
    VARC-2 regurgitant-volume limits (mild < 30 mL, moderate 30–59 mL, severe ≥ 60 mL; "none" when
    there is no gap).

    Parameters
    ----------
    annulus_contour_mm : array_like, (N, 2)
        Lumen contour of the annulus (or the sealing level) in its plane, mm.
    frame_contour_mm : array_like, (M, 2)
        Outer contour of the frame (skirt) at the same level and in the same 2-D coordinates, mm:
        the deformed frame from the mechanics, or for sizing a circle of the nominal diameter.
    aortic_diastolic_mmhg : float
        Aortic diastolic pressure, mmHg (the twin's ``Physiology.diastolic_bp_mmhg``), 20–200.
    heart_rate_bpm : float
        Heart rate, beats/min; sets the diastolic duration (:func:`diastolic_duration_s`).
    lv_diastolic_mmhg : float, optional
        LV diastolic pressure, mmHg, 0–60; default 10 (a typical end-diastolic value; modelling
        assumption). Must be below the aortic diastolic pressure.
    calcium_contours_mm : sequence of array_like (K, 2), optional
        Calcium contours (nodules) at the level; they are not lumen, and with
        ``frame_model="nominal"`` they hold the frame off the wall.
    frame_model : {"deformed", "nominal"}
        "deformed": the frame contour is used as given (it already rests against wall and
        calcium). "nominal": the unloaded frame (e.g. a circle); each calcium contour that reaches
        inside it flattens the frame along the line through its innermost point, perpendicular to
        the ray from the frame centre (the frame bridges the nodule and leaves a gap either side).
    diastole_s : float, optional
        Diastolic duration, s; overrides the heart-rate estimate.
    discharge_coefficient : float
        Cd in (0, 1]; default 0.6 (sharp-edged orifice; modelling assumption).
    discharge_coefficient_range : (float, float)
        Low and high Cd for the sensitivity.
    contour_uncertainty_mm : float
        Radial offset of the frame contour (±) for the gap-area sensitivity, mm; default 0.5 (about
        one CT voxel).
    blood_density_kg_m3 : float
        ρ, kg/m³.
    level_above_inflow_mm, skirt_height_mm : float, optional
        Height of the contour level above the frame's inflow edge and the skirt height, mm. When
        both are given, a level outside the skirt is reported (``within_skirt=False``) with a
        warning: above the skirt the frame cells are open and do not seal.
    n_rays : int
        Uniform rays (added to the vertex rays), ≥ 360.

    Returns
    -------
    ParavalvularLeak

    Raises
    ------
    InputError
        Empty or degenerate contours, non-physical pressures or heart rate, an annulus contour that
        is not star-shaped about the frame centre, an unknown ``frame_model``.
    DeviceError
        The frame centre lies outside the annulus lumen (or inside calcium): the frame is not in
        the annulus.
    """
    annulus = _polygon("annulus_contour_mm", annulus_contour_mm)
    frame = _polygon("frame_contour_mm", frame_contour_mm)
    calcium = [_polygon(f"calcium_contours_mm[{k}]", c) for k, c in enumerate(calcium_contours_mm)]
    if frame_model not in ("deformed", "nominal"):
        raise InputError(f"frame_model = {frame_model!r}: expected 'deformed' or 'nominal'")
    p_ao = _finite("aortic_diastolic_mmhg", aortic_diastolic_mmhg, lo=20.0, hi=200.0)
    p_lv = _finite("lv_diastolic_mmhg", lv_diastolic_mmhg, lo=0.0, hi=60.0)
    if p_lv >= p_ao:
        raise InputError(f"lv_diastolic_mmhg = {p_lv:g} is not below aortic_diastolic_mmhg = "
                         f"{p_ao:g}: no diastolic gradient drives a paravalvular leak")
    hr = _finite("heart_rate_bpm", heart_rate_bpm, lo=30.0, hi=220.0)
    t_dia = (diastolic_duration_s(hr) if diastole_s is None
             else _finite("diastole_s", diastole_s, lo=0.0, hi=60.0 / hr, lo_open=True))
    cd = _finite("discharge_coefficient", discharge_coefficient, lo=0.0, hi=1.0, lo_open=True)
    cd_lo, cd_hi = (_finite("discharge_coefficient_range", v, lo=0.0, hi=1.0, lo_open=True)
                    for v in discharge_coefficient_range)
    du = _finite("contour_uncertainty_mm", contour_uncertainty_mm, lo=0.0)
    rho = _finite("blood_density_kg_m3", blood_density_kg_m3, lo=0.0, lo_open=True)
    if int(n_rays) < 360:
        raise InputError(f"n_rays = {n_rays!r}: expected >= 360")

    c = _centroid(frame)
    if not _inside(c, annulus):
        raise DeviceError(f"the frame centre ({c[0]:.1f}, {c[1]:.1f}) mm lies outside the annulus "
                          "contour: the frame is not in the annulus (check that both contours "
                          "are in the same in-plane coordinates and level)")
    for k, cal in enumerate(calcium):
        if _inside(c, cal):
            raise DeviceError(f"the frame centre ({c[0]:.1f}, {c[1]:.1f}) mm lies inside "
                              f"calcium_contours_mm[{k}]: the frame cannot be centred in calcium")

    warnings: list[str] = []
    shapes = [annulus, frame, *calcium]
    extra = [_edge_crossings(annulus, cal) for cal in calcium]
    extra += [_edge_crossings(cal, other) for i, cal in enumerate(calcium)
              for other in calcium[i + 1:]]
    angle_sets = [np.linspace(-np.pi, np.pi, int(n_rays), endpoint=False)]
    angle_sets += [_vertex_angles(s, c) for s in shapes]
    angle_sets += [_vertex_angles(x, c) for x in extra if len(x)]

    if frame_model == "nominal" and calcium:
        frame, clipped = _flatten_on_calcium(frame, calcium, c)
        if clipped:
            angle_sets.append(_vertex_angles(frame, c))
    theta = np.unique(np.mod(np.concatenate(angle_sets) + np.pi, 2 * np.pi) - np.pi)
    keep = np.append(np.diff(theta) > 1e-12, True)
    if theta[-1] - theta[0] > 2 * np.pi - 1e-12:
        keep[-1] = False
    theta = theta[keep]

    r_ann, _ = _ray_hits(annulus, c, theta)
    visible = _polar_area(theta, r_ann)
    annulus_area = _signed_area(annulus)
    if not np.all(np.isfinite(r_ann)) or visible < annulus_area * (1 - 5e-3):
        raise InputError(
            "annulus_contour_mm is not star-shaped about the frame centre "
            f"({c[0]:.1f}, {c[1]:.1f}) mm: {100 * (1 - visible / annulus_area):.1f} % of its area "
            "is hidden from it; give the lumen contour at the annulus level (a simple closed curve "
            "around the frame)")
    r_frame, _ = _ray_hits(frame, c, theta)
    frame_visible = _polar_area(theta, r_frame)
    if not np.all(np.isfinite(r_frame)) or frame_visible < _signed_area(frame) * (1 - 5e-3):
        raise InputError("frame_contour_mm is not star-shaped about its centroid: give the outer "
                         "contour of the frame at this level")
    r_lumen = r_ann.copy()
    for cal in calcium:
        r_cal, _ = _ray_hits(cal, c, theta)
        r_lumen = np.minimum(r_lumen, r_cal)
    if frame_model == "deformed" and calcium:
        if np.any((r_frame > r_lumen + 0.1) & (r_lumen < r_ann - 1e-9)):
            warnings.append("the frame contour reaches into calcium; a deformed frame should rest "
                            "on it — for a sizing-only (unloaded) frame use frame_model='nominal'")

    gaps = _gaps_between(theta, r_lumen, r_frame, c)
    gap_area = float(sum(g.area_mm2 for g in gaps))
    lumen_area = _polar_area(theta, r_lumen)
    noise = 1e-6 * lumen_area
    counted = [g for g in gaps if g.area_mm2 > noise]
    extent = min(100.0, sum(g.angular_extent_deg for g in counted) / 3.6)

    dp = p_ao - p_lv
    q = _orifice_flow_ml_s(gap_area, cd, dp, rho)
    vol = q * t_dia
    grade = _grade(gap_area, vol)

    def vol_at(area: float, cd_: float) -> float:
        return _orifice_flow_ml_s(area, cd_, dp, rho) * t_dia

    # the frame contour moved radially inwards (-du) and outwards (+du)
    gap_in = float(sum(g.area_mm2 for g in
                       _gaps_between(theta, r_lumen, np.maximum(r_frame - du, 0.0), c)))
    gap_out = float(sum(g.area_mm2 for g in _gaps_between(theta, r_lumen, r_frame + du, c)))
    sens = (
        Sensitivity("discharge_coefficient", cd, cd_lo, cd_hi, "regurgitant_volume_ml", vol,
                    vol_at(gap_area, cd_lo), vol_at(gap_area, cd_hi)),
        Sensitivity("frame_radius_offset_mm", 0.0, -du, du, "gap_area_mm2", gap_area,
                    gap_in, gap_out),
        Sensitivity("frame_radius_offset_mm", 0.0, -du, du, "regurgitant_volume_ml", vol,
                    vol_at(gap_in, cd), vol_at(gap_out, cd)),
    )

    within = None
    if level_above_inflow_mm is not None and skirt_height_mm is not None:
        lvl = _finite("level_above_inflow_mm", level_above_inflow_mm)
        skirt = _finite("skirt_height_mm", skirt_height_mm, lo=0.0)
        within = 0.0 <= lvl <= skirt
        if not within:
            warnings.append(f"the contour level is {lvl:.1f} mm from the frame inflow, outside the "
                            f"skirt (0-{skirt:.1f} mm): the frame does not seal here, so the gap "
                            "is not the sealing gap; evaluate at a level within the skirt")
    method = (
        "gap = annulus lumen (minus calcium) outside the frame, exact area between the polar "
        f"contours about the frame centre ({len(theta)} rays, frame model '{frame_model}'); "
        f"regurgitant volume = Cd*A*sqrt(2*dP/rho) * diastole with dP = {p_ao:g} - {p_lv:g} mmHg "
        f"held constant over {t_dia:.3f} s")
    log.debug("PVL: gap %.2f mm2 in %d gaps, %.2f mL/beat (%s)", gap_area, len(counted), vol, grade)
    return ParavalvularLeak(
        gap_area_mm2=gap_area, gap_count=len(counted), gaps=tuple(counted),
        largest_gap_area_mm2=max((g.area_mm2 for g in counted), default=0.0),
        circumferential_extent_percent=extent, annulus_area_mm2=annulus_area,
        lumen_area_mm2=lumen_area, frame_area_mm2=_polar_area(theta, r_frame),
        calcium_area_mm2=float(sum(_signed_area(cal) for cal in calcium)),
        frame_centre_mm=(float(c[0]), float(c[1])), frame_model=frame_model,
        diastolic_gradient_mmhg=dp, diastole_s=t_dia, heart_rate_bpm=hr,
        discharge_coefficient=cd, regurgitant_flow_ml_s=q, regurgitant_volume_ml=vol,
        grade=grade, within_skirt=within, method=method, reference=PVL_REFERENCE,
        sensitivity=sens, warnings=tuple(warnings))


def _flatten_on_calcium(frame: np.ndarray, calcium: list[np.ndarray], c: np.ndarray
                        ) -> tuple[np.ndarray, bool]:
    """Clip the unloaded frame at the innermost point of each calcium contour inside it."""
    clipped = False
    for cal in calcium:
        p = _closest_point(cal, c)
        rho = float(np.linalg.norm(p - c))
        if rho <= 1e-9:
            raise DeviceError("a calcium contour passes through the frame centre")
        u = (p - c) / rho
        r_f, _ = _ray_hits(frame, c, np.array([math.atan2(u[1], u[0])]))
        if r_f[0] > rho:
            frame = _clip_half_plane(frame - c, u, rho) + c
            clipped = True
    return frame, clipped


# --------------------------------------------------------------------------------------------
# conduction disturbance
# --------------------------------------------------------------------------------------------


def _unit3(name: str, v: Any) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=float).reshape(3)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a 3-vector, got {v!r}") from None
    n = float(np.linalg.norm(a))
    if not np.isfinite(n) or n < 1e-12:
        raise InputError(f"{name} must be a finite non-zero 3-vector, got {v!r}")
    return a / n


def _point3(name: str, v: Any) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=float).reshape(3)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a 3-D point in mm, got {v!r}") from None
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} must be finite, got {v!r}")
    return a


#: Default septum direction when none is given: the patient's right (LPS −x) projected on the
#: annulus plane (the membranous septum lies below the right/non-coronary commissure, which faces
#: the right heart). A modelling assumption; the lead derives the direction from the right heart.
DEFAULT_SEPTUM_DIRECTION_LPS = (-1.0, 0.0, 0.0)


def _region_figures(z: np.ndarray, ang: np.ndarray, p: np.ndarray, a: np.ndarray, *,
                    half_width_deg: float, band: tuple[float, float], shift_mm: float,
                    thr: float) -> tuple[float, float, float, float, float, int]:
    """CPI %, MCP, mean contact pressure, force, region/contact area for a depth shift."""
    top, bottom = band
    # moving the device deeper by `shift_mm` is read as moving the region up by the same amount
    zz = z - shift_mm
    sel = (np.abs(ang) <= math.radians(half_width_deg)) & (zz <= -top) & (zz >= -bottom)
    region = float(a[sel].sum())
    if region <= 0.0:
        return math.nan, math.nan, math.nan, 0.0, 0.0, 0
    touch = sel & (p > thr)
    contact = float(a[touch].sum())
    mcp = float(p[sel].max())
    mean = float((p[touch] * a[touch]).sum() / contact) if contact > 0 else 0.0
    force = float((p[sel] * a[sel]).sum()) * 1e-3          # kPa·mm² = 1e-3 N
    return 100.0 * contact / region, mcp, mean, force, region, int(sel.sum())


def conduction_risk(
    points_mm: Any,
    pressure_kpa: Any,
    area_mm2: Any,
    *,
    annulus_centre_mm: Any,
    annulus_normal: Any,
    depth_mm: float,
    septum_direction: Any = None,
    sector_half_width_deg: float = 30.0,
    band_below_annulus_mm: tuple[float, float] = (0.0, 10.0),
    contact_threshold_kpa: float = 0.0,
    cpi_threshold_percent: float = 15.0,
    mcp_threshold_kpa: float = 400.0,
    depth_shifts_mm: Sequence[float] = (-4.0, -2.0, 0.0, 2.0, 4.0),
    sector_delta_deg: float = 15.0,
    band_delta_mm: float = 2.0,
) -> ConductionRisk:
    """Contact pressure over the membranous-septum region of the LVOT and a conduction-risk flag.

    The region is the part of the wall below the annulus plane within an angular sector about the
    septum direction (``|angle| ≤ sector_half_width_deg``, measured in the annulus plane about the
    annulus centre) and a depth band (``band_below_annulus_mm = (top, bottom)``, mm below the
    annulus plane). Over it: contact pressure index CPI = 100 · (area of facets with pressure >
    ``contact_threshold_kpa``) / (region area), the maximum contact pressure MCP, the mean contact
    pressure over the touching area, and the contact force Σ p·A. Risk: CPI ≥ ``cpi_threshold_percent``
    or MCP ≥ ``mcp_threshold_kpa``.

    The depth trend recomputes CPI and MCP as if the device sat deeper or shallower by each of
    ``depth_shifts_mm``, assuming the contact pattern moves rigidly with the frame along the axis
    (the region is read that much higher or lower on the same contact field); the slope is a
    least-squares fit of CPI against depth. Facets outside the wall mesh read as no region.

    Parameters
    ----------
    points_mm : array_like, (N, 3)
        Facet centres of the wall's inner surface, mm (``FrameContactSolution`` contact points).
    pressure_kpa : array_like, (N,)
        Contact pressure per facet, kPa, ≥ 0.
    area_mm2 : array_like, (N,)
        Facet areas, mm², > 0.
    annulus_centre_mm : array_like, (3,)
        Annulus centre, mm.
    annulus_normal : array_like, (3,)
        Annulus normal pointing from the LV to the aorta (the device axis direction).
    depth_mm : float
        Implantation depth of the frame's inflow below the annulus, mm (reported, and the origin of
        the depth trend).
    septum_direction : array_like, (3,), optional
        Direction from the annulus centre towards the membranous septum (projected onto the annulus
        plane). Default: :data:`DEFAULT_SEPTUM_DIRECTION_LPS` (patient right), with a warning.
    sector_half_width_deg : float
        Half-width of the angular sector, degrees, (0, 180]; default 30 (modelling assumption).
    band_below_annulus_mm : (float, float)
        Top and bottom of the depth band below the annulus plane, mm; default (0, 10) (modelling
        assumption: the membranous septum and the His bundle at its lower edge lie within about
        10 mm below the annulus).
    contact_threshold_kpa : float
        Pressure above which a facet counts as in contact, kPa.
    cpi_threshold_percent, mcp_threshold_kpa : float
        Risk thresholds; defaults 15 % and 400 kPa are modelling assumptions, not published
        cut-offs.
    depth_shifts_mm : sequence of float
        Depth changes for the trend, mm (positive = deeper).
    sector_delta_deg, band_delta_mm : float
        How far the sector half-width and the band's bottom are moved (±) for the sensitivity.

    Returns
    -------
    ConductionRisk

    Raises
    ------
    InputError
        Shapes that do not match, negative or non-finite pressures, non-positive areas, a septum
        direction along the normal, a region that contains no facet, bad options.
    """
    pts = np.asarray(points_mm, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise InputError(f"points_mm must be a non-empty (N, 3) array in mm, got shape {pts.shape}")
    p = np.asarray(pressure_kpa, dtype=float).reshape(-1)
    a = np.asarray(area_mm2, dtype=float).reshape(-1)
    if len(p) != len(pts) or len(a) != len(pts):
        raise InputError(f"pressure_kpa ({len(p)}) and area_mm2 ({len(a)}) must have one value per "
                         f"point ({len(pts)})")
    if not np.all(np.isfinite(pts)):
        raise InputError("points_mm contains non-finite coordinates")
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0))
    if len(bad):
        raise InputError(f"pressure_kpa[{bad[0]}] = {p[bad[0]]!r}: contact pressure must be finite "
                         f"and >= 0 kPa ({len(bad)} bad value(s); a negative value is tension, "
                         "not contact)")
    if np.any(p > 1e5):
        k = int(np.argmax(p))
        raise InputError(f"pressure_kpa[{k}] = {p[k]:g} kPa is not physical for a vessel wall "
                         "(> 100 MPa): check the units (kPa expected)")
    bad = np.flatnonzero(~np.isfinite(a) | (a <= 0))
    if len(bad):
        raise InputError(f"area_mm2[{bad[0]}] = {a[bad[0]]!r}: facet areas must be finite and > 0")
    c = _point3("annulus_centre_mm", annulus_centre_mm)
    n = _unit3("annulus_normal", annulus_normal)
    depth = _finite("depth_mm", depth_mm, lo=-30.0, hi=30.0)
    hw = _finite("sector_half_width_deg", sector_half_width_deg, lo=0.0, hi=180.0, lo_open=True)
    top, bottom = (_finite("band_below_annulus_mm", v, lo=-20.0, hi=60.0)
                   for v in band_below_annulus_mm)
    if bottom <= top:
        raise InputError(f"band_below_annulus_mm = ({top:g}, {bottom:g}): the bottom must lie "
                         "deeper (larger) than the top")
    thr = _finite("contact_threshold_kpa", contact_threshold_kpa, lo=0.0)
    cpi_thr = _finite("cpi_threshold_percent", cpi_threshold_percent, lo=0.0, hi=100.0)
    mcp_thr = _finite("mcp_threshold_kpa", mcp_threshold_kpa, lo=0.0)
    s_deg = _finite("sector_delta_deg", sector_delta_deg, lo=0.0)
    b_mm = _finite("band_delta_mm", band_delta_mm, lo=0.0)
    shifts = sorted({_finite("depth_shifts_mm", s, lo=-30.0, hi=30.0) for s in depth_shifts_mm}
                    | {0.0})

    warnings: list[str] = []
    if septum_direction is None:
        source = "default: patient right (LPS -x) projected on the annulus plane"
        sd = np.asarray(DEFAULT_SEPTUM_DIRECTION_LPS, dtype=float)
        warnings.append("no septum direction given: the membranous septum is assumed towards the "
                        "patient's right; derive it from the right heart for a patient figure")
    else:
        source = "given"
        sd = _unit3("septum_direction", septum_direction)
    sd = sd - (sd @ n) * n
    if np.linalg.norm(sd) < 1e-6:
        raise InputError("septum_direction is along the annulus normal: it must have a component "
                         "in the annulus plane")
    e1 = sd / np.linalg.norm(sd)
    e2 = np.cross(n, e1)
    rel = pts - c
    z = rel @ n
    ang = np.arctan2(rel @ e2, rel @ e1)

    def figures(*, hw_: float = hw, band: tuple[float, float] = (top, bottom),
                shift: float = 0.0) -> tuple[float, float, float, float, float, int]:
        return _region_figures(z, ang, p, a, half_width_deg=hw_, band=band, shift_mm=shift,
                               thr=thr)

    cpi, mcp, mean, force, region, nsel = figures()
    if nsel == 0:
        raise InputError(
            f"no wall facet lies in the septal region ({hw:g} deg either side of the septum "
            f"direction, {top:g}-{bottom:g} mm below the annulus): the contact field does not "
            "reach the LVOT below the annulus, or the centre/normal/septum direction are wrong")
    contact_area = cpi / 100.0 * region
    risk = bool(cpi >= cpi_thr or mcp >= mcp_thr)

    trend = []
    for s in shifts:
        c_s, m_s, *_ = figures(shift=s)
        trend.append(DepthPoint(depth_mm=depth + s, contact_pressure_index_percent=c_s,
                                max_contact_pressure_kpa=m_s))
    ok = [(t.depth_mm, t.contact_pressure_index_percent) for t in trend
          if math.isfinite(t.contact_pressure_index_percent)]
    if len(ok) >= 2:
        dd, cc = np.array(ok).T
        slope = float(np.polyfit(dd, cc, 1)[0])
    else:
        slope = math.nan
    if len(ok) < len(trend):
        warnings.append("the wall mesh does not cover the septal region at every trend depth; "
                        "those depths are NaN")

    hw_lo, hw_hi = max(hw - s_deg, 1e-3), min(hw + s_deg, 180.0)
    bot_lo, bot_hi = max(bottom - b_mm, top + 1e-3), bottom + b_mm
    sens = (
        Sensitivity("sector_half_width_deg", hw, hw_lo, hw_hi, "contact_pressure_index_percent",
                    cpi, figures(hw_=hw_lo)[0], figures(hw_=hw_hi)[0]),
        Sensitivity("band_bottom_below_annulus_mm", bottom, bot_lo, bot_hi,
                    "contact_pressure_index_percent", cpi, figures(band=(top, bot_lo))[0],
                    figures(band=(top, bot_hi))[0]),
    )
    method = (
        f"region = wall facets {top:g}-{bottom:g} mm below the annulus plane within {hw:g} deg of "
        f"the septum direction ({nsel} facets, {region:.1f} mm2); CPI = % of the region area with "
        f"contact pressure > {thr:g} kPa; MCP = max pressure in the region; risk if CPI >= "
        f"{cpi_thr:g} % or MCP >= {mcp_thr:g} kPa; depth trend by moving the region along the axis "
        "(contact pattern assumed to move rigidly with the frame)")
    return ConductionRisk(
        contact_pressure_index_percent=cpi, max_contact_pressure_kpa=mcp,
        mean_contact_pressure_kpa=mean, contact_force_n=force, region_area_mm2=region,
        contact_area_mm2=contact_area, n_region_facets=nsel, depth_mm=depth,
        sector_half_width_deg=hw, band_below_annulus_mm=(top, bottom),
        septum_direction=tuple(float(x) for x in e1), septum_direction_source=source, risk=risk,
        cpi_threshold_percent=cpi_thr, mcp_threshold_kpa=mcp_thr,
        threshold_source="modelling assumption (not a published cut-off)",
        depth_trend=tuple(trend), cpi_slope_percent_per_mm=slope, method=method,
        reference=CONDUCTION_REFERENCE, sensitivity=sens, warnings=tuple(warnings))


# --------------------------------------------------------------------------------------------
# coronary obstruction
# --------------------------------------------------------------------------------------------


def _vtc(height: float, radial: float, radius: float, z_range: tuple[float, float],
         thickness: float) -> float:
    """Distance from an ostium (height, radial) to the frame cylinder (+ leaflet) at its height."""
    z_lo, z_hi = z_range
    if height > z_hi:        # above the frame: distance to its top rim
        return float(math.hypot(radial - radius - thickness, height - z_hi))
    if height < z_lo:
        return float(math.hypot(radial - radius - thickness, z_lo - height))
    return float(radial - radius - thickness)


def coronary_obstruction(
    *,
    frame_radius_mm: float,
    frame_height_mm: float,
    depth_mm: float,
    leaflet_length_mm: float,
    ostia_mm: Mapping[str, Any] | None = None,
    ostium_heights_mm: Mapping[str, float] | None = None,
    axis_origin_mm: Any = (0.0, 0.0, 0.0),
    axis: Any = (0.0, 0.0, 1.0),
    sinus_diameter_mm: float | None = None,
    leaflet_thickness_mm: float = 0.0,
    vtc_threshold_mm: float = 4.0,
    height_threshold_mm: float = 12.0,
    sinus_threshold_mm: float = 30.0,
    radius_uncertainty_mm: float = 0.5,
    leaflet_length_uncertainty_mm: float = 1.0,
) -> CoronaryObstruction:
    """Coronary-obstruction risk from the virtual valve-to-coronary distance (VTC) per ostium.

    The native cusp is assumed displaced upwards and pressed against the frame, so it forms a
    cylinder of the frame radius (+ ``leaflet_thickness_mm``) up to the cusp height
    (``leaflet_length_mm`` above the annulus). VTC is the horizontal distance from the ostium to
    that cylinder at the ostium's height (to the frame's top rim when the ostium lies above the
    frame). Risk per ostium (Khan et al. 2023): the cusp reaches the ostium (cusp height ≥
    coronary height) and VTC ≤ ``vtc_threshold_mm``. The simple screening rule: coronary height <
    ``height_threshold_mm`` and sinus diameter < ``sinus_threshold_mm``.

    Parameters
    ----------
    frame_radius_mm : float
        Outer radius of the expanded frame at the ostium level, mm.
    frame_height_mm : float
        Frame height, mm.
    depth_mm : float
        Depth of the frame's inflow below the annulus plane, mm; the frame spans
        ``[-depth_mm, frame_height_mm - depth_mm]`` along the axis.
    leaflet_length_mm : float
        Native cusp height (hinge to free edge), mm (from the sinus geometry).
    ostia_mm : mapping name → (3,), optional
        Ostium positions, mm; heights and radial distances are taken about ``axis_origin_mm`` /
        ``axis``.
    ostium_heights_mm : mapping name → float, optional
        Ostium heights above the annulus when positions are not known; the ostium is then placed
        on the sinus wall (radial distance = ``sinus_diameter_mm`` / 2), which needs
        ``sinus_diameter_mm``.
    axis_origin_mm, axis : array_like (3,)
        Annulus centre and device axis (LV → aorta).
    sinus_diameter_mm : float, optional
        Sinus of Valsalva diameter, mm (the simple rule needs it).
    leaflet_thickness_mm : float
        Thickness of the displaced (calcified) leaflet added to the frame radius, mm.
    vtc_threshold_mm, height_threshold_mm, sinus_threshold_mm : float
        Risk cut-offs, mm (defaults 4, 12, 30).
    radius_uncertainty_mm, leaflet_length_uncertainty_mm : float
        ± moves for the sensitivity (frame radius → VTC; cusp height → number of ostia at risk).

    Returns
    -------
    CoronaryObstruction

    Raises
    ------
    InputError
        No ostia, both or neither of ``ostia_mm`` / ``ostium_heights_mm`` usable, heights without
        a sinus diameter, non-physical sizes.
    """
    radius = _finite("frame_radius_mm", frame_radius_mm, lo=2.0, hi=40.0)
    height = _finite("frame_height_mm", frame_height_mm, lo=1.0, hi=80.0)
    depth = _finite("depth_mm", depth_mm, lo=-30.0, hi=30.0)
    cusp = _finite("leaflet_length_mm", leaflet_length_mm, lo=0.0, hi=40.0)
    thick = _finite("leaflet_thickness_mm", leaflet_thickness_mm, lo=0.0, hi=10.0)
    vtc_thr = _finite("vtc_threshold_mm", vtc_threshold_mm, lo=0.0)
    h_thr = _finite("height_threshold_mm", height_threshold_mm, lo=0.0)
    s_thr = _finite("sinus_threshold_mm", sinus_threshold_mm, lo=0.0)
    dr = _finite("radius_uncertainty_mm", radius_uncertainty_mm, lo=0.0)
    dl = _finite("leaflet_length_uncertainty_mm", leaflet_length_uncertainty_mm, lo=0.0)
    sinus = (None if sinus_diameter_mm is None
             else _finite("sinus_diameter_mm", sinus_diameter_mm, lo=5.0, hi=80.0))
    o = _point3("axis_origin_mm", axis_origin_mm)
    ax = _unit3("axis", axis)
    z_range = (-depth, height - depth)

    geom: dict[str, tuple[float, float]] = {}
    if ostia_mm:
        for name, pt in ostia_mm.items():
            v = _point3(f"ostia_mm[{name!r}]", pt) - o
            h = float(v @ ax)
            geom[str(name)] = (h, float(np.linalg.norm(v - h * ax)))
    elif ostium_heights_mm:
        if sinus is None:
            raise InputError("ostium_heights_mm without ostium positions needs sinus_diameter_mm "
                             "(the ostium is placed on the sinus wall)")
        for name, h in ostium_heights_mm.items():
            geom[str(name)] = (_finite(f"ostium_heights_mm[{name!r}]", h, lo=-10.0, hi=60.0),
                               sinus / 2.0)
    else:
        raise InputError("give the coronary ostia: ostia_mm (3-D positions) or ostium_heights_mm "
                         "(with sinus_diameter_mm)")

    warnings: list[str] = []
    for name, (h, rad) in geom.items():
        if rad <= radius:
            warnings.append(f"ostium {name!r} lies {radius - rad:.1f} mm inside the frame radius: "
                            "the frame covers it (check the axis and positions)")
        if h <= 0.0:
            warnings.append(f"ostium {name!r} lies {-h:.1f} mm below the annulus plane "
                            "(check the axis direction, LV -> aorta)")

    def assess(r: float, cusp_h: float) -> list[OstiumRisk]:
        out = []
        for name, (h, rad) in geom.items():
            vtc = _vtc(h, rad, r, z_range, thick)
            reaches = cusp_h >= h
            simple = None if sinus is None else bool(h < h_thr and sinus < s_thr)
            out.append(OstiumRisk(name=name, height_mm=h, radial_distance_mm=rad,
                                  valve_to_coronary_distance_mm=vtc, cusp_reaches_ostium=reaches,
                                  risk=bool(reaches and vtc <= vtc_thr), simple_rule_risk=simple))
        return out

    ostia = assess(radius, cusp)
    vtc_min = min(x.valve_to_coronary_distance_mm for x in ostia)
    simple_any = None if sinus is None else any(bool(x.simple_rule_risk) for x in ostia)

    def n_risk(r: float, c_: float) -> float:
        return float(sum(x.risk for x in assess(r, c_)))

    def vtc_at(r: float) -> float:
        return min(x.valve_to_coronary_distance_mm for x in assess(r, cusp))

    sens = (
        Sensitivity("frame_radius_mm", radius, radius - dr, radius + dr,
                    "valve_to_coronary_distance_mm", vtc_min, vtc_at(radius - dr),
                    vtc_at(radius + dr)),
        Sensitivity("leaflet_length_mm", cusp, max(cusp - dl, 0.0), cusp + dl, "ostia_at_risk",
                    n_risk(radius, cusp), n_risk(radius, max(cusp - dl, 0.0)),
                    n_risk(radius, cusp + dl)),
    )
    method = (
        f"displaced cusp = cylinder of radius {radius:g}+{thick:g} mm up to the cusp height "
        f"{cusp:g} mm; VTC = horizontal distance ostium -> cylinder at ostium height (to the frame "
        f"top rim above z = {z_range[1]:g} mm); risk if cusp height >= coronary height and VTC <= "
        f"{vtc_thr:g} mm; simple rule height < {h_thr:g} mm and sinus < {s_thr:g} mm")
    return CoronaryObstruction(
        ostia=tuple(ostia), valve_to_coronary_distance_mm=vtc_min,
        risk=any(x.risk for x in ostia), simple_rule_risk=simple_any, vtc_threshold_mm=vtc_thr,
        height_threshold_mm=h_thr, sinus_threshold_mm=s_thr, frame_radius_mm=radius,
        frame_z_range_mm=z_range, leaflet_length_mm=cusp, method=method,
        reference=CORONARY_REFERENCE, sensitivity=sens, warnings=tuple(warnings))

"""Classical, explainable segmentation of the left heart and aorta in contrast-enhanced CT.

No learned weights: every step is a threshold, a connected-component rule or a morphological /
distance-transform operation whose effect can be inspected in :attr:`Segmentation.report`.

Method (:func:`segment_heart`)
------------------------------
1. **Blood-pool intensity from the anatomy.** The descending aorta is found first
   (:func:`find_descending_aorta`): the longest bright, round, continuous tube over the axial
   slices (it runs the whole chest and abdomen; vertebral bodies are cut by the discs, the
   heart chambers and the arch are not round vertical tubes) **among the sections placed as the
   descending aorta is relative to the spine**: 20–70 mm from the centre of the vertebral
   column (found as the large bright compact section present in the most slices), not more
   than 20 mm to its right nor 15 mm behind it. The sternum (a vertical bone bar without
   discs, brighter than the blood) and the superior vena cava (often the brightest tube of an
   arterial-phase scan, the contrast being injected through an arm vein) lie anterior, far
   from the spine, and are not taken. A lumen split by a dissection flap is followed with
   relaxed links when no regular chain is long enough, and its brighter (true) lumen gives the
   blood value, its fainter (false) lumen the threshold. Without a spine the tube is searched
   anywhere, as before. Sources and numbers: docs/segmentation.md, "Finding the descending
   aorta". The blood peak is the histogram peak at its intensity
   (:func:`estimate_intensities`) — not the largest peak in a fixed window, which on a chest
   CT reaching into the abdomen is the liver or muscle. Without an
   aorta the dominant histogram peak in ``settings.blood_search_range_hu`` (default
   150–800 HU) is used and the result says so. Its width (σ) is
   taken from the half width at half maximum on the less contaminated flank. The soft-tissue
   reference is the histogram mode between ``settings.tissue_search_range_hu``. The blood
   threshold is their midpoint (the 50 % level of a blurred blood/tissue step, i.e. where the
   true edge lies); at typical CTA contrast the noise is > 5σ away from it.
2. **Calcium** (Agatston-style, adapted to contrast CT): detection threshold
   ``max(130 HU, blood peak + k·σ)``; components larger than ``max_calcium_component_ml`` (bone)
   or not surrounded by blood-like voxels (ribs, spine) are rejected. Each kept nodule is then
   delineated at its own half maximum ``(nodule peak + blood peak)/2`` (full width at half
   maximum), which removes the partial-volume halo that a fixed threshold would add.
3. **Blood pool** = voxels between the blood threshold and the calcium threshold, opened by a
   1-voxel ball (cuts thin partial-volume bridges, e.g. to bone rims), the 6-connected
   component holding the descending aorta (the largest one when no aorta was found), then
   reconstructed within the un-opened mask (conditional dilation).
   Rejects bone, bowel contrast and other enhancing structures not connected to the aorta.
   When that component holds no chamber wider than the aorta (largest inscribed sphere
   < 1.25 × the aorta's radius) the heart is not in the field of view and the series is
   refused with a :class:`~cardiotwin.errors.SegmentationError` saying so.
4. **Left ventricle vs aorta**: marker-based watershed of the negated Euclidean distance
   transform (markers: local maxima of the distance map = centres of inscribed spheres), then
   hierarchical merging of basins whose shared "saddle" (largest inscribed radius across their
   boundary) is at least ``neck_ratio`` times the smaller basin's largest inscribed radius
   (i.e. no real constriction between them). The narrow stenotic valve orifice is the neck that
   survives. LV = merged region holding the largest inscribed sphere; every other region is
   labelled ``aorta`` (the aortic root, ascending aorta, arch, descending aorta **and the arch
   branches**: branches are merged into ``aorta``; the label ``branches`` is not produced).
5. **Valve-plane correction**: the blood enclosed by the leaflets between the annulus and the
   orifice belongs to the aortic root anatomically (the LV ends at the annulus). The LV/aorta
   interface found in step 4 lies at the orifice. Walking down the LV→aorta axis in 1 mm slabs
   from the interface, the levels where aortic (sinus) blood is still present beside the LV
   blood are above the leaflet hinges; LV voxels at those levels (within 25 mm of the axis) are
   moved to ``aorta``.
   See ``settings.move_valve_funnel_to_aorta``.

6. **Structures around the left heart** (``settings.heart_structures``, on by default;
   :mod:`cardiotwin.imaging.heart_structures`): LV myocardium (the tissue shell around the
   cavity, ≤ ``myocardium_max_thickness_mm``), left atrium, right heart (RA, RV, pulmonary
   trunk and arteries; reported ``"not enhanced"`` when no pool is bright enough) and superior
   vena cava, seeded by position relative to the annulus and the LV. A pool that touches the
   aorta and merged into its blood pool is split off at the neck between them (the aorta
   loses those voxels); without one the aorta is unchanged.

Valve leaflets are not labelled.

Limitations: expects a left-sided contrast phase (LV + aorta opacified). A pool that touches the
LV (not only the aorta) stays in the basin that holds it; the position priors of step 6 assume
levocardia and the usual arrangement of the great vessels.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cardiotwin.errors import InputError, SegmentationError
from cardiotwin.imaging.heart_structures import segment_heart_structures
from cardiotwin.imaging.volume import LABELS, NEIGHBOUR_LABELS, LabelMap, Volume

logger = logging.getLogger(__name__)

__all__ = [
    "SegmentationSettings",
    "Segmentation",
    "segment_heart",
    "estimate_intensities",
    "BloodPoolIntensities",
    "AortaTrack",
    "find_descending_aorta",
    "descending_aorta_mask",
]


@dataclass(frozen=True)
class SegmentationSettings:
    """Options of :func:`segment_heart` (all automatic by default).

    Attributes
    ----------
    blood_threshold_hu : float or None
        Fixed blood-pool threshold (HU); None = midpoint between tissue and blood histogram peaks.
    calcium_threshold_hu : float or None
        Fixed calcium detection threshold (HU); None = ``max(min_calcium_hu, peak + calcium_k_sigma·σ)``.
    blood_search_range_hu : (float, float)
        HU range searched for the contrast blood peak.
    tissue_search_range_hu : (float, float)
        HU range searched for the soft-tissue (myocardium) reference peak.
    min_blood_volume_ml : float
        Minimum volume of the blood pool component; less means "no contrast blood pool".
    calcium_k_sigma : float
        Calcium detection threshold in blood-pool standard deviations above the blood peak.
    min_calcium_hu : float
        Lower bound of the calcium threshold (130 HU, Agatston 1990).
    min_calcium_volume_mm3 : float
        Calcium components smaller than this are treated as noise.
    max_calcium_component_ml : float
        Larger bright components are bone (vertebra, sternum), not valve/vascular calcium.
    min_calcium_blood_contact : float
        Minimum fraction of a calcium component's 1-voxel shell that must be blood-like (≥ blood
        threshold) — vascular/valve calcium sits in or on the lumen.
    neck_ratio : float
        Two basins are merged unless the inscribed radius at their shared boundary is below
        ``neck_ratio`` × the smaller basin's largest inscribed radius.
    marker_min_distance_mm : float
        Minimum distance between watershed markers (local maxima of the distance map).
    opening_radius_vox : int
        Radius of the opening that cuts thin bridges before component selection (0 disables).
    move_valve_funnel_to_aorta : bool
        Step 5 of the method (see module docstring).
    find_aorta_first : bool
        Find the descending aorta first and take the blood-pool model from it (step 1); its
        connected component is then the blood pool (step 3) and the heart must be in view.
    heart_structures : bool
        Step 6: also label the LV myocardium, left atrium, right heart and superior vena cava
        and take the pools that touch the aorta out of it
        (:func:`cardiotwin.imaging.heart_structures.segment_heart_structures`).
    myocardium_max_thickness_mm : float
        Upper bound of the LV wall thickness in step 6 (normal 6–12 mm; ≥ 15 mm hypertrophy).
    """

    blood_threshold_hu: float | None = None
    calcium_threshold_hu: float | None = None
    blood_search_range_hu: tuple[float, float] = (150.0, 800.0)
    tissue_search_range_hu: tuple[float, float] = (-30.0, 200.0)
    min_blood_volume_ml: float = 20.0
    calcium_k_sigma: float = 5.0
    min_calcium_hu: float = 130.0
    min_calcium_volume_mm3: float = 1.0
    max_calcium_component_ml: float = 3.0
    min_calcium_blood_contact: float = 0.2
    neck_ratio: float = 0.6
    marker_min_distance_mm: float = 4.0
    opening_radius_vox: int = 1
    move_valve_funnel_to_aorta: bool = True
    find_aorta_first: bool = True
    heart_structures: bool = True
    myocardium_max_thickness_mm: float = 15.0

    def __post_init__(self) -> None:
        lo, hi = self.blood_search_range_hu
        if not lo < hi:
            raise InputError(f"blood_search_range_hu must be (low, high); got {self.blood_search_range_hu}")
        if not 0.0 < self.neck_ratio < 1.0:
            raise InputError(f"neck_ratio must be in (0, 1); got {self.neck_ratio}")
        if self.min_blood_volume_ml <= 0:
            raise InputError(f"min_blood_volume_ml must be > 0; got {self.min_blood_volume_ml}")
        if not 4.0 <= self.myocardium_max_thickness_mm <= 40.0:
            raise InputError("myocardium_max_thickness_mm must be in [4, 40] mm; got "
                             f"{self.myocardium_max_thickness_mm}")


@dataclass(frozen=True, eq=False)
class AortaTrack:
    """The descending aorta found as a bright round tube followed over axial slices.

    Attributes
    ----------
    centres_mm : (N, 3) array
        LPS centre of the lumen cross-section in each sampled slice, inferior to superior.
    radii_mm : (N,) array
        Area-equivalent radius of the cross-section at each centre.
    median_hu : float
        Median CT value of the lumen cores (discs of 0.6 × radius) pooled over the track.
    sd_hu : float
        Robust standard deviation (1.4826 × median absolute deviation) of the same voxels.
    n_voxels : int
        Number of voxels pooled.
    length_mm : float
        Superior–inferior extent of the track.
    false_lumen_hu : float or None
        Median CT value of a fainter second lumen beside the tracked one (an aortic dissection's
        false lumen; the centres and ``median_hu`` are then the brighter, true lumen's), or None.
    """

    centres_mm: np.ndarray
    radii_mm: np.ndarray
    median_hu: float
    sd_hu: float
    n_voxels: int
    length_mm: float
    false_lumen_hu: float | None = None

    @property
    def radius_mm(self) -> float:
        """Median lumen radius along the track (mm)."""
        return float(np.median(self.radii_mm))


@dataclass(frozen=True)
class BloodPoolIntensities:
    """Blood-pool intensity model of a contrast CT (HU).

    Attributes
    ----------
    blood_peak_hu, blood_sigma_hu : float
        Blood-pool histogram peak and its width (σ from the half width at half maximum).
    tissue_peak_hu : float
        Soft-tissue (myocardium) reference peak.
    blood_threshold_hu, calcium_threshold_hu : float
        Thresholds derived from them (see :class:`SegmentationSettings`).
    method : str
        How the blood peak was found: ``"descending_aorta"`` (the histogram peak nearest the
        intensity of the tracked descending aorta, :func:`find_descending_aorta`) or
        ``"histogram"`` (the largest peak in ``blood_search_range_hu``, when no aorta was found).
    aorta : AortaTrack or None
        The descending aorta the model was taken from.
    notes : tuple of str
        Warnings (e.g. why the anatomy-based model was not used).
    """

    blood_peak_hu: float
    blood_sigma_hu: float
    tissue_peak_hu: float
    blood_threshold_hu: float
    calcium_threshold_hu: float
    method: str = "histogram"
    aorta: AortaTrack | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Result of :func:`segment_heart`.

    Attributes
    ----------
    labels : LabelMap
        ``lv_blood`` (LV cavity with LVOT up to the valve plane), ``aorta`` (root, ascending,
        arch, branches, descending), ``calcium`` and, from step 6 when found, ``myocardium``,
        ``la``, ``right_heart``, ``svc`` (values of :data:`LABELS` and
        :data:`~cardiotwin.imaging.volume.NEIGHBOUR_LABELS`); ``names`` lists those present.
    blood_threshold_hu : float
        Threshold used for the blood pool.
    calcium_threshold_hu : float
        Threshold used to detect calcium (nodules are then delineated at their half maximum).
    report : dict
        What was done: intensities, component sizes (mL), number of basins, timings (s).
    """

    labels: LabelMap
    blood_threshold_hu: float
    calcium_threshold_hu: float
    report: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# step 1: intensities


def _hwhm(hist: np.ndarray, centres: np.ndarray, ipk: int) -> tuple[float, float]:
    half = hist[ipk] / 2.0
    left = ipk
    while left > 0 and hist[left] > half:
        left -= 1
    right = ipk
    while right < len(hist) - 1 and hist[right] > half:
        right += 1
    return float(centres[ipk] - centres[left]), float(centres[right] - centres[ipk])


#: Thresholds tried when looking for round bright cross-sections (HU, geometric ×1.1).
_TRACK_LEVELS_HU = tuple(float(round(100.0 * 1.1**i)) for i in range(24))


def _round_sections(img: np.ndarray, dx: float, dy: float, r_range: tuple[float, float]
                    ) -> list[tuple[float, float, float, float]]:
    """Round bright cross-sections of one smoothed axial slice over a ladder of thresholds.

    At each level the mask ``img >= level`` is opened by a 2 mm disc (cuts partial-volume
    bridges); the centres of its largest inscribed discs (local maxima of the distance map)
    with a radius ``r`` in ``r_range`` are candidates when at least 60 % of the circle of
    radius ``1.3 r + 2 mm`` around them lies outside the mask — a round section, possibly
    touching a neighbour on one side, not a part of a large bright organ.

    Returns ``(row, col, radius_mm, level_hu)``.
    """
    out: list[tuple[float, float, float, float]] = []
    nj, ni = img.shape
    rj, ri = max(int(round(2.0 / dy)), 1), max(int(round(2.0 / dx)), 1)
    yy, xx = np.ogrid[-rj:rj + 1, -ri:ri + 1]
    disk = (yy * dy) ** 2 + (xx * dx) ** 2 <= 4.0 + 1e-6
    size = (2 * int(r_range[0] / dy) + 1, 2 * int(r_range[0] / dx) + 1)
    ang = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    ca, sa = np.cos(ang), np.sin(ang)
    top = float(img.max())
    for level in _TRACK_LEVELS_HU:
        if level > top:
            break
        m = ndi.binary_opening(img >= level, structure=disk)
        if not m.any():
            continue
        dt = ndi.distance_transform_edt(m, sampling=(dy, dx))
        peaks = (dt >= r_range[0]) & (dt <= r_range[1])
        if not peaks.any():
            continue
        peaks &= dt == ndi.maximum_filter(dt, size=size)
        for j, i in np.argwhere(peaks)[:50]:
            r = float(dt[j, i])
            rr = 1.3 * r + 2.0
            pj = np.rint(j + rr * sa / dy).astype(int)
            pi = np.rint(i + rr * ca / dx).astype(int)
            if pj.min() < 0 or pi.min() < 0 or pj.max() >= nj or pi.max() >= ni:
                continue
            if float(np.mean(~m[pj, pi])) >= 0.6:
                out.append((float(j), float(i), r, level))
    return out


#: CT level above which the vertebral bodies are looked for (HU): cancellous bone of adult
#: vertebrae is about 150–400 HU with a denser cortex; liver, muscle and unenhanced blood stay
#: below it (see docs/segmentation.md, "Finding the descending aorta").
_SPINE_LEVEL_HU = 150.0
#: Smallest cross-section of a vertebral body after a 6 mm opening (mm²); adult thoracic and
#: lumbar bodies are 800–1800 mm², a normal descending aorta (≤ 30 mm) at most about 700 mm².
_SPINE_MIN_AREA_MM2 = 600.0
#: Where the descending aorta may lie relative to the centre of the vertebral column in an axial
#: slice (mm): ``_AORTA_SPINE_MIN_MM``–``_AORTA_SPINE_MAX_MM`` from it, not more than
#: ``_AORTA_SPINE_RIGHT_MM`` to the patient's right of it and not more than
#: ``_AORTA_SPINE_POSTERIOR_MM`` posterior to it.
_AORTA_SPINE_MAX_MM = 70.0
_AORTA_SPINE_MIN_MM = 20.0
_AORTA_SPINE_RIGHT_MM = 20.0
_AORTA_SPINE_POSTERIOR_MM = 15.0


def _spine_sections(img: np.ndarray, pix_mm: float) -> list[tuple[np.ndarray, float, float]]:
    """Large bright compact sections of one smoothed axial slice (vertebral-body candidates).

    ``img >= _SPINE_LEVEL_HU`` opened by a 6 mm disc (removes ribs, small vessels and thin bone
    such as the laminae and the scapulae); components of at least ``_SPINE_MIN_AREA_MM2``.
    Returns ``(mask, row, col)`` per component, on the slice's own pixels of ``pix_mm``.
    """
    r = max(int(round(6.0 / pix_mm)), 1)
    yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
    disk = yy * yy + xx * xx <= r * r
    m = ndi.binary_opening(img >= _SPINE_LEVEL_HU, structure=disk)
    lab, n = ndi.label(m)
    if n == 0:
        return []
    area = np.bincount(lab.ravel(), minlength=n + 1) * pix_mm * pix_mm
    out = []
    for c in np.flatnonzero(area >= _SPINE_MIN_AREA_MM2):
        if c == 0:
            continue
        comp = lab == c
        j, i = np.argwhere(comp).mean(axis=0)
        out.append((comp, float(j), float(i)))
    return out


def _spine_centres(sections: list[list[tuple[np.ndarray, float, float]]], shape: tuple[int, int],
                   pix_mm: float) -> np.ndarray | None:
    """Centre of the vertebral column in each sampled slice (``(n, 2)`` rows/cols, or None).

    The column is the place covered by a large bright compact section in the most slices (the
    vertebral bodies run the whole scan, cut only by the discs; the heart, kidneys and other
    enhancing organs span part of it). In each slice the section holding (or nearest to, within
    30 mm) that place gives the centre; slices without one (discs) take the nearest slice's.
    None when fewer than 40 % of the slices hold such a section.
    """
    count = np.zeros(shape, dtype=np.float32)
    for secs in sections:
        for comp, _, _ in secs:
            count += comp
    if not count.any():
        return None
    count = ndi.gaussian_filter(count, 5.0 / pix_mm)
    j0, i0 = np.unravel_index(int(np.argmax(count)), shape)
    centres = np.full((len(sections), 2), np.nan)
    for s_i, secs in enumerate(sections):
        best, near = None, 30.0
        for comp, j, i in secs:
            d = 0.0 if comp[j0, i0] else math.hypot(j - j0, i - i0) * pix_mm
            if d <= near:
                best, near = (j, i), d
        if best is not None:
            centres[s_i] = best
    have = np.flatnonzero(~np.isnan(centres[:, 0]))
    if have.size < 0.4 * len(sections):
        return None
    for s_i in np.flatnonzero(np.isnan(centres[:, 0])):
        centres[s_i] = centres[have[np.argmin(np.abs(have - s_i))]]
    return centres


def find_descending_aorta(ct: Volume, *, step_mm: float = 4.0,
                          radius_range_mm: tuple[float, float] = (6.0, 20.0),
                          min_length_mm: float = 50.0) -> AortaTrack | None:
    """Find the descending aorta as the longest bright, round tube beside the spine.

    In each axial slice sampled every ``step_mm`` (smoothed with a 1 mm Gaussian), the
    round sections above a ladder of thresholds (100–900 HU, ×1.1 steps, on pixels of
    2 mm; see :func:`_round_sections`) with an inscribed radius in ``radius_range_mm`` are
    candidate lumen sections; the CT value of a candidate is
    the median of the unsmoothed voxels within 0.6 × its radius. Candidates in consecutive
    slices are linked when their centres are within 4 mm + 0.5 × the slice gap, their radii
    within max(3 mm, 25 %) and their values within max(25 HU, 12 %). The longest chain is the
    descending aorta: it runs the whole chest (and abdomen) while vertebral bodies are cut
    every 25–35 mm by the discs, and the arch, ascending aorta and heart chambers are not
    round and vertical over such a length.

    Only sections placed as the descending aorta is relative to the vertebral column are
    linked (:func:`_well_placed`; the sternum and the dense-contrast superior vena cava are
    anterior, far from the spine); when none of their chains is long enough, they are linked
    again with relaxed tolerances (a lumen split by a dissection flap) and a brighter lumen
    beside the tracked one is taken as the true lumen (:func:`_brighter_lumen`). Without a vertebral
    column every section is used, as before. See docs/segmentation.md, "Finding the descending
    aorta", for the priors and their sources.

    Parameters
    ----------
    ct : Volume
        CT in HU with axial slices (the third voxel axis along the patient's z).
    step_mm : float, keyword-only
        Sampling of the slices.
    radius_range_mm : (float, float), keyword-only
        Accepted inscribed radii of the lumen section (the adult descending aorta has a
        radius of 8–20 mm; the inscribed radius of a slightly oblique, noisy section is less).
    min_length_mm : float, keyword-only
        Minimum chain extent; capped at 60 % of the volume's z extent for short scans.

    Returns
    -------
    AortaTrack or None
        None when no chain is long enough.
    """
    a = np.asarray(ct.array)
    direction = np.asarray(ct.direction, dtype=float)
    if abs(abs(direction[2, 2]) - 1.0) > 0.1:
        return None  # not an axial series
    dx, dy, dz = (float(v) for v in ct.spacing_mm)
    nk = a.shape[0]
    step = max(1, int(round(step_mm / dz)))
    ks = list(range(0, nk, step))
    extent = nk * dz
    need = min(min_length_mm, 0.6 * extent)
    sig = (1.0 / dy, 1.0 / dx)
    # analyse the smoothed slices on pixels of 2 mm (the lumen radius is ≥ 6 mm)
    fj, fi = 2.0 / dy, 2.0 / dx
    cands: list[list[tuple[float, float, float, float, float]]] = []
    spine_secs: list[list[tuple[np.ndarray, float, float]]] = []
    for k in ks:
        sl = a[k].astype(np.float32)
        sm = ndi.zoom(ndi.gaussian_filter(sl, sig), (1.0 / fj, 1.0 / fi), order=1)
        spine_secs.append(_spine_sections(sm, 2.0))
        found = [(c[0] * fj, c[1] * fi, c[2], c[3])
                 for c in _round_sections(sm, 2.0, 2.0, radius_range_mm)]
        # one candidate per disc: group the levels of the same disc, keep the median radius
        found.sort(key=lambda c: (c[0], c[1]))
        groups: list[list[tuple[float, float, float, float]]] = []
        for c in found:
            for g in groups:
                if math.hypot((g[0][0] - c[0]) * dy, (g[0][1] - c[1]) * dx) < 0.5 * g[0][2]:
                    g.append(c)
                    break
            else:
                groups.append([c])
        slice_c = []
        for g in groups:
            if len(g) < 2:
                continue  # a disc seen at one level only is a noise or partial-volume fluke
            j0, i0 = float(np.mean([c[0] for c in g])), float(np.mean([c[1] for c in g]))
            r = float(np.median([c[2] for c in g]))
            rc = 0.6 * r
            jlo, jhi = int(max(j0 - rc / dy - 1, 0)), int(min(j0 + rc / dy + 2, sl.shape[0]))
            ilo, ihi = int(max(i0 - rc / dx - 1, 0)), int(min(i0 + rc / dx + 2, sl.shape[1]))
            jj, ii = np.mgrid[jlo:jhi, ilo:ihi]
            disc = ((jj - j0) * dy) ** 2 + ((ii - i0) * dx) ** 2 <= rc * rc
            vals = sl[jlo:jhi, ilo:ihi][disc]
            if vals.size < 5:
                continue
            slice_c.append((j0, i0, r, float(np.median(vals)), float(k)))
        cands.append(slice_c)
    cands, placed = _well_placed(cands, spine_secs, sm.shape, ct, fj, fi)
    # longest chain by dynamic programming over consecutive sampled slices
    gap = step * dz
    top, chain = _longest_chain(cands, gap, dy, dx)
    relaxed = False
    if top < need and placed:
        # a dissected, compressed or irregular lumen beside the spine: its sections are split
        # (an intimal flap), their inscribed radius and value jump between the two lumina, and
        # some slices show none; the placement already vouches for them
        top_r, chain_r = _longest_chain(cands, gap, dy, dx, skip=2, radius_tol=(4.0, 0.4),
                                        value_tol=(40.0, 0.2))
        if top_r >= need:
            logger.info("descending aorta: irregular lumen beside the spine followed with "
                        "relaxed links (%.0f mm; strict links %.0f mm)", top_r, max(top, 0.0))
            top, chain, relaxed = top_r, chain_r, True
    if top < need:
        logger.info("no descending aorta found (longest round bright tube %.0f mm < %.0f mm)",
                    max(top, 0.0), need)
        return None
    pooled = []
    for j0, i0, r, _, k in chain:
        rc = 0.6 * r
        kk = int(k)
        jlo, jhi = int(max(j0 - rc / dy - 1, 0)), int(min(j0 + rc / dy + 2, a.shape[1]))
        ilo, ihi = int(max(i0 - rc / dx - 1, 0)), int(min(i0 + rc / dx + 2, a.shape[2]))
        jj, ii = np.mgrid[jlo:jhi, ilo:ihi]
        disc = ((jj - j0) * dy) ** 2 + ((ii - i0) * dx) ** 2 <= rc * rc
        pooled.append(np.asarray(a[kk, jlo:jhi, ilo:ihi], dtype=np.float64)[disc])
    vals = np.concatenate(pooled)
    faint = None
    if relaxed:
        bright = _brighter_lumen(a, chain, dy, dx, float(np.median(vals)))
        if bright is not None:
            faint = float(np.median(vals))
            logger.info("descending aorta: two lumina; the brighter one (%.0f HU, the true lumen) "
                        "is used, not the tracked one (%.0f HU)", float(np.median(bright[0])),
                        float(np.median(vals)))
            vals, chain = bright
    med = float(np.median(vals))
    sd = float(1.4826 * np.median(np.abs(vals - med)))
    idx = np.array([[c[1], c[0], c[4]] for c in chain])
    centres = ct.index_to_physical(idx)
    order = np.argsort(centres[:, 2])
    track = AortaTrack(centres_mm=centres[order], radii_mm=np.array([c[2] for c in chain])[order],
                       median_hu=med, sd_hu=sd, n_voxels=int(vals.size), length_mm=float(top),
                       false_lumen_hu=faint)
    logger.info("descending aorta: %.0f mm long, radius %.1f mm, %.0f ± %.0f HU",
                track.length_mm, track.radius_mm, med, sd)
    return track


def _brighter_lumen(a: np.ndarray, chain: list[tuple[float, float, float, float, float]],
                    dy: float, dx: float, core_hu: float
                    ) -> tuple[np.ndarray, list[tuple[float, float, float, float, float]]] | None:
    """A brighter lumen beside the tracked one (a dissection's true lumen), or None.

    Around each section of the chain (disc of radius 1.3 r + 2 mm, the ring of the roundness
    test) the slice smoothed with a 1 mm Gaussian is compared with the tracked core: pixels
    brighter than the core's median by 2 of its smoothed standard deviations (at least 15 HU)
    mark a brighter lumen. Its extent is the region above the midpoint between the core and
    that lumen's median (smoothed). Used when such a lumen of at least 10 mm² is seen in half
    of the sections or more: in the arterial phase the true lumen opacifies first and is
    brighter than the usually larger false lumen (LePage MA et al., AJR 2001;177:207–211).

    Returns its CT values and the sections where it was seen, centred on it (the blood pool
    connected to the true lumen is the one that reaches the heart; the false lumen may be a
    closed channel at the blood threshold).
    """
    pooled, seen = [], 0
    moved: list[tuple[float, float, float, float, float]] = []
    for j0, i0, r, _, k in chain:
        ro = 1.3 * r + 2.0
        jlo, jhi = int(max(j0 - ro / dy - 3, 0)), int(min(j0 + ro / dy + 4, a.shape[1]))
        ilo, ihi = int(max(i0 - ro / dx - 3, 0)), int(min(i0 + ro / dx + 4, a.shape[2]))
        raw = np.asarray(a[int(k), jlo:jhi, ilo:ihi], dtype=np.float64)
        sm = ndi.gaussian_filter(raw, (1.0 / dy, 1.0 / dx))
        jj, ii = np.mgrid[jlo:jhi, ilo:ihi]
        rr = ((jj - j0) * dy) ** 2 + ((ii - i0) * dx) ** 2
        core = rr <= (0.6 * r) ** 2
        disc = rr <= ro * ro
        if core.sum() < 5:
            continue
        c_med = float(np.median(sm[core]))
        c_sd = float(1.4826 * np.median(np.abs(sm[core] - c_med)))
        hot = disc & (sm >= c_med + max(2.0 * c_sd, 15.0))
        if hot.sum() * dy * dx < 10.0:
            continue
        mid = 0.5 * (c_med + float(np.median(sm[hot])))
        lab, _ = ndi.label(disc & (sm >= mid))
        ids = np.unique(lab[hot])
        keep = np.isin(lab, ids[ids > 0])
        if keep.sum() * dy * dx < 10.0:
            continue
        seen += 1
        pooled.append(raw[keep])
        cj, ci = np.argwhere(keep).mean(axis=0)
        moved.append((float(cj + jlo), float(ci + ilo), r, float(np.median(raw[keep])), k))
    if seen < 0.5 * len(chain) or not pooled:
        return None
    vals = np.concatenate(pooled)
    return (vals, moved) if np.median(vals) > core_hu else None


def _well_placed(cands: list[list[tuple[float, float, float, float, float]]],
                 spine_secs: list[list[tuple[np.ndarray, float, float]]],
                 coarse_shape: tuple[int, int], ct: Volume, fj: float, fi: float
                 ) -> tuple[list[list[tuple[float, float, float, float, float]]], bool]:
    """Keep the tube sections placed as the descending aorta is, relative to the spine.

    The descending aorta runs beside the vertebral bodies: left-anterolateral in the chest,
    anterior (slightly left) in the abdomen; the sternum, the superior vena cava, the
    brachiocephalic veins, the pulmonary artery and the heart lie anterior to it, far from the
    spine. A section is kept when its centre is ``_AORTA_SPINE_MIN_MM``–``_AORTA_SPINE_MAX_MM``
    from the vertebral column's centre in its slice (the lower bound rejects the vertebral body
    itself, which can look like a bright round section between two discs), at most
    ``_AORTA_SPINE_RIGHT_MM`` to the patient's right and at most ``_AORTA_SPINE_POSTERIOR_MM``
    posterior to it (LPS directions from the volume's orientation). Without a vertebral column
    (:func:`_spine_centres`) or without any well-placed section every section is kept, as
    before (with a log message). Returns the sections per slice and whether the placement was
    applied.
    """
    spine = _spine_centres(spine_secs, coarse_shape, 2.0)
    if spine is None:
        logger.info("no vertebral column found: the descending aorta is the longest tube anywhere")
        return cands, False
    kept: list[list[tuple[float, float, float, float, float]]] = []
    for s_i, slice_c in enumerate(cands):
        if not slice_c:
            kept.append([])
            continue
        k = slice_c[0][4]
        sj, si = spine[s_i, 0] * fj, spine[s_i, 1] * fi
        pts = np.array([[c[1], c[0], k] for c in slice_c] + [[si, sj, k]], dtype=float)
        xyz = ct.index_to_physical(pts)
        d = xyz[:-1, :2] - xyz[-1, :2]  # LPS: +x patient's left, +y posterior
        dist = np.hypot(d[:, 0], d[:, 1])
        ok = ((dist >= _AORTA_SPINE_MIN_MM) & (dist <= _AORTA_SPINE_MAX_MM)
              & (d[:, 0] >= -_AORTA_SPINE_RIGHT_MM) & (d[:, 1] <= _AORTA_SPINE_POSTERIOR_MM))
        kept.append([c for c, good in zip(slice_c, ok, strict=True) if good])
    if not any(kept):
        logger.info("no tube section beside the vertebral column: the descending aorta is the "
                    "longest tube anywhere")
        return cands, False
    return kept, True


def _longest_chain(cands: list[list[tuple[float, float, float, float, float]]], gap: float,
                   dy: float, dx: float, *, skip: int = 1,
                   radius_tol: tuple[float, float] = (3.0, 0.25),
                   value_tol: tuple[float, float] = (25.0, 0.12)
                   ) -> tuple[float, list[tuple[float, float, float, float, float]]]:
    """Longest chain of linked sections (dynamic programming over the sampled slices).

    A section links to one up to ``skip`` sampled slices below it when their centres are within
    4 mm + 0.5 × the z distance, their radii within ``max(radius_tol[0], radius_tol[1] × r)``
    and their values within ``max(value_tol[0], value_tol[1] × value)``. Returns the chain's
    z extent (mm) and its sections, inferior to superior in slice order.
    """
    best_len: list[list[float]] = []
    prev_of: list[list[tuple[int, int]]] = []
    for s_i, slice_c in enumerate(cands):
        bl, pv = [], []
        for c in slice_c:
            length, back = 0.0, (-1, -1)
            for back_s in range(max(s_i - skip, 0), s_i):
                dz_mm = (s_i - back_s) * gap
                for m, q in enumerate(cands[back_s]):
                    dist = math.hypot((q[0] - c[0]) * dy, (q[1] - c[1]) * dx)
                    if (dist <= 4.0 + 0.5 * dz_mm
                            and abs(q[2] - c[2]) <= max(radius_tol[0], radius_tol[1] * c[2])
                            and abs(q[3] - c[3]) <= max(value_tol[0], value_tol[1] * c[3])
                            and best_len[back_s][m] + dz_mm > length):
                        length, back = best_len[back_s][m] + dz_mm, (back_s, m)
            bl.append(length)
            pv.append(back)
        best_len.append(bl)
        prev_of.append(pv)
    end, top = None, -1.0
    for s_i, bl in enumerate(best_len):
        for m, length in enumerate(bl):
            if length > top:
                end, top = (s_i, m), length
    if end is None:
        return -1.0, []
    chain = []
    s_i, m = end
    while m >= 0:
        chain.append(cands[s_i][m])
        s_i, m = prev_of[s_i][m]
    chain.reverse()
    return top, chain


def descending_aorta_mask(ct: Volume, inten: BloodPoolIntensities) -> np.ndarray:
    """Lumen of the tracked descending aorta (bool ``[k, j, i]`` mask).

    The voxels between the blood and calcium thresholds of ``inten`` inside a tube around the
    track (radius 1.6 × the track's radius + 3 mm, centres interpolated between the sampled
    slices and held over one sampling step beyond the ends); in each slice the component holding
    the centre after a 2 mm opening (which cuts the contact with a vertebra or the crus),
    grown back by 2 mm within the thresholds, with its enclosed holes filled (plaque, noise).

    Parameters
    ----------
    ct : Volume
        The CT the intensities were estimated on (axial slices).
    inten : BloodPoolIntensities
        With ``aorta`` set (``method == "descending_aorta"``).

    Returns
    -------
    numpy.ndarray of bool

    Raises
    ------
    SegmentationError
        If ``inten`` holds no descending aorta.
    """
    track = inten.aorta
    if track is None:
        raise SegmentationError(
            "no descending aorta was found in this series (no bright round tube over the "
            "slices); check it is a contrast CT covering the chest or abdomen")
    a = np.asarray(ct.array)
    nk, nj, ni = a.shape
    idx = ct.physical_to_index(track.centres_mm)  # (i, j, k)
    order = np.argsort(idx[:, 2])
    idx = idx[order]
    ks = np.arange(nk, dtype=float)
    reach = 4.0 / float(ct.spacing_mm[2]) + 1.0
    in_range = (ks >= idx[0, 2] - reach) & (ks <= idx[-1, 2] + reach)
    ci = np.interp(ks, idx[:, 2], idx[:, 0])
    cj = np.interp(ks, idx[:, 2], idx[:, 1])
    radius = 1.6 * float(np.max(track.radii_mm)) + 3.0
    dx, dy = float(ct.spacing_mm[0]), float(ct.spacing_mm[1])
    jj = np.arange(nj)[:, None]
    ii = np.arange(ni)[None, :]
    tube = np.zeros(a.shape, dtype=bool)
    for k in np.flatnonzero(in_range):
        tube[k] = ((jj - cj[k]) * dy) ** 2 + ((ii - ci[k]) * dx) ** 2 <= radius * radius
    cand = tube & (a >= inten.blood_threshold_hu) & (a < inten.calcium_threshold_hu)
    rj, ri = max(int(round(2.0 / dy)), 1), max(int(round(2.0 / dx)), 1)
    yy, xx = np.ogrid[-rj:rj + 1, -ri:ri + 1]
    disk = (yy * dy) ** 2 + (xx * dx) ** 2 <= 4.0 + 1e-6
    mask = np.zeros(a.shape, dtype=bool)
    for k in np.flatnonzero(in_range):
        opened = ndi.binary_opening(cand[k], structure=disk)
        lab, n = ndi.label(opened)
        if n == 0:
            continue
        j0, i0 = int(round(cj[k])), int(round(ci[k]))
        if not (0 <= j0 < nj and 0 <= i0 < ni):
            continue
        c = lab[j0, i0]
        if c == 0:  # the centre fell on noise: take the component nearest to it
            near = ndi.distance_transform_edt(lab == 0, return_distances=False,
                                              return_indices=True)
            c = lab[near[0][j0, i0], near[1][j0, i0]]
        comp = ndi.binary_dilation(lab == c, structure=disk) & cand[k]
        mask[k] = ndi.binary_fill_holes(comp)
    return mask


def estimate_intensities(ct: Volume, *, settings: SegmentationSettings = SegmentationSettings()
                         ) -> BloodPoolIntensities:
    """Blood-pool intensity model: the descending aorta's intensity, refined on the histogram.

    The descending aorta is found first (:func:`find_descending_aorta`); the blood peak is the
    histogram maximum within its median ± max(2 × robust SD, 20 HU) if that is a local
    maximum (else the aorta's median itself) — the contrast blood pool
    even when soft tissue, the liver or a bright neighbour has more voxels in the search range.
    Without a descending aorta the largest peak in ``settings.blood_search_range_hu`` is used
    and the result says so (``method``, ``notes``).

    Parameters
    ----------
    ct : Volume
        Contrast CT in HU.
    settings : SegmentationSettings, keyword-only

    Returns
    -------
    BloodPoolIntensities

    Raises
    ------
    SegmentationError
        If no contrast blood-pool peak of at least ``settings.min_blood_volume_ml`` exists.
    """
    a = np.asarray(ct.array)
    lo_b, hi_b = settings.blood_search_range_hu
    lo_t, hi_t = settings.tissue_search_range_hu
    bin_hu = 4.0
    lo = min(lo_t, lo_b) - 100.0
    hi = hi_b + 300.0
    edges = np.arange(lo, hi + bin_hu, bin_hu)
    # equal bins given by their number and range: numpy's fast path, same counts as the edges
    hist, _ = np.histogram(a, bins=len(edges) - 1, range=(float(edges[0]), float(edges[-1])))
    centres = 0.5 * (edges[:-1] + edges[1:])
    hs = ndi.gaussian_filter1d(hist.astype(float), 1.5)

    in_b = (centres >= lo_b) & (centres <= hi_b)
    vox_ml = ct.voxel_volume_mm3 * 1e-3
    n_in_range = float(hist[in_b].sum())
    if n_in_range * vox_ml < settings.min_blood_volume_ml:
        raise SegmentationError(
            f"no contrast blood pool: only {n_in_range * vox_ml:.1f} mL of voxels lie in "
            f"{lo_b:.0f}–{hi_b:.0f} HU (need ≥ {settings.min_blood_volume_ml:.0f} mL). Check that the "
            "series is a contrast-enhanced (arterial-phase) CT in Hounsfield units (rescale "
            "slope/intercept applied), or set SegmentationSettings.blood_search_range_hu "
            "(`--blood-search-range LOW HIGH`) or the threshold itself (`--blood-threshold`).")
    track = find_descending_aorta(ct) if settings.find_aorta_first else None
    method, notes = "histogram", []
    if track is not None:
        half = max(2.0 * track.sd_hu, 20.0)
        near = np.flatnonzero((centres >= track.median_hu - half)
                              & (centres <= track.median_hu + half))
        method = "descending_aorta"
        ib = int(np.argmin(np.abs(centres - track.median_hu)))
        if near.size >= 3:
            j = int(near[np.argmax(hs[near])])
            if near[0] < j < near[-1]:  # a true local maximum, not the flank of another peak
                ib = j
    else:
        notes.append("no descending aorta found (bright round tube over ≥ 50 mm of slices); "
                     "the blood peak is the largest histogram peak in "
                     f"{lo_b:.0f}–{hi_b:.0f} HU")
    if method == "histogram":
        ib = int(np.flatnonzero(in_b)[np.argmax(hs[in_b])])
    peak = float(centres[ib])
    hl, hr = _hwhm(hs, centres, ib)
    hw = min(x for x in (hl, hr) if x > 0) if max(hl, hr) > 0 else bin_hu
    sigma = max(hw / np.sqrt(2 * np.log(2)), bin_hu / 2)

    in_t = (centres >= lo_t) & (centres <= min(hi_t, peak - 3 * sigma))
    if not in_t.any():
        tissue = lo_t
    else:
        it = int(np.flatnonzero(in_t)[np.argmax(hs[in_t])])
        tissue = float(centres[it])
    if settings.blood_threshold_hu is not None:
        t_blood = float(settings.blood_threshold_hu)
    elif track is not None and track.false_lumen_hu is not None and track.false_lumen_hu < peak:
        # a dissection: the fainter false lumen is blood too; threshold at its own midpoint
        t_blood = 0.5 * (track.false_lumen_hu + tissue)
        notes.append(f"two aortic lumina (true {track.median_hu:.0f} HU, false "
                     f"{track.false_lumen_hu:.0f} HU): the blood threshold is the midpoint "
                     "between the soft tissue and the fainter lumen")
    else:
        t_blood = 0.5 * (peak + tissue)
    if settings.calcium_threshold_hu is not None:
        t_ca = float(settings.calcium_threshold_hu)
    else:
        t_ca = max(settings.min_calcium_hu, peak + settings.calcium_k_sigma * sigma)
    if t_ca <= t_blood:
        raise SegmentationError(
            f"calcium threshold {t_ca:.0f} HU is not above the blood threshold {t_blood:.0f} HU; "
            "set SegmentationSettings.calcium_threshold_hu / blood_threshold_hu consistently (`--calcium-threshold` / `--blood-threshold`).")
    return BloodPoolIntensities(peak, sigma, tissue, t_blood, t_ca, method=method, aorta=track,
                                notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# step 2: calcium


def _ball(radius_vox: int) -> np.ndarray:
    r = int(radius_vox)
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (x * x + y * y + z * z) <= r * r


def _detect_calcium(a: np.ndarray, inten: BloodPoolIntensities, settings: SegmentationSettings,
                    vox_mm3: float) -> tuple[np.ndarray, dict[str, Any]]:
    bright = a >= inten.calcium_threshold_hu
    lab, n = ndi.label(bright)
    out = np.zeros(a.shape, dtype=bool)
    info: dict[str, Any] = {"candidates": int(n), "kept": 0, "rejected_large": 0,
                            "rejected_small": 0, "rejected_no_blood_contact": 0}
    if n == 0:
        return out, info
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    max_vox = settings.max_calcium_component_ml * 1e3 / vox_mm3
    min_vox = settings.min_calcium_volume_mm3 / vox_mm3
    slices = ndi.find_objects(lab)
    for idx, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        if sizes[idx] > max_vox:
            info["rejected_large"] += 1
            continue
        if sizes[idx] < max(min_vox, 1):
            info["rejected_small"] += 1
            continue
        # pad the bounding box by 2 voxels
        sl2 = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, dim)) for s, dim in zip(sl, a.shape, strict=False))
        sub_a = a[sl2]
        comp = lab[sl2] == idx
        shell = ndi.binary_dilation(comp) & ~comp & ~(lab[sl2] > 0)
        contact = float(np.mean(sub_a[shell] >= inten.blood_threshold_hu)) if shell.any() else 0.0
        if contact < settings.min_calcium_blood_contact:
            info["rejected_no_blood_contact"] += 1
            continue
        # Full width at half maximum of this nodule above the surrounding blood.
        peak = float(sub_a[comp].max())
        t_local = max(0.5 * (peak + inten.blood_peak_hu), inten.blood_peak_hu + 3 * inten.blood_sigma_hu,
                      settings.min_calcium_hu)
        grown = ndi.binary_dilation(comp, iterations=2) & (sub_a >= t_local)
        grown &= ndi.binary_propagation(comp & (sub_a >= t_local), mask=grown) if (
            comp & (sub_a >= t_local)).any() else grown
        out[sl2] |= grown
        info["kept"] += 1
    info["volume_mm3"] = float(out.sum() * vox_mm3)
    return out, info


# --------------------------------------------------------------------------------------------
# step 3: blood pool


def _largest_component(mask: np.ndarray, *, labelled: tuple[np.ndarray, int] | None = None
                       ) -> tuple[np.ndarray, list[float]]:
    lab, n = ndi.label(mask) if labelled is None else labelled
    if n == 0:
        return np.zeros_like(mask), []
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    return lab == order[0], [float(s) for s in sizes[order[: min(5, n)]]]


def _aorta_component(opened: np.ndarray, ct: Volume, track: AortaTrack, largest: np.ndarray,
                     top_sizes: list[float], *, labelled: tuple[np.ndarray, int] | None = None
                     ) -> tuple[np.ndarray, list[float], str]:
    """The connected component of ``opened`` holding most of the descending aorta's centres.

    ``labelled``: ``scipy.ndimage.label(opened)`` when the caller has it already.
    """
    lab, n = ndi.label(opened) if labelled is None else labelled
    idx = np.rint(ct.physical_to_index(track.centres_mm)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(opened.shape[::-1])), axis=1)
    idx = idx[inside]
    hits = lab[idx[:, 2], idx[:, 1], idx[:, 0]]
    hits = hits[hits > 0]
    if hits.size == 0:
        logger.warning("the descending aorta's centres are not in any blood-pool component; "
                       "using the largest component")
        return largest, top_sizes, "largest (descending aorta not in the blood pool)"
    chosen = int(np.bincount(hits).argmax())
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    others = np.sort(np.delete(sizes, [0, chosen]))[::-1][:4]
    return lab == chosen, [float(sizes[chosen])] + [float(v) for v in others], \
        "connected to the descending aorta"


def _holds_descending_aorta(lv: np.ndarray, aorta: np.ndarray, ct: Volume, track: AortaTrack
                            ) -> bool:
    """True when more of the tracked descending aorta's centres fall in ``lv`` than in ``aorta``
    (the LV was taken as the region with the widest inscribed sphere: an ascending aortic
    aneurysm of 50 mm is as wide as the LV)."""
    idx = np.rint(ct.physical_to_index(track.centres_mm)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(lv.shape[::-1])), axis=1)
    idx = idx[inside]
    n_lv = int(lv[idx[:, 2], idx[:, 1], idx[:, 0]].sum())
    n_ao = int(aorta[idx[:, 2], idx[:, 1], idx[:, 0]].sum())
    return n_lv > n_ao


#: A heart chamber (LV cavity, aortic sinus) is at least this much wider than the descending
#: aorta: its largest inscribed sphere radius exceeds this factor × the aorta's radius.
_HEART_RADIUS_FACTOR = 1.25


def _check_heart_in_view(max_inscribed_mm: float, track: AortaTrack) -> None:
    need = _HEART_RADIUS_FACTOR * track.radius_mm
    if max_inscribed_mm < need:
        z0, z1 = track.centres_mm[0, 2], track.centres_mm[-1, 2]
        raise SegmentationError(
            "the heart is not in the field of view: the contrast blood pool connected to the "
            f"descending aorta (found from z = {z0:.0f} to {z1:.0f} mm, radius "
            f"{track.radius_mm:.1f} mm, {track.median_hu:.0f} HU) holds no chamber wider than the "
            f"aorta (largest inscribed radius {max_inscribed_mm:.1f} mm < {need:.1f} mm). Use a "
            "series that covers the heart (a chest CT angiogram from the aortic arch to below the "
            "LV apex), or give your own labels of the aorta and LV. If the heart is in view, its "
            "blood pool is not connected to the aorta at the thresholds used (a closed valve in "
            "a diastolic phase, or weak contrast): choose a systolic or arterial-phase series, "
            "or set SegmentationSettings.blood_threshold_hu (`--blood-threshold`).")


# --------------------------------------------------------------------------------------------
# step 4: LV / aorta split


def _basin_saddles(basins: np.ndarray, dist: np.ndarray) -> dict[tuple[int, int], float]:
    """For each adjacent basin pair (6-neighbourhood), max over the boundary of min(dist_u, dist_v)."""
    keys_all = []
    vals_all = []
    nb = int(basins.max()) + 1
    for ax in range(3):
        sl_a = [slice(None)] * 3
        sl_b = [slice(None)] * 3
        sl_a[ax] = slice(0, -1)
        sl_b[ax] = slice(1, None)
        la = basins[tuple(sl_a)]
        lb = basins[tuple(sl_b)]
        sel = (la != lb) & (la > 0) & (lb > 0)
        if not sel.any():
            continue
        u = la[sel].astype(np.int64)
        v = lb[sel].astype(np.int64)
        d = np.minimum(dist[tuple(sl_a)][sel], dist[tuple(sl_b)][sel])
        lo = np.minimum(u, v)
        hi = np.maximum(u, v)
        keys_all.append(lo * nb + hi)
        vals_all.append(d)
    if not keys_all:
        return {}
    keys = np.concatenate(keys_all)
    vals = np.concatenate(vals_all)
    order = np.lexsort((vals, keys))
    keys, vals = keys[order], vals[order]
    last = np.r_[keys[1:] != keys[:-1], True]
    return {(int(k // nb), int(k % nb)): float(v) for k, v in zip(keys[last], vals[last], strict=False)}


def _merge_basins(peaks: dict[int, float], saddles: dict[tuple[int, int], float], neck_ratio: float
                  ) -> tuple[dict[int, int], list[dict[str, float]]]:
    """Merge basins without a real constriction between them; returns basin -> root, and necks kept."""
    parent = {b: b for b in peaks}
    peak = dict(peaks)
    edges: dict[tuple[int, int], float] = dict(saddles)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    while True:
        best, best_ratio = None, -1.0
        for (u, v), s in edges.items():
            r = s / max(min(peak[u], peak[v]), 1e-9)
            if r > best_ratio:
                best, best_ratio = (u, v), r
        if best is None or best_ratio < neck_ratio or len(peak) <= 2:
            break
        u, v = best
        keep, gone = (u, v) if peak[u] >= peak[v] else (v, u)
        parent[gone] = keep
        peak[keep] = max(peak[u], peak[v])
        del peak[gone]
        new_edges: dict[tuple[int, int], float] = {}
        for (a, b), s in edges.items():
            a2 = keep if a == gone else a
            b2 = keep if b == gone else b
            if a2 == b2:
                continue
            k = (min(a2, b2), max(a2, b2))
            new_edges[k] = max(new_edges.get(k, -1.0), s)
        edges = new_edges
    necks = [{"saddle_mm": s, "peak_a_mm": peak[u], "peak_b_mm": peak[v]} for (u, v), s in edges.items()]
    return {b: find(b) for b in list(parent)}, necks


def _bounding_box(mask: np.ndarray, *, margin: int = 0) -> tuple[slice, ...]:
    """Index box of the True voxels of ``mask``, grown by ``margin`` voxels within the array."""
    box = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return tuple(slice(0, 0) for _ in range(mask.ndim))
        box.append(slice(max(int(hit[0]) - margin, 0),
                         min(int(hit[-1]) + 1 + margin, mask.shape[ax])))
    return tuple(box)


def _crop_volume(ct: Volume, box: tuple[slice, ...]) -> Volume:
    """The part ``box`` (array ``[k, j, i]`` slices) of ``ct`` as a Volume of its own."""
    start = np.array([box[2].start, box[1].start, box[0].start], dtype=float)
    origin = ct.index_to_physical(start)
    return Volume(np.asarray(ct.array)[box], ct.spacing_mm, tuple(float(v) for v in origin),
                  ct.direction)


def _inscribed_distance(blood: np.ndarray, spacing_kji: tuple[float, float, float]
                        ) -> np.ndarray:
    """Distance (mm, float32) from each blood voxel to the nearest non-blood voxel; 0 outside.

    Noise voids inside the pool (low contrast-to-noise) would shrink the inscribed spheres: the
    distance is taken to the background of the pool with its enclosed holes filled.

    ``blood`` may be a crop of the grid that keeps one background voxel between the pool and
    every side of the crop not on the grid's border (:func:`_bounding_box` with ``margin=1``):
    the result is then the crop of the whole-grid result. The nearest background voxel of a
    blood voxel is never beyond that layer (clamping a point outside the crop onto the crop
    brings it nearer and lands on the layer, which is background), and the layer is connected
    to the outside, so hole filling is unchanged too.
    """
    filled = ndi.binary_fill_holes(blood)
    dist = ndi.distance_transform_edt(filled, sampling=spacing_kji).astype(np.float32)
    del filled
    dist[~blood] = 0.0
    return dist


def _split_lv_aorta(blood: np.ndarray, spacing_kji: tuple[float, float, float],
                    settings: SegmentationSettings, *, dist: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if dist is None:
        dist = ndi.distance_transform_edt(blood, sampling=spacing_kji).astype(np.float32)
    min_d = max(1, int(round(settings.marker_min_distance_mm / min(spacing_kji))))
    coords = peak_local_max(dist, min_distance=min_d, threshold_abs=1.5 * max(spacing_kji),
                            exclude_border=False, labels=blood.astype(np.int32))
    if len(coords) < 2:
        raise SegmentationError(
            f"the blood pool has {len(coords)} inscribed-sphere centre(s); cannot separate the LV "
            "from the aorta. Check the field of view covers LV and aortic root, and the contrast phase.")
    markers = np.zeros(blood.shape, dtype=np.int32)
    markers[tuple(coords.T)] = np.arange(1, len(coords) + 1, dtype=np.int32)
    basins = watershed(-dist, markers, mask=blood)
    peaks = {i + 1: float(dist[tuple(c)]) for i, c in enumerate(coords)}
    saddles = _basin_saddles(basins, dist)
    root, necks = _merge_basins(peaks, saddles, settings.neck_ratio)
    roots = sorted(set(root.values()))
    if len(roots) < 2:
        raise SegmentationError(
            "no constriction separates the LV from the aorta in the blood pool (the valve orifice "
            "was not found as a neck). Check the series is systolic-phase contrast CT with the "
            f"aortic valve visible, or lower SegmentationSettings.neck_ratio ({settings.neck_ratio}; `--neck-ratio`).")
    lut = np.zeros(len(coords) + 1, dtype=np.int32)
    for b, r in root.items():
        lut[b] = r
    merged = lut[basins]
    i_max = int(np.argmax([dist[tuple(c)] for c in coords])) + 1
    lv_root = root[i_max]
    lv = merged == lv_root
    aorta = blood & ~lv
    info = {"markers": int(len(coords)), "regions_after_merge": len(roots),
            "lv_inscribed_radius_mm": float(dist.max()),
            "necks_mm": sorted(necks, key=lambda n: n["saddle_mm"])[:5]}
    return lv, aorta, info


# --------------------------------------------------------------------------------------------
# step 5: valve-plane correction


def _move_funnel_to_aorta(lv: np.ndarray, aorta: np.ndarray, ct: Volume,
                          info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Move LV voxels lying above the leaflet-hinge plane (inside the LVOT cylinder) to the aorta."""
    iface = lv & ndi.binary_dilation(aorta)
    if iface.sum() < 3:
        return lv, aorta
    kji = np.argwhere(iface)
    pts = ct.index_to_physical(kji[:, ::-1])
    c = pts.mean(axis=0)
    # Direction LV -> aorta from local centroids.
    sp = np.asarray(ct.spacing_mm)[::-1]
    near = np.zeros_like(lv)
    sl = tuple(slice(max(int(m) - int(np.ceil(20 / s)), 0), int(M) + int(np.ceil(20 / s)) + 1)
               for m, M, s in zip(kji.min(0), kji.max(0), sp, strict=False))
    near[sl] = True
    c_lv = ct.index_to_physical(np.argwhere(lv & near)[:, ::-1]).mean(axis=0)
    c_ao = ct.index_to_physical(np.argwhere(aorta & near)[:, ::-1]).mean(axis=0)
    axis = c_ao - c_lv
    axis /= np.linalg.norm(axis)
    # The LV part enclosed by the leaflets (between hinge and orifice) is the part of the LV at
    # whose height the sinus blood (aorta label, outside the leaflets) is also present in the
    # cross-section. Walk down from the interface in 1 mm slabs while aorta blood is present
    # within ``radius`` of the axis; the lowest such slab is the hinge (annulus) level.
    info["valve_axis"] = axis.tolist()
    radius = 25.0
    ao_idx = np.argwhere(aorta & near)
    ao_rel = ct.index_to_physical(ao_idx[:, ::-1]) - c
    ao_h = ao_rel @ axis
    ao_r = np.linalg.norm(ao_rel - np.outer(ao_h, axis), axis=1)
    sub_idx = np.argwhere(lv & near)
    rel = ct.index_to_physical(sub_idx[:, ::-1]) - c
    h = rel @ axis
    r = np.linalg.norm(rel - np.outer(h, axis), axis=1)
    min_area_mm2 = 10.0
    slab = 1.0
    h_hinge = 0.0
    level = 0.0
    while level > -30.0:
        sel = (ao_h >= level - slab) & (ao_h < level) & (ao_r < radius)
        if sel.sum() * ct.voxel_volume_mm3 / slab < min_area_mm2:
            break
        level -= slab
        h_hinge = level
    info["funnel_height_mm"] = -h_hinge
    if h_hinge >= 0.0:
        return lv, aorta
    move = (h > h_hinge) & (r < radius)
    if move.any():
        mi = sub_idx[move]
        lv = lv.copy()
        aorta = aorta.copy()
        lv[tuple(mi.T)] = False
        aorta[tuple(mi.T)] = True
        # keep only the LV component holding most voxels (no islands)
        lv, _ = _largest_component(lv)
    return lv, aorta


# --------------------------------------------------------------------------------------------


def segment_heart(ct: Volume, *, settings: SegmentationSettings = SegmentationSettings()) -> Segmentation:
    """Segment LV blood, aorta and calcium in a contrast-enhanced cardiac CT.

    Parameters
    ----------
    ct : Volume
        Contrast CT in Hounsfield units (arterial phase).
    settings : SegmentationSettings, keyword-only
        Thresholds (automatic by default) and morphological options.

    Returns
    -------
    Segmentation
        Labels ``lv_blood``, ``aorta`` (incl. root and arch branches) and ``calcium`` (and with
        ``settings.heart_structures`` ``myocardium``, ``la``, ``right_heart``, ``svc`` where
        found), the thresholds used and a report of every step.

    Raises
    ------
    SegmentationError
        If there is no contrast blood pool, or the LV and aorta cannot be separated.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    a = np.asarray(ct.array, dtype=np.float32)
    vox_mm3 = ct.voxel_volume_mm3
    spacing_kji = tuple(float(s) for s in ct.spacing_mm[::-1])

    inten = estimate_intensities(ct, settings=settings)
    timings["histogram_s"] = time.perf_counter() - t0
    logger.info("blood peak %.0f HU (σ %.1f), tissue %.0f HU -> blood threshold %.0f HU, calcium %.0f HU",
                inten.blood_peak_hu, inten.blood_sigma_hu, inten.tissue_peak_hu,
                inten.blood_threshold_hu, inten.calcium_threshold_hu)

    t = time.perf_counter()
    calcium, ca_info = _detect_calcium(a, inten, settings, vox_mm3)
    timings["calcium_s"] = time.perf_counter() - t

    t = time.perf_counter()
    cand = (a >= inten.blood_threshold_hu) & (a < inten.calcium_threshold_hu) & ~calcium
    if settings.opening_radius_vox > 0:
        opened = ndi.binary_opening(cand, structure=_ball(settings.opening_radius_vox))
    else:
        opened = cand
    labelled = ndi.label(opened)  # once for both component rules
    core, top_sizes = _largest_component(opened, labelled=labelled)
    if inten.aorta is not None and top_sizes:
        core, top_sizes, component_rule = _aorta_component(opened, ct, inten.aorta, core, top_sizes,
                                                           labelled=labelled)
    else:
        component_rule = "largest"
    del labelled
    if not top_sizes:
        raise SegmentationError(
            f"no voxels between {inten.blood_threshold_hu:.0f} and {inten.calcium_threshold_hu:.0f} HU "
            "survive the morphological opening; is this a contrast CT?")
    if settings.opening_radius_vox > 0:
        # reconstruction within the un-opened mask, inside the component's bounding box (the
        # dilation does not reach beyond it by more than the ball's radius)
        blood = np.zeros_like(core)
        box = _bounding_box(core, margin=settings.opening_radius_vox)
        blood[box] = ndi.binary_dilation(core[box], structure=_ball(settings.opening_radius_vox)
                                         ) & cand[box]
    else:
        blood = core
    blood_ml = float(blood.sum()) * vox_mm3 * 1e-3
    if blood_ml < settings.min_blood_volume_ml and inten.aorta is not None:
        small = ndi.distance_transform_edt(ndi.binary_fill_holes(blood), sampling=spacing_kji)
        _check_heart_in_view(float(small.max()), inten.aorta)
    if blood_ml < settings.min_blood_volume_ml:
        raise SegmentationError(
            f"the largest contrast blood-pool component is {blood_ml:.1f} mL (< "
            f"{settings.min_blood_volume_ml:.0f} mL) at threshold {inten.blood_threshold_hu:.0f} HU; "
            "check contrast timing and the field of view.")
    timings["blood_pool_s"] = time.perf_counter() - t

    t = time.perf_counter()
    # Steps 4 and 5 work inside the blood pool's bounding box plus one background voxel, which
    # gives the same result as the whole grid (see _inscribed_distance) at a fraction of the cost.
    box = _bounding_box(blood, margin=1)
    blood_box = blood[box]
    dist = _inscribed_distance(blood_box, spacing_kji)
    if inten.aorta is not None:
        _check_heart_in_view(float(dist.max()), inten.aorta)
    lv_box, aorta_box, split_info = _split_lv_aorta(blood_box, spacing_kji, settings, dist=dist)
    del dist
    if inten.aorta is not None and _holds_descending_aorta(lv_box, aorta_box, _crop_volume(ct, box),
                                                           inten.aorta):
        # the widest region is an ascending aneurysm, not the LV: the descending aorta says which
        lv_box, aorta_box = aorta_box, lv_box
        split_info["lv_rule"] = "swapped: the widest region holds the descending aorta"
    timings["split_s"] = time.perf_counter() - t
    if settings.move_valve_funnel_to_aorta:
        t = time.perf_counter()
        lv_box, aorta_box = _move_funnel_to_aorta(lv_box, aorta_box, _crop_volume(ct, box),
                                                  split_info)
        aorta_box &= blood_box
        timings["valve_plane_s"] = time.perf_counter() - t
    lv = np.zeros_like(blood)
    lv[box] = lv_box
    aorta = np.zeros_like(blood)
    aorta[box] = aorta_box
    del lv_box, aorta_box

    # Keep only calcium that touches or sits near the kept blood pool (valve/vascular calcium);
    # in the calcium's bounding box, "near" from the blood in that box grown by the 3 dilations.
    cbox = _bounding_box(calcium)
    clab, nca = ndi.label(calcium[cbox])
    if nca:
        grown = _bounding_box(calcium, margin=3)
        near_blood = ndi.binary_dilation(blood[grown], iterations=3)[
            tuple(slice(c.start - g.start, c.stop - g.start) for c, g in zip(cbox, grown, strict=True))]
        keep = np.unique(clab[near_blood & (clab > 0)])
        calcium = np.zeros_like(calcium)
        calcium[cbox] = np.isin(clab, keep[keep > 0])

    out = np.zeros(a.shape, dtype=np.uint8)
    names = {k: LABELS[k] for k in ("background", "lv_blood", "aorta", "calcium")}
    structures_report: dict[str, Any] | None = None
    if settings.heart_structures:
        t = time.perf_counter()
        hs = segment_heart_structures(
            ct, a, lv=lv, aorta=aorta, calcium=calcium,
            blood_threshold_hu=inten.blood_threshold_hu,
            calcium_threshold_hu=inten.calcium_threshold_hu,
            track_centres_mm=None if inten.aorta is None else inten.aorta.centres_mm,
            track_radius_mm=11.0 if inten.aorta is None else inten.aorta.radius_mm,
            max_bone_ml=settings.max_calcium_component_ml,
            myocardium_max_thickness_mm=settings.myocardium_max_thickness_mm)
        aorta = hs.aorta
        for name, mask in (("myocardium", hs.myocardium), ("la", hs.la),
                           ("right_heart", hs.right_heart), ("svc", hs.svc)):
            value = LABELS.get(name, NEIGHBOUR_LABELS.get(name))
            if mask.any():
                out[mask] = value
                names[name] = value
        structures_report = hs.report
        timings["heart_structures_s"] = time.perf_counter() - t
    out[lv] = LABELS["lv_blood"]
    out[aorta] = LABELS["aorta"]
    out[calcium] = LABELS["calcium"]
    names = dict(sorted(names.items(), key=lambda kv: kv[1]))
    labels = LabelMap(ct.with_array(out, description="cardiotwin.segment_heart"), names)
    timings["total_s"] = time.perf_counter() - t0
    report = {
        "method": "histogram threshold + largest component + distance-transform watershed",
        "intensities": {
            "blood_peak_hu": inten.blood_peak_hu, "blood_sigma_hu": inten.blood_sigma_hu,
            "tissue_peak_hu": inten.tissue_peak_hu, "method": inten.method,
            "notes": list(inten.notes)},
        "descending_aorta": None if inten.aorta is None else {
            "median_hu": inten.aorta.median_hu, "sd_hu": inten.aorta.sd_hu,
            "radius_mm": inten.aorta.radius_mm, "length_mm": inten.aorta.length_mm,
            "z_range_mm": [float(inten.aorta.centres_mm[0, 2]),
                           float(inten.aorta.centres_mm[-1, 2])]},
        "blood_component": component_rule,
        "blood_components_ml": [s * vox_mm3 * 1e-3 for s in top_sizes],
        "blood_pool_ml": blood_ml,
        "lv_ml": float(lv.sum() * vox_mm3 * 1e-3),
        "aorta_ml": float(aorta.sum() * vox_mm3 * 1e-3),
        "calcium": ca_info | {"volume_mm3": float(calcium.sum() * vox_mm3)},
        "split": split_info,
        "heart_structures": structures_report,
        "timings": timings,
    }
    logger.info("segment_heart: LV %.1f mL, aorta %.1f mL, calcium %.1f mm³ in %.1f s",
                report["lv_ml"], report["aorta_ml"], report["calcium"]["volume_mm3"], timings["total_s"])
    return Segmentation(labels, inten.blood_threshold_hu, inten.calcium_threshold_hu, report)

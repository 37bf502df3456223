"""The structures around the left heart in contrast CT: LV myocardium, LA, right heart, SVC.

Called at the end of :func:`cardiotwin.imaging.segment.segment_heart` (switch
``SegmentationSettings.heart_structures``) once the LV blood pool and the aorta are known. As in
:mod:`cardiotwin.imaging.segment` every step is a threshold, a distance or a position rule that
can be read in the report; nothing is learned.

Method (:func:`segment_heart_structures`)
-----------------------------------------
1. **Frame.** The annulus centre ``A`` is the centroid of the LV/aorta interface, the valve axis
   ``n`` points from the LV into the aorta, ``C`` is the LV cavity centroid. Positions are
   judged in the patient frame (LPS: +x left, +y posterior, +z superior) relative to ``A`` and
   ``C``, within a box of ±100 mm around the heart.
2. **Other blood pools** = voxels at or above the blood threshold that are not LV, calcium or
   vertebral bone (components containing voxels ≥ the calcium threshold that are larger than
   ``max_calcium_component_ml`` and do not belong to a seeded pool are never reached), opened by
   a 1-voxel ball like the LV/aortic pool. ``d`` is their distance map (inscribed radius).
3. **Seeds by anatomical position** (the deepest voxel, largest ``d``, inside a prior box):

   * left atrium: 15–60 mm posterior of ``A``, within 35 mm of its level and 45 mm laterally,
     more than ``r + 6 mm`` from the descending-aorta track; ``d`` ≥ 8 mm (an LA of normal size
     has an antero-posterior diameter of 27–40 mm, Lang et al. 2015, so its inscribed radius
     exceeds 10 mm);
   * superior vena cava: 12–30 mm above ``A``, more than 25 mm to its right — the tube right of
     the ascending aorta (normal SVC diameter 15–25 mm); ``d`` ≥ 4 mm;
   * right heart: right atrium (30–80 mm right of ``A``, 5–55 mm below it), right ventricle
     (15–70 mm right and 5–60 mm anterior of ``C``) and pulmonary trunk (10–50 mm left and
     15–60 mm anterior of ``A``, up to 35 mm above it); ``d`` ≥ 6 mm.

4. **Competition.** A marker-based watershed of ``-d`` over the other pools and the aorta
   splits them where they touch: markers are the seeds (balls of 3 mm) and the aorta. When no
   seed lies inside the aorta label the whole aorta is its marker (the aorta is unchanged);
   when one does (a pool touching the aorta merged into it), the aortic markers shrink to the
   root (the first 10 mm above ``A``) and the descending-aorta track, so the neck between the
   aorta and that pool — the narrowest part of their union — becomes the boundary. Pools no
   seed reaches stay background. A seeded pool that is not enhanced (no voxel in its prior box
   reaches the blood threshold) is reported as ``"not enhanced"``.
5. **LV myocardium** = the tissue-intensity shell around the LV blood: voxels within
   ``myocardium_max_thickness_mm`` (default 15 mm) of the LV cavity, below the annulus plane,
   with a CT value between the midpoint of fat (−100 HU) and the myocardium and the blood
   threshold, not in any blood pool, connected to the LV cavity surface. The myocardium value
   is the median of the voxels 1.5–4.5 mm outside the cavity. The normal LV wall is 6–12 mm
   thick at end-diastole (ASE/EACVI: 6–10 mm women, 6–11 mm men; Lang et al., J Am Soc
   Echocardiogr 2015;28:1–39), ≥ 15 mm is hypertrophic; the default bound keeps hypertrophied
   walls while stopping at fat, lung and the blood pools — and in an unenhanced right heart
   (tissue-like blood) at the bound.

Limitations: the position priors assume a standard heart position (levocardia, no situs
anomaly); the right heart in a purely arterial phase (not enhanced) is not segmented, and its
blood beside the septum can then be counted as myocardium up to the thickness bound.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cardiotwin.imaging.volume import Volume

logger = logging.getLogger(__name__)

__all__ = ["HeartStructures", "segment_heart_structures"]

#: Fat CT value (HU) for the lower myocardium threshold (mediastinal/epicardial fat is
#: −50 to −150 HU).
FAT_HU = -100.0


@dataclass(frozen=True, eq=False)
class HeartStructures:
    """Masks of :func:`segment_heart_structures` on the CT grid.

    Attributes
    ----------
    myocardium, la, right_heart, svc : (nk, nj, ni) bool arrays
        LV myocardium, left atrium, right heart (RA, RV, pulmonary trunk and arteries), superior
        vena cava; empty when not found.
    aorta : (nk, nj, ni) bool array
        The aorta after the pools that touched it were taken out (the input when none did).
    report : dict
        Frame, seeds (LPS mm, inscribed radius), enhancement, volumes (mL), thresholds, timings.
    """

    myocardium: np.ndarray
    la: np.ndarray
    right_heart: np.ndarray
    svc: np.ndarray
    aorta: np.ndarray
    report: dict[str, Any]


def _ball(radius_vox: int) -> np.ndarray:
    r = int(radius_vox)
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return x * x + y * y + z * z <= r * r


def _crop(shape: tuple[int, ...], ct: Volume, lo_mm: np.ndarray, hi_mm: np.ndarray
          ) -> tuple[slice, slice, slice]:
    """Index box (k, j, i) of the LPS box [lo, hi] (axis-aligned grids)."""
    corners = np.array([[x, y, z] for x in (lo_mm[0], hi_mm[0]) for y in (lo_mm[1], hi_mm[1])
                        for z in (lo_mm[2], hi_mm[2])])
    ijk = ct.physical_to_index(corners)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, None)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.array(shape[::-1]))
    return tuple(slice(int(lo[d]), int(hi[d])) for d in (2, 1, 0))  # type: ignore[return-value]


def _reconstruct(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The components of ``mask`` (26-connected) that hold a voxel of ``seed``.

    The same as a binary reconstruction by dilation (``ndi.binary_propagation``) but in one
    labelling pass instead of one dilation per voxel of path length.
    """
    lab, n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros_like(mask)
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(lab[seed & mask])] = True
    keep[0] = False
    return keep[lab]


def _coords(ct: Volume, box: tuple[slice, slice, slice], c: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS coordinates minus ``c`` of the voxels of ``box``, as broadcastable arrays (mm)."""
    aff = ct.affine
    kk, jj, ii = (np.arange(sl.start, sl.stop, sl.step or 1, dtype=float) for sl in box)
    out = []
    for q in range(3):
        out.append((aff[q, 0] * ii)[None, None, :] + (aff[q, 1] * jj)[None, :, None]
                   + (aff[q, 2] * kk)[:, None, None] + (aff[q, 3] - c[q]))
    return out[0], out[1], out[2]


def _centroid(mask: np.ndarray, ct: Volume, offset: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask) + offset
    return ct.index_to_physical(idx[:, ::-1].astype(float)).mean(axis=0)


def _seed(cand: np.ndarray, d: np.ndarray, d_min: float, peaks: np.ndarray
          ) -> tuple[int, int, int] | None:
    """The inscribed-sphere centre (``peaks``) of ``cand`` with the largest radius ``d``, if
    at least ``d_min`` (a local maximum, not the border of a prior box cutting a larger pool)."""
    cand = cand & peaks
    if not cand.any():
        return None
    dd = np.where(cand, d, 0.0)
    k = int(np.argmax(dd))
    if dd.flat[k] < d_min:
        return None
    return tuple(int(v) for v in np.unravel_index(k, d.shape))  # type: ignore[return-value]


def _track_tube(region: np.ndarray, seed: tuple[int, int, int], r_mm: float, sp: np.ndarray
                ) -> np.ndarray:
    """Follow a vertical tube of radius ``r_mm`` through the axial slices of ``region``.

    From the seed slice upwards and downwards, the tube's cross-section in each slice is the 2-D
    component of ``region`` holding the disc of radius ``r_mm / 2`` around the previous centre;
    its centroid is the next centre. A cross-section larger than a circle of ``1.6 r_mm`` is
    where the tube meets another pool: upwards (a crossing vessel) only the disc of radius
    ``r_mm + 2 mm`` about the centre is kept; downwards it is the atrium the tube enters, and the
    tracking stops.
    """
    out = np.zeros(region.shape, dtype=bool)
    nk, nj, ni = region.shape
    w = int(np.ceil(3.0 * r_mm / min(sp[1], sp[2]))) + 2
    max_area = np.pi * (1.6 * r_mm) ** 2
    for step in (1, -1):
        cj, ci = float(seed[1]), float(seed[2])
        k = seed[0] if step == 1 else seed[0] - 1
        while 0 <= k < nk:
            j0, i0 = max(int(cj) - w, 0), max(int(ci) - w, 0)
            j1, i1 = min(int(cj) + w + 1, nj), min(int(ci) + w + 1, ni)
            sl = region[k, j0:j1, i0:i1]
            jj, ii = np.ogrid[j0:j1, i0:i1]
            r2 = ((jj - cj) * sp[1]) ** 2 + ((ii - ci) * sp[2]) ** 2
            lab, n = ndi.label(sl)
            hits = lab[(r2 <= (0.5 * r_mm) ** 2) & (lab > 0)]
            if n == 0 or hits.size == 0:
                break
            comp = lab == np.bincount(hits).argmax()
            if comp.sum() * sp[1] * sp[2] > max_area:
                if step == -1:
                    break
                comp &= r2 <= (r_mm + 2.0) ** 2
            else:
                pj, pi = np.nonzero(comp)
                cj, ci = float(pj.mean() + j0), float(pi.mean() + i0)
            out[k, j0:j1, i0:i1] |= comp
            k += step
    return out


def segment_heart_structures(
    ct: Volume,
    a: np.ndarray,
    *,
    lv: np.ndarray,
    aorta: np.ndarray,
    calcium: np.ndarray,
    blood_threshold_hu: float,
    calcium_threshold_hu: float,
    track_centres_mm: np.ndarray | None = None,
    track_radius_mm: float = 11.0,
    max_bone_ml: float = 3.0,
    myocardium_max_thickness_mm: float = 15.0,
) -> HeartStructures:
    """Segment the LV myocardium, LA, right heart and SVC around a segmented LV and aorta.

    See the module docstring for the method.

    Parameters
    ----------
    ct : Volume
        The contrast CT (HU), axis-aligned.
    a : (nk, nj, ni) float array
        Its voxel values.
    lv, aorta, calcium : bool arrays, keyword-only
        LV blood pool, aorta and calcium of :func:`~cardiotwin.imaging.segment.segment_heart`.
    blood_threshold_hu, calcium_threshold_hu : float, keyword-only
        Thresholds of the blood-pool intensity model (HU).
    track_centres_mm : (N, 3) array or None, keyword-only
        Centres of the descending aorta found first (LPS mm), used as aortic markers and to keep
        the LA seed off the descending aorta.
    track_radius_mm : float, keyword-only
        Its lumen radius (mm).
    max_bone_ml : float, keyword-only
        Components of voxels at or above the calcium threshold larger than this (mL) are bone.
    myocardium_max_thickness_mm : float, keyword-only
        Upper bound of the LV wall thickness (mm).

    Returns
    -------
    HeartStructures
    """
    t0 = time.perf_counter()
    report: dict[str, Any] = {}
    empty = np.zeros(a.shape, dtype=bool)
    sp = np.asarray(ct.spacing_mm, dtype=float)[::-1]  # (k, j, i)
    vox_ml = float(np.prod(sp)) * 1e-3
    if not lv.any() or not aorta.any():
        report["skipped"] = "no LV or aorta"
        return HeartStructures(empty, empty, empty.copy(), empty.copy(), aorta, report)
    lvb = tuple(slice(max(q.start - 1, 0), q.stop + 1) for q in ndi.find_objects(lv.view(np.uint8))[0])
    iface = empty.copy()
    iface[lvb] = lv[lvb] & ndi.binary_dilation(aorta[lvb])
    if iface.sum() < 3:
        report["skipped"] = "no LV/aorta interface"
        return HeartStructures(empty, empty, empty.copy(), empty.copy(), aorta, report)
    zero = np.zeros(3, dtype=int)
    A = _centroid(iface, ct, zero)
    C = _centroid(lv, ct, zero)
    near_root = aorta & _distance_box(aorta.shape, ct, A, 25.0)
    n = _centroid(near_root, ct, zero) - A if near_root.any() else A - C
    n /= max(np.linalg.norm(n), 1e-9)
    report["frame"] = {"annulus_centre_mm": A.tolist(), "valve_axis": n.tolist(),
                       "lv_centre_mm": C.tolist()}

    # ---- 2. other blood pools, in a box around the heart ------------------------------------
    t = time.perf_counter()
    lo = np.minimum(A, C) - 100.0
    hi = np.maximum(A, C) + 100.0
    hi[2] = A[2] + 1000.0  # the SVC runs up to the top of the field of view
    box = _crop(a.shape, ct, lo, hi)
    off = np.array([s.start for s in box])
    # pools, seeds and their competition on voxels of about 1.5 mm (every f-th voxel of a finer
    # grid: 2 at 0.75-1.25 mm, 3 at 0.43-0.6 mm...); the boundaries are redrawn on the full grid
    # (step 4b)
    f = max(1, int(round(1.5 / float(sp.min()))))
    cbox = tuple(slice(q.start, q.stop, f) for q in box)
    spc = sp * f
    sub = a[cbox]
    lv_b, ao_b, ca_b = lv[cbox], aorta[cbox], calcium[cbox]
    bright = (sub >= blood_threshold_hu) & ~lv_b & ~ca_b
    bright = ndi.binary_opening(bright, structure=_ball(1))
    bright = _reconstruct(bright, (sub >= blood_threshold_hu) & ~lv_b & ~ca_b)
    # bone: large components with voxels above the calcium threshold (vertebrae, sternum, ribs)
    hot, n_hot = ndi.label((sub >= calcium_threshold_hu) & bright & ~ao_b)
    bone = np.zeros_like(bright)
    if n_hot:
        sizes = np.bincount(hot.ravel()) * vox_ml * f**3
        big = np.flatnonzero(sizes > max_bone_ml)
        big = big[big > 0]
        bone = np.isin(hot, big)
    # noise voids inside a pool would shrink its inscribed spheres: they are filled
    region_all = ndi.binary_fill_holes(bright | ao_b) & ~lv_b & ~ca_b
    region = region_all & ~bone
    d = ndi.distance_transform_edt(region_all, sampling=spc).astype(np.float32)
    peaks = (d > 0) & (d >= ndi.maximum_filter(d, size=3))
    x, y, z = _coords(ct, cbox, np.zeros(3))
    report["pools_s"] = time.perf_counter() - t

    # ---- 3. seeds by position ------------------------------------------------------------------
    t = time.perf_counter()
    dx, dy, dz = x - A[0], y - A[1], z - A[2]
    cand_la = region & (dy >= 15.0) & (dy <= 60.0) & (np.abs(dz) <= 35.0) & (np.abs(dx) <= 45.0)
    if track_centres_mm is not None and len(track_centres_mm):
        tc = np.asarray(track_centres_mm, dtype=float)
        order = np.argsort(tc[:, 2])
        dist_track = np.hypot(x - np.interp(z, tc[order, 2], tc[order, 0]),
                              y - np.interp(z, tc[order, 2], tc[order, 1]))
        cand_la &= dist_track > track_radius_mm + 6.0
    seeds: dict[str, list[tuple[int, int, int]]] = {"la": [], "right_heart": [], "svc": []}
    boxes = {
        "la": (cand_la, 8.0),
        "svc": (region_all & (dz >= 12.0) & (dz <= 30.0) & (dx <= -25.0) & (dx >= -80.0)
                & (np.abs(dy) <= 35.0), 4.0),
        "right_atrium": (region & (dx <= -30.0) & (dx >= -80.0) & (dz <= -5.0) & (dz >= -55.0)
                         & (np.abs(dy) <= 30.0), 6.0),
        "right_ventricle": (region & (x - C[0] <= -15.0) & (x - C[0] >= -70.0)
                            & (y - C[1] <= -5.0) & (y - C[1] >= -60.0)
                            & (np.abs(z - C[2]) <= 40.0), 6.0),
        "pulmonary_trunk": (region & (dx >= 10.0) & (dx <= 50.0) & (dy <= -15.0) & (dy >= -60.0)
                            & (dz >= -15.0) & (dz <= 35.0), 6.0),
    }
    # A seed inside the aorta label (a pool touching the aorta, merged into it) must lie off the
    # aorta itself: farther than the root's inscribed radius + 5 mm from the valve axis
    # (0-50 mm above the annulus) and than the track radius + 6 mm from the descending aorta.
    h_ax = np.clip(dx * n[0] + dy * n[1] + dz * n[2], 0.0, 50.0)
    axis_dist = np.sqrt((dx - h_ax * n[0]) ** 2 + (dy - h_ax * n[1]) ** 2 + (dz - h_ax * n[2]) ** 2)
    near_a = (dx**2 + dy**2 + dz**2 <= 30.0**2) & ao_b
    r_root = float(d[near_a].max()) if near_a.any() else 15.0
    off_aorta = ~ao_b | (axis_dist > r_root + 5.0)
    if track_centres_mm is not None and len(track_centres_mm):
        off_aorta &= ~ao_b | (dist_track > track_radius_mm + 6.0)
    report["root_inscribed_radius_mm"] = r_root
    seed_report: dict[str, Any] = {}
    for name, (cand, d_min) in boxes.items():
        s = _seed(cand & off_aorta, d, d_min, peaks)
        target = {"right_atrium": "right_heart", "right_ventricle": "right_heart",
                  "pulmonary_trunk": "right_heart"}.get(name, name)
        if s is None:
            seed_report[name] = None
            continue
        seeds[target].append(s)
        p = ct.index_to_physical(np.array([f * s[2] + off[2], f * s[1] + off[1],
                                           f * s[0] + off[0]], float))
        seed_report[name] = {"mm": p.tolist(), "inscribed_radius_mm": float(d[s]),
                             "hu": float(sub[s]), "in_aorta": bool(ao_b[s])}
    report["seeds"] = seed_report
    report["seeds_s"] = time.perf_counter() - t

    # ---- 4. competition ------------------------------------------------------------------------
    t = time.perf_counter()
    from skimage.segmentation import watershed

    # the SVC is a tube followed slice by slice (it crosses the right pulmonary artery and opens
    # into the right atrium without a neck); of dense contrast it can exceed the calcium
    # threshold like bone
    svc = np.zeros_like(region)
    for s in seeds["svc"]:
        svc |= _track_tube(region_all if ao_b[s] else region_all & ~ao_b, s, float(d[s]), spc)
    mask = region & ~svc
    markers = np.zeros(sub.shape, dtype=np.int32)
    codes = {"la": 1, "right_heart": 2, "svc": 3}
    touching = [nm for nm, ss in seeds.items() for s in ss if ao_b[s]]
    if touching:
        ao_mark = np.zeros_like(ao_b)
        h = (dx * n[0] + dy * n[1] + dz * n[2])
        ao_mark |= ao_b & (h >= 0.0) & (h <= 10.0) & (np.sqrt(np.maximum(
            dx**2 + dy**2 + dz**2 - h**2, 0.0)) <= 8.0)
        if track_centres_mm is not None and len(track_centres_mm):
            ao_mark |= ao_b & (dist_track <= 0.5 * track_radius_mm) & (z < A[2])
        markers[ao_mark] = 4
    else:
        markers[ao_b] = 4
    rb = max(1, int(round(3.0 / spc.min())))
    for nm, ss in seeds.items():
        if nm == "svc":
            continue
        for s in ss:
            sl = tuple(slice(max(c - rb, 0), c + rb + 1) for c in s)
            ball = _ball(rb)[tuple(slice(max(rb - c, 0), None) for c in s)]
            ball = ball[: markers[sl].shape[0], : markers[sl].shape[1], : markers[sl].shape[2]]
            markers[sl][ball & mask[sl]] = codes[nm]
    ws = watershed(-d, markers, mask=mask)
    ws[svc] = codes["svc"]
    # back to the full grid: each voxel takes its coarse voxel's label, within the pools
    full = a[box]
    if f > 1:
        kk, jj, ii = (np.minimum(np.arange(q.stop - q.start) // f, m - 1)
                      for q, m in zip(box, ws.shape, strict=True))
        ws = ws[kk[:, None, None], jj[None, :, None], ii[None, None, :]]
        bone = bone[kk[:, None, None], jj[None, :, None], ii[None, None, :]]
        svc = svc[kk[:, None, None], jj[None, :, None], ii[None, None, :]]
        sub = full
        lv_b, ca_b = lv[box], calcium[box]
        ws[(sub < blood_threshold_hu) | lv_b | ca_b] = 0
    out = {nm: empty.copy() for nm in codes}
    for nm, c in codes.items():
        out[nm][box] = ws == c
    aorta_new = aorta.copy()
    taken = out["la"] | out["right_heart"] | out["svc"]
    aorta_new &= ~taken
    report["touching_aorta"] = sorted(set(touching))
    report["aorta_ml_moved"] = float((aorta & taken).sum()) * vox_ml
    report["enhanced"] = {
        "la": "enhanced" if seeds["la"] else "not enhanced",
        "right_heart": "enhanced" if seeds["right_heart"] else "not enhanced",
        "svc": "enhanced" if seeds["svc"] else "not enhanced"}
    report["split_s"] = time.perf_counter() - t

    # ---- 5. LV myocardium: its CT value from the tissue just outside the cavity ---------------
    t = time.perf_counter()
    T = float(myocardium_max_thickness_mm)
    idx = np.argwhere(lv)
    ends = ct.index_to_physical(np.stack([idx.min(axis=0), idx.max(axis=0)])[:, ::-1].astype(float))
    mb = _crop(a.shape, ct, ends.min(axis=0) - (T + 3.0), ends.max(axis=0) + (T + 3.0))
    msub = a[mb]
    # distance from the cavity (on the coarse grid of step 2 below 1.25 mm: it bounds the wall
    # at 15 mm, the wall's inner edge is the cavity itself)
    lv_m = lv[mb]
    if f > 1:
        d_c = ndi.distance_transform_edt(~lv_m[::f, ::f, ::f], sampling=sp * f).astype(np.float32)
        kk, jj, ii = (np.minimum(np.arange(m) // f, mc - 1)
                      for m, mc in zip(lv_m.shape, d_c.shape, strict=True))
        d_lv = d_c[kk[:, None, None], jj[None, :, None], ii[None, None, :]]
        d_lv[lv_m] = 0.0
        d_lv[~lv_m & (d_lv == 0.0)] = float(sp.min())
    else:
        d_lv = ndi.distance_transform_edt(~lv_m, sampling=sp).astype(np.float32)
    xm, ym, zm = _coords(ct, mb, A)
    below = (xm * n[0] + ym * n[1] + zm * n[2]) < 0.0
    inner = (d_lv > 1.5) & (d_lv <= 4.5) & below & ~(aorta_new | taken | calcium)[mb]
    inner &= msub < blood_threshold_hu
    m_hu = float(np.median(msub[inner])) if inner.sum() >= 20 else None
    report["myocardium_s"] = time.perf_counter() - t

    # ---- 4b. each pool delineated at its own half maximum (pool value + myocardium) / 2 --------
    t = time.perf_counter()
    if m_hu is not None:
        grow = max(1, int(round(2.0 / float(sp.min()))))
        free_b = ~(lv_b | ca_b | aorta_new[box] | (bone & ~svc))
        half_max: dict[str, float] = {}
        for nm in codes:
            mfull = out[nm][box]
            if not mfull.any():
                continue
            bb = tuple(slice(max(q.start - grow - 1, 0), q.stop + grow + 1)
                       for q in ndi.find_objects(mfull.view(np.uint8))[0])
            m, sb = mfull[bb], sub[bb]
            core = ndi.binary_erosion(m, iterations=2)
            if core.sum() < 20:
                continue
            t_x = 0.5 * (float(np.median(sb[core])) + m_hu)
            others = np.zeros_like(m)
            for nm2 in codes:
                if nm2 != nm:
                    others |= out[nm2][box][bb]
            allowed = (sb >= t_x) & free_b[bb] & ~others
            allowed &= m | ndi.binary_dilation(m, iterations=grow)
            seed_m = m & (sb >= t_x)
            if seed_m.any():
                mfull[bb] = _reconstruct(seed_m, allowed)
                out[nm][box] = mfull
            half_max[nm] = t_x
        taken = out["la"] | out["right_heart"] | out["svc"]
        report["half_maximum_hu"] = half_max
    report["refine_s"] = time.perf_counter() - t

    # ---- 5. LV myocardium: the tissue shell ----------------------------------------------------
    t = time.perf_counter()
    pools = (aorta_new | taken | calcium | (a >= blood_threshold_hu))[mb]
    if m_hu is None:
        report["myocardium"] = "no tissue around the LV cavity"
        myo = empty.copy()
    else:
        t_lo = 0.5 * (m_hu + FAT_HU)
        shell = (msub >= t_lo) & ~pools & below & (d_lv <= T) & (d_lv > 0)
        touch = shell & ndi.binary_dilation(lv_m)
        shell = _reconstruct(touch, shell)
        # small enclosed voids (noise) inside the wall
        shell = ndi.binary_closing(shell, structure=_ball(1)) & below & (d_lv > 0) & ~pools
        myo = empty.copy()
        myo[mb] = shell
        report["myocardium"] = {"median_hu": m_hu, "lower_threshold_hu": t_lo,
                                "max_thickness_mm": T}
    report["myocardium_s"] += time.perf_counter() - t
    report["volumes_ml"] = {"myocardium": float(myo.sum()) * vox_ml,
                            **{nm: float(out[nm].sum()) * vox_ml for nm in codes}}
    report["total_s"] = time.perf_counter() - t0
    return HeartStructures(myo, out["la"], out["right_heart"], out["svc"], aorta_new, report)


def _distance_box(shape: tuple[int, ...], ct: Volume, c: np.ndarray, r: float) -> np.ndarray:
    """Voxels within ``r`` mm of the point ``c`` (LPS)."""
    box = _crop(shape, ct, c - r, c + r)
    out = np.zeros(shape, dtype=bool)
    x, y, z = _coords(ct, box, c)
    out[box] = x * x + y * y + z * z <= r * r
    return out

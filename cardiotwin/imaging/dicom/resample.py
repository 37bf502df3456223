"""Resampling of a tilted and/or unevenly spaced slice stack onto a regular orthogonal grid.

A tilted and/or unevenly spaced stack is resampled by linear interpolation onto an orthogonal grid
whose i and j axes are the slices' row and column cosines and whose k axis is their normal (what
dcm2niix writes as ``_Tilt`` / ``_Eq``): every output voxel is the linear interpolation, along the
normal, of the two original slices bracketing it, each sampled bilinearly at the projection of the
voxel's centre on its plane. The in-plane grid is enlarged to cover the union of the sheared slices
(dcm2niix enlarges the rows the same way). The slice step is the smallest positive step of the
original stack, unless that would more than double the slice count, then the extent divided into
``2 n - 1`` steps (dcm2niix's ``nii_saveNII3Deq`` rule). Voxels outside every original slice get
the fill value (default: air, −1000 HU, for CT; the series minimum otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cardiotwin.imaging.dicom.frames import POSITION_TOL_MM, SPACING_REL_TOL, Frame
from cardiotwin.imaging.dicom.headers import header_text

__all__ = ["default_fill_value", "resample_stack"]

#: Air on the Hounsfield scale (by definition of the scale: water 0 HU, air -1000 HU).
_AIR_HU = -1000.0


def default_fill_value(
    fill_value: float | None, frames: Sequence[Frame], values: np.ndarray
) -> float:
    """``fill_value`` if given, else air (−1000 HU) for CT, else the minimum of ``values``."""
    if fill_value is not None:
        return float(fill_value)
    if header_text(frames[0].entry.ds, "Modality").upper() == "CT":
        return _AIR_HU
    return float(values.min())


def resample_stack(
    stack: np.ndarray,
    ipp: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    di: float,
    dj: float,
    fill: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample a sheared and/or unevenly spaced stack onto an orthogonal regular grid.

    Returns the array, the LPS origin of its voxel (0, 0, 0) and the slice step (mm).
    """
    from scipy.ndimage import map_coordinates

    row, col, normal = axes
    nk0, nj, ni = stack.shape
    rel = ipp - ipp[0]
    s = rel @ normal
    u, v = rel @ row / di, rel @ col / dj  # in-plane offsets of each slice, in pixels
    i0, i1 = int(np.floor(u.min() + 1e-6)), int(np.ceil(u.max() + ni - 1 - 1e-6))
    j0, j1 = int(np.floor(v.min() + 1e-6)), int(np.ceil(v.max() + nj - 1 - 1e-6))
    n_i, n_j = i1 - i0 + 1, j1 - j0 + 1
    steps = np.diff(s)
    median = float(np.median(steps))
    if np.all(np.abs(steps - median) <= max(POSITION_TOL_MM, SPACING_REL_TOL * median)):
        dk, nk = median, nk0
    else:
        dk = float(steps[steps > 0].min())
        nk = int(np.floor(s[-1] / dk + 1e-6)) + 1
        if nk > 2 * nk0:  # dcm2niix nii_saveNII3Deq: at most twice the slices
            nk = 2 * nk0
            dk = float(s[-1] / (nk - 1))
    # 1) each slice onto the enlarged orthogonal in-plane grid (bilinear), NaN outside it
    jj, ii = np.mgrid[0:n_j, 0:n_i].astype(np.float64)
    deshear = np.empty((nk0, n_j, n_i), dtype=np.float32)
    for m in range(nk0):
        cj = jj + (j0 - v[m])
        ci = ii + (i0 - u[m])
        for c in (cj, ci):  # snap near-integers so exact edge samples are not lost to NaN
            r = np.rint(c)
            np.copyto(c, r, where=np.abs(c - r) < 1e-6)
        deshear[m] = map_coordinates(
            stack[m].astype(np.float64), [cj, ci], order=1, mode="constant", cval=np.nan
        )
    # 2) linear interpolation along the normal between the bracketing slices
    out = np.empty((nk, n_j, n_i), dtype=np.float32)
    for t in range(nk):
        st = min(t * dk, s[-1])
        m = int(np.clip(np.searchsorted(s, st, side="right") - 1, 0, nk0 - 2)) if nk0 > 1 else 0
        w = 0.0 if nk0 == 1 else float(np.clip((st - s[m]) / (s[m + 1] - s[m]), 0.0, 1.0))
        if w < 1e-9:
            out[t] = deshear[m]
        elif w > 1 - 1e-9:
            out[t] = deshear[m + 1]
        else:
            out[t] = (1.0 - w) * deshear[m] + w * deshear[m + 1]
    np.nan_to_num(out, copy=False, nan=fill)
    origin = ipp[0] + i0 * di * row + j0 * dj * col
    return out, origin, dk


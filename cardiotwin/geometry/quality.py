"""Quality measures of tetrahedral meshes (vectorised numpy).

The measures are the ones a CFD user checks before trusting a mesh:

* dihedral angles (six per tetrahedron) — small angles (slivers) and angles near 180° degrade the
  conditioning of the discrete Navier–Stokes system;
* the radius ratio ``ρ = 3 r_in / r_circ`` (1 for the regular tetrahedron, 0 for a degenerate one);
* the number of inverted (non-positive signed volume) cells;
* the shortest and longest edge.

References
----------
Shewchuk, J. R. "What is a good linear finite element? Interpolation, conditioning, anisotropy, and
quality measures." (2002).
"""

from __future__ import annotations

import numpy as np

from cardiotwin.errors import InputError

#: the six edges of a tetrahedron (vertex pairs) and, for each, the two faces sharing it
#: (face f is the face opposite vertex f).
_EDGES = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])
_EDGE_FACES = np.array([(2, 3), (1, 3), (1, 2), (0, 3), (0, 2), (0, 1)])
_FACES = np.array([(1, 2, 3), (0, 3, 2), (0, 1, 3), (0, 2, 1)])


def tet_signed_volumes(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Signed volumes of tetrahedra (positive for the right-handed vertex order used by gmsh/VTK).

    Parameters
    ----------
    points : (N, 3) float array, coordinates (any length unit; results in that unit cubed).
    tets : (M, 4) int array of vertex indices.

    Returns
    -------
    (M,) float array of signed volumes.
    """
    p = np.asarray(points, dtype=float)[np.asarray(tets)]
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0


def tet_quality(points: np.ndarray, tets: np.ndarray) -> dict[str, float]:
    """Quality summary of a tetrahedral mesh.

    Parameters
    ----------
    points : (N, 3) float array
        Vertex coordinates (mm in cardiotwin geometry).
    tets : (M, 4) int array
        Vertex indices of each tetrahedron; a positive orientation (gmsh / VTK convention) is
        expected: cells with signed volume ≤ 0 count as inverted.

    Returns
    -------
    dict
        ``min_dihedral_deg``, ``max_dihedral_deg`` (over all cells and their six edges),
        ``min_radius_ratio``, ``mean_radius_ratio`` (``3 r_in / r_circ``, 1 = regular),
        ``n_inverted`` (signed volume ≤ 0), ``h_min_mm``, ``h_max_mm`` (shortest/longest edge),
        ``n_cells``.

    Raises
    ------
    InputError
        When the arrays have the wrong shape or the mesh is empty.

    Examples
    --------
    >>> p = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    >>> q = tet_quality(p, np.array([[0, 2, 1, 3]]))  # regular, positively oriented
    >>> round(q["min_dihedral_deg"], 2), round(q["min_radius_ratio"], 6), q["n_inverted"]
    (70.53, 1.0, 0)
    """
    pts = np.asarray(points, dtype=float)
    t = np.asarray(tets)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"points must have shape (N, 3); got {pts.shape}")
    if t.ndim != 2 or t.shape[1] != 4 or len(t) == 0:
        raise InputError(f"tets must have shape (M, 4) with M > 0; got {t.shape}")
    if t.min() < 0 or t.max() >= len(pts):
        raise InputError(f"tets index vertices outside 0..{len(pts) - 1}")
    p = pts[t]  # (M, 4, 3)

    vol = tet_signed_volumes(pts, t)

    # Face area vectors, oriented outward for a positively oriented tetrahedron.
    fv = p[:, _FACES]  # (M, 4, 3, 3)
    area_vec = 0.5 * np.cross(fv[:, :, 1] - fv[:, :, 0], fv[:, :, 2] - fv[:, :, 0])
    area = np.linalg.norm(area_vec, axis=2)  # (M, 4)
    # Orient each normal away from its opposite vertex (robust to inverted cells).
    centre_to_opp = p - fv.mean(axis=2)  # opposite vertex f minus centroid of face f
    sign = -np.sign(np.einsum("mfi,mfi->mf", area_vec, centre_to_opp))
    sign[sign == 0] = 1.0
    unit = area_vec * (sign / np.maximum(area, 1e-300))[:, :, None]

    # Dihedral angle on an edge = pi - angle between the outward normals of its two faces.
    n1 = unit[:, _EDGE_FACES[:, 0]]
    n2 = unit[:, _EDGE_FACES[:, 1]]
    cosang = np.clip(np.einsum("mei,mei->me", n1, n2), -1.0, 1.0)
    dihedral = 180.0 - np.degrees(np.arccos(cosang))

    # Radius ratio: r_in = 3V / sum(areas); circumradius from the classical vector formula.
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    num = (
        np.einsum("ij,ij->i", a, a)[:, None] * np.cross(b, c)
        + np.einsum("ij,ij->i", b, b)[:, None] * np.cross(c, a)
        + np.einsum("ij,ij->i", c, c)[:, None] * np.cross(a, b)
    )
    abs6v = np.abs(6.0 * vol)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_circ = np.linalg.norm(num, axis=1) / (2.0 * abs6v)
        r_in = 3.0 * np.abs(vol) / area.sum(axis=1)
        rho = np.where(abs6v > 0, 3.0 * r_in / r_circ, 0.0)

    edges = np.linalg.norm(p[:, _EDGES[:, 1]] - p[:, _EDGES[:, 0]], axis=2)
    return {
        "min_dihedral_deg": float(dihedral.min()),
        "max_dihedral_deg": float(dihedral.max()),
        "min_radius_ratio": float(rho.min()),
        "mean_radius_ratio": float(rho.mean()),
        "n_inverted": int(np.count_nonzero(vol <= 0.0)),
        "h_min_mm": float(edges.min()),
        "h_max_mm": float(edges.max()),
        "n_cells": int(len(t)),
    }

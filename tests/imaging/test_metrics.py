"""Dice and Hausdorff against analytic cases (cubes and spheres with known overlap/offset)."""

from __future__ import annotations

import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.imaging.metrics import dice, hausdorff_mm, surface_distances_mm


def _cube(shape, lo, side):
    m = np.zeros(shape, dtype=bool)
    k, j, i = lo
    m[k:k + side, j:j + side, i:i + side] = True
    return m


def _ball(shape, centre_kji, radius_vox):
    kk, jj, ii = np.indices(shape)
    c = centre_kji
    return (kk - c[0]) ** 2 + (jj - c[1]) ** 2 + (ii - c[2]) ** 2 <= radius_vox ** 2


def test_dice_offset_cubes_exact():
    # Cubes of side L offset by d along one axis: |A∩B| = (L-d)L², Dice = 1 - d/L exactly.
    a = _cube((40, 40, 40), (5, 5, 5), 20)
    b = _cube((40, 40, 40), (5, 5, 9), 20)
    assert dice(a, b) == pytest.approx(1 - 4 / 20, abs=1e-12)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_hausdorff_offset_cubes_anisotropic_spacing():
    # Offset of 4 voxels along i with di = 0.5 mm -> 2.0 mm; offset of 2 slices with dk = 2 mm -> 4 mm.
    # For translated cubes the surface-voxel Hausdorff distance equals the translation exactly.
    spacing = (0.5, 1.0, 2.0)  # (di, dj, dk)
    a = _cube((40, 40, 40), (5, 5, 5), 20)
    b_i = _cube((40, 40, 40), (5, 5, 9), 20)
    b_k = _cube((40, 40, 40), (7, 5, 5), 20)
    assert hausdorff_mm(a, b_i, spacing) == pytest.approx(2.0, abs=1e-9)
    assert hausdorff_mm(a, b_k, spacing) == pytest.approx(4.0, abs=1e-9)
    assert hausdorff_mm(a, a, spacing) == 0.0
    # Symmetry.
    assert hausdorff_mm(b_k, a, spacing) == pytest.approx(hausdorff_mm(a, b_k, spacing))


def test_offset_spheres_analytic():
    # Two spheres of radius R, centres d apart: lens volume V = π(4R+d)(2R-d)²/12
    # (Weisstein, "Sphere-Sphere Intersection", MathWorld); Dice = V / (4/3 π R³).
    # Hausdorff distance between the two spheres' surfaces is d.
    R, d = 15.0, 6.0
    shape = (50, 50, 56)
    a = _ball(shape, (25, 25, 25), R)
    b = _ball(shape, (25, 25, 25 + d), R)
    v_lens = np.pi * (4 * R + d) * (2 * R - d) ** 2 / 12
    expected_dice = v_lens / (4 / 3 * np.pi * R ** 3)
    assert dice(a, b) == pytest.approx(expected_dice, abs=0.01)  # voxelisation error < 1 %
    assert hausdorff_mm(a, b, 1.0) == pytest.approx(d, abs=0.75)  # < one voxel
    hd95 = hausdorff_mm(a, b, 1.0, percentile=95)
    assert 0.0 < hd95 <= hausdorff_mm(a, b, 1.0)


def test_concentric_spheres_with_spacing():
    # Radii 10 and 14 mm sampled at 0.8 mm: Hausdorff = 4 mm, Dice = 2 r³ / (r³ + R³).
    sp = 0.8
    shape = (45, 45, 45)
    a = _ball(shape, (22, 22, 22), 10.0 / sp)
    b = _ball(shape, (22, 22, 22), 14.0 / sp)
    assert hausdorff_mm(a, b, (sp, sp, sp)) == pytest.approx(4.0, abs=sp)
    assert dice(a, b) == pytest.approx(2 * 10 ** 3 / (10 ** 3 + 14 ** 3), abs=0.01)
    # Every surface voxel of the inner sphere is ~4 mm from the outer surface.
    d = surface_distances_mm(a, b, sp)
    assert np.median(d) == pytest.approx(4.0, abs=sp)


def test_metric_errors():
    a = np.ones((4, 4, 4), bool)
    with pytest.raises(InputError, match="same shape"):
        dice(a, np.ones((4, 4, 5), bool))
    with pytest.raises(InputError, match="non-empty"):
        hausdorff_mm(a, np.zeros_like(a), 1.0)
    with pytest.raises(InputError, match="percentile"):
        hausdorff_mm(a, a, 1.0, percentile=0)
    with pytest.raises(InputError, match="spacing"):
        hausdorff_mm(a, a, (1.0, 0.0, 1.0))

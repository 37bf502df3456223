"""The bounding-box shortcuts of the anatomy chain give the whole-grid results, bit for bit.

``segment_heart`` computes the inscribed-sphere map in the blood pool's box and ``mask_surface``
extrudes, interpolates and meshes the mask's box (docs/performance.md, "Under 60 s"). The
references here are the whole-grid computations those functions did before.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import ndimage
from skimage import measure

from cardiotwin.geometry import surface
from cardiotwin.imaging import segment
from cardiotwin.imaging.volume import Volume


def _blob(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Two overlapping ellipsoids off the grid's centre, with enclosed voids, one touching a face."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    a = ((k - 0.35 * shape[0]) / 9.0) ** 2 + ((j - 0.6 * shape[1]) / 7.0) ** 2 \
        + ((i - 0.4 * shape[2]) / 11.0) ** 2 <= 1.0
    b = ((k - 0.2 * shape[0]) / 12.0) ** 2 + ((j - 0.45 * shape[1]) / 4.0) ** 2 \
        + ((i - 0.55 * shape[2]) / 4.0) ** 2 <= 1.0
    m = a | b
    m &= rng.random(shape) > 0.02  # voids (noise) inside the pool
    return m


@pytest.mark.parametrize("seed", [0, 1])
def test_inscribed_distance_in_the_box_equals_the_whole_grid(seed: int) -> None:
    blood = _blob((48, 44, 52), seed)
    spacing = (0.9, 0.5, 0.45)
    whole = ndimage.distance_transform_edt(ndimage.binary_fill_holes(blood), sampling=spacing)
    whole = whole.astype(np.float32)
    whole[~blood] = 0.0
    box = segment._bounding_box(blood, margin=1)
    assert np.prod([s.stop - s.start for s in box]) < blood.size  # a real crop
    boxed = np.zeros_like(whole)
    boxed[box] = segment._inscribed_distance(blood[box], spacing)
    assert np.array_equal(boxed, whole)


def _whole_grid_surface(mask: np.ndarray, volume: Volume, extend: dict) -> np.ndarray:
    """Marching-cubes vertices (LPS mm) as ``mask_surface`` computed them on the whole grid."""
    mask = surface._largest_component_mask(mask)
    padded, offset = surface._extend_mask(mask, extend)
    field = padded.astype(np.float32)
    sp_kji = np.asarray(volume.spacing_mm, dtype=float)[::-1]
    scale = np.ones(3)
    if sp_kji.max() / sp_kji.min() > surface.MAX_ANISOTROPY:
        field = ndimage.zoom(field, sp_kji / sp_kji.min(), order=1)
        scale = (np.asarray(padded.shape) - 1) / np.maximum(np.asarray(field.shape) - 1, 1)
    verts, faces, _, _ = measure.marching_cubes(field, level=0.5, allow_degenerate=False)
    ijk = (verts * scale[None, :] - offset[None, :])[:, ::-1]
    return trimesh.Trimesh(volume.index_to_physical(ijk), faces, process=True)


@pytest.mark.parametrize("spacing", [(0.45, 0.45, 0.8), (0.6, 0.6, 0.6)])
def test_mask_surface_in_the_box_equals_the_whole_grid(spacing) -> None:
    mask = _blob((40, 56, 60), 0)
    mask[:6, 24:30, 20:27] = True  # a vessel leaving through the bottom face (extruded)
    volume = Volume(np.zeros(mask.shape, np.int16), spacing, (-10.0, 5.0, 20.0))
    extend = {(0, 0): 5}
    ours = surface.mask_surface(mask, volume, smoothing_iterations=0, extend_faces=extend)
    ref = surface.repair_surface(_whole_grid_surface(mask, volume, extend))
    assert np.array_equal(ours.faces, ref.faces)
    assert np.array_equal(ours.vertices, ref.vertices)

"""Image volumes with their geometry: the type that carries pixels between imaging steps.

Conventions (DESIGN.md §4)
--------------------------
* ``array`` is indexed ``[k, j, i]`` = ``[slice, row, column]`` (the order of
  ``SimpleITK.GetArrayFromImage``).
* ``spacing_mm`` is ``(di, dj, dk)``: column spacing, row spacing, slice spacing, in mm.
* ``direction`` is a 3×3 matrix whose **columns** are the unit vectors of the i, j, k axes in DICOM
  patient coordinates (LPS: +x left, +y posterior, +z superior).
* ``origin_mm`` is the LPS position of the centre of voxel ``[0, 0, 0]``.

So the physical position of voxel ``(i, j, k)`` is ``origin + direction @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cardiotwin.errors import InputError

#: Label values used throughout cardiotwin (ground truth of phantoms and segmentation output).
LABELS: dict[str, int] = {
    "background": 0,
    "lv_blood": 1,  # left-ventricular cavity including the LV outflow tract, up to the annulus
    "myocardium": 2,
    "aorta": 3,  # aortic root (with sinuses), ascending aorta, arch, descending aorta
    "branches": 4,  # arch branch vessels (brachiocephalic, left common carotid, left subclavian)
    "calcium": 5,  # calcified nodules (of the aortic valve)
    "valve": 6,  # non-calcified aortic valve leaflet tissue
}

#: Label values of the blood pools next to the left heart and aorta: the ground truth of the
#: phantom's neighbouring pools (``PhantomParameters.neighbours``) and the extra structures of
#: :func:`cardiotwin.imaging.segment.segment_heart` (``SegmentationSettings.heart_structures``).
#: Kept apart from :data:`LABELS`, whose structures every label map of the left heart holds.
NEIGHBOUR_LABELS: dict[str, int] = {
    "la": 7,  # left atrium (with the pulmonary-vein ostia)
    "right_heart": 8,  # right atrium, right ventricle, pulmonary trunk and arteries
    "svc": 9,  # superior vena cava above the right atrium
    "ivc": 10,  # inferior vena cava below the right atrium (unenhanced in the arterial phase)
}

#: Every structure name cardiotwin knows, with its value: :data:`LABELS` and
#: :data:`NEIGHBOUR_LABELS` (user label maps, ``segment --evaluate`` and plug-ins may name any).
ALL_LABELS: dict[str, int] = {**LABELS, **NEIGHBOUR_LABELS}


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image with its geometry in DICOM patient coordinates (LPS, mm).

    Parameters
    ----------
    array : numpy.ndarray
        Voxel values, shape ``(nk, nj, ni)``; CT in Hounsfield units.
    spacing_mm : tuple of 3 floats
        Voxel size along i, j, k in mm; all > 0.
    origin_mm : tuple of 3 floats
        LPS position (mm) of the centre of voxel (0, 0, 0).
    direction : numpy.ndarray
        3×3 orthonormal matrix, columns are the i, j, k axes in LPS.
    metadata : dict
        Free-form description (modality, series UID, pseudonym...). Never patient names once the
        volume has passed :mod:`cardiotwin.imaging.deid`.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise InputError(f"Volume array must be 3-D (k, j, i); got shape {arr.shape}")
        sp = tuple(float(s) for s in self.spacing_mm)
        if len(sp) != 3 or min(sp) <= 0 or not np.all(np.isfinite(sp)):
            raise InputError(f"Volume spacing_mm must be three positive numbers; got {self.spacing_mm}")
        org = tuple(float(o) for o in self.origin_mm)
        if len(org) != 3 or not np.all(np.isfinite(org)):
            raise InputError(f"Volume origin_mm must be three finite numbers; got {self.origin_mm}")
        d = np.asarray(self.direction, dtype=float)
        if d.shape != (3, 3) or not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
            raise InputError(f"Volume direction must be an orthonormal 3x3 matrix; got {d.tolist()}")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "spacing_mm", sp)
        object.__setattr__(self, "origin_mm", org)
        object.__setattr__(self, "direction", d)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(nk, nj, ni)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous voxel indices ``(i, j, k, 1)`` to LPS mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing_mm)[None, :]
        a[:3, 3] = self.origin_mm
        return a

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices ``(..., 3)`` in (i, j, k) order to LPS mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=float)
        a = self.affine
        return ijk @ a[:3, :3].T + a[:3, 3]

    def physical_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map LPS mm ``(..., 3)`` to continuous voxel indices ``(..., 3)`` in (i, j, k) order."""
        xyz = np.asarray(xyz, dtype=float)
        a = self.affine
        return (xyz - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        return float(np.prod(self.spacing_mm))

    def with_array(self, array: np.ndarray, **metadata: Any) -> Volume:
        """A volume on the same grid with another array (and metadata updated)."""
        if np.shape(array) != self.shape:
            raise InputError(f"array shape {np.shape(array)} does not match the grid {self.shape}")
        return Volume(array, self.spacing_mm, self.origin_mm, self.direction,
                      {**self.metadata, **metadata})

    def same_grid(self, other: Volume, *, tol_mm: float = 1e-3) -> bool:
        """True when ``other`` has the same shape and geometry within ``tol_mm``."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=tol_mm))


@dataclass(frozen=True, eq=False)
class LabelMap:
    """Integer labels on the grid of a :class:`Volume`.

    Parameters
    ----------
    volume : Volume
        Labels as an integer array (values from :data:`LABELS` unless ``names`` says otherwise).
    names : dict
        Label name → value present in this map.
    """

    volume: Volume
    names: dict[str, int] = field(default_factory=lambda: dict(LABELS))

    def __post_init__(self) -> None:
        if not np.issubdtype(self.volume.array.dtype, np.integer):
            raise InputError(f"LabelMap needs an integer array; got {self.volume.array.dtype}")

    @property
    def array(self) -> np.ndarray:
        return self.volume.array

    def mask(self, *names: str) -> np.ndarray:
        """Boolean mask of the union of the named labels."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise InputError(f"unknown label(s) {unknown}; this map has {sorted(self.names)}")
        return np.isin(self.volume.array, [self.names[n] for n in names])

    def volume_ml(self, *names: str) -> float:
        """Volume of the named labels in mL."""
        return float(self.mask(*names).sum()) * self.volume.voxel_volume_mm3 * 1e-3

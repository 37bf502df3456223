"""Vessel-wall meshes for device–wall mechanics: a tetrahedral shell around the lumen, in mm.

A :class:`WallDomain` is the solid counterpart of :class:`~cardiotwin.geometry.volume_mesh.FluidDomain`:
a gmsh ``.msh`` file whose facet physical groups name the lumen side (``inner``), the outside
(``outer``) and the two cut ends, and whose volume groups separate soft tissue from calcium. The
axial coordinate ``z`` is measured along :attr:`WallDomain.axis` from
:attr:`WallDomain.axis_origin_mm` (the annulus centre for an aortic root, so ``z = 0`` is the
annulus plane).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["WALL_CELLS", "WALL_FACETS", "WallDomain"]

WALL_FACETS = {"inner": 1, "outer": 2, "proximal": 3, "distal": 4}
"""Facet physical-group tags of a wall mesh: lumen side, outside, proximal and distal cut ends."""

WALL_CELLS = {"tissue": 1, "calcium": 2}
"""Volume physical-group tags of a wall mesh."""


@dataclass(frozen=True)
class WallDomain:
    """A tetrahedral vessel-wall mesh on disk (mm, LPS).

    Attributes
    ----------
    mesh_path : str
        gmsh ``.msh`` file with the physical groups of :data:`WALL_FACETS` and :data:`WALL_CELLS`.
    axis_origin_mm : (3,) tuple
        A point on the vessel / device axis (``z = 0``).
    axis : (3,) tuple
        Unit axis, proximal → distal (LV → aorta for an aortic root).
    thickness_mm : float
        Wall thickness the mesh was built with.
    n_cells, n_nodes : int
        Mesh size.
    has_calcium : bool
        Whether any cell carries the ``calcium`` tag.
    """

    mesh_path: str
    axis_origin_mm: tuple[float, float, float]
    axis: tuple[float, float, float]
    thickness_mm: float
    n_cells: int
    n_nodes: int
    has_calcium: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WallDomain:
        d = dict(d)
        d["axis_origin_mm"] = tuple(float(v) for v in d["axis_origin_mm"])
        d["axis"] = tuple(float(v) for v in d["axis"])
        return cls(**d)

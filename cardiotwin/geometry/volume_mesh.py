"""Tetrahedral fluid meshes (gmsh) with named boundary tags.

Units: mm, DICOM patient coordinates (LPS). The conversion to SI happens in
:mod:`cardiotwin.physics.flow` when the mesh is loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BoundaryCap:
    """A flat inlet or outlet of the fluid domain.

    Attributes
    ----------
    name : ``"inlet"`` or ``"outlet:<name>"``.
    tag : the gmsh physical tag of its facets in the mesh file.
    centre_mm : (3,) centroid of the cap (LPS mm).
    normal : (3,) unit normal pointing **out of** the fluid domain.
    area_mm2 : cap area.
    """

    name: str
    tag: int
    centre_mm: tuple[float, float, float]
    normal: tuple[float, float, float]
    area_mm2: float


@dataclass(frozen=True)
class FluidDomain:
    """A tagged tetrahedral fluid mesh written by gmsh (``.msh`` v4.1, mm).

    Attributes
    ----------
    mesh_path : path of the ``.msh`` file (physical groups: volume ``fluid``, surfaces ``wall``,
        ``inlet``, ``outlet:<name>``).
    facet_tags : name → physical tag for every boundary (``"wall"``, ``"inlet"``, ``"outlet:..."``).
    cell_tags : name → physical tag of volume groups (at least ``"fluid"``).
    caps : the inlet and outlets with centre, outward normal and area.
    n_cells, n_vertices : mesh size.
    quality : mesh-quality summary (e.g. ``min_dihedral_deg``, ``min_radius_ratio``, ``h_min_mm``).
    provenance : :meth:`cardiotwin.provenance.Provenance.to_dict` of the meshing step.
    """

    mesh_path: Path
    facet_tags: dict[str, int]
    cell_tags: dict[str, int]
    caps: tuple[BoundaryCap, ...]
    n_cells: int
    n_vertices: int
    quality: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def inlet(self) -> BoundaryCap:
        return next(c for c in self.caps if c.name == "inlet")

    @property
    def outlets(self) -> tuple[BoundaryCap, ...]:
        return tuple(c for c in self.caps if c.name.startswith("outlet:"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mesh_path"] = str(self.mesh_path)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FluidDomain:
        d = dict(d)
        d["mesh_path"] = Path(d["mesh_path"])
        d["caps"] = tuple(
            BoundaryCap(**{**c, "centre_mm": tuple(c["centre_mm"]), "normal": tuple(c["normal"])})
            for c in d["caps"]
        )
        return cls(**d)

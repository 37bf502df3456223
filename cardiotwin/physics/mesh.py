"""The fluid mesh of the solvers, in metres: loading, named facets and per-cell fields.

A :class:`FlowMesh` is a dolfinx mesh with named facet groups (``"wall"``, ``"inlet"``,
``"outlet:<name>"``, or any names of a 2-D benchmark). :func:`load_domain` reads a
:class:`~cardiotwin.geometry.volume_mesh.FluidDomain` (mm) and is the single mm → m conversion of
the physics package. The helpers below build what every solver needs on such a mesh: the facets
of a named boundary, the Brinkman indicator of a device region per cell, the unit inlet profile,
cell sizes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.physics.brinkman import BrinkmanRegion

__all__ = ["MM_TO_M", "FlowMesh", "boundary_facets", "cell_geometry", "dilate_dg0", "gmsh_model",
           "indicator_dg0", "inlet_profile", "load_domain", "median_cell_size"]

MM_TO_M = units.M_PER_MM
"""Metres per millimetre (:data:`cardiotwin.units.M_PER_MM`): FluidDomain meshes and Brinkman
regions are in mm, the solvers in m."""


@dataclass
class FlowMesh:
    """A fluid mesh in metres with named facet tags.

    Attributes
    ----------
    mesh : dolfinx mesh, coordinates in **m** (LPS).
    facet_tags : dolfinx MeshTags of the boundary facets.
    names : boundary name (``"wall"``, ``"inlet"``, ``"outlet:<name>"``) → tag value.
    domain : the :class:`FluidDomain` it was read from (mm); ``None`` for meshes built directly
        in dolfinx (verification cases, 2-D benchmarks).
    """

    mesh: Any
    facet_tags: Any
    names: dict[str, int]
    domain: FluidDomain | None = None

    @property
    def outlet_names(self) -> list[str]:
        """Outlet names without the ``outlet:`` prefix, sorted."""
        return sorted(n.split(":", 1)[1] for n in self.names if n.startswith("outlet:"))


@contextmanager
def gmsh_model(name: str, comm: MPI.Comm) -> Iterator[Any]:
    """A fresh gmsh model on rank 0 for building or reading a mesh; removed afterwards.

    gmsh is initialised non-interruptibly when needed (so this works outside the main thread,
    e.g. in Streamlit or Dask workers) and finalised again only if this call initialised it; an
    existing gmsh session is left untouched. Yields the ``gmsh`` module (use it on rank 0 only).
    """
    import gmsh

    own = False
    if comm.rank == 0:
        if not gmsh.isInitialized():
            gmsh.initialize(interruptible=False)
            own = True
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add(name)
    try:
        yield gmsh
    finally:
        if comm.rank == 0:
            gmsh.model.remove()
            if own:
                gmsh.finalize()


def load_domain(domain: FluidDomain, *, comm: MPI.Comm = MPI.COMM_WORLD) -> FlowMesh:
    """Read a :class:`FluidDomain` mesh (mm) into dolfinx, scaled to metres.

    This is the single mm → m conversion of the physics package.

    Parameters
    ----------
    domain : the tagged gmsh mesh (``.msh`` 4.1, mm).
    comm : MPI communicator; rank 0 reads the file, the mesh is distributed over ``comm``.

    Raises
    ------
    InputError
        If the file is missing or lacks the ``inlet``/``wall``/``outlet:*`` facet groups.
    """
    from dolfinx.io import gmsh as dgmsh

    path = Path(domain.mesh_path)
    if not path.is_file():
        raise InputError(f"fluid mesh file not found: {path}")
    missing = [n for n in ("inlet", "wall") if n not in domain.facet_tags]
    if missing or not any(n.startswith("outlet:") for n in domain.facet_tags):
        raise InputError(
            f"FluidDomain {path.name} must tag 'inlet', 'wall' and at least one 'outlet:<name>'; "
            f"has {sorted(domain.facet_tags)}")
    with gmsh_model(f"cardiotwin-flow-{path.stem}", comm) as gmsh:
        if comm.rank == 0:
            gmsh.merge(str(path))
        data = dgmsh.model_to_mesh(gmsh.model, comm, 0, gdim=3)
    mesh = data.mesh
    mesh.geometry.x[:] *= MM_TO_M
    if data.facet_tags is None:
        raise InputError(f"{path.name} has no physical surface groups")
    present = set(np.unique(np.concatenate(comm.allgather(data.facet_tags.values))).tolist())
    absent = [n for n, t in domain.facet_tags.items() if t not in present]
    if absent:
        raise InputError(f"facet groups {absent} of {path.name} have no facets in the mesh")
    mesh.topology.create_connectivity(mesh.topology.dim - 1, mesh.topology.dim)
    return FlowMesh(mesh=mesh, facet_tags=data.facet_tags, names=dict(domain.facet_tags),
                    domain=domain)


def boundary_facets(fm: FlowMesh, name: str) -> np.ndarray:
    """Local indices of the facets of the named boundary ``name`` (a key of ``fm.names``)."""
    return fm.facet_tags.find(fm.names[name])


def indicator_dg0(fm: FlowMesh, region: BrinkmanRegion, samples: int):
    """DG0 volume fraction of ``region`` per cell (sampled at 11 points or the centroid)."""
    from dolfinx import fem

    msh = fm.mesh
    Q0 = fem.functionspace(msh, ("DG", 0))
    chi = fem.Function(Q0)
    tdim = msh.topology.dim
    n_cells = msh.topology.index_map(tdim).size_local + msh.topology.index_map(tdim).num_ghosts
    nodes = msh.geometry.dofmaps[0][:n_cells]
    verts = msh.geometry.x[nodes] / MM_TO_M  # (n, 4, 3) in mm
    pts = [verts.mean(axis=1)]
    if samples == 11:
        pts += [verts[:, i] for i in range(4)]
        pts += [(verts[:, i] + verts[:, j]) / 2 for i in range(4) for j in range(i + 1, 4)]
    vals = np.mean([region.indicator(p) for p in pts], axis=0)
    # A cell belongs to the region only when all its samples do. With σ huge, the P1 velocity
    # vanishes at every vertex of a porous cell, so the open orifice ends at the innermost porous
    # vertices: marking cells that merely straddle the rim (majority vote) shrank a 0.8 cm² hole
    # to ~0.45 cm² of effective area on a 1.2 mm mesh. "All inside" puts those vertices at or
    # outside the rim, i.e. the orifice behaves like a no-slip wall at its nominal radius.
    vals = (vals >= 1.0 - 1e-12).astype(float)
    # DG0 dofs follow the cell index (one dof per cell, identity dofmap in dolfinx)
    dofs = Q0.dofmap.list[:n_cells, 0]
    chi.x.array[dofs] = vals
    chi.x.scatter_forward()
    return chi


def dilate_dg0(fm: FlowMesh, chi, layers: int):
    """DG0 indicator of the cells within ``layers`` vertex-neighbour layers of ``chi > 0``.

    Used only inside the stabilisation time scale τ_M: next to a nearly impermeable region the P1
    pressure carries the whole valve pressure jump across the adjacent fluid cells, and there the
    PSPG term ``τ_M/ρ ∇p·∇q`` would act as a fictitious mass flux through the region (measured:
    two thirds of the flow "crossed" a 0.8 cm² stenosis outside its orifice). Giving those cells
    the drag in τ_M suppresses that flux while leaving the momentum equation untouched.
    """
    from dolfinx import fem

    msh = fm.mesh
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim, 0)
    c2v = msh.topology.connectivity(tdim, 0)
    n_cells = msh.topology.index_map(tdim).size_local + msh.topology.index_map(tdim).num_ghosts
    cells_v = c2v.array.reshape(-1, 4)[:n_cells]
    dofs = chi.function_space.dofmap.list[:n_cells, 0]
    mark = chi.x.array[dofs] > 0
    n_verts = msh.topology.index_map(0).size_local + msh.topology.index_map(0).num_ghosts
    for _ in range(layers):
        vmark = np.zeros(n_verts, dtype=bool)
        vmark[cells_v[mark].ravel()] = True
        mark = vmark[cells_v].any(axis=1)
    out = fem.Function(chi.function_space)
    out.x.array[dofs] = mark.astype(float)
    out.x.scatter_forward()
    return out


def inlet_profile(fm: FlowMesh, V, kind: str) -> tuple[Any, np.ndarray]:
    """Unit-shape inlet profile on V (P1 vector): distance-to-rim based parabola or plug.

    For a circular cap ``φ = d(2D − d)/D²`` with ``d`` the distance to the cap's rim and ``D``
    its maximum is exactly ``1 − r²/R²``; for other shapes it is a smooth, positive surrogate.
    """
    from dolfinx import fem
    from scipy.spatial import cKDTree

    msh = fm.mesh
    comm = msh.comm
    fdim = msh.topology.dim - 1
    inlet_blocks = fem.locate_dofs_topological(V, fdim, boundary_facets(fm, "inlet"))
    wall_blocks = fem.locate_dofs_topological(V, fdim, boundary_facets(fm, "wall"))
    rim_blocks = np.intersect1d(inlet_blocks, wall_blocks)
    X = V.tabulate_dof_coordinates()
    rim = np.concatenate([r for r in comm.allgather(X[rim_blocks]) if len(r)] or [np.zeros((0, 3))])
    if len(rim) < 3:
        raise InputError("inlet cap has no rim shared with the wall; check the 'inlet' and 'wall' "
                         "tags of the FluidDomain")
    d = cKDTree(rim).query(X[inlet_blocks])[0] if len(inlet_blocks) else np.zeros(0)
    dmax = comm.allreduce(float(d.max()) if len(d) else 0.0, op=MPI.MAX)
    if kind == "parabolic":
        phi = d * (2 * dmax - d) / dmax**2
    elif kind == "plug":
        phi = (d > 1e-12 * dmax).astype(float)
    else:
        raise InputError(f"inflow_profile must be 'parabolic' or 'plug'; got {kind!r}")
    direction = -np.asarray(fm.domain.inlet.normal, dtype=float)
    direction /= np.linalg.norm(direction)
    g = fem.Function(V)
    g.x.array.reshape(-1, 3)[inlet_blocks] = phi[:, None] * direction[None, :]
    g.x.scatter_forward()
    return g, inlet_blocks


def median_cell_size(msh) -> float:
    """Median edge-length-like size (m) of the local cells, agreed over ranks."""
    tdim = msh.topology.dim
    n_cells = msh.topology.index_map(tdim).size_local
    x = msh.geometry.x[msh.geometry.dofmaps[0][:n_cells]]
    vol = np.abs(np.einsum("ij,ij->i", x[:, 1] - x[:, 0],
                           np.cross(x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]))) / 6.0
    h_loc = (6 * math.sqrt(2) * vol) ** (1 / 3)  # edge of the regular tet with that volume
    hs = msh.comm.allgather(np.median(h_loc) if len(h_loc) else np.nan)
    return float(np.nanmedian(hs))


def cell_geometry(msh) -> tuple[np.ndarray, np.ndarray]:
    """Owned cells' midpoints (m, shape (n, 3)) and diameters (m)."""
    tdim = msh.topology.dim
    n = msh.topology.index_map(tdim).size_local
    x = msh.geometry.x[msh.geometry.dofmaps[0][:n]]
    nv = x.shape[1]
    diam = np.zeros(n)
    for i in range(nv):
        for j in range(i + 1, nv):
            diam = np.maximum(diam, np.linalg.norm(x[:, i] - x[:, j], axis=1))
    return x.mean(axis=1), diam

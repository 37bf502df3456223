"""Solid mechanics of the vessel wall in dolfinx: small-strain linear elasticity and a
compressible neo-Hookean model, materials per cell region, in SI units (m, Pa).

A :class:`SolidMesh` is the solid counterpart of :class:`~cardiotwin.physics.mesh.FlowMesh`: a
dolfinx tetrahedral mesh in metres with facet and cell tags addressed by name. :func:`load_wall`
reads a :class:`~cardiotwin.geometry.wall_mesh.WallDomain` (mm) and converts it to metres.

:class:`ElasticWall` holds the discrete problem — a vector Lagrange space (P1 or P2), the
displacement, the stored energy, Dirichlet conditions on named facets and optional extra energy
or residual terms (pressure loads, the penalty contact of :mod:`.contact`) — and solves it with
PETSc SNES (Newton with a backtracking line search). The linear model is solved by the same
Newton loop: without contact it converges in one step; with penalty contact the active set makes
it piecewise linear (a semismooth Newton).

Models
------
``"linear"``: ``ψ = ½ λ (tr ε)² + μ ε:ε`` with ``ε = sym ∇u``.
``"neo_hookean"`` (compressible, large strain): ``ψ = ½ μ (I_C − 3) − μ ln J + ½ λ (ln J)²`` with
``C = FᵀF``, ``J = det F``; it reduces to the linear model at small strain with the same Lamé
parameters (verified in :mod:`.solid_verification`). Cauchy stress
``σ = (μ (B − I) + λ ln J I) / J``; the strain reported is the small strain (linear) or the
Green–Lagrange strain (neo-Hookean).

Linear solver (explicit choice)
-------------------------------
No hypre in this build. ``linear_solver="mumps"``: LU by MUMPS (robust, default up to
:data:`DIRECT_SOLVER_MAX_DOFS` unknowns); ``"gamg"``: conjugate gradients preconditioned by PETSc
smoothed-aggregation algebraic multigrid with the six rigid-body modes as near null space (for
larger meshes; the stiffness must be symmetric positive definite, which holds for both models
near equilibrium); ``"auto"`` picks by size.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError, SolverError
from cardiotwin.geometry.wall_mesh import WALL_CELLS, WALL_FACETS, WallDomain
from cardiotwin.physics.mesh import MM_TO_M, gmsh_model

logger = logging.getLogger(__name__)

__all__ = ["DIRECT_SOLVER_MAX_DOFS", "MODELS", "ElasticWall", "Material", "SolidMesh",
           "default_wall_materials", "load_wall", "mesh_from_gmsh_model", "plane_basis",
           "principal_values", "rigid_body_modes"]

MODELS = ("linear", "neo_hookean")
"""Constitutive models of :class:`ElasticWall`."""

DIRECT_SOLVER_MAX_DOFS = 400_000
"""``linear_solver="auto"`` uses MUMPS LU up to this many unknowns, GAMG-CG above."""


@dataclass(frozen=True)
class Material:
    """An isotropic elastic material.

    Parameters
    ----------
    youngs_modulus_pa : Young's modulus E (Pa), > 0.
    poisson_ratio : ν, in (−1, 0.5); keep ν ≤ 0.49 (P1 tetrahedra lock as ν → 0.5).
    name : label (e.g. ``"tissue"``).
    """

    youngs_modulus_pa: float
    poisson_ratio: float
    name: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.youngs_modulus_pa) and self.youngs_modulus_pa > 0):
            raise InputError(f"Material {self.name!r}: youngs_modulus_pa must be > 0; got "
                             f"{self.youngs_modulus_pa}")
        if not (-1.0 < self.poisson_ratio < 0.5):
            raise InputError(f"Material {self.name!r}: poisson_ratio must be in (-1, 0.5); got "
                             f"{self.poisson_ratio} (use <= 0.49 for nearly incompressible tissue)")

    @property
    def lame(self) -> tuple[float, float]:
        """Lamé parameters ``(λ, μ)`` in Pa."""
        E, nu = self.youngs_modulus_pa, self.poisson_ratio
        return E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))


def default_wall_materials() -> dict[str, Material]:
    """Typical aortic-root values (modelling assumptions, not patient data).

    Tissue E = 2 MPa, ν = 0.45 (aortic wall at physiological strain, order 1–3 MPa; e.g.
    Wang et al., J Biomech Eng 2012 use 2 MPa in TAVR root models); calcium E = 60 MPa,
    ν = 0.3 (same source: calcified nodules 10–60 MPa, ~30× stiffer than tissue).
    """
    return {"tissue": Material(2.0e6, 0.45, "tissue"), "calcium": Material(60.0e6, 0.3, "calcium")}


@dataclass
class SolidMesh:
    """A solid (wall) mesh in metres with named facet and cell tags.

    Attributes
    ----------
    mesh : dolfinx mesh, coordinates in **m**.
    facet_tags, cell_tags : dolfinx MeshTags (``cell_tags`` may be ``None``: one material).
    facet_names : facet group name → tag (:data:`~cardiotwin.geometry.wall_mesh.WALL_FACETS`).
    cell_names : cell group name → tag (:data:`~cardiotwin.geometry.wall_mesh.WALL_CELLS`).
    axis_origin_m : (3,) a point of the vessel / device axis (m).
    axis : (3,) unit axis, proximal → distal.
    domain : the :class:`WallDomain` it was read from (mm), ``None`` for meshes built in memory.
    """

    mesh: Any
    facet_tags: Any
    cell_tags: Any
    facet_names: dict[str, int]
    cell_names: dict[str, int]
    axis_origin_m: np.ndarray
    axis: np.ndarray
    domain: WallDomain | None = None

    def facets(self, name: str) -> np.ndarray:
        """Local indices of the facets of group ``name``."""
        if name not in self.facet_names:
            raise InputError(f"no facet group {name!r}; the wall mesh has {sorted(self.facet_names)}")
        return self.facet_tags.find(self.facet_names[name])

    def in_plane_basis(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors ``e1, e2`` orthogonal to :attr:`axis` (see :func:`plane_basis`)."""
        return plane_basis(self.axis)

    @property
    def n_cells(self) -> int:
        """Global number of cells."""
        return int(self.mesh.topology.index_map(3).size_global)


def plane_basis(axis: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``e1, e2`` orthogonal to the unit ``axis``: ``e1`` is global x projected on
    the plane (global y when the axis is near x), ``e2 = axis × e1``. Angles θ about the axis are
    measured from ``e1`` towards ``e2``."""
    a = _unit(axis, "axis")
    ref = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = ref - (ref @ a) * a
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(a, e1)


def _unit(v: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    n = float(np.linalg.norm(a))
    if a.shape != (3,) or not math.isfinite(n) or n < 1e-12:
        raise InputError(f"{what} must be a non-zero 3-vector; got {v}")
    return a / n


def mesh_from_gmsh_model(gmsh, comm: MPI.Comm, *, scale: float, facet_names: Mapping[str, int],
                         cell_names: Mapping[str, int], axis_origin_m, axis,
                         domain: WallDomain | None = None, source: str = "gmsh model") -> SolidMesh:
    """Convert the current gmsh model (on rank 0) into a :class:`SolidMesh`, scaling coordinates
    by ``scale`` (``MM_TO_M`` for mm files, 1 for models built in metres)."""
    from dolfinx.io import gmsh as dgmsh

    data = dgmsh.model_to_mesh(gmsh.model, comm, 0, gdim=3)
    msh = data.mesh
    if scale != 1.0:
        msh.geometry.x[:] *= scale
    if data.facet_tags is None:
        raise InputError(f"{source} has no physical surface groups; expected {sorted(facet_names)}")
    present = set(np.unique(np.concatenate(comm.allgather(data.facet_tags.values))).tolist())
    missing = [n for n in ("inner",) if facet_names.get(n) not in present]
    if missing:
        raise InputError(f"{source}: facet group(s) {missing} have no facets; a wall mesh needs an "
                         "'inner' (lumen-side) surface group")
    msh.topology.create_connectivity(2, 3)
    return SolidMesh(mesh=msh, facet_tags=data.facet_tags, cell_tags=data.cell_tags,
                     facet_names={k: v for k, v in facet_names.items() if v in present},
                     cell_names=dict(cell_names), axis_origin_m=np.asarray(axis_origin_m, float),
                     axis=_unit(axis, "axis"), domain=domain)


def load_wall(domain: WallDomain, *, comm: MPI.Comm = MPI.COMM_WORLD) -> SolidMesh:
    """Read a :class:`WallDomain` mesh (mm) into dolfinx, scaled to metres.

    Facet groups are named by :data:`~cardiotwin.geometry.wall_mesh.WALL_FACETS`, cell groups by
    :data:`~cardiotwin.geometry.wall_mesh.WALL_CELLS`.

    Raises
    ------
    InputError
        If the file is missing or has no ``inner`` facets.
    """
    path = Path(domain.mesh_path)
    if not path.is_file():
        raise InputError(f"wall mesh file not found: {path}")
    with gmsh_model(f"cardiotwin-wall-{path.stem}", comm) as gmsh:
        if comm.rank == 0:
            gmsh.merge(str(path))
        return mesh_from_gmsh_model(
            gmsh, comm, scale=MM_TO_M, facet_names=WALL_FACETS, cell_names=WALL_CELLS,
            axis_origin_m=np.asarray(domain.axis_origin_mm, float) * MM_TO_M, axis=domain.axis,
            domain=domain, source=path.name)


def rigid_body_modes(V):
    """The six rigid-body modes of a 3-D vector space ``V`` as an orthonormal PETSc NullSpace
    (the near null space GAMG needs for elasticity)."""
    from dolfinx import la
    from petsc4py import PETSc

    imap = V.dofmap.index_map
    bs = V.dofmap.index_map_bs
    vecs = [la.vector(imap, bs=bs, dtype=PETSc.ScalarType) for _ in range(6)]
    b = [v.array for v in vecs]
    dofs = [V.sub(i).dofmap.list.ravel() for i in range(3)]
    for i in range(3):
        b[i][dofs[i]] = 1.0
    x = V.tabulate_dof_coordinates()
    blocks = V.dofmap.list.ravel()
    x0, x1, x2 = x[blocks, 0], x[blocks, 1], x[blocks, 2]
    b[3][dofs[0]], b[3][dofs[1]] = -x1, x0
    b[4][dofs[0]], b[4][dofs[2]] = x2, -x0
    b[5][dofs[2]], b[5][dofs[1]] = x1, -x2
    la.orthonormalize(vecs)
    n = imap.size_local * bs
    petsc_vecs = [PETSc.Vec().createWithArray(v[:n], bsize=bs, comm=V.mesh.comm) for v in b]
    return PETSc.NullSpace().create(vectors=petsc_vecs)


def principal_values(tensors: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending) of symmetric 3×3 tensors, shape (n, 3, 3) → (n, 3)."""
    t = np.asarray(tensors, dtype=float).reshape(-1, 3, 3)
    return np.linalg.eigvalsh(0.5 * (t + np.transpose(t, (0, 2, 1))))


_COMPONENT = {"x": (0,), "y": (1,), "z": (2,), "all": (0, 1, 2)}


@dataclass
class SolveReport:
    """Outcome of one :meth:`ElasticWall.solve` (Newton iterations, SNES reason, seconds)."""

    iterations: int
    reason: int
    seconds: float
    residual_norm: float = float("nan")
    history: list[float] = field(default_factory=list)


class ElasticWall:
    """The discrete wall problem: displacement space, stored energy and boundary conditions.

    Parameters
    ----------
    solid : the mesh (m) with named groups.
    materials : cell-group name → :class:`Material`. Every cell group present in the mesh needs
        one (a mesh without cell tags uses ``materials["tissue"]`` or the only entry).
    model : ``"linear"`` or ``"neo_hookean"``.
    degree : Lagrange degree of the displacement (1 or 2).
    fixed : facet-group name → displacement components held at zero: ``"all"``, ``"x"``,
        ``"y"``, ``"z"`` (global components), ``"axial"`` (the component along
        ``solid.axis``; requires the axis to be a coordinate axis) or ``"sliding"`` (axial
        component zero and the in-plane rigid motions pinned on that group's vertices lying on
        the two coordinate planes through the axis — exact for axisymmetric loads, the
        plane-strain end condition of a tube).
    linear_solver : ``"auto"``, ``"mumps"`` or ``"gamg"`` (see module notes).
    line_search : SNES line search, ``"bt"`` (backtracking) or ``"basic"`` (full Newton steps:
        best for the piecewise-smooth penalty contact, whose kinks stall backtracking).
    """

    def __init__(self, solid: SolidMesh, materials: Mapping[str, Material], *,
                 model: str = "linear", degree: int = 1,
                 fixed: Mapping[str, str] | None = None, linear_solver: str = "auto",
                 line_search: str = "bt"):
        import ufl
        from dolfinx import fem

        if model not in MODELS:
            raise InputError(f"model must be one of {MODELS}; got {model!r}")
        if degree not in (1, 2):
            raise InputError(f"degree must be 1 or 2; got {degree!r}")
        if linear_solver not in ("auto", "mumps", "gamg"):
            raise InputError(f"linear_solver must be 'auto', 'mumps' or 'gamg'; got {linear_solver!r}")
        self.solid, self.model, self.degree = solid, model, degree
        msh = solid.mesh
        self.V = fem.functionspace(msh, ("Lagrange", degree, (3,)))
        self.u = fem.Function(self.V, name="displacement")
        self.v = ufl.TestFunction(self.V)
        self.lam, self.mu, self.E_max = self._material_fields(materials)
        self.dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": 2 * degree + 2}
                              if model == "neo_hookean" else {})
        self.bcs = self._dirichlet(dict(fixed or {}))
        n_dofs = self.V.dofmap.index_map.size_global * 3
        self.n_dofs = int(n_dofs)
        if linear_solver == "auto":
            linear_solver = "mumps" if n_dofs <= DIRECT_SOLVER_MAX_DOFS else "gamg"
        self.linear_solver = linear_solver
        if line_search not in ("bt", "basic", "l2", "cp"):
            raise InputError(f"line_search must be 'bt', 'basic', 'l2' or 'cp'; got {line_search!r}")
        self.line_search = line_search
        self._extra_energy = []
        self._extra_residual = []
        self._problem = None

    # -- set-up ---------------------------------------------------------------------------
    def _material_fields(self, materials: Mapping[str, Material]):
        from dolfinx import fem

        msh = self.solid.mesh
        Q = fem.functionspace(msh, ("DG", 0))
        lam, mu = fem.Function(Q, name="lambda"), fem.Function(Q, name="mu")
        n_cells = msh.topology.index_map(3).size_local + msh.topology.index_map(3).num_ghosts
        ct = self.solid.cell_tags
        if ct is None or not self.solid.cell_names:
            mat = materials.get("tissue") or (next(iter(materials.values())) if len(materials) == 1
                                              else None)
            if mat is None:
                raise InputError("the mesh has no cell groups: give materials={'tissue': ...}")
            lam.x.array[:], mu.x.array[:] = mat.lame
            return lam, mu, mat.youngs_modulus_pa
        tags_local = np.full(n_cells, -1, dtype=np.int64)
        tags_local[ct.indices] = ct.values
        present = set(np.unique(np.concatenate(msh.comm.allgather(ct.values))).tolist())
        e_max = 0.0
        for name, tag in self.solid.cell_names.items():
            if tag not in present:
                continue
            if name not in materials:
                raise InputError(f"no material for cell group {name!r}; give materials[{name!r}] "
                                 f"(have {sorted(materials)})")
            cells = np.flatnonzero(tags_local == tag)
            dofs = Q.dofmap.list[cells, 0]
            lam.x.array[dofs], mu.x.array[dofs] = materials[name].lame
            e_max = max(e_max, materials[name].youngs_modulus_pa)
        untagged = np.flatnonzero(tags_local < 0)
        if len(untagged):
            raise InputError(f"{len(untagged)} cells carry no cell group; tag every volume of the "
                             f"wall mesh with one of {sorted(self.solid.cell_names)}")
        return lam, mu, e_max

    def _dirichlet(self, fixed: dict[str, str]) -> list:
        from dolfinx import fem

        V, solid = self.V, self.solid
        bcs = []
        axis_comp = int(np.argmax(np.abs(solid.axis)))
        aligned = abs(abs(solid.axis[axis_comp]) - 1.0) < 1e-9
        for name, what in fixed.items():
            facets = solid.facets(name)
            if what in ("axial", "sliding"):
                if not aligned:
                    raise InputError(f"fixed[{name!r}]={what!r} needs the wall axis along x, y or "
                                     f"z; got axis {solid.axis.tolist()}; use 'all' instead")
                comps = (axis_comp,)
            elif what in _COMPONENT:
                comps = _COMPONENT[what]
            else:
                raise InputError(f"fixed[{name!r}] must be 'all', 'x', 'y', 'z', 'axial' or "
                                 f"'sliding'; got {what!r}")
            for c in comps:
                dofs = fem.locate_dofs_topological(V.sub(c), 2, facets)
                bcs.append(fem.dirichletbc(0.0, dofs, V.sub(c)))
            if what == "sliding":
                bcs += self._pin_in_plane(facets, axis_comp)
        return bcs

    def _pin_in_plane(self, facets: np.ndarray, axis_comp: int) -> list:
        """Zero tangential displacement at the facets' vertices on the two coordinate planes
        through the axis (removes in-plane translations and the rotation about the axis)."""
        from dolfinx import fem
        from dolfinx import mesh as dmesh

        msh = self.solid.mesh
        msh.topology.create_connectivity(2, 0)
        msh.topology.create_connectivity(0, 3)
        f2v = msh.topology.connectivity(2, 0)
        verts = np.unique(np.concatenate([f2v.links(f) for f in facets])) if len(facets) else \
            np.zeros(0, dtype=np.int32)
        x = msh.geometry.x
        # vertex → geometry node (P1 geometry: same entity closure)
        v2g = dmesh.entities_to_geometry(msh, 0, verts.astype(np.int32), False).ravel() \
            if len(verts) else np.zeros(0, dtype=np.int32)
        pts = x[v2g] - self.solid.axis_origin_m
        h = float(np.median(np.linalg.norm(pts, axis=1))) if len(pts) else 1.0
        tol = 1e-6 * max(h, 1e-9)
        bcs = []
        a, b = [c for c in range(3) if c != axis_comp]
        # on the plane coordinate a == 0 (points along ±b) the tangential direction is a
        for plane, comp in ((a, a), (b, b)):
            sel = verts[np.abs(pts[:, plane]) < tol] if len(verts) else verts
            if msh.comm.allreduce(len(sel), op=MPI.SUM) == 0:
                raise InputError("'sliding' ends need mesh vertices on the coordinate planes "
                                 "through the axis (mesh the tube in sectors); use 'all' instead")
            dofs = fem.locate_dofs_topological(self.V.sub(comp), 0, sel.astype(np.int32))
            bcs.append(fem.dirichletbc(0.0, dofs, self.V.sub(comp)))
        return bcs

    # -- kinematics and stress --------------------------------------------------------------
    def strain_energy_density(self, u):
        import ufl

        lam, mu = self.lam, self.mu
        if self.model == "linear":
            eps = ufl.sym(ufl.grad(u))
            return 0.5 * lam * ufl.tr(eps) ** 2 + mu * ufl.inner(eps, eps)
        F = ufl.Identity(3) + ufl.grad(u)
        J = ufl.det(F)
        Ic = ufl.tr(F.T * F)
        return 0.5 * mu * (Ic - 3) - mu * ufl.ln(J) + 0.5 * lam * ufl.ln(J) ** 2

    def cauchy_stress(self, u):
        """Cauchy stress (Pa) as a UFL expression."""
        import ufl

        lam, mu, Id = self.lam, self.mu, ufl.Identity(3)
        if self.model == "linear":
            eps = ufl.sym(ufl.grad(u))
            return lam * ufl.tr(eps) * Id + 2 * mu * eps
        F = Id + ufl.grad(u)
        J = ufl.det(F)
        return (mu * (F * F.T - Id) + lam * ufl.ln(J) * Id) / J

    def strain(self, u):
        """Small strain (linear) or Green–Lagrange strain (neo-Hookean), UFL."""
        import ufl

        if self.model == "linear":
            return ufl.sym(ufl.grad(u))
        F = ufl.Identity(3) + ufl.grad(u)
        return 0.5 * (F.T * F - ufl.Identity(3))

    def add_pressure(self, facets_name: str, pressure_pa: float):
        """A pressure (Pa, > 0 pushes into the solid) on a named facet group: dead load on the
        reference normal (linear), follower load ``p J F⁻ᵀ N`` (neo-Hookean).

        Returns the ``fem.Constant`` holding the pressure (set ``.value`` to ramp the load)."""
        import ufl
        from dolfinx import fem

        ds = ufl.Measure("ds", domain=self.solid.mesh, subdomain_data=self.solid.facet_tags)
        N = ufl.FacetNormal(self.solid.mesh)
        tag = self.solid.facet_names[facets_name]
        p = fem.Constant(self.solid.mesh, float(pressure_pa))
        if self.model == "linear":
            self._extra_residual.append(p * ufl.dot(N, self.v) * ds(tag))
        else:
            F = ufl.Identity(3) + ufl.grad(self.u)
            self._extra_residual.append(
                p * ufl.det(F) * ufl.dot(ufl.inv(F).T * N, self.v) * ds(tag))
        return p

    def add_energy(self, energy) -> None:
        """An extra potential energy term (UFL scalar form of ``self.u``), e.g. penalty contact."""
        self._extra_energy.append(energy)

    # -- solve -------------------------------------------------------------------------------
    def _build(self, *, max_iterations: int, rtol: float, atol: float):
        import ufl
        from dolfinx.fem import petsc as fpetsc

        Pi = self.strain_energy_density(self.u) * self.dx
        for e in self._extra_energy:
            Pi = Pi + e
        F = ufl.derivative(Pi, self.u, self.v)
        for r in self._extra_residual:
            F = F + r
        opts: dict[str, Any] = {"snes_type": "newtonls", "snes_linesearch_type": self.line_search,
                                "snes_max_it": max_iterations, "snes_rtol": rtol,
                                "snes_atol": atol, "snes_stol": 0.0,
                                # full semismooth steps may raise the residual on the way
                                "snes_divergence_tolerance": 1e30}
        if self.linear_solver == "mumps":
            opts.update({"ksp_type": "preonly", "pc_type": "lu",
                         "pc_factor_mat_solver_type": "mumps", "mat_mumps_icntl_14": 100})
        else:
            opts.update({"ksp_type": "cg", "ksp_rtol": 1e-10, "ksp_max_it": 2000,
                         "pc_type": "gamg", "pc_gamg_type": "agg", "pc_gamg_threshold": 0.02,
                         "mg_levels_ksp_type": "chebyshev", "mg_levels_pc_type": "jacobi"})
        self._prefix = f"ctsolid{id(self)}_"
        problem = fpetsc.NonlinearProblem(F, self.u, bcs=self.bcs, petsc_options=opts,
                                          petsc_options_prefix=self._prefix)
        if self.linear_solver == "gamg":
            problem.A.setNearNullSpace(rigid_body_modes(self.V))
        self._problem = problem
        return problem

    def solve(self, *, max_iterations: int = 30, rtol: float = 1e-9, atol: float = 1e-10,
              what: str = "wall", line_search: str | None = None) -> SolveReport:
        """Newton solve from the current ``self.u``; raises :class:`SolverError` on failure.

        ``atol`` is on the residual norm in N (nodal forces); the tolerances apply to the first
        call (the solver is built then). ``line_search`` overrides the line search for this call.
        """
        problem = self._problem or self._build(max_iterations=max_iterations, rtol=rtol, atol=atol)
        snes = problem.solver
        snes.getLineSearch().setType(line_search or self.line_search)
        snes.setConvergenceHistory()
        t0 = time.perf_counter()
        backup = self.u.x.array.copy()
        try:
            problem.solve()
        except Exception as e:  # PETSc errors (MUMPS, line search) surface here
            self.u.x.array[:] = backup
            raise SolverError(f"{what}: Newton solve failed ({e}); try a smaller penalty, the "
                              "'linear' model, or a finer mesh") from e
        reason = snes.getConvergedReason()
        its = snes.getIterationNumber()
        hist = [float(r) for r in snes.getConvergenceHistory()[0]]
        rep = SolveReport(iterations=int(its), reason=int(reason),
                          seconds=time.perf_counter() - t0,
                          residual_norm=hist[-1] if hist else float("nan"), history=hist)
        if reason <= 0 or not np.all(np.isfinite(self.u.x.array)):
            self.u.x.array[:] = backup
            raise SolverError(
                f"{what}: Newton did not converge (SNES reason {reason} after {its} iterations, "
                f"residual history {[f'{r:.2e}' for r in hist[-5:]]}). Try the 'linear' model, a "
                "smaller penalty, load continuation (a smaller oversizing) or a finer mesh.")
        return rep

    # -- post-processing ------------------------------------------------------------------------
    def cell_tensors(self, expr) -> np.ndarray:
        """Evaluate a 3×3 UFL tensor at each owned cell's midpoint → (n_cells, 3, 3)."""
        from dolfinx import fem

        msh = self.solid.mesh
        n = msh.topology.index_map(3).size_local
        e = fem.Expression(expr, np.array([[0.25, 0.25, 0.25]]))
        vals = e.eval(msh, np.arange(n, dtype=np.int32))
        return np.asarray(vals).reshape(n, 3, 3)

    def cell_volumes(self) -> np.ndarray:
        """Volumes (m³) of the owned cells (straight tetrahedra)."""
        msh = self.solid.mesh
        n = msh.topology.index_map(3).size_local
        x = msh.geometry.x[msh.geometry.dofmaps[0][:n, :4]]
        return np.abs(np.einsum("ij,ij->i", x[:, 1] - x[:, 0],
                                np.cross(x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]))) / 6.0

    def destroy(self) -> None:
        """Release the PETSc objects of the Newton solver."""
        self._problem = None

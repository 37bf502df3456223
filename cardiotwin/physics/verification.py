"""Code verification of the steady Navier–Stokes solver: benchmark meshes and post-processing.

Two classical checks of :func:`cardiotwin.physics.newton.solve_newton`:

* **Schäfer–Turek 2D-1** (Schäfer & Turek 1996, "Benchmark computations of laminar flow around a
  cylinder", in *Flow Simulation with High-Performance Computers II*, Notes Numer. Fluid Mech. 52,
  pp. 547–566): steady flow past a cylinder in a channel at Re = 20. :func:`cylinder_channel_2d`
  builds the mesh with gmsh, :func:`schafer_turek_inflow` the inflow, :func:`cylinder_forces`
  the drag and lift and :func:`schafer_turek_2d1` the three benchmark quantities.
* **Method of manufactured solutions**: :func:`unit_square_mesh` / :func:`unit_cube_mesh`,
  :func:`manufactured_solution` (exact ``u``, ``p`` and the body force that makes them solve
  Navier–Stokes) and :func:`manufactured_errors` (L2 and H1 errors), :func:`observed_order`.

All quantities in SI (the benchmark uses ρ = 1 kg/m³, μ = 1e-3 Pa·s).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError
from cardiotwin.physics.mesh import FlowMesh, gmsh_model
from cardiotwin.physics.rheology import Newtonian

__all__ = [
    "SCHAFER_TUREK_2D1",
    "ManufacturedSolution",
    "channel_2d",
    "channel_flow_profile",
    "cylinder_channel_2d",
    "cylinder_forces",
    "manufactured_errors",
    "manufactured_solution",
    "observed_order",
    "pressure_difference",
    "schafer_turek_2d1",
    "schafer_turek_inflow",
    "unit_cube_mesh",
    "unit_square_mesh",
]

# Geometry and fluid of the benchmark (Schäfer & Turek 1996, section 2.1).
CHANNEL_LENGTH_M = 2.2
CHANNEL_HEIGHT_M = 0.41
CYLINDER_CENTRE_M = (0.2, 0.2)
CYLINDER_RADIUS_M = 0.05
ST_DENSITY_KG_M3 = 1.0
ST_VISCOSITY_PA_S = 1e-3
ST_U_MAX_M_S = 0.3

SCHAFER_TUREK_2D1 = {
    # Reference values of test 2D-1 (Re = 20) computed by John & Matthies (2001), "Higher-order
    # finite element discretizations in a benchmark problem for incompressible flows",
    # Int. J. Numer. Meth. Fluids 37:885–903, and FEATFLOW (featflow.de benchmark pages); the
    # original paper gives the bounds c_D ∈ [5.57, 5.59], c_L ∈ [0.0104, 0.0110],
    # Δp ∈ [0.1172, 0.1176].
    "drag_coefficient": 5.57953523384,
    "lift_coefficient": 0.010618948146,
    "pressure_difference_pa": 0.11752016697,
}


# ----------------------------------------------------------------------------------------------
# Schäfer–Turek cylinder
# ----------------------------------------------------------------------------------------------
def cylinder_channel_2d(h_m: float = 0.02, *, h_cylinder_m: float | None = None,
                        refine_radius_m: float = 0.15, geometry_order: int = 2,
                        comm: MPI.Comm = MPI.COMM_WORLD) -> FlowMesh:
    """Triangle mesh of the Schäfer–Turek channel (2.2 × 0.41 m) around a cylinder (r = 0.05 m).

    Parameters
    ----------
    h_m : element size away from the cylinder (m).
    h_cylinder_m : element size on the cylinder (m); default ``h_m / 4``. Sizes grow linearly
        from the cylinder to ``h_m`` at ``refine_radius_m`` from its surface.
    refine_radius_m : width of the graded zone around the cylinder (m).
    geometry_order : 1 (straight edges) or 2 (quadratic, curved edges on the cylinder; the
        P2 velocity is then isoparametric and the geometric error O(h³)).
    comm : MPI communicator (the mesh is generated on rank 0 and distributed).

    Returns
    -------
    FlowMesh
        With facet names ``inlet`` (x = 0), ``outlet`` (x = 2.2), ``wall`` (y = 0 and 0.41) and
        ``cylinder``.
    """
    from dolfinx.io import gmsh as dgmsh

    if not (0 < h_m <= 0.2):
        raise InputError(f"h_m must be in (0, 0.2] m; got {h_m!r}")
    h_cyl = h_m / 4 if h_cylinder_m is None else h_cylinder_m
    if not (0 < h_cyl <= h_m):
        raise InputError(f"h_cylinder_m must be in (0, h_m]; got {h_cylinder_m!r}")
    if geometry_order not in (1, 2):
        raise InputError(f"geometry_order must be 1 or 2; got {geometry_order!r}")
    names = {"inlet": 1, "outlet": 2, "wall": 3, "cylinder": 4}
    with gmsh_model("schafer_turek_2d", comm) as gmsh:
        if comm.rank == 0:
            gmsh.option.setNumber("General.NumThreads", 1)
            occ = gmsh.model.occ
            rect = occ.addRectangle(0, 0, 0, CHANNEL_LENGTH_M, CHANNEL_HEIGHT_M)
            disk = occ.addDisk(*CYLINDER_CENTRE_M, 0, CYLINDER_RADIUS_M, CYLINDER_RADIUS_M)
            fluid, _ = occ.cut([(2, rect)], [(2, disk)])
            occ.synchronize()
            gmsh.model.addPhysicalGroup(2, [t for _, t in fluid], tag=1, name="fluid")
            groups: dict[str, list[int]] = {k: [] for k in names}
            for _, c in gmsh.model.getBoundary(fluid, oriented=False):
                x, y, _ = gmsh.model.occ.getCenterOfMass(1, c)
                if abs(x) < 1e-9:
                    groups["inlet"].append(c)
                elif abs(x - CHANNEL_LENGTH_M) < 1e-9:
                    groups["outlet"].append(c)
                elif abs(y) < 1e-9 or abs(y - CHANNEL_HEIGHT_M) < 1e-9:
                    groups["wall"].append(c)
                else:
                    groups["cylinder"].append(c)
            for k, tag in names.items():
                gmsh.model.addPhysicalGroup(1, groups[k], tag=tag, name=k)
            fd = gmsh.model.mesh.field.add("Distance")
            gmsh.model.mesh.field.setNumbers(fd, "CurvesList", groups["cylinder"])
            gmsh.model.mesh.field.setNumber(fd, "Sampling", 200)
            ft = gmsh.model.mesh.field.add("Threshold")
            gmsh.model.mesh.field.setNumber(ft, "InField", fd)
            gmsh.model.mesh.field.setNumber(ft, "SizeMin", h_cyl)
            gmsh.model.mesh.field.setNumber(ft, "SizeMax", h_m)
            gmsh.model.mesh.field.setNumber(ft, "DistMin", 0.0)
            gmsh.model.mesh.field.setNumber(ft, "DistMax", refine_radius_m)
            gmsh.model.mesh.field.setAsBackgroundMesh(ft)
            gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
            gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
            gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
            gmsh.option.setNumber("Mesh.Algorithm", 6)  # Frontal-Delaunay: well-shaped triangles
            gmsh.model.mesh.generate(2)
            if geometry_order == 2:
                gmsh.model.mesh.setOrder(2)
        data = dgmsh.model_to_mesh(gmsh.model, comm, 0, gdim=2)
    msh = data.mesh
    msh.topology.create_connectivity(1, 2)
    return FlowMesh(mesh=msh, facet_tags=data.facet_tags, names=names)


def schafer_turek_inflow(u_max_m_s: float = ST_U_MAX_M_S) -> Callable[[np.ndarray], np.ndarray]:
    """Parabolic inflow ``u = 4 U_max y (H − y)/H², v = 0`` of the benchmark (mean ``2U_max/3``)."""
    H = CHANNEL_HEIGHT_M

    def profile(x: np.ndarray) -> np.ndarray:
        return np.vstack([4.0 * u_max_m_s * x[1] * (H - x[1]) / H**2, np.zeros(x.shape[1])])

    return profile


def cylinder_forces(result: Any, *, boundary: str = "cylinder") -> tuple[float, float]:
    """Force (N/m in 2-D) of the fluid on a no-slip body, from the discrete residual.

    The 'volume integral' form (Braack & Richter 2006; John 2004, "Reference values for drag
    and lift of a two-dimensional time-dependent flow around a cylinder", IJNMF 44:777): with a
    test function ``v_i`` equal to the unit vector ``e_i`` at the body's velocity nodes and zero at
    all other nodes, ``F_i = −R(u_h, p_h; v_i)`` where ``R`` is the momentum residual without
    boundary terms. It converges at the order of the energy error squared, much faster than the
    boundary integral of the stress.

    Parameters
    ----------
    result : a :class:`~cardiotwin.physics.newton.NewtonResult` with Newtonian rheology and
        no body force, Brinkman region or outlet pressure on the body.
    boundary : name of the body's facets.

    Returns
    -------
    (F_x, F_y) : force components in N (per metre of span in 2-D).
    """
    import ufl
    from dolfinx import fem

    if not isinstance(result.rheology, Newtonian):
        raise InputError("cylinder_forces needs a Newtonian result (it rebuilds the Laplace-form "
                         "momentum residual)")
    fm = result.mesh
    if boundary not in fm.names:
        raise InputError(f"boundary {boundary!r} is not tagged; the mesh has {sorted(fm.names)}")
    msh = fm.mesh
    comm = msh.comm
    V = result.u.function_space
    gdim = msh.geometry.dim
    fdim = msh.topology.dim - 1
    dofs = fem.locate_dofs_topological(V, fdim, fm.facet_tags.find(fm.names[boundary]))
    u, p = result.u, result.p
    rho = result.density_kg_m3
    mu = result.rheology.viscosity_pa_s
    forces = []
    for i in range(gdim):
        vt = fem.Function(V)
        vt.x.array.reshape(-1, gdim)[dofs, i] = 1.0
        vt.x.scatter_forward()
        R = (rho * ufl.inner(ufl.grad(u) * u, vt) + mu * ufl.inner(ufl.grad(u), ufl.grad(vt))
             - p * ufl.div(vt)) * ufl.dx
        forces.append(-comm.allreduce(fem.assemble_scalar(fem.form(R)), op=MPI.SUM))
    return float(forces[0]), float(forces[1])


def pressure_difference(p: Any, a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """``p(a) − p(b)`` of a dolfinx Function at two points (m), evaluated on the owning ranks."""
    from dolfinx import geometry

    msh = p.function_space.mesh
    pts = np.zeros((2, 3))
    pts[0, :len(a)] = a
    pts[1, :len(b)] = b
    tree = geometry.bb_tree(msh, msh.topology.dim)
    cand = geometry.compute_collisions_points(tree, pts)
    coll = geometry.compute_colliding_cells(msh, cand, pts)
    vals = []
    for k in range(2):
        cells = coll.links(k)
        vals.append(float(p.eval(pts[k], cells[:1])[0]) if len(cells) else math.nan)
    gathered = msh.comm.allgather(vals)
    out = []
    for k in range(2):
        found = [g[k] for g in gathered if math.isfinite(g[k])]
        if not found:
            raise InputError(f"point {pts[k].tolist()} lies outside the mesh")
        out.append(found[0])
    return out[0] - out[1]


def schafer_turek_2d1(result: Any) -> dict[str, float]:
    """Drag and lift coefficients and front–back pressure difference of test 2D-1.

    ``c_D = 2 F_D / (ρ U_mean² D)``, ``c_L = 2 F_L / (ρ U_mean² D)`` with ``U_mean = 2 U_max/3``
    (the mean inflow speed, ``result.reference_velocity_m_s``) and ``D = 0.1 m``;
    ``Δp = p(0.15, 0.2) − p(0.25, 0.2)``. Returns also the relative errors against
    :data:`SCHAFER_TUREK_2D1`.
    """
    fx, fy = cylinder_forces(result)
    D = 2 * CYLINDER_RADIUS_M
    scale = 2.0 / (result.density_kg_m3 * result.reference_velocity_m_s**2 * D)
    cx, cy = CYLINDER_CENTRE_M
    dp = pressure_difference(result.p, (cx - CYLINDER_RADIUS_M, cy), (cx + CYLINDER_RADIUS_M, cy))
    out = {"drag_coefficient": fx * scale, "lift_coefficient": fy * scale,
           "pressure_difference_pa": dp}
    for k in list(out):
        out[f"{k}_rel_error"] = (out[k] - SCHAFER_TUREK_2D1[k]) / SCHAFER_TUREK_2D1[k]
    return out


# ----------------------------------------------------------------------------------------------
# Plane channel (generalised Newtonian reference)
# ----------------------------------------------------------------------------------------------
def channel_2d(length_m: float, height_m: float, nx: int, ny: int, *,
               comm: MPI.Comm = MPI.COMM_WORLD, outlet_name: str = "outlet",
               diagonal: str = "crossed") -> FlowMesh:
    """Rectangle ``[0, L] × [0, H]`` of triangles with ``inlet`` (x = 0), ``outlet`` (x = L) and
    ``wall`` (y = 0, H) facet names.

    ``outlet_name`` renames the outlet (``"outlet:out"`` for the pulsatile solver's Windkessel
    outlets); ``diagonal`` is dolfinx's cell diagonal (``"crossed"``, ``"right"``, ``"left"``...).
    """
    from dolfinx import mesh as dmesh

    if not (length_m > 0 and height_m > 0 and nx >= 1 and ny >= 1):
        raise InputError(f"channel_2d needs L, H > 0 and nx, ny >= 1; got {length_m}, {height_m}, "
                         f"{nx}, {ny}")
    try:
        diag = getattr(dmesh.DiagonalType, diagonal)
    except AttributeError:
        raise InputError(f"diagonal must name a dolfinx DiagonalType (crossed, right, left...); "
                         f"got {diagonal!r}") from None
    msh = dmesh.create_rectangle(comm, [np.zeros(2), np.array([length_m, height_m])], [nx, ny],
                                 dmesh.CellType.triangle, diagonal=diag)
    fdim = 1
    msh.topology.create_connectivity(fdim, 2)
    tol = 1e-9 * max(length_m, height_m)
    names = {"inlet": 1, "outlet": 2, "wall": 3}
    markers = {
        "inlet": lambda x: np.isclose(x[0], 0.0, atol=tol),
        "outlet": lambda x: np.isclose(x[0], length_m, atol=tol),
        "wall": lambda x: np.isclose(x[1], 0.0, atol=tol) | np.isclose(x[1], height_m, atol=tol),
    }
    ents, vals = [], []
    for k, f in markers.items():
        e = dmesh.locate_entities_boundary(msh, fdim, f)
        ents.append(e)
        vals.append(np.full(len(e), names[k], dtype=np.int32))
    ents_a, vals_a = np.concatenate(ents), np.concatenate(vals)
    # corner facets cannot belong to two groups: keep the first (inlet/outlet before wall)
    ents_a, first = np.unique(ents_a, return_index=True)
    tags = dmesh.meshtags(msh, fdim, ents_a, vals_a[first])
    return FlowMesh(mesh=msh, facet_tags=tags,
                    names={"inlet": 1, outlet_name: 2, "wall": 3})


def channel_flow_profile(rheology: Any, *, height_m: float, flow_per_depth_m2_s: float,
                         y_m: np.ndarray, n_quad: int = 2001) -> tuple[np.ndarray, float]:
    """Fully developed plane-channel flow of a generalised Newtonian fluid (1-D reference).

    With ``G = −dp/dx`` the shear stress is ``τ(η) = G η`` at distance ``η`` from the centre line;
    the shear rate solves ``μ(γ̇) γ̇ = G η`` (monotonic in ``γ̇`` for ``n > 0``, bisection), the
    velocity is ``u(η) = ∫_η^{H/2} γ̇ ds`` (trapezoidal rule on ``n_quad`` points) and ``G`` is
    found by bisection so that ``∫_0^H u dy`` equals the flow per unit depth.

    Parameters
    ----------
    rheology : object with ``viscosity(shear_rate: ndarray) -> ndarray`` (Pa·s).
    height_m : channel height H (m).
    flow_per_depth_m2_s : flow per unit depth (m²/s), > 0.
    y_m : points across the channel (0 ≤ y ≤ H) where the velocity is wanted.

    Returns
    -------
    (u, G) : velocity (m/s) at ``y_m`` and the pressure gradient magnitude ``−dp/dx`` (Pa/m).
    """
    if not (height_m > 0 and flow_per_depth_m2_s > 0):
        raise InputError("channel_flow_profile needs height_m > 0 and flow_per_depth_m2_s > 0")
    half = height_m / 2
    eta = np.linspace(0.0, half, n_quad)

    def shear(stress: np.ndarray) -> np.ndarray:
        lo = np.zeros_like(stress)
        # μ ≥ μ_min on [0, ∞) so γ̇ ≤ τ/μ_min brackets the root
        mu_min = float(np.min(rheology.viscosity(np.logspace(-6, 8, 400))))
        hi = stress / mu_min + 1e-30
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            above = rheology.viscosity(mid) * mid > stress
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        return 0.5 * (lo + hi)

    def profile(G: float) -> np.ndarray:
        gd = shear(G * eta)
        seg = 0.5 * (gd[1:] + gd[:-1]) * np.diff(eta)
        return np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])  # u(η), u(H/2) = 0

    def flow(G: float) -> float:
        u = profile(G)
        return float(2 * np.sum(0.5 * (u[1:] + u[:-1]) * np.diff(eta)))

    g_lo, g_hi = 0.0, 1.0
    while flow(g_hi) < flow_per_depth_m2_s:
        g_hi *= 4.0
    for _ in range(80):
        g_mid = 0.5 * (g_lo + g_hi)
        if flow(g_mid) < flow_per_depth_m2_s:
            g_lo = g_mid
        else:
            g_hi = g_mid
    G = 0.5 * (g_lo + g_hi)
    u_eta = profile(G)
    y = np.asarray(y_m, dtype=float)
    return np.interp(np.abs(y - half), eta, u_eta), float(G)


# ----------------------------------------------------------------------------------------------
# Manufactured solutions
# ----------------------------------------------------------------------------------------------
def _tagged_box(msh) -> FlowMesh:
    from dolfinx import mesh as dmesh

    fdim = msh.topology.dim - 1
    msh.topology.create_connectivity(fdim, msh.topology.dim)
    facets = dmesh.exterior_facet_indices(msh.topology)
    tags = dmesh.meshtags(msh, fdim, facets, np.ones(len(facets), dtype=np.int32))
    return FlowMesh(mesh=msh, facet_tags=tags, names={"boundary": 1})


def _perturb_interior(msh, amplitude: float) -> None:
    """Move interior nodes by up to ``amplitude`` per coordinate, pseudo-randomly but as a fixed
    function of the node's position (so every rank moves a shared node identically and runs are
    reproducible). Breaks the superconvergence of structured meshes."""
    if amplitude == 0.0:
        return
    x = msh.geometry.x
    gdim = msh.geometry.dim
    interior = np.all((x[:, :gdim] > 1e-12) & (x[:, :gdim] < 1 - 1e-12), axis=1)
    for d in range(gdim):
        phase = x[:, :gdim] @ (np.array([12.9898, 78.233, 37.719])[:gdim] * (1 + d)) + 17.0 * d
        r = np.modf(np.abs(np.sin(phase)) * 43758.5453)[0] * 2 - 1
        x[interior, d] += amplitude * r[interior]


def unit_square_mesh(n: int, *, perturbation: float = 0.0,
                     comm: MPI.Comm = MPI.COMM_WORLD) -> FlowMesh:
    """Unit square, ``n × n`` squares split into triangles (alternating diagonals), the whole
    boundary named ``boundary``; interior nodes moved by up to ``perturbation·h`` (< 0.3)."""
    from dolfinx import mesh as dmesh

    if n < 1 or not 0 <= perturbation < 0.3:
        raise InputError(f"need n >= 1 and 0 <= perturbation < 0.3; got {n}, {perturbation}")
    msh = dmesh.create_unit_square(comm, n, n, dmesh.CellType.triangle,
                                   diagonal=dmesh.DiagonalType.right_left)
    _perturb_interior(msh, perturbation / n)
    return _tagged_box(msh)


def unit_cube_mesh(n: int, *, perturbation: float = 0.0,
                   comm: MPI.Comm = MPI.COMM_WORLD) -> FlowMesh:
    """Unit cube, ``n³`` cubes split into 6 tetrahedra each, boundary named ``boundary``;
    interior nodes moved by up to ``perturbation·h`` (< 0.3)."""
    from dolfinx import mesh as dmesh

    if n < 1 or not 0 <= perturbation < 0.3:
        raise InputError(f"need n >= 1 and 0 <= perturbation < 0.3; got {n}, {perturbation}")
    msh = dmesh.create_unit_cube(comm, n, n, n, dmesh.CellType.tetrahedron)
    _perturb_interior(msh, perturbation / n)
    return _tagged_box(msh)


@dataclass(frozen=True)
class ManufacturedSolution:
    """A smooth exact steady Navier–Stokes solution on the unit square or cube.

    2-D: stream function ``ψ = sin(πx) sin(πy)/π``, so ``u = (sin πx cos πy, −cos πx sin πy)``,
    ``p = cos(πx) cos(πy)``. 3-D: the Arnold–Beltrami–Childress field
    ``u = (sin πz + cos πy, sin πx + cos πz, sin πy + cos πx)`` (divergence-free),
    ``p = cos(πx) cos(πy) cos(πz)``. The body force is ``f = ρ(∇u)u − μΔu + ∇p``.
    """

    dim: int = 2
    density_kg_m3: float = 1.0
    viscosity_pa_s: float = 0.05
    velocity_scale_m_s: float = 1.0

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise InputError(f"dim must be 2 or 3; got {self.dim}")

    def velocity(self, x: Any) -> Any:
        """UFL exact velocity (x: UFL spatial coordinate)."""
        import ufl

        pi, s, c, a = ufl.pi, ufl.sin, ufl.cos, self.velocity_scale_m_s
        if self.dim == 2:
            return a * ufl.as_vector((s(pi * x[0]) * c(pi * x[1]), -c(pi * x[0]) * s(pi * x[1])))
        return a * ufl.as_vector((s(pi * x[2]) + c(pi * x[1]), s(pi * x[0]) + c(pi * x[2]),
                                  s(pi * x[1]) + c(pi * x[0])))

    def velocity_numpy(self, x: np.ndarray) -> np.ndarray:
        """Exact velocity at points x (3, N) → (dim, N)."""
        pi, s, c, a = np.pi, np.sin, np.cos, self.velocity_scale_m_s
        if self.dim == 2:
            return a * np.vstack([s(pi * x[0]) * c(pi * x[1]), -c(pi * x[0]) * s(pi * x[1])])
        return a * np.vstack([s(pi * x[2]) + c(pi * x[1]), s(pi * x[0]) + c(pi * x[2]),
                              s(pi * x[1]) + c(pi * x[0])])

    def pressure(self, x: Any) -> Any:
        """UFL exact pressure (Pa)."""
        import ufl

        p = ufl.cos(ufl.pi * x[0]) * ufl.cos(ufl.pi * x[1])
        return p * ufl.cos(ufl.pi * x[2]) if self.dim == 3 else p

    def body_force(self, x: Any) -> Any:
        """UFL body force (N/m³) that makes (velocity, pressure) an exact solution."""
        import ufl

        u = self.velocity(x)
        return (self.density_kg_m3 * ufl.grad(u) * u
                - self.viscosity_pa_s * ufl.div(ufl.grad(u)) + ufl.grad(self.pressure(x)))


def manufactured_solution(dim: int = 2, *, viscosity_pa_s: float = 0.05,
                          density_kg_m3: float = 1.0) -> ManufacturedSolution:
    """The manufactured solution used by the MMS study (Re = ρ·1·1/μ = 20 by default)."""
    return ManufacturedSolution(dim=dim, density_kg_m3=density_kg_m3, viscosity_pa_s=viscosity_pa_s)


def manufactured_errors(result: Any, exact: ManufacturedSolution, *,
                        quadrature_degree: int = 8) -> dict[str, float]:
    """L2 velocity, H1-seminorm velocity and L2 pressure errors (both pressures at zero mean)."""
    import ufl
    from dolfinx import fem

    msh = result.mesh.mesh
    comm = msh.comm
    x = ufl.SpatialCoordinate(msh)
    dx = ufl.dx(domain=msh, metadata={"quadrature_degree": quadrature_degree})

    def integral(e):
        return comm.allreduce(fem.assemble_scalar(fem.form(e * dx)), op=MPI.SUM)

    vol = integral(1.0)
    eu = result.u - exact.velocity(x)
    p_ex = exact.pressure(x)
    ep = (result.p - integral(result.p) / vol) - (p_ex - integral(p_ex) / vol)
    return {"velocity_l2": math.sqrt(integral(ufl.inner(eu, eu))),
            "velocity_h1": math.sqrt(integral(ufl.inner(ufl.grad(eu), ufl.grad(eu)))),
            "pressure_l2": math.sqrt(integral(ep * ep))}


def observed_order(h: np.ndarray | list[float], err: np.ndarray | list[float]) -> float:
    """Least-squares slope of ``log(err)`` against ``log(h)`` (the observed convergence order)."""
    h = np.asarray(h, dtype=float)
    err = np.asarray(err, dtype=float)
    if len(h) < 2 or len(h) != len(err) or np.any(h <= 0) or np.any(err <= 0):
        raise InputError("observed_order needs >= 2 positive (h, error) pairs of equal length")
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])

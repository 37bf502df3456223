"""Verification of the wall mechanics against analytic solutions.

* :func:`lame_case` — Lamé thick-walled cylinder under internal pressure, plane strain (axial
  displacement zero on both ends of a 3-D tube, in-plane rigid motions pinned at the ends):
  radial displacement of the inner surface and hoop stress against the closed form.
* :func:`shrink_fit_case` — interference (shrink) fit of two cylinders of different materials,
  plane strain: the inner cylinder enters :func:`~cardiotwin.physics.contact.solve_frame_expansion`
  as an :class:`~cardiotwin.physics.contact.ExpandingFrame` whose radial stiffness is its exact
  Lamé compliance (the way a device frame enters), the outer cylinder is the finite-element
  wall; the contact pressure from the penalty solve against :func:`shrink_fit_pressure`.
* :func:`neo_hookean_vs_linear` — the neo-Hookean model reduces to the linear one at small load
  and deviates in the expected direction at large load.
* :func:`convergence_order` — observed order from errors on successively refined meshes.

The tubes are meshed here (:func:`tube_mesh`, gmsh OCC, in metres, in memory) so the
verification does not depend on the geometry package. Measured errors and orders are recorded
in ``docs/mechanics.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError
from cardiotwin.geometry.wall_mesh import WALL_CELLS, WALL_FACETS, WallDomain
from cardiotwin.physics.mesh import gmsh_model
from cardiotwin.physics.solid import ElasticWall, Material, SolidMesh, mesh_from_gmsh_model

__all__ = ["LameResult", "ShrinkFitResult", "convergence_order", "lame_case", "lame_reference",
           "neo_hookean_vs_linear", "shrink_fit_case", "shrink_fit_pressure", "tube_mesh",
           "write_tube_wall"]


def _tube_model(gmsh, a: float, b: float, length: float, h: float, ellipticity: float,
                calcium_sectors: tuple[int, ...]) -> None:
    """Build and mesh the tube in the current gmsh model (units of the arguments)."""
    if not (0 < a < b and length > 0 and h > 0):
        raise InputError("a tube needs 0 < inner_radius < outer_radius, length > 0, size > 0")
    if any(k not in range(4) for k in calcium_sectors):
        raise InputError(f"calcium_sectors are quarter indices 0..3; got {calcium_sectors}")
    gmsh.option.setNumber("General.NumThreads", 1)
    occ = gmsh.model.occ
    # four quarter sectors, fragmented: mesh vertices lie on the planes x = 0 and y = 0 (needed
    # by the 'sliding' end condition); sector k spans the angles k·90°…(k+1)·90°
    sectors = []
    for k in range(4):
        o = occ.addCylinder(0, 0, 0, 0, 0, length, b, angle=math.pi / 2)
        i = occ.addCylinder(0, 0, 0, 0, 0, length, a, angle=math.pi / 2)
        q, _ = occ.cut([(3, o)], [(3, i)])
        occ.rotate(q, 0, 0, 0, 0, 0, 1, k * math.pi / 2)
        sectors.append(q[0][1])
    _, parts = occ.fragment([(3, sectors[0])], [(3, t) for t in sectors[1:]])
    sectors = [p[0][1] for p in parts]
    if ellipticity:
        occ.dilate([(3, t) for t in sectors], 0, 0, 0, 1 + ellipticity, 1 / (1 + ellipticity), 1)
    occ.synchronize()
    vols = [(3, t) for t in sectors]
    groups: dict[str, list[int]] = {k: [] for k in WALL_FACETS}
    rm = 0.5 * (a + b)
    for _, s in gmsh.model.getBoundary(vols, oriented=False):
        x0, y0, z0, x1, y1, z1 = gmsh.model.getBoundingBox(2, s)
        if z1 - z0 < 1e-2 * length:
            groups["proximal" if z0 < 0.5 * length else "distal"].append(s)
        else:
            inner_side = max(abs(x0), abs(x1), abs(y0), abs(y1)) < rm * (1 + abs(ellipticity))
            groups["inner" if inner_side else "outer"].append(s)
    for name, tag in WALL_FACETS.items():
        gmsh.model.addPhysicalGroup(2, groups[name], tag=tag, name=name)
    tissue = [sectors[k] for k in range(4) if k not in calcium_sectors]
    gmsh.model.addPhysicalGroup(3, tissue, tag=WALL_CELLS["tissue"], name="tissue")
    if calcium_sectors:
        gmsh.model.addPhysicalGroup(3, [sectors[k] for k in calcium_sectors],
                                    tag=WALL_CELLS["calcium"], name="calcium")
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    gmsh.option.setNumber("Mesh.MeshSizeMin", 0.5 * h)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.Algorithm3D", 10)
    gmsh.model.mesh.generate(3)


def tube_mesh(inner_radius_m: float, outer_radius_m: float, length_m: float, *, h_m: float,
              ellipticity: float = 0.0, calcium_sectors: tuple[int, ...] = (),
              comm: MPI.Comm = MPI.COMM_WORLD) -> SolidMesh:
    """A straight tube along +z from z = 0 (``proximal``) to z = length (``distal``), in metres,
    built in memory.

    Facet groups ``inner``/``outer``/``proximal``/``distal`` and cell groups as in
    :data:`~cardiotwin.geometry.wall_mesh.WALL_FACETS` / ``WALL_CELLS``: the quarter sectors
    listed in ``calcium_sectors`` (k spans the angles k·90°…(k+1)·90°) are ``calcium``, the
    rest ``tissue``. ``ellipticity`` e > 0 stretches x by ``1 + e`` and y by ``1/(1 + e)`` (an
    oval lumen of about the same area). Axis origin (0, 0, 0), axis +z.
    """
    with gmsh_model("cardiotwin-tube", comm) as gmsh:
        if comm.rank == 0:
            _tube_model(gmsh, inner_radius_m, outer_radius_m, length_m, h_m, ellipticity,
                        tuple(calcium_sectors))
        return mesh_from_gmsh_model(gmsh, comm, scale=1.0, facet_names=WALL_FACETS,
                                    cell_names=WALL_CELLS, axis_origin_m=(0.0, 0.0, 0.0),
                                    axis=(0.0, 0.0, 1.0), source="tube_mesh")


def write_tube_wall(out_path, inner_radius_mm: float, outer_radius_mm: float, length_mm: float,
                    *, size_mm: float, calcium_sectors: tuple[int, ...] = ()) -> WallDomain:
    """The same tube written as a :class:`~cardiotwin.geometry.wall_mesh.WallDomain` ``.msh``
    (4.1, mm) — for tests of :func:`~cardiotwin.physics.solid.load_wall` without the geometry
    package's builders."""
    with gmsh_model("cardiotwin-tube-file", MPI.COMM_SELF) as gmsh:
        _tube_model(gmsh, inner_radius_mm, outer_radius_mm, length_mm, size_mm, 0.0,
                    tuple(calcium_sectors))
        gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
        gmsh.write(str(out_path))
        n_cells = int(sum(len(e) for e in gmsh.model.mesh.getElements(3)[1]))
        n_nodes = len(gmsh.model.mesh.getNodes()[0])
    return WallDomain(mesh_path=str(out_path), axis_origin_mm=(0.0, 0.0, 0.0),
                      axis=(0.0, 0.0, 1.0), thickness_mm=outer_radius_mm - inner_radius_mm,
                      n_cells=n_cells, n_nodes=n_nodes, has_calcium=bool(calcium_sectors))


# -- Lamé --------------------------------------------------------------------------------------

def lame_reference(r, *, a: float, b: float, p_inner: float = 0.0, p_outer: float = 0.0,
                   E: float, nu: float):
    """Plane-strain thick cylinder ``a <= r <= b`` under internal/external pressure (Pa).

    Returns ``(u_r, σ_rr, σ_θθ)`` at ``r`` (m, Pa). With ``u_r = A r + B / r``:
    ``σ_rr = 2(λ+μ) A − 2μ B / r²``, ``σ_θθ = 2(λ+μ) A + 2μ B / r²``.
    """
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    # σ_rr(a) = −p_i, σ_rr(b) = −p_o
    M = np.array([[2 * (lam + mu), -2 * mu / a**2], [2 * (lam + mu), -2 * mu / b**2]])
    A, B = np.linalg.solve(M, [-p_inner, -p_outer])
    r = np.asarray(r, dtype=float)
    return A * r + B / r, 2 * (lam + mu) * A - 2 * mu * B / r**2, 2 * (lam + mu) * A + 2 * mu * B / r**2


@dataclass(frozen=True)
class LameResult:
    """One Lamé run: mesh size, unknowns, relative errors.

    ``ur_error``: relative L2 error of the radial displacement over the inner surface;
    ``hoop_error``: relative L2 error of σ_θθ over the volume; ``hoop_inner_error``: relative
    error of the mean hoop stress in the cells touching the inner surface against the analytic
    value at their centroids (the peak wall stress a user reads).
    """

    h_m: float
    n_dofs: int
    degree: int
    ur_error: float
    hoop_error: float
    hoop_inner_error: float


def lame_case(h_m: float, *, degree: int = 2, a: float = 0.012, b: float = 0.015,
              length: float = 0.006, p: float = 16e3, E: float = 2e6, nu: float = 0.45,
              model: str = "linear", linear_solver: str = "auto",
              comm: MPI.Comm = MPI.COMM_WORLD) -> LameResult:
    """Thick-walled tube (default: 12/15 mm radii, like an aortic annulus wall, 120 mmHg).

    Both ends ``sliding`` (axial displacement zero, rigid in-plane motion pinned): plane strain.
    """
    import ufl
    from dolfinx import fem

    solid = tube_mesh(a, b, length, h_m=h_m, comm=comm)
    wall = ElasticWall(solid, {"tissue": Material(E, nu, "tissue")}, model=model, degree=degree,
                       fixed={"proximal": "sliding", "distal": "sliding"},
                       linear_solver=linear_solver)
    wall.add_pressure("inner", p)
    wall.solve(what="Lamé")
    x = ufl.SpatialCoordinate(solid.mesh)
    r = ufl.sqrt(x[0] ** 2 + x[1] ** 2)
    er = ufl.as_vector((x[0] / r, x[1] / r, 0))
    et = ufl.as_vector((-x[1] / r, x[0] / r, 0))
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    M = np.array([[2 * (lam + mu), -2 * mu / a**2], [2 * (lam + mu), -2 * mu / b**2]])
    A, B = np.linalg.solve(M, [-p, 0.0])
    ur_ex = A * r + B / r
    st_ex = 2 * (lam + mu) * A + 2 * mu * B / r**2
    ds = ufl.Measure("ds", domain=solid.mesh, subdomain_data=solid.facet_tags)
    dx = ufl.Measure("dx", domain=solid.mesh, metadata={"quadrature_degree": 6})
    sig = wall.cauchy_stress(wall.u)
    st_h = ufl.dot(et, ufl.dot(sig, et))

    def integral(form):
        return comm.allreduce(fem.assemble_scalar(fem.form(form)), op=MPI.SUM)

    ins = ds(WALL_FACETS["inner"])
    ur_err = math.sqrt(integral((ufl.dot(wall.u, er) - ur_ex) ** 2 * ins) / integral(ur_ex**2 * ins))
    st_err = math.sqrt(integral((st_h - st_ex) ** 2 * dx) / integral(st_ex**2 * dx))
    # cells touching the inner surface: mean hoop stress vs analytic at their centroids
    msh = solid.mesh
    f2c = msh.topology.connectivity(2, 3)
    n_own = msh.topology.index_map(3).size_local
    cells = np.unique([f2c.links(f)[0] for f in solid.facets("inner")]).astype(np.int32)
    cells = cells[cells < n_own]
    ctr = msh.geometry.x[msh.geometry.dofmaps[0][cells, :4]].mean(axis=1)
    e = fem.Expression(st_h, np.array([[0.25, 0.25, 0.25]]))
    num = np.asarray(e.eval(msh, cells)).ravel()
    ref = lame_reference(np.hypot(ctr[:, 0], ctr[:, 1]), a=a, b=b, p_inner=p, E=E, nu=nu)[2]
    s_num = comm.allreduce(float(num.sum()), op=MPI.SUM)
    s_ref = comm.allreduce(float(ref.sum()), op=MPI.SUM)
    return LameResult(h_m=h_m, n_dofs=wall.n_dofs, degree=degree, ur_error=ur_err,
                      hoop_error=st_err, hoop_inner_error=abs(s_num / s_ref - 1))


def convergence_order(h: list[float], err: list[float]) -> float:
    """Least-squares slope of log(error) against log(h) (the observed order)."""
    if len(h) < 2 or len(h) != len(err):
        raise InputError("convergence_order needs >= 2 (h, error) pairs")
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


# -- shrink fit ------------------------------------------------------------------------------

def shrink_fit_pressure(*, a: float, b: float, c: float, delta: float, E_inner: float,
                        nu_inner: float, E_outer: float, nu_outer: float) -> float:
    """Interface pressure (Pa) of a plane-strain shrink fit: inner cylinder ``a…b`` whose outer
    radius exceeds the outer cylinder's inner radius ``b`` by the radial interference ``delta``
    (m), outer cylinder ``b…c``. Small strain: ``p = δ / (C_i + C_o)`` with the radial
    compliances ``C = |u_r(b)| / p`` of :func:`lame_reference`."""
    Ci = -lame_reference(b, a=a, b=b, p_outer=1.0, E=E_inner, nu=nu_inner)[0]
    Co = lame_reference(b, a=b, b=c, p_inner=1.0, E=E_outer, nu=nu_outer)[0]
    return float(delta / (Ci + Co))


@dataclass(frozen=True)
class ShrinkFitResult:
    """One shrink-fit run: FE mean contact pressure (``radial force / contact area``) against
    the analytic pressure; ``pressure_spread`` = (max − min)/mean of the facet pressures."""

    h_m: float
    penalty: float
    n_dofs: int
    pressure_pa: float
    exact_pa: float
    error: float
    pressure_spread: float
    wall_solves: int


def shrink_fit_case(h_m: float, *, penalty: float = 10.0, degree: int = 2, a: float = 0.009,
                    b: float = 0.012, c: float = 0.015, length: float = 0.006,
                    delta: float = 2e-4, E_inner: float = 20e6, nu_inner: float = 0.3,
                    E_outer: float = 2e6, nu_outer: float = 0.45,
                    comm: MPI.Comm = MPI.COMM_WORLD) -> ShrinkFitResult:
    """Shrink fit through :func:`~cardiotwin.physics.contact.solve_frame_expansion`.

    The outer cylinder ``b…c`` (E_outer, ν_outer) is the FE wall with sliding ends (plane
    strain); the inner cylinder ``a…b`` (E_inner, ν_inner) is the frame: nominal radius
    ``b + δ`` and radial stiffness ``K₀ = π b L / C_i`` (its exact plane-strain compliance
    ``C_i``: a uniform pressure p on its outer surface gives the force ``2π b L p`` and the
    diameter reduction ``2 C_i p``)."""
    from cardiotwin.physics.contact import ExpandingFrame, solve_frame_expansion

    Ci = -lame_reference(b, a=a, b=b, p_outer=1.0, E=E_inner, nu=nu_inner)[0]
    k0_n_per_m = math.pi * b * length / Ci
    frame = ExpandingFrame(axis_origin_mm=(0.0, 0.0, 0.0), axis=(0.0, 0.0, 1.0), z_min_mm=-1.0,
                           z_max_mm=length * 1e3 + 1.0, nominal_radius_mm=(b + delta) * 1e3,
                           radial_stiffness_n_per_mm=k0_n_per_m * 1e-3)
    solid = tube_mesh(b, c, length, h_m=h_m, comm=comm)
    sol = solve_frame_expansion(solid, frame, {"tissue": Material(E_outer, nu_outer, "outer")},
                                degree=degree, penalty=penalty, ends="sliding", rtol=1e-6)
    p_fe = sol.radial_force_n / (float(sol.area_mm2.sum()) * 1e-6)
    exact = shrink_fit_pressure(a=a, b=b, c=c, delta=delta, E_inner=E_inner, nu_inner=nu_inner,
                                E_outer=E_outer, nu_outer=nu_outer)
    pk = sol.pressure_kpa * 1e3
    return ShrinkFitResult(h_m=h_m, penalty=penalty, n_dofs=sol.n_dofs, pressure_pa=p_fe,
                           exact_pa=exact, error=abs(p_fe / exact - 1),
                           pressure_spread=float((pk.max() - pk.min()) / pk.mean()),
                           wall_solves=sol.wall_solves)


# -- neo-Hookean against linear -------------------------------------------------------------

def neo_hookean_vs_linear(pressure_pa: float, *, h_m: float = 0.0015, steps: int = 1,
                          a: float = 0.012, b: float = 0.015, length: float = 0.006,
                          E: float = 2e6, nu: float = 0.45,
                          comm: MPI.Comm = MPI.COMM_WORLD) -> tuple[float, float]:
    """Mean radial displacement (m) of the inner surface of the Lamé tube under internal
    ``pressure_pa`` for the linear and the neo-Hookean (follower pressure, ``steps`` load
    increments) models, P2, sliding ends: ``(u_linear, u_neo_hookean)``."""
    import ufl
    from dolfinx import fem

    solid = tube_mesh(a, b, length, h_m=h_m, comm=comm)
    out = []
    for model in ("linear", "neo_hookean"):
        wall = ElasticWall(solid, {"tissue": Material(E, nu, "tissue")}, model=model, degree=2,
                           fixed={"proximal": "sliding", "distal": "sliding"})
        p = wall.add_pressure("inner", 0.0)
        n = steps if model == "neo_hookean" else 1
        for k in range(1, n + 1):
            p.value = pressure_pa * k / n
            wall.solve(what=f"Lamé {model}")
        x = ufl.SpatialCoordinate(solid.mesh)
        r = ufl.sqrt(x[0] ** 2 + x[1] ** 2)
        er = ufl.as_vector((x[0] / r, x[1] / r, 0))
        ds = ufl.Measure("ds", domain=solid.mesh, subdomain_data=solid.facet_tags)(
            WALL_FACETS["inner"])
        num = comm.allreduce(fem.assemble_scalar(fem.form(ufl.dot(wall.u, er) * ds)), op=MPI.SUM)
        den = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ds)), op=MPI.SUM)
        out.append(num / den)
    return out[0], out[1]

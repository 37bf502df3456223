"""A device frame expanding against the vessel wall: frictionless penalty contact.

The frame is represented by its radial compliance, not by struts. Its outer radius about the
frame axis, over its axial extent ``z_min … z_max``, is

    r_f(θ) = R_nom + c₀ + c₂ cos 2θ + s₂ sin 2θ

(θ measured from :func:`~cardiotwin.physics.solid.plane_basis` ``e1``); ``c₀ ≤ 0`` is the
uniform compression (mode 0) and ``(c₂, s₂)`` the ovalisation (mode 2, only when the frame has an
ovalisation stiffness). Its elastic energy is ``K₀ c₀² + K₂ (c₂² + s₂²)`` with ``K₀`` the
whole-frame radial force per unit *diameter* reduction (so the radial force is
``F = K₀ ΔD``) and ``K₂`` the mode-2 generalised force per unit mode-2 diameter change ``2c₂``.

The wall (finite elements, :class:`~cardiotwin.physics.solid.ElasticWall`) touches the frame on
its ``inner`` facets whose midpoints lie within the frame's axial extent. The penetration of a
wall point is ``g = r_f(θ) − ρ`` with ``ρ`` the radial distance of the deformed point from the
frame axis (linearised, ``ρ₀ + u·e_ρ``, for the linear model); the contact energy
``½ κ ∫ ⟨g⟩₊² dA`` gives the contact pressure ``p = κ ⟨g⟩₊`` normal to the frame (radial,
frictionless). The penalty ``κ = penalty · E_max / h`` (E_max: the stiffest wall material;
h: the size of the contact facets) makes the contact compliance ``1/κ`` small against the wall's
(the error it causes falls as 1/penalty; see ``docs/mechanics.md``).

Solution
--------
For given frame coefficients ``c`` the wall problem is solved by Newton (semismooth: the active
contact set is found in the same iteration). The coefficients follow from the frame equilibrium
``R(c) = 2 K c + Q(c) = 0`` with ``Q = (∫p dA, ∫p cos 2θ dA, ∫p sin 2θ dA)`` the generalised
contact forces. That outer problem has 1 or 3 unknowns and is solved by Newton with the exact Jacobian
``2K + dQ/dc`` of the current contact set (``dQ/dc = A − bᵀ J⁻¹ b`` from the wall Jacobian J
whose LU factors the wall solve left: a few back-substitutions, no extra wall solve),
safeguarded by a bracket on ``c₀`` for a circular frame (``R₀`` is negative when the frame is
at the lumen, positive at its nominal size) and by step halving on ``|R|`` otherwise. A wall
solve that fails is retried from the last converged state in smaller steps of the frame radius
(continuation).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError, SolverError
from cardiotwin.physics.mesh import MM_TO_M
from cardiotwin.physics.solid import (
    ElasticWall,
    Material,
    SolidMesh,
    default_wall_materials,
    plane_basis,
    principal_values,
)

logger = logging.getLogger(__name__)

__all__ = ["ExpandingFrame", "FrameContactSolution", "solve_frame_expansion"]

END_CONDITIONS = {"clamped": "all", "sliding": "sliding"}


@dataclass(frozen=True)
class ExpandingFrame:
    """What the wall mechanics needs to know about a device frame (no catalog types).

    Attributes
    ----------
    axis_origin_mm : (3,) a point of the frame axis (mm, same frame as the wall mesh).
    axis : (3,) frame axis (normalised on use); ``z`` is measured from ``axis_origin_mm``.
    z_min_mm, z_max_mm : axial extent of the frame (mm).
    nominal_radius_mm : free (unloaded) outer radius of the expanded frame (mm).
    radial_stiffness_n_per_mm : whole-frame radial force per mm of diameter reduction (mode 0).
    ovalisation_stiffness_n_per_mm : mode-2 generalised force per mm of mode-2 diameter change;
        ``None`` keeps the frame circular.
    """

    axis_origin_mm: tuple[float, float, float]
    axis: tuple[float, float, float]
    z_min_mm: float
    z_max_mm: float
    nominal_radius_mm: float
    radial_stiffness_n_per_mm: float
    ovalisation_stiffness_n_per_mm: float | None = None

    def __post_init__(self) -> None:
        if len(self.axis_origin_mm) != 3 or len(self.axis) != 3:
            raise InputError("ExpandingFrame: axis_origin_mm and axis must be 3-vectors")
        if not np.linalg.norm(self.axis) > 0:
            raise InputError(f"ExpandingFrame: axis must be non-zero; got {self.axis}")
        if not self.z_max_mm > self.z_min_mm:
            raise InputError(f"ExpandingFrame: z_max_mm ({self.z_max_mm}) must exceed z_min_mm "
                             f"({self.z_min_mm})")
        if not (math.isfinite(self.nominal_radius_mm) and self.nominal_radius_mm > 0):
            raise InputError(f"ExpandingFrame: nominal_radius_mm must be > 0; got "
                             f"{self.nominal_radius_mm}")
        if not (math.isfinite(self.radial_stiffness_n_per_mm) and
                self.radial_stiffness_n_per_mm > 0):
            raise InputError("ExpandingFrame: radial_stiffness_n_per_mm must be > 0; got "
                             f"{self.radial_stiffness_n_per_mm}")
        k2 = self.ovalisation_stiffness_n_per_mm
        if k2 is not None and not (math.isfinite(k2) and k2 > 0):
            raise InputError(f"ExpandingFrame: ovalisation_stiffness_n_per_mm must be > 0 or None; "
                             f"got {k2}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExpandingFrame:
        d = dict(d)
        d["axis_origin_mm"] = tuple(float(v) for v in d["axis_origin_mm"])
        d["axis"] = tuple(float(v) for v in d["axis"])
        return cls(**d)


@dataclass(frozen=True)
class FrameContactSolution:
    """The frame–wall equilibrium, reported in mm, kPa and N.

    Attributes
    ----------
    model : wall model (``"linear"`` / ``"neo_hookean"``); degree : displacement degree.
    in_contact : whether the frame touches the wall at all.
    frame_angles_rad, frame_radius_mm : the final frame radius per angle (from ``e1`` of
        :func:`~cardiotwin.physics.solid.plane_basis` of the frame axis); the same at every z.
    frame_z_mm : (z_min, z_max) axial extent.
    nominal_diameter_mm : free diameter of the frame.
    diameter_mean_mm, diameter_min_mm, diameter_max_mm : final frame diameters.
    eccentricity : ``1 − D_min / D_max``.
    lumen_diameter_mm : mean undeformed lumen diameter over the frame's extent (2 × mean ρ).
    radial_force_n : ``∫ p dA`` over the wall (the frame's mode-0 load).
    points_mm, pressure_kpa, area_mm2 : per inner-wall facet within the frame's extent: facet
        midpoint (mm, wall-mesh coordinates), mean contact pressure over it (kPa), its area
        (mm²).
    contact_area_mm2 : summed area of the facets with positive pressure.
    max_contact_pressure_kpa : largest facet pressure.
    max_principal_stress_kpa, p99_principal_stress_kpa : largest eigenvalue of the Cauchy
        stress per cell (midpoint), maximum and 99th percentile over cells (all materials).
    max_tissue_stress_kpa : the maximum over ``tissue`` cells only (rupture assessments).
    max_principal_strain, p99_principal_strain : largest eigenvalue of the strain (small strain
        for ``linear``, Green–Lagrange for ``neo_hookean``), maximum and 99th percentile.
    max_displacement_mm : largest wall displacement.
    iterations : outer (frame-equilibrium) iterations; newton_iterations : all wall Newton steps.
    wall_solves : number of wall solves.
    converged : frame equilibrium met within tolerance.
    residual_n : final frame force residual ``|R|`` (N).
    n_dofs : displacement unknowns; solve_time_s : wall-clock seconds.
    penalty_pa_per_m : the contact penalty κ used; linear_solver : ``"mumps"`` / ``"gamg"``.
    warnings : human-readable warnings (large strain, no contact, ...).
    """

    model: str
    degree: int
    in_contact: bool
    frame_angles_rad: np.ndarray
    frame_radius_mm: np.ndarray
    frame_z_mm: tuple[float, float]
    nominal_diameter_mm: float
    diameter_mean_mm: float
    diameter_min_mm: float
    diameter_max_mm: float
    eccentricity: float
    lumen_diameter_mm: float
    radial_force_n: float
    points_mm: np.ndarray
    pressure_kpa: np.ndarray
    area_mm2: np.ndarray
    contact_area_mm2: float
    max_contact_pressure_kpa: float
    max_principal_stress_kpa: float
    p99_principal_stress_kpa: float
    max_tissue_stress_kpa: float
    max_principal_strain: float
    p99_principal_strain: float
    max_displacement_mm: float
    iterations: int
    newton_iterations: int
    wall_solves: int
    converged: bool
    residual_n: float
    n_dofs: int
    solve_time_s: float
    penalty_pa_per_m: float
    linear_solver: str
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays as lists)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = v.tolist()
        d["warnings"] = list(self.warnings)
        d["frame_z_mm"] = list(self.frame_z_mm)
        return d


class _FrameContact:
    """The wall with the frame's penalty contact terms and the generalised forces."""

    def __init__(self, solid: SolidMesh, frame: ExpandingFrame, materials, *, model, degree,
                 penalty, ends, linear_solver):
        import ufl
        from dolfinx import fem
        from dolfinx import mesh as dmesh

        msh = solid.mesh
        comm = msh.comm
        self.solid, self.frame = solid, frame
        self.a = np.asarray(frame.axis, float) / np.linalg.norm(frame.axis)
        self.o = np.asarray(frame.axis_origin_mm, float) * MM_TO_M
        self.e1, self.e2 = plane_basis(self.a)
        self.R = frame.nominal_radius_mm * MM_TO_M
        self.oval = frame.ovalisation_stiffness_n_per_mm is not None
        K0 = frame.radial_stiffness_n_per_mm / MM_TO_M
        K2 = (frame.ovalisation_stiffness_n_per_mm or 0.0) / MM_TO_M
        self.K = np.array([K0, K2, K2]) if self.oval else np.array([K0])

        # candidate facets: inner facets (owned) whose midpoint lies within the frame's extent
        inner = solid.facets("inner")
        n_own_f = msh.topology.index_map(2).size_local
        msh.topology.create_connectivity(2, 0)
        fx = msh.geometry.x[dmesh.entities_to_geometry(msh, 2, inner, False)[:, :3]]
        mid = fx.mean(axis=1)
        z = (mid - self.o) @ self.a
        zmin, zmax = frame.z_min_mm * MM_TO_M, frame.z_max_mm * MM_TO_M
        sel = (z >= zmin) & (z <= zmax)
        self.facets = np.sort(inner[sel]).astype(np.int32)
        order = np.argsort(inner[sel])
        fx, mid = fx[sel][order], mid[sel][order]
        owned = self.facets < n_own_f
        self.facets_owned, self.mid, self.fx = self.facets[owned], mid[owned], fx[owned]
        self.area = 0.5 * np.linalg.norm(np.cross(self.fx[:, 1] - self.fx[:, 0],
                                                  self.fx[:, 2] - self.fx[:, 0]), axis=1)
        n_cand = comm.allreduce(len(self.facets_owned), op=MPI.SUM)
        if n_cand == 0:
            zr = comm.allgather((float(z.min() / MM_TO_M), float(z.max() / MM_TO_M))
                                if len(z) else None)
            zr = [r for r in zr if r]
            rng = (min(r[0] for r in zr), max(r[1] for r in zr)) if zr else (math.nan, math.nan)
            raise InputError(
                f"the frame's axial extent z = {frame.z_min_mm:.1f}…{frame.z_max_mm:.1f} mm holds "
                f"no inner wall facet (the wall's inner surface spans z = {rng[0]:.1f}…"
                f"{rng[1]:.1f} mm along the frame axis); check the frame pose or the wall mesh")
        # undeformed radial distances of the candidate vertices
        rel = self.fx.reshape(-1, 3) - self.o
        rho = np.linalg.norm(rel - np.outer(rel @ self.a, self.a), axis=1)
        self.rho_min = comm.allreduce(float(rho.min()) if len(rho) else math.inf, op=MPI.MIN)
        relm = self.mid - self.o
        rho_m = np.linalg.norm(relm - np.outer(relm @ self.a, self.a), axis=1)
        self.rho_mean = comm.allreduce(float((rho_m * self.area).sum()), op=MPI.SUM) / \
            comm.allreduce(float(self.area.sum()), op=MPI.SUM)
        area_tot = comm.allreduce(float(self.area.sum()), op=MPI.SUM)
        self.h = math.sqrt(4 * area_tot / n_cand / math.sqrt(3))

        fixed = {name: END_CONDITIONS[ends] for name in ("proximal", "distal")
                 if name in solid.facet_names}
        if not fixed:
            raise InputError("the wall mesh has neither a 'proximal' nor a 'distal' facet group to "
                             "hold it; the wall would float")
        self.wall = ElasticWall(solid, materials, model=model, degree=degree, fixed=fixed,
                                linear_solver=linear_solver, line_search="basic")
        self.kappa = penalty * self.wall.E_max / self.h

        tags = dmesh.meshtags(msh, 2, self.facets, np.ones(len(self.facets), dtype=np.int32))
        qd = 2 * degree + 2
        self.ds_c = ufl.Measure("ds", domain=msh, subdomain_data=tags, subdomain_id=1,
                                metadata={"quadrature_degree": qd})
        self.c = fem.Constant(msh, np.zeros(3))
        self.kappa_c = fem.Constant(msh, float(self.kappa))
        # the radial distance of the facets' vertices interpolated linearly over each facet: the
        # contact surface is the one through the mesh vertices (on a circle, exactly the circle)
        # rather than the chords, whose sag h²/8ρ would otherwise read as extra interference
        P1 = fem.functionspace(msh, ("Lagrange", 1))
        self.rho_vertex = fem.Function(P1)
        X = P1.tabulate_dof_coordinates() - self.o
        self.rho_vertex.x.array[:] = np.linalg.norm(X - np.outer(X @ self.a, self.a), axis=1)
        u = self.wall.u
        self.g, cos2, sin2 = self._gap_ufl(ufl.SpatialCoordinate(msh), u, ufl)
        gp = ufl.conditional(ufl.gt(self.g, 0), self.g, 0)
        self.wall.add_energy(0.5 * self.kappa_c * gp**2 * self.ds_c)
        p = self.kappa_c * gp
        phis = [1.0, cos2, sin2] if self.oval else [1.0]
        q_ufl = [p * phi * self.ds_c for phi in phis]
        self.Q_forms = [fem.form(q) for q in q_ufl]
        # sensitivities of Q to the frame coefficients: explicit part ∫κ H φ_i φ_j and the
        # vectors b_j = ∂Q_j/∂u = ∂F/∂c_j (F: the wall residual)
        H = ufl.conditional(ufl.gt(self.g, 0), 1.0, 0.0)
        self.A_forms = [[fem.form(self.kappa_c * H * pi * pj * self.ds_c) for pj in phis]
                        for pi in phis]
        self.b_forms = [fem.form(ufl.derivative(q, u, self.wall.v)) for q in q_ufl]
        self.comm = comm

    def sensitivity(self) -> np.ndarray:
        """dQ/dc (N/m) at the current wall solution, exact for the current contact set:
        ``A − bᵢᵀ J⁻¹ bⱼ`` with the wall Jacobian J whose factors the last Newton solve left."""
        from dolfinx import fem
        from dolfinx.fem import petsc as fpetsc
        from petsc4py import PETSc

        m = len(self.Q_forms)
        A = np.array([[self.comm.allreduce(fem.assemble_scalar(f), op=MPI.SUM) for f in row]
                      for row in self.A_forms])
        ksp = self.wall._problem.solver.getKSP()
        bs, dus = [], []
        for f in self.b_forms:
            b = fpetsc.assemble_vector(f)
            b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            fpetsc.set_bc(b, self.wall.bcs)
            du = b.duplicate()
            ksp.solve(b, du)
            if ksp.getConvergedReason() < 0:
                raise SolverError("the frame sensitivity solve failed (KSP reason "
                                  f"{ksp.getConvergedReason()}); try linear_solver='mumps'")
            bs.append(b)
            dus.append(du)
        S = np.array([[A[i, j] - bs[i].dot(dus[j]) for j in range(m)] for i in range(m)])
        for v in bs + dus:
            v.destroy()
        return S

    def _gap_ufl(self, x, u, ufl):
        from dolfinx import fem

        # frame geometry as Constants: the compiled forms are reused for every frame and pose
        msh = self.solid.mesh
        a, o = fem.Constant(msh, self.a), fem.Constant(msh, self.o)
        e1, e2 = fem.Constant(msh, self.e1), fem.Constant(msh, self.e2)
        R = fem.Constant(msh, float(self.R))
        d = x - o
        dp = d - ufl.dot(d, a) * a
        rho0 = ufl.sqrt(ufl.dot(dp, dp))
        cs = ufl.dot(dp, e1) / rho0
        sn = ufl.dot(dp, e2) / rho0
        cos2, sin2 = cs * cs - sn * sn, 2 * cs * sn
        if self.wall.model == "linear":
            rho = self.rho_vertex + ufl.dot(u, dp / rho0)
        else:
            du = dp + u - ufl.dot(u, a) * a
            rho = self.rho_vertex - rho0 + ufl.sqrt(ufl.dot(du, du))
        rf = R + self.c[0] + self.c[1] * cos2 + self.c[2] * sin2
        return rf - rho, cos2, sin2

    def full(self, c: np.ndarray) -> np.ndarray:
        out = np.zeros(3)
        out[:len(c)] = c
        return out

    def generalised_forces(self) -> np.ndarray:
        from dolfinx import fem

        return np.array([self.comm.allreduce(fem.assemble_scalar(f), op=MPI.SUM)
                         for f in self.Q_forms])

    def facet_pressure(self) -> np.ndarray:
        """Mean contact pressure (Pa) over each owned candidate facet (3-point Gauss rule,
        exact for quadratics; the same penetration as the contact energy)."""
        msh = self.solid.mesh
        n = len(self.facets_owned)
        if not n:
            return np.zeros(0)
        f2c = msh.topology.connectivity(2, 3)
        cells = np.array([f2c.links(f)[0] for f in self.facets_owned], dtype=np.int32)
        bary = np.array([[2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
        rel = self.fx - self.o
        rho_vert = np.linalg.norm(rel - (rel @ self.a)[..., None] * self.a, axis=2)  # (n, 3)
        c = self.full(self.c.value)
        p = np.zeros(n)
        for w in bary:
            x = np.einsum("k,nkd->nd", w, self.fx)
            u = self.wall.u.eval(x, cells).reshape(-1, 3)
            d = x - self.o
            dp = d - np.outer(d @ self.a, self.a)
            rho0 = np.linalg.norm(dp, axis=1)
            rho_v = rho_vert @ w
            cs, sn = (dp @ self.e1) / rho0, (dp @ self.e2) / rho0
            rf = self.R + c[0] + c[1] * (cs * cs - sn * sn) + c[2] * (2 * cs * sn)
            if self.wall.model == "linear":
                rho = rho_v + np.einsum("ij,ij->i", u, dp / rho0[:, None])
            else:
                du = dp + u - np.outer(u @ self.a, self.a)
                rho = rho_v - rho0 + np.linalg.norm(du, axis=1)
            p += self.kappa * np.maximum(rf - rho, 0.0) / 3
        return p


def _no_contact_solution(fc: _FrameContact, frame: ExpandingFrame, *, model, degree, t0,
                         n_angles, warnings) -> FrameContactSolution:
    ang = np.linspace(0, 2 * math.pi, n_angles, endpoint=False)
    D = 2 * frame.nominal_radius_mm
    n = len(fc.facets_owned)
    return FrameContactSolution(
        model=model, degree=degree, in_contact=False, frame_angles_rad=ang,
        frame_radius_mm=np.full(n_angles, frame.nominal_radius_mm),
        frame_z_mm=(frame.z_min_mm, frame.z_max_mm), nominal_diameter_mm=D, diameter_mean_mm=D,
        diameter_min_mm=D, diameter_max_mm=D, eccentricity=0.0,
        lumen_diameter_mm=2 * fc.rho_mean / MM_TO_M, radial_force_n=0.0,
        points_mm=fc.mid / MM_TO_M, pressure_kpa=np.zeros(n), area_mm2=fc.area / MM_TO_M**2,
        contact_area_mm2=0.0, max_contact_pressure_kpa=0.0, max_principal_stress_kpa=0.0,
        p99_principal_stress_kpa=0.0, max_tissue_stress_kpa=0.0, max_principal_strain=0.0,
        p99_principal_strain=0.0, max_displacement_mm=0.0, iterations=0, newton_iterations=0,
        wall_solves=0, converged=True, residual_n=0.0, n_dofs=fc.wall.n_dofs,
        solve_time_s=time.perf_counter() - t0, penalty_pa_per_m=fc.kappa,
        linear_solver=fc.wall.linear_solver, warnings=tuple(warnings))


def solve_frame_expansion(solid: SolidMesh, frame: ExpandingFrame,
                          materials: Mapping[str, Material] | None = None, *,
                          model: str = "linear", degree: int = 2, penalty: float = 10.0,
                          ends: str = "clamped", linear_solver: str = "auto",
                          rtol: float = 1e-3, max_iterations: int = 25,
                          max_halvings: int = 6, timeout_s: float = 900.0,
                          strain_warning: float = 0.25, n_angles: int = 72,
                          linear_start: bool = True) -> FrameContactSolution:
    """Expand ``frame`` towards its nominal radius inside the wall; frictionless penalty contact.

    Parameters
    ----------
    solid : the wall mesh (m), e.g. from :func:`~cardiotwin.physics.solid.load_wall`.
    frame : the device frame (mm, N/mm).
    materials : cell-group name → :class:`Material`; default
        :func:`~cardiotwin.physics.solid.default_wall_materials`.
    model : ``"linear"`` (small strain) or ``"neo_hookean"`` (large strain).
    degree : displacement degree, 2 (default; P1 tetrahedra are too stiff in bending across a
        wall only one or two cells thick and lock as ν → 0.5) or 1 (fast, coarse).
    penalty : dimensionless penalty factor; κ = penalty · E_max / h (Pa/m).
    ends : ``"clamped"`` (proximal and distal cut ends fixed) or ``"sliding"`` (axial
        displacement zero, in-plane rigid motions pinned; needs the axis along x, y or z and
        mesh vertices on the coordinate planes through it — verification tubes).
    linear_solver : ``"auto"``, ``"mumps"`` or ``"gamg"`` (see :mod:`.solid`).
    rtol : frame-equilibrium tolerance: ``|R| <= rtol · max(radial force, K₀ · 1 µm)``.
    max_iterations : outer iterations on the frame coefficients.
    max_halvings : continuation steps allowed when a wall solve fails.
    timeout_s : wall-clock bound (s) over the whole solve.
    strain_warning : a wall strain (the oversizing strain ``R_nom/ρ_min − 1`` before the solve,
        the maximum principal strain after) above this adds a warning (logged and returned).
    n_angles : samples of the frame radius in the result.
    linear_start : for ``model="neo_hookean"``, solve the linear model first and start from
        its equilibrium (same contact set and frame size up to the large-strain correction).

    Returns
    -------
    FrameContactSolution
        No contact (nominal radius at or below the smallest lumen radius in the frame's
        extent) is a valid result with zero force, not an error.

    Raises
    ------
    InputError
        Bad options, no inner wall facet within the frame's extent, no material for a region.
    SolverError
        The wall solve fails even after continuation, the frame equilibrium does not converge
        within ``max_iterations``, or the solve exceeds ``timeout_s``; the message names what to
        try.
    """
    t0 = time.perf_counter()
    if ends not in END_CONDITIONS:
        raise InputError(f"ends must be one of {sorted(END_CONDITIONS)}; got {ends!r}")
    if not (math.isfinite(penalty) and penalty > 0):
        raise InputError(f"penalty must be > 0; got {penalty}")
    if not (0 < rtol < 1 and max_iterations >= 1 and timeout_s > 0):
        raise InputError("need 0 < rtol < 1, max_iterations >= 1 and timeout_s > 0")
    materials = dict(materials or default_wall_materials())
    fc = _FrameContact(solid, frame, materials, model=model, degree=degree, penalty=penalty,
                       ends=ends, linear_solver=linear_solver)
    warnings: list[str] = []
    overlap = fc.R - fc.rho_min
    if overlap <= 0:
        msg = (f"the frame (nominal diameter {2 * frame.nominal_radius_mm:.1f} mm) does not reach "
               f"the wall (smallest lumen radius {fc.rho_min / MM_TO_M:.2f} mm within its extent): "
               "no contact, zero radial force — the device is undersized for this anatomy")
        logger.warning(msg)
        warnings.append(msg)
        return _no_contact_solution(fc, frame, model=model, degree=degree, t0=t0,
                                    n_angles=n_angles, warnings=warnings)
    need = fc.R / fc.rho_min - 1
    if need > strain_warning:
        msg = (f"reaching the nominal diameter would stretch the lumen by {100 * need:.0f} % "
               f"(> {100 * strain_warning:.0f} %): heavy oversizing for this anatomy"
               + ("; prefer model='neo_hookean' at such strains"
                                  if model == "linear" else ""))
        logger.warning(msg)
        warnings.append(msg)

    if model == "neo_hookean" and linear_start:
        # the small-strain equilibrium first: it fixes the contact set and the frame size, so
        # the large-strain Newton starts next to its solution (3-4x fewer iterations)
        lin = _FrameContact(solid, frame, materials, model="linear", degree=degree,
                            penalty=penalty, ends=ends, linear_solver=linear_solver)
        c_lin, *_, stats_lin = _equilibrate(lin, None, None, rtol=rtol,
                                            max_iterations=max_iterations,
                                            max_halvings=max_halvings, t0=t0,
                                            timeout_s=timeout_s, model="linear")
        u_lin = lin.wall.u.x.array.copy()
        del lin
        c, R, Q, it, stats = _equilibrate(fc, c_lin, u_lin, rtol=rtol,
                                          max_iterations=max_iterations,
                                          max_halvings=max_halvings, t0=t0, timeout_s=timeout_s,
                                          model=model)
        stats = {k: stats[k] + stats_lin[k] for k in stats}
    else:
        c, R, Q, it, stats = _equilibrate(fc, None, None, rtol=rtol,
                                          max_iterations=max_iterations,
                                          max_halvings=max_halvings, t0=t0, timeout_s=timeout_s,
                                          model=model)
    return _solution(fc, frame, c, R, Q, model=model, degree=degree, t0=t0, it=it, stats=stats,
                     n_angles=n_angles, warnings=warnings, strain_warning=strain_warning)


def _equilibrate(fc: _FrameContact, c_init, u_init, *, rtol, max_iterations, max_halvings, t0,
                 timeout_s, model):
    """Frame equilibrium ``2Kc + Q(c) = 0`` (see the module notes); from ``c_init``/``u_init``
    when given (a converged state of a simpler model), else from the frame at nominal size."""
    m = len(fc.K)
    stats = {"newton": 0, "solves": 0}
    state = {"c": np.array([fc.rho_min - fc.R, 0.0, 0.0][:m]), "u": fc.wall.u.x.array.copy()}
    if c_init is not None:
        fc.wall.u.x.array[:] = u_init
        state = {"c": np.asarray(c_init, float).copy(), "u": np.asarray(u_init).copy()}
    atol_wall = 1e-10 * fc.wall.E_max * fc.R**2

    def check_time(what: str) -> None:
        if time.perf_counter() - t0 > timeout_s:
            raise SolverError(
                f"frame expansion exceeded timeout_s={timeout_s:g} s during {what} "
                f"({stats['solves']} wall solves, {fc.wall.n_dofs} unknowns); use a coarser wall "
                "mesh (larger size_mm), degree=1, or a larger timeout")

    def wall_at(c: np.ndarray) -> np.ndarray:
        """Solve the wall for frame coefficients c (continuation on failure); return Q(c)."""
        target = np.asarray(c, float)
        start = state["c"].copy()
        frac, step = 0.0, 1.0
        halvings = 0
        while frac < 1.0:
            check_time("a wall solve")
            trial = min(1.0, frac + step)
            fc.c.value[:] = fc.full(start + trial * (target - start))
            rep = None
            for ls in ("basic", "bt"):  # full semismooth steps first, backtracking if they cycle
                try:
                    rep = fc.wall.solve(max_iterations=40, rtol=1e-10, atol=atol_wall,
                                        what="wall with frame contact", line_search=ls)
                    break
                except SolverError:
                    fc.wall.u.x.array[:] = state["u"]
            if rep is None:
                halvings += 1
                if halvings > max_halvings:
                    raise SolverError(
                        f"the wall solve failed at frame radius {1e3 * (fc.R + target[0]):.2f} mm "
                        f"even after {max_halvings} continuation halvings ({model} model); try "
                        + ("model='linear', " if model != "linear" else "")
                        + "a smaller penalty, a finer wall mesh or a smaller oversizing")
                step /= 2
                continue
            stats["newton"] += rep.iterations
            stats["solves"] += 1
            frac = trial
            state["c"] = start + trial * (target - start)
            state["u"] = fc.wall.u.x.array.copy()
        return fc.generalised_forces()

    def residual(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Q = wall_at(c)
        return 2 * fc.K * c + Q, Q

    # bracket on c0 (circular frame): R0 < 0 at the lumen (no contact), R0 >= 0 at nominal
    lo, hi = fc.rho_min - fc.R, 0.0

    c = np.zeros(m) if c_init is None else np.asarray(c_init, float).copy()
    R, Q = residual(c)
    J = np.diag(2 * fc.K) + fc.sensitivity()
    converged = False
    it = 0
    for it in range(1, max_iterations + 1):
        scale = max(abs(Q[0]), fc.K[0] * 1e-6)
        if np.linalg.norm(R) <= rtol * scale:
            converged = True
            it -= 1
            break
        try:
            step = -np.linalg.solve(J, R)
        except np.linalg.LinAlgError:
            step = -R / np.diag(J)
        if m == 1:
            if R[0] > 0:
                hi = min(hi, c[0])
            else:
                lo = max(lo, c[0])
            c_new = c + step
            if not (lo < c_new[0] < hi):
                c_new[0] = 0.5 * (lo + hi)
            R_new, Q_new = residual(c_new)
        else:
            # damped Newton on |R| (the frame equilibrium is the gradient of a convex energy)
            for _ in range(4):
                c_new = c + step
                c_new[0] = min(c_new[0], 0.0)
                lim = 0.5 * (fc.R + c_new[0])
                c_new[1:] = np.clip(c_new[1:], -lim, lim)
                R_new, Q_new = residual(c_new)
                if np.linalg.norm(R_new) < np.linalg.norm(R):
                    break
                step = 0.5 * step
        c, R, Q = c_new, R_new, Q_new
        # Newton on the frame coefficients with the exact Jacobian of the current contact set
        J = np.diag(2 * fc.K) + fc.sensitivity()
    else:
        scale = max(abs(Q[0]), fc.K[0] * 1e-6)
        converged = bool(np.linalg.norm(R) <= rtol * scale)
    if not converged:
        raise SolverError(
            f"frame equilibrium did not converge in {max_iterations} iterations (force residual "
            f"{np.linalg.norm(R):.3g} N against radial force {Q[0]:.3g} N); try a smaller penalty, "
            "model='linear', ovalisation_stiffness_n_per_mm=None or a larger max_iterations")
    return c, R, Q, it, stats


def _percentile(values: np.ndarray, q: float, comm) -> float:
    allv = np.concatenate(comm.allgather(values))
    return float(np.percentile(allv, q)) if len(allv) else 0.0


def _solution(fc: _FrameContact, frame, c, R, Q, *, model, degree, t0, it, stats, n_angles,
              warnings, strain_warning) -> FrameContactSolution:
    comm = fc.comm
    wall = fc.wall
    cf = fc.full(c)
    ang = np.linspace(0, 2 * math.pi, n_angles, endpoint=False)
    r_f = fc.R + cf[0] + cf[1] * np.cos(2 * ang) + cf[2] * np.sin(2 * ang)
    amp = math.hypot(cf[1], cf[2])
    d_mean = 2 * (fc.R + cf[0])
    d_max, d_min = d_mean + 2 * amp, d_mean - 2 * amp
    p = fc.facet_pressure()
    sig = principal_values(wall.cell_tensors(wall.cauchy_stress(wall.u)))[:, -1]
    eps = principal_values(wall.cell_tensors(wall.strain(wall.u)))[:, -1]
    msh = fc.solid.mesh
    n_own = msh.topology.index_map(3).size_local
    tissue = np.ones(n_own, dtype=bool)
    ct, names = fc.solid.cell_tags, fc.solid.cell_names
    if ct is not None and "tissue" in names:
        tags = np.full(n_own, -1)
        own = ct.indices < n_own
        tags[ct.indices[own]] = ct.values[own]
        tissue = tags == names["tissue"]
    max_sig = comm.allreduce(float(sig.max()) if len(sig) else 0.0, op=MPI.MAX)
    max_tis = comm.allreduce(float(sig[tissue].max()) if tissue.any() else 0.0, op=MPI.MAX)
    max_eps = comm.allreduce(float(eps.max()) if len(eps) else 0.0, op=MPI.MAX)
    unorm = np.linalg.norm(wall.u.x.array.reshape(-1, 3), axis=1)
    umax = comm.allreduce(float(unorm.max()) if len(unorm) else 0.0, op=MPI.MAX)
    if max_eps > strain_warning:
        msg = (f"maximum principal wall strain {max_eps:.2f} exceeds {strain_warning:.2f}"
               + ("; the small-strain model is unreliable here, use model='neo_hookean'"
                  if model == "linear" else ""))
        logger.warning(msg)
        warnings.append(msg)
    pts = np.concatenate(comm.allgather(fc.mid / MM_TO_M))
    pk = np.concatenate(comm.allgather(p / 1e3))
    area = np.concatenate(comm.allgather(fc.area / MM_TO_M**2))
    return FrameContactSolution(
        model=model, degree=degree, in_contact=bool((pk > 0).any()), frame_angles_rad=ang,
        frame_radius_mm=r_f / MM_TO_M, frame_z_mm=(frame.z_min_mm, frame.z_max_mm),
        nominal_diameter_mm=2 * frame.nominal_radius_mm, diameter_mean_mm=d_mean / MM_TO_M,
        diameter_min_mm=d_min / MM_TO_M, diameter_max_mm=d_max / MM_TO_M,
        eccentricity=1 - d_min / d_max, lumen_diameter_mm=2 * fc.rho_mean / MM_TO_M,
        radial_force_n=float(Q[0]), points_mm=pts, pressure_kpa=pk, area_mm2=area,
        contact_area_mm2=float(area[pk > 0].sum()),
        max_contact_pressure_kpa=float(pk.max()) if len(pk) else 0.0,
        max_principal_stress_kpa=max_sig / 1e3,
        p99_principal_stress_kpa=_percentile(sig, 99, comm) / 1e3,
        max_tissue_stress_kpa=max_tis / 1e3, max_principal_strain=max_eps,
        p99_principal_strain=_percentile(eps, 99, comm), max_displacement_mm=umax / MM_TO_M,
        iterations=it, newton_iterations=stats["newton"], wall_solves=stats["solves"],
        converged=True, residual_n=float(np.linalg.norm(R)), n_dofs=wall.n_dofs,
        solve_time_s=time.perf_counter() - t0, penalty_pa_per_m=fc.kappa,
        linear_solver=wall.linear_solver, warnings=tuple(warnings))


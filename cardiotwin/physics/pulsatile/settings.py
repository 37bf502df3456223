"""Inputs of :func:`~cardiotwin.physics.pulsatile.solve_pulsatile`: the inflow condition, the valve
sections and the scheme/solver settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cardiotwin.errors import InputError
from cardiotwin.physics.brinkman import BrinkmanRegion

__all__ = ["Inflow", "PulsatileSettings", "ValvePlanes"]


@dataclass(frozen=True)
class Inflow:
    """Velocity Dirichlet condition on the inflow boundary.

    Give either ``flow_m3_s`` (a callable ``Q(t)`` in m³/s, e.g. an
    :class:`~cardiotwin.physics.waveforms.AorticFlowWaveform`) with a ``profile``, or
    ``velocity`` (a callable ``(x, t) → u``, ``x`` of shape (3, N) in m, returning (gdim, N) in
    m/s), e.g. the parabolic inflow of a 2-D benchmark.

    Parameters
    ----------
    flow_m3_s : flow through the boundary (into the domain) as a function of time in s.
    profile : ``"parabolic"`` (Poiseuille-shaped from the distance to the rim, exact for circular
        caps), ``"plug"`` or ``"womersley"`` (one Womersley profile per Fourier mode; needs a
        waveform with a ``fourier`` method and ``period_s``, uses ``womersley_harmonics``).
        Every shape is normalised so that its discrete flux is exactly ``Q(t)``.
    velocity : full velocity expression instead of ``flow_m3_s``/``profile``.
    boundary : name of the facet group (``"inlet"``).
    """

    flow_m3_s: Callable[[Any], Any] | None = None
    profile: str = "parabolic"
    velocity: Callable[[np.ndarray, float], np.ndarray] | None = None
    boundary: str = "inlet"

    def __post_init__(self) -> None:
        if (self.flow_m3_s is None) == (self.velocity is None):
            raise InputError("Inflow needs exactly one of flow_m3_s (with a profile) or velocity")
        if self.profile not in ("parabolic", "plug", "womersley"):
            raise InputError(f"Inflow.profile must be 'parabolic', 'plug' or 'womersley'; got "
                             f"{self.profile!r}")
        if self.profile == "womersley" and self.flow_m3_s is not None and not (
                hasattr(self.flow_m3_s, "fourier") and hasattr(self.flow_m3_s, "period_s")):
            raise InputError("Inflow.profile='womersley' needs a periodic waveform with fourier() "
                             "and period_s (AorticFlowWaveform or FourierFlow)")


@dataclass(frozen=True)
class ValvePlanes:
    """Two cross-sections around a valve/device for the transvalvular gradient (LPS mm).

    The upstream section lies ``upstream_mm`` before ``centre_mm`` along ``axis``, the downstream
    one ``downstream_mm`` after it; each is a slab of thickness ``slab_mm`` limited to
    ``radius_mm`` from the axis, and its pressure is the volume-weighted mean there. The jet
    velocity (continuity EOA) is the largest speed between the valve centre and the downstream
    section within ``radius_mm``, outside the Brinkman regions.
    """

    centre_mm: tuple[float, float, float]
    axis: tuple[float, float, float]
    radius_mm: float
    upstream_mm: float = 10.0
    downstream_mm: float = 20.0
    slab_mm: float = 2.0

    def __post_init__(self) -> None:
        a = np.asarray(self.axis, dtype=float)
        if a.shape != (3,) or not np.isfinite(a).all() or np.linalg.norm(a) == 0:
            raise InputError(f"ValvePlanes.axis must be a non-zero 3-vector; got {self.axis!r}")
        object.__setattr__(self, "axis", tuple(float(v) for v in a / np.linalg.norm(a)))
        object.__setattr__(self, "centre_mm", tuple(float(v) for v in self.centre_mm))
        for name in ("radius_mm", "upstream_mm", "downstream_mm", "slab_mm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"ValvePlanes.{name} must be > 0; got {v!r}")

    @classmethod
    def from_region(cls, region: BrinkmanRegion, *, radius_mm: float, upstream_mm: float = 10.0,
                    downstream_mm: float = 20.0, slab_mm: float = 2.0) -> ValvePlanes:
        """Planes around the first part of a Brinkman region (its centre and axis)."""
        part = region.parts[0]
        return cls(part.centre_mm, part.axis, radius_mm, upstream_mm, downstream_mm, slab_mm)


def _solver_defaults(kind: str) -> dict[str, Any]:
    if kind == "momentum":
        return {"ksp_type": "gmres", "pc_type": "bjacobi", "sub_pc_type": "ilu", "ksp_rtol": 1e-10,
                "ksp_atol": 1e-16, "ksp_max_it": 500}
    if kind == "pressure":
        return {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-10, "ksp_atol": 1e-14,
                "ksp_max_it": 500}
    return {"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-12, "ksp_atol": 1e-18,
            "ksp_max_it": 1000}


@dataclass(frozen=True)
class PulsatileSettings:
    """Options of :func:`~cardiotwin.physics.pulsatile.solver.solve_pulsatile`.

    Parameters
    ----------
    convection : ``"semi-implicit"`` (Crank–Nicolson with an Adams–Bashforth advecting velocity,
        robust to CFL of a few) or ``"explicit"`` (Adams–Bashforth 2, constant matrix, needs
        CFL ≲ 0.5; the backflow term is then explicit too).
    backflow_beta : β of the outlet backflow stabilisation (0 disables; 1 recommended).
    cfl_max : a cell CFL number ``|u|Δt/h`` above this stops the run (:class:`SolverError`).
    max_speed_m_s : a velocity above this stops the run.
    imbalance_warn : warn when ``|ΣQ_out − Q_in|`` exceeds this fraction of the inflow scale.
    womersley_harmonics : Fourier modes of the ``"womersley"`` inlet profile.
    brinkman_samples : 11 or 1 sample points per cell for the Brinkman indicator (11 needs
        tetrahedra; 2-D meshes use 1).
    log_every : log progress at INFO every this many steps.
    smagorinsky_cs : Smagorinsky constant C_s of a large-eddy (LES) eddy viscosity
        ``ρ (C_s Δ)² γ̇`` added to μ in the momentum step, ``Δ`` the cube (square in 2-D) root
        of the cell volume and ``γ̇`` the shear rate of the Adams–Bashforth velocity (0: off,
        the default; 0.1–0.17 are the usual values). Physiological aortic flow on the meshes a
        twin can afford (cell Reynolds numbers in the thousands) is otherwise unstable: the
        Galerkin scheme (ours and oasisx alike) blows up in early systole
        (``docs/pulsatile.md``, "Under-resolved flow"). The eddy viscosity dissipates the energy
        the mesh cannot resolve; it vanishes as ``Δ → 0``, so refined meshes converge to the
        Navier–Stokes solution. Newtonian path: the eddy viscosity is assembled with the
        convection matrix (per-component Laplace form, no ``∇uᵀ`` part; needs
        ``convection="semi-implicit"``); shear-thinning path: added to μ(γ̇) in the full stress.
        Wall shear stress uses the molecular viscosity only.
    checkpoint_format : ``"adios4dolfinx"`` (the fields stored against the mesh's input
        ordering: a run restarts on the same mesh with any number of MPI ranks; needs the
        MPI-enabled ``adios2`` that ``scripts/build-adios2.sh`` builds), ``"npz"`` (one file
        per rank: same mesh and same number of ranks) or ``"auto"`` (the default:
        adios4dolfinx when it can be imported, else npz).
    checkpoint_keep : keep only the newest this many checkpoints in ``out_dir/checkpoints``
        (0, the default: keep all; an adios4dolfinx checkpoint of the demo mesh is 47 MiB).
    momentum_petsc_options, pressure_petsc_options, mass_petsc_options : PETSc options of the
        three linear solvers (defaults: GMRES + block-Jacobi/ILU, CG + GAMG, CG + Jacobi; there
        is no hypre in this PETSc; ``{"ksp_type": "preonly", "pc_type": "lu",
        "pc_factor_mat_solver_type": "mumps"}`` works for any of them).
    """

    convection: str = "semi-implicit"
    backflow_beta: float = 1.0
    cfl_max: float = 10.0
    max_speed_m_s: float = 50.0
    imbalance_warn: float = 5e-3
    womersley_harmonics: int = 20
    brinkman_samples: int = 11
    log_every: int = 50
    smagorinsky_cs: float = 0.0
    projection_bcs: bool = True
    checkpoint_format: str = "auto"
    checkpoint_keep: int = 0
    momentum_petsc_options: dict[str, Any] = field(default_factory=lambda: _solver_defaults("momentum"))
    pressure_petsc_options: dict[str, Any] = field(default_factory=lambda: _solver_defaults("pressure"))
    mass_petsc_options: dict[str, Any] = field(default_factory=lambda: _solver_defaults("mass"))

    def __post_init__(self) -> None:
        if self.convection not in ("semi-implicit", "explicit"):
            raise InputError(f"convection must be 'semi-implicit' or 'explicit'; got "
                             f"{self.convection!r}")
        if not (math.isfinite(self.backflow_beta) and self.backflow_beta >= 0):
            raise InputError(f"backflow_beta must be >= 0; got {self.backflow_beta}")
        for name in ("cfl_max", "max_speed_m_s", "imbalance_warn"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v > 0):
                raise InputError(f"{name} must be > 0; got {v!r}")
        if not (isinstance(self.womersley_harmonics, int) and self.womersley_harmonics >= 0):
            raise InputError(f"womersley_harmonics must be an integer >= 0; got "
                             f"{self.womersley_harmonics!r}")
        if self.brinkman_samples not in (1, 11):
            raise InputError(f"brinkman_samples must be 1 or 11; got {self.brinkman_samples}")
        if not (isinstance(self.log_every, int) and self.log_every >= 1):
            raise InputError(f"log_every must be an integer >= 1; got {self.log_every!r}")
        cs = self.smagorinsky_cs
        if not (isinstance(cs, int | float) and math.isfinite(cs) and 0 <= cs <= 0.5):
            raise InputError(f"smagorinsky_cs must be in [0, 0.5] (0 = no LES model; 0.1-0.17 "
                             f"usual); got {cs!r}")
        if self.checkpoint_format not in ("auto", "adios4dolfinx", "npz"):
            raise InputError(f"checkpoint_format must be 'auto', 'adios4dolfinx' or 'npz'; got "
                             f"{self.checkpoint_format!r}")
        if not (isinstance(self.checkpoint_keep, int) and self.checkpoint_keep >= 0):
            raise InputError(f"checkpoint_keep must be an integer >= 0 (0 keeps all); got "
                             f"{self.checkpoint_keep!r}")
        if cs > 0 and self.convection == "explicit":
            raise InputError("smagorinsky_cs needs convection='semi-implicit' (the eddy "
                             "viscosity is assembled with the convection matrix)")

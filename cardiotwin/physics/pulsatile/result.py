"""What a pulsatile run returns (:class:`PulsatileResult`) and what a per-step callback sees
(:class:`StepState`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.physics.mesh import FlowMesh
from cardiotwin.physics.rheology import Newtonian
from cardiotwin.provenance import Provenance

__all__ = ["PulsatileResult", "StepState"]


@dataclass
class StepState:
    """What a per-step ``callback`` sees (do not modify the Functions).

    ``u`` is the velocity at ``t_s``; ``p`` the pressure at ``t_s − dt_s/2`` (the scheme keeps
    pressure at half steps); :meth:`pressure_at_velocity_time` extrapolates it to ``t_s``.
    ``mu`` is the (Newtonian) viscosity, or μ_∞ for a shear-thinning ``rheology``.
    ``u_previous`` is the velocity at ``t_s − dt_s`` (the initial velocity at the first step).
    """

    step: int
    t_s: float
    dt_s: float
    u: Any
    p: Any
    p_previous: Any
    mu: float
    fm: FlowMesh
    outlet_flows_m3_s: dict[str, float]
    outlet_pressures_pa: dict[str, float]
    u_previous: Any = None

    def pressure_at_velocity_time(self):
        """``(3 p^{n+1/2} − p^{n−1/2})/2``: the pressure at ``t_s`` (second order)."""
        from dolfinx import fem

        out = fem.Function(self.p.function_space)
        out.x.array[:] = 1.5 * self.p.x.array - 0.5 * self.p_previous.x.array
        return out


@dataclass
class PulsatileResult:
    """Traces and fields of a pulsatile run (SI).

    Attributes
    ----------
    times_s : ``t^n`` of the recorded steps (velocity and flow times).
    pressure_times_s : ``t^n − Δt/2`` at which the field pressures were taken.
    inlet_flow_m3_s : measured inflow per step (into the domain, positive).
    outlet_flows_m3_s : outlet → outflow per step (out of the domain, positive).
    outlet_pressures_pa : outlet → model pressure ``p^n = a + b Qⁿ`` at ``times_s``.
    boundary_pressures_pa : named boundary → mean field pressure at ``pressure_times_s``.
    mass_imbalance : ``(ΣQ_out − Q_in)/max(|Q_in|, 0.1·max|Q_in|)`` per step, with the outlet
        flows measured as consistent fluxes (see :mod:`.solver`).
    face_mass_imbalance : the same with the raw outlet face fluxes ``∫u·n`` (diagnostic of the
        uncontrolled divergence in the outlet cell layer).
    cfl : largest cell CFL number per step.
    valve_gradient_pa, jet_velocity_m_s : upstream − downstream section pressure (at
        ``pressure_times_s``) and jet speed per step when ``valve`` was given, else None.
    period_s : the cycle length used for last-cycle statistics.
    u, p : final velocity (P2) and pressure (P1, at the last pressure time).
    tawss_pa, osi : time-averaged wall shear stress and oscillatory shear index over the last
        cycle (P1 Functions, zero off the wall), None when no full cycle was run.
    region_flux_m3_s : ``"<region>/<part>"`` → flow through the part's solid footprint per step
        (along its axis; the cells whose centre lies in the central half of the part's
        thickness, at least one cell diameter beyond its inner radius). A blocking part carries ~0; on a
        mesh too coarse for the part the flow leaks through the cells that are not porous
        (:meth:`region_leak`).
    """

    times_s: np.ndarray
    pressure_times_s: np.ndarray
    inlet_flow_m3_s: np.ndarray
    outlet_flows_m3_s: dict[str, np.ndarray]
    outlet_pressures_pa: dict[str, np.ndarray]
    boundary_pressures_pa: dict[str, np.ndarray]
    mass_imbalance: np.ndarray
    cfl: np.ndarray
    period_s: float
    dt_s: float
    u: Any
    p: Any
    n_dofs: dict[str, int]
    timings_s: dict[str, float]
    provenance: Provenance
    mesh: FlowMesh
    blood: Newtonian
    valve_gradient_pa: np.ndarray | None = None
    jet_velocity_m_s: np.ndarray | None = None
    tawss_pa: Any = None
    osi: Any = None
    paths: dict[str, Path] = field(default_factory=dict)
    face_mass_imbalance: np.ndarray | None = None
    region_flux_m3_s: dict[str, np.ndarray] = field(default_factory=dict)

    # -- helpers --------------------------------------------------------------------------------
    def last_cycle(self) -> np.ndarray:
        """Boolean mask of the steps in the last full period (all steps if shorter)."""
        t_end = self.times_s[-1]
        return self.times_s > t_end - self.period_s + 0.5 * self.dt_s

    def pressure_drop_pa(self, upstream: str, downstream: str) -> np.ndarray:
        """Mean-pressure difference between two named boundaries per step (at pressure times)."""
        for b in (upstream, downstream):
            if b not in self.boundary_pressures_pa:
                raise InputError(f"no pressure trace for {b!r}; have {sorted(self.boundary_pressures_pa)}")
        return self.boundary_pressures_pa[upstream] - self.boundary_pressures_pa[downstream]

    def _systole(self) -> np.ndarray:
        last = self.last_cycle()
        q_half = self._q_at_pressure_times()
        return last & (q_half > 0.05 * max(float(np.max(q_half[last])), 1e-300))

    def _q_at_pressure_times(self) -> np.ndarray:
        q = self.inlet_flow_m3_s
        return np.concatenate([[q[0] / 2], 0.5 * (q[1:] + q[:-1])])

    def region_leak(self) -> dict[str, float]:
        """Largest ``|flux through a Brinkman part| / inflow`` while the inflow exceeds half its
        peak in the last cycle (0 = impermeable), per ``"<region>/<part>"``."""
        last = self.last_cycle()
        q = self.inlet_flow_m3_s
        strong = last & (q > 0.5 * max(float(np.max(q[last])), 1e-300))
        if not strong.any():
            return {}
        return {k: float(np.max(np.abs(v[strong]) / q[strong]))
                for k, v in self.region_flux_m3_s.items()}

    def valve_metrics(self) -> dict[str, float] | None:
        """Mean/peak transvalvular gradient and EOA (Gorlin, continuity) over the last cycle.

        Mean gradient and Gorlin use the forward-flow period (inflow > 5 % of its peak). Gorlin
        (1951): ``EOA[cm²] = Q_rms[mL/s] / (44.3 √(ΔP_mean[mmHg]))``. Continuity:
        ``EOA = ∫Q dt / ∫v_jet dt`` over forward flow (stroke volume / jet velocity-time
        integral), the Doppler continuity principle with the computed peak jet speed.
        """
        if self.valve_gradient_pa is None:
            return None
        sys = self._systole()
        last = self.last_cycle()
        dp = self.valve_gradient_pa
        q = self._q_at_pressure_times()
        mean_dp = float(np.mean(dp[sys])) if sys.any() else float("nan")
        q_rms_ml_s = units.m3_s_to_ml_s(math.sqrt(float(np.mean(q[sys] ** 2)))) if sys.any() else float("nan")
        mean_mmhg = units.pa_to_mmhg(mean_dp)
        eoa_gorlin = q_rms_ml_s / (44.3 * math.sqrt(mean_mmhg)) if mean_mmhg > 0 else float("nan")
        vj = self.jet_velocity_m_s
        vti = float(np.sum(vj[sys])) * self.dt_s
        eoa_cont = float(np.sum(q[sys])) * self.dt_s / vti if vti > 0 else float("nan")
        return {"mean_gradient_pa": mean_dp, "peak_gradient_pa": float(np.max(dp[last])),
                "mean_gradient_mmhg": mean_mmhg,
                "peak_gradient_mmhg": units.pa_to_mmhg(float(np.max(dp[last]))),
                "eoa_gorlin_cm2": float(eoa_gorlin),
                "eoa_continuity_cm2": units.m2_to_cm2(eoa_cont) if math.isfinite(eoa_cont) else float("nan"),
                "peak_jet_velocity_m_s": float(np.max(vj[last]))}

    def wall_shear_summary(self) -> dict[str, float] | None:
        """Area-weighted mean and max of TAWSS (Pa) and OSI over the wall (last cycle)."""
        if self.tawss_pa is None:
            return None
        import ufl
        from dolfinx import fem

        fm = self.mesh
        msh = fm.mesh
        ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)(fm.names["wall"])
        comm = msh.comm
        area = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ds)), op=MPI.SUM)
        out = {}
        for name, f in (("tawss_pa", self.tawss_pa), ("osi", self.osi)):
            mean = comm.allreduce(fem.assemble_scalar(fem.form(f * ds)), op=MPI.SUM) / area
            n_own = f.function_space.dofmap.index_map.size_local
            mx = comm.allreduce(float(np.max(f.x.array[:n_own], initial=0.0)), op=MPI.MAX)
            out[f"{name}_mean"] = float(mean)
            out[f"{name}_max"] = float(mx)
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-able last-cycle figures (SI with clinical views), conservation, cost."""
        last = self.last_cycle()
        t = self.times_s
        q = self.inlet_flow_m3_s
        out: dict[str, Any] = {
            "n_steps": int(len(t)), "dt_s": float(self.dt_s), "t_end_s": float(t[-1]),
            "period_s": float(self.period_s),
            "inlet_flow_mean_m3_s": float(np.mean(q[last])),
            "inlet_flow_peak_m3_s": float(np.max(q[last])),
            "stroke_volume_ml": units.m3_to_ml(float(np.sum(q[last])) * self.dt_s),
            "outlet_flow_mean_m3_s": {k: float(np.mean(v[last])) for k, v in self.outlet_flows_m3_s.items()},
            "outlet_pressure_pa": {k: {"max": float(np.max(v[last])), "min": float(np.min(v[last])),
                                       "mean": float(np.mean(v[last]))}
                                   for k, v in self.outlet_pressures_pa.items()},
            "outlet_pressure_mmhg": {k: {"systolic": units.pa_to_mmhg(float(np.max(v[last]))),
                                         "diastolic": units.pa_to_mmhg(float(np.min(v[last]))),
                                         "mean": units.pa_to_mmhg(float(np.mean(v[last])))}
                                     for k, v in self.outlet_pressures_pa.items()},
            "mass_imbalance_max": float(np.max(np.abs(self.mass_imbalance))),
            "cfl_max": float(np.max(self.cfl)),
            "n_dofs": dict(self.n_dofs),
            "timings_s": {k: float(v) for k, v in self.timings_s.items()},
        }
        qs = float(np.sum(q[last]))
        if qs != 0:
            out["flow_split"] = {k: float(np.sum(v[last]) / qs) for k, v in self.outlet_flows_m3_s.items()}
        inlet = "inlet" if "inlet" in self.boundary_pressures_pa else None
        if inlet is not None:
            out["pressure_drop_pa"] = {}
            for k in self.outlet_flows_m3_s:
                key = f"outlet:{k}"
                if key in self.boundary_pressures_pa:
                    d = self.pressure_drop_pa(inlet, key)[last]
                    out["pressure_drop_pa"][k] = {"mean": float(np.mean(d)), "peak": float(np.max(d))}
        if (vm := self.valve_metrics()) is not None:
            out["valve"] = vm
        if (leak := self.region_leak()):
            out["region_leak"] = leak
        if (ws := self.wall_shear_summary()) is not None:
            out["wall_shear"] = ws
        return out

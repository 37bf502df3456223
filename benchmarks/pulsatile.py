"""Benchmark of the pulsatile IPCS solver against oasisx on the demo geometry (issue 5, item 9).

Run with ``.venv/bin/python benchmarks/pulsatile.py`` (``--quick`` for a smoke run of a minute).
Writes ``benchmarks/results/pulsatile-<date>.json`` and prints a table.

What is measured, per mesh size of the demo phantom's fluid domain (the same path as
``cardiotwin.workflows.build_twin``: phantom → segmentation → landmarks → lumen surface →
``mesh_fluid_domain`` with three ``h_max_mm``/``h_min_mm`` pairs):

* wall-clock time per time step of :func:`cardiotwin.physics.pulsatile.solve_pulsatile` and of
  the baseline, oasisx 1.3.0 ``FractionalStep_AB_CN`` (the Oasis IPCS: Adams–Bashforth /
  Crank–Nicolson convection, per-component velocity solves), on the same mesh, P2–P1 elements,
  time step, inlet velocity, no-slip wall and zero-pressure outlets, with the same PETSc
  options for the three linear systems (ours' defaults), one MPI rank each;
* the share of a step spent in ``KSPSolve`` (PETSc log event), a cProfile summary of ours;
* peak resident memory (``VmHWM``, the ``ru_maxrss`` of the process's own address space) of a
  fresh process per case (mesh read and form compilation included);
* the cost exponent ``time/step ∝ dofs^k`` (least-squares fit over the three meshes);
* equal accuracy: the relative difference of the outlet-flow and inlet-pressure traces of the
  two solvers over the steps run.

The comparison runs ``--warmup`` steps (not timed) then ``--steps`` timed steps from rest
(defaults 5 + 30, i.e. 35 ms). It cannot run a whole cycle: with zero-pressure outlets and no
stabilisation **both solvers blow up at step 42–44** (t ≈ 42 ms, early systole) on all three
meshes (measured 2026-11-25): the small arch branches at zero pressure take an unphysiological
share of the flow (5 m/s at 30 ms), and the unstabilised Galerkin scheme cannot hold the
under-resolved flow. With resistance outlets ours still blows up at t ≈ 62–69 ms (independent
of Δt: 1 and 0.5 ms), see ``docs/pulsatile.md``.

``--cycle`` instead runs one whole cycle (857 steps of 1 ms at 70 bpm) of cardiotwin alone in
the configuration a twin uses (RCR outlets, backflow stabilisation, Smagorinsky LES; constants
below), at the three sizes: time per step, PETSc share, memory, CFL and mass balance over the
cycle.

Conditions shared by both solvers (oasisx has neither Windkessel outlets, backflow stabilisation
nor Brinkman regions): outlets at zero pressure, ``backflow_beta = 0``, no valve region, a
Poiseuille-shaped inlet velocity ``u = 2Q(t)/(πR²)·(1 − r²/R²)`` on the inlet cap (R from its
area) with ``Q(t)`` the default physiology's :class:`~cardiotwin.physics.waveforms.AorticFlowWaveform`
(70 bpm, 70 mL). Ours still does its own per-step work (CFL and finiteness checks, outlet
coupling, wall-shear accumulation, trace recording); oasisx's per-step time counts only its
``solve`` (the trace integrals for the accuracy comparison are taken outside the timer).

oasisx 1.3.0 calls ``mesh.ufl_cell().cellname()``, which is a property in the UFL shipped with
dolfinx 0.11; :func:`_cellname_shim` makes the property's value callable while the solver is
built (a runtime shim, nothing in site-packages is changed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
# (h_max_mm, h_min_mm): the demo's 3.0/1.2 (cardiotwin.workflows.BuildSettings) and two coarser
SIZES = [(6.0, 2.4), (4.2, 1.7), (3.0, 1.2)]
QUICK_SIZES = [(7.0, 2.8)]
HEART_RATE_BPM = 70.0
STROKE_VOLUME_ML = 70.0


# ------------------------------------------------------------------------------------------------
# Meshes
# ------------------------------------------------------------------------------------------------
def build_meshes(work: Path, sizes: list[tuple[float, float]]) -> list[dict]:
    """Demo phantom → fluid domain at each size (cached in ``work``); FluidDomain dicts."""
    import numpy as np

    from cardiotwin.geometry import landmarks as lm_mod
    from cardiotwin.geometry import surface, volume_mesh
    from cardiotwin.imaging import phantom, segment

    out, todo = [], []
    for h_max, h_min in sizes:
        meta = work / f"mesh_h{h_max:g}" / "domain.json"
        if meta.is_file():
            out.append(json.loads(meta.read_text()))
        else:
            out.append(None)
            todo.append((h_max, h_min))
    if todo:
        ph = phantom.make_phantom(phantom.PhantomParameters(spacing_mm=(1.0,) * 3), seed=0)
        seg = segment.segment_heart(ph.ct)
        lms = lm_mod.measure_aortic_root(ph.ct, seg)
        fs = surface.fluid_surface(seg.labels, lms, inlet_offset_mm=12.0)
        refine = tuple(np.asarray(lms.annulus_centre_mm) + 8.0 * np.asarray(lms.annulus_normal))
        for i, (h_max, h_min) in enumerate(sizes):
            if out[i] is not None:
                continue
            d = work / f"mesh_h{h_max:g}"
            d.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            dom = volume_mesh.mesh_fluid_domain(fs, d / "fluid.msh", h_max_mm=h_max, h_min_mm=h_min,
                                                refine_centre_mm=refine, refine_radius_mm=16.0)
            rec = {"h_max_mm": h_max, "h_min_mm": h_min, "mesh_s": time.perf_counter() - t0,
                   "domain": dom.to_dict()}
            (d / "domain.json").write_text(json.dumps(rec, default=_json_default))
            out[i] = json.loads((d / "domain.json").read_text())
    return out


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


# The physiological configuration of ``--cycle`` (what a twin runs): three-element Windkessel
# outlets, total peripheral resistance MAP/CO split by the outlets' flow shares (area^1.5 weights,
# as cardiotwin.twin.calibrate), proximal resistance 6 % of each outlet's total and total arterial
# compliance 1.5 mL/mmHg split like the flow (Westerhof, Lankhaar & Westerhof 2009, Med Biol Eng
# Comput 47:131-141: Rp/R ≈ 5-10 %; Stergiopulos, Segers & Westerhof 1999, Am J Physiol
# 276:H81-H88: total compliance ≈ 1-2 mL/mmHg), outlets starting at the diastolic pressure;
# backflow stabilisation β = 1 and the Smagorinsky LES model (C_s = 0.1), without which the
# Galerkin scheme blows up in early systole on these meshes (docs/pulsatile.md).
MMHG_PA = 133.322
MAP_MMHG, P_DIASTOLIC_MMHG = 93.0, 80.0
P_DIASTOLIC_PA = P_DIASTOLIC_MMHG * MMHG_PA
PROXIMAL_FRACTION = 0.06
TOTAL_COMPLIANCE_M3_PA = 1.5e-6 / MMHG_PA
SMAGORINSKY_CS = 0.1


def _physiological_outlets(domain) -> dict:
    """RCR per outlet: the constants above, split by the outlets' flow shares of
    :func:`cardiotwin.twin.calibrate.calibrate_outlets` (which depend on the cap areas only)."""
    from cardiotwin.physics.windkessel import RCR
    from cardiotwin.study import default_physiology
    from cardiotwin.twin.calibrate import calibrate_outlets

    cardiac_output_m3_s = STROKE_VOLUME_ML * 1e-6 * HEART_RATE_BPM / 60.0
    r_total = MAP_MMHG * MMHG_PA / cardiac_output_m3_s
    rcr = {}
    for name, share in calibrate_outlets(default_physiology(), domain).flow_shares.items():
        r = r_total / share
        rcr[name] = RCR(Rp=PROXIMAL_FRACTION * r, C=TOTAL_COMPLIANCE_M3_PA * share,
                        Rd=(1.0 - PROXIMAL_FRACTION) * r)
    return rcr


# ------------------------------------------------------------------------------------------------
# One case (runs in a fresh process)
# ------------------------------------------------------------------------------------------------
class _Clock:
    t = 0.0


def _inlet_velocity(domain, clock: _Clock | None = None):
    """Poiseuille-shaped inlet velocity ``(x [m], t [s]) → (3, N)`` for the inlet cap."""
    import numpy as np

    from cardiotwin.physics.waveforms import AorticFlowWaveform

    cap = next(c for c in domain.caps if c.name == "inlet")
    c = np.asarray(cap.centre_mm) * 1e-3
    n_out = np.asarray(cap.normal, dtype=float)
    n_out /= np.linalg.norm(n_out)
    radius2 = cap.area_mm2 * 1e-6 / math.pi
    wave = AorticFlowWaveform(heart_rate_bpm=HEART_RATE_BPM, stroke_volume_ml=STROKE_VOLUME_ML)

    def vel(x, t):
        rel = x.T - c
        r2 = np.sum(rel**2, axis=1) - (rel @ n_out) ** 2
        u_max = 2.0 * float(wave(t)) / (math.pi * radius2)
        mag = u_max * np.clip(1.0 - r2 / radius2, 0.0, None)
        return -n_out[:, None] * mag[None, :]

    return vel, wave


@contextlib.contextmanager
def _cellname_shim():
    """Make ``Cell.cellname`` (a str property in dolfinx 0.11's UFL) also callable (oasisx 1.3)."""
    import ufl.cell

    class _CallableStr(str):
        def __call__(self) -> str:
            return str(self)

    original = ufl.cell.Cell.__dict__["cellname"]
    ufl.cell.Cell.cellname = property(lambda self: _CallableStr(original.fget(self)))
    try:
        yield
    finally:
        ufl.cell.Cell.cellname = original


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB).

    ``VmHWM`` rather than ``ru_maxrss``: Linux carries ``ru_maxrss`` across ``exec``, so a child
    of a big parent would report the parent's peak; ``VmHWM`` belongs to the new address space.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ksp_time() -> tuple[float, int]:
    from petsc4py import PETSc

    info = PETSc.Log.Event("KSPSolve").getPerfInfo()
    return float(info["time"]), int(info["count"])


def _profile_top(prof, n: int = 15) -> list[dict]:
    import pstats

    st = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append({"function": f"{Path(file).name}:{line}({fn})", "calls": nc,
                     "tottime_s": tt, "cumtime_s": ct})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:n]


def run_case(domain_json: Path, solver: str, *, warmup: int, steps: int, dt_s: float) -> dict:
    """Run one solver on one mesh for ``warmup + steps`` steps; timings, traces, peak memory."""
    import cProfile

    import dolfinx_solver  # noqa: F401  (MPI runtime before dolfinx/petsc4py)
    import numpy as np
    import ufl
    from dolfinx import fem
    from mpi4py import MPI
    from petsc4py import PETSc

    import cardiotwin.physics.pulsatile as pulsatile_module
    from cardiotwin.geometry.volume_mesh import FluidDomain
    from cardiotwin.physics.mesh import load_domain
    from cardiotwin.physics.pulsatile import OPEN, Inflow, PulsatileSettings, solve_pulsatile
    from cardiotwin.physics.rheology import Newtonian

    rec = json.loads(domain_json.read_text())
    domain = FluidDomain.from_dict(rec["domain"])
    fm = load_domain(domain, comm=MPI.COMM_WORLD)
    msh = fm.mesh
    blood = Newtonian()
    rho, mu = blood.density_kg_m3, blood.viscosity_pa_s
    vel, wave = _inlet_velocity(domain)
    outlets = sorted(n for n in fm.names if n.startswith("outlet:"))
    n_total = warmup + steps
    settings = PulsatileSettings(convection="semi-implicit", backflow_beta=0.0, log_every=10**6)
    PETSc.Log.begin()
    prof = cProfile.Profile()
    stamps: list[float] = []
    ksp_marks: dict[str, tuple[float, int]] = {}
    ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)
    nrm = ufl.FacetNormal(msh)
    inlet_area = fem.assemble_scalar(fem.form(1.0 * ds(fm.names["inlet"])))
    out: dict = {"solver": solver, "h_max_mm": rec["h_max_mm"], "h_min_mm": rec["h_min_mm"],
                 "cells": int(msh.topology.index_map(3).size_global),
                 "vertices": int(msh.topology.index_map(0).size_global),
                 "dt_s": dt_s, "warmup_steps": warmup, "timed_steps": steps,
                 # the solver's source: every module of the cardiotwin.physics.pulsatile package
                 "pulsatile_py_sha256": hashlib.sha256(b"".join(
                     p.read_bytes() for p in sorted(
                         Path(pulsatile_module.__file__).parent.glob("*.py")))).hexdigest()}
    t_setup0 = time.perf_counter()

    if solver in ("cardiotwin", "cardiotwin-physiological"):
        kw: dict = {"outlets": dict.fromkeys(outlets, OPEN)}
        if solver == "cardiotwin-physiological":
            settings = PulsatileSettings(convection="semi-implicit", backflow_beta=1.0,
                                         smagorinsky_cs=SMAGORINSKY_CS, log_every=10**6)
            kw = {"outlets": _physiological_outlets(domain),
                  "initial_outlet_pressures_pa": dict.fromkeys(outlets, P_DIASTOLIC_PA)}
            out["outlets"] = {k: dataclasses.asdict(v) for k, v in kw["outlets"].items()}

        def callback(state):
            stamps.append(time.perf_counter())
            if state.step == warmup:
                ksp_marks["start"] = _ksp_time()
                prof.enable()   # profile the timed steps only, as for the baseline

        res = solve_pulsatile(fm, inflow=Inflow(velocity=vel), dt_s=dt_s,
                              t_end_s=n_total * dt_s, blood=blood, settings=settings,
                              callback=callback, **kw)
        prof.disable()
        ksp_marks["end"] = _ksp_time()
        out["dofs"] = int(res.n_dofs["velocity"] + res.n_dofs["pressure"])
        out["n_dofs"] = res.n_dofs
        out["inlet_flow_measured_m3_s"] = res.inlet_flow_m3_s.tolist()
        q_out = {nm.split(":", 1)[1]: res.outlet_flows_m3_s[nm.split(":", 1)[1]].tolist()
                 for nm in outlets}
        p_in = res.boundary_pressures_pa["inlet"].tolist()
        out["solver_timings_s"] = res.timings_s
        out["linear_iterations"] = res.provenance.parameters.get("linear_iterations")
        out["cfl_max"] = float(np.max(res.cfl))
        out["mass_imbalance_max"] = float(np.max(np.abs(res.mass_imbalance)))
        out["settings"] = dataclasses.asdict(settings)
        setup_s = stamps[0] - t_setup0 if stamps else float("nan")
    elif solver == "oasisx":
        from oasisx import DirichletBC, FractionalStep_AB_CN, LocatorMethod, PressureBC

        ft = fm.facet_tags
        clock = _Clock()
        bc_wall = [DirichletBC(np.float64(0.0), LocatorMethod.TOPOLOGICAL, (ft, fm.names["wall"]))
                   for _ in range(3)]
        bc_in = [DirichletBC(lambda x, i=i: vel(x, clock.t)[i], LocatorMethod.TOPOLOGICAL,
                             (ft, fm.names["inlet"])) for i in range(3)]
        # wall last: the rim dofs shared with the inlet get zero, as in ours
        bcs_u = [[bc_in[i], bc_wall[i]] for i in range(3)]
        p_zero = fem.Constant(msh, PETSc.ScalarType(0.0))
        bcs_p = [PressureBC(p_zero, (ft, tuple(fm.names[n] for n in outlets)))]
        opts = {"tentative": settings.momentum_petsc_options,
                "pressure": settings.pressure_petsc_options,
                "scalar": settings.mass_petsc_options}
        with _cellname_shim():
            sol = FractionalStep_AB_CN(msh, ("Lagrange", 2), ("Lagrange", 1), bcs_u=bcs_u,
                                       bcs_p=bcs_p, solver_options=opts,
                                       options={"low_memory_version": True})
        nu = mu / rho
        u_vec = sol._sol_u
        p_fun = sol._p
        q_forms = {nm.split(":", 1)[1]: fem.form(ufl.dot(u_vec, nrm) * ds(fm.names[nm]))
                   for nm in outlets}
        p_form = fem.form(p_fun * ds(fm.names["inlet"]))
        out["dofs"] = int(sol._V.dofmap.index_map.size_global * 3
                          + sol._Q.dofmap.index_map.size_global)
        out["n_dofs"] = {"velocity": int(sol._V.dofmap.index_map.size_global * 3),
                         "pressure": int(sol._Q.dofmap.index_map.size_global)}
        q_out = {k: [] for k in q_forms}
        p_in = []
        t_in_solve = 0.0
        its = {"momentum": 0, "pressure": 0, "correction": 0}
        setup_s = time.perf_counter() - t_setup0
        for n in range(n_total):
            clock.t = (n + 1) * dt_s
            profiled = n >= warmup
            t0 = time.perf_counter()
            if profiled:
                prof.enable()
            sol.solve(dt_s, nu, max_iter=1)
            if profiled:
                prof.disable()
            t1 = time.perf_counter()
            t_in_solve += t1 - t0
            stamps.append(t_in_solve)
            # oasisx keeps one KSP per kind: its count is the last velocity component's solve
            for kind, k_ in (("momentum", sol._solver_u), ("pressure", sol._solver_p),
                             ("correction", sol._solver_c)):
                its[kind] += k_._ksp.getIterationNumber() * (1 if kind == "pressure" else 3)
            if n + 1 == warmup:
                ksp_marks["start"] = _ksp_time()
            sol.u  # noqa: B018  (fills the vector velocity for the flow integrals)
            for k, f in q_forms.items():
                q_out[k].append(float(fem.assemble_scalar(f)))
            p_in.append(rho * float(fem.assemble_scalar(p_form)) / inlet_area)
            umax = float(np.max(np.abs(sol._sol_u.x.array)))
            if not math.isfinite(umax) or umax > 50.0:
                raise RuntimeError(f"oasisx diverged at step {n + 1} (max |u| {umax:g} m/s)")
        ksp_marks["end"] = _ksp_time()
        out["linear_iterations"] = its
        out["linear_iterations_note"] = "velocity solves: last component's count x 3"
    else:
        raise ValueError(f"unknown solver {solver!r}")

    per_step = [b - a for a, b in zip(stamps[warmup - 1:-1], stamps[warmup:], strict=True)] \
        if warmup >= 1 else list(stamps)
    timed = sum(per_step)
    ksp_t = ksp_marks["end"][0] - ksp_marks["start"][0]
    out.update({
        "setup_s": setup_s,
        "step_s_median": statistics.median(per_step), "step_s_mean": timed / len(per_step),
        "step_s_min": min(per_step), "step_s_max": max(per_step),
        "ksp_solve_s": ksp_t, "ksp_solves": ksp_marks["end"][1] - ksp_marks["start"][1],
        "petsc_solve_share": ksp_t / timed,
        "cycle_steps": round(wave.period_s / dt_s),
        "projected_cycle_s": timed / len(per_step) * round(wave.period_s / dt_s),
        "peak_rss_mib": _peak_rss_mib(),
        "traces": {"outlet_flows_m3_s": q_out, "inlet_pressure_pa": p_in,
                   "inlet_flow_m3_s": [float(wave((k + 1) * dt_s)) for k in range(n_total)]},
        "profile_top_tottime": _profile_top(prof),
    })
    return out


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------
def _machine() -> dict:
    import dolfinx_solver  # noqa: F401, I001  (loads the MPI runtime: must come first)
    import dolfinx
    from petsc4py import PETSc

    try:
        from importlib.metadata import version
        oasisx_version = version("oasisx")
    except Exception:  # noqa: BLE001  (not installed: the report says so)
        oasisx_version = None
    return {**machine_info(), "dolfinx": dolfinx.__version__,
            "petsc": ".".join(map(str, PETSc.Sys.getVersion())), "oasisx": oasisx_version,
            "mpi_ranks_per_case": 1}


def _rel_diff(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = min(len(a), len(b))
    den = float(np.linalg.norm(b[:n]))
    return float(np.linalg.norm(a[:n] - b[:n]) / den) if den > 0 else float("nan")


def _compare(ours: dict, base: dict) -> dict:
    tr_o, tr_b = ours["traces"], base["traces"]
    w = ours["warmup_steps"]
    out = {}
    for label, sl in (("", slice(None)), ("_timed_steps", slice(w, None))):
        out["outlet_flow_rel_l2" + label] = {
            k: _rel_diff(tr_o["outlet_flows_m3_s"][k][sl], tr_b["outlet_flows_m3_s"][k][sl])
            for k in tr_o["outlet_flows_m3_s"]}
        out["inlet_pressure_rel_l2" + label] = _rel_diff(tr_o["inlet_pressure_pa"][sl],
                                                        tr_b["inlet_pressure_pa"][sl])
    return out


def _fit_exponent(dofs: list[int], times: list[float]) -> float | None:
    import numpy as np

    if len(dofs) < 2:
        return None
    return float(np.polyfit(np.log(dofs), np.log(times), 1)[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one coarse mesh, 3 + 5 steps")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--dt", type=float, default=1e-3, help="time step (s)")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench_pulsatile",
                    help="directory for the meshes and per-case files")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--solvers", default="cardiotwin,oasisx")
    ap.add_argument("--cycle", action="store_true",
                    help="one whole cardiac cycle of cardiotwin in the physiological "
                    "configuration (RCR outlets, backflow stabilisation, LES) at each size, "
                    "instead of the comparison with oasisx")
    ap.add_argument("--case", nargs=2, metavar=("DOMAIN_JSON", "SOLVER"), help=argparse.SUPPRESS)
    ap.add_argument("--case-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warmup < 1:
        ap.error("--warmup must be >= 1 (the first step includes form compilation)")
    if args.quick:
        args.warmup, args.steps = 3, 5
    if args.cycle:
        # the whole cycle is run; step 1 (form compilation, first assembly) is not timed
        args.solvers = "cardiotwin-physiological"
        args.warmup, args.steps = 1, round(60.0 / HEART_RATE_BPM / args.dt) - 1

    if args.case:
        res = run_case(Path(args.case[0]), args.case[1], warmup=args.warmup, steps=args.steps,
                       dt_s=args.dt)
        args.case_out.write_text(json.dumps(res, default=_json_default))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    sizes = QUICK_SIZES if args.quick else SIZES
    t0 = time.perf_counter()
    meshes = build_meshes(args.work, sizes)
    print(f"meshes ready in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"h{m['h_max_mm']:g}: {m['domain']['n_cells']} tets" for m in meshes))
    solvers = args.solvers.split(",")
    cases = []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for mesh in meshes:
        dj = args.work / f"mesh_h{mesh['h_max_mm']:g}" / "domain.json"
        row = {"h_max_mm": mesh["h_max_mm"], "h_min_mm": mesh["h_min_mm"],
               "mesh_s": mesh["mesh_s"], "cells": mesh["domain"]["n_cells"]}
        for solver in solvers:
            case_out = args.work / f"case_h{mesh['h_max_mm']:g}_{solver}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--case", str(dj), solver,
                   "--case-out", str(case_out), "--warmup", str(args.warmup),
                   "--steps", str(args.steps), "--dt", str(args.dt)]
            tc = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - tc
            if proc.returncode != 0:
                print(f"h{mesh['h_max_mm']:g} {solver}: FAILED\n{proc.stderr[-3000:]}")
                row[solver] = {"error": proc.stderr[-3000:]}
                continue
            res = json.loads(case_out.read_text())
            res["process_wall_s"] = wall
            row[solver] = res
            print(f"h{mesh['h_max_mm']:g} {solver}: {res['dofs']} dofs, "
                  f"{res['step_s_median'] * 1e3:.0f} ms/step (median), PETSc solve share "
                  f"{res['petsc_solve_share']:.0%}, peak RSS {res['peak_rss_mib']:.0f} MiB, "
                  f"process {wall:.0f} s", flush=True)
        if all("error" not in row.get(s, {"error": 1}) for s in ("cardiotwin", "oasisx")):
            row["ratio_median"] = row["cardiotwin"]["step_s_median"] / row["oasisx"]["step_s_median"]
            row["ratio_mean"] = row["cardiotwin"]["step_s_mean"] / row["oasisx"]["step_s_mean"]
            row["accuracy"] = _compare(row["cardiotwin"], row["oasisx"])
        cases.append(row)

    exponents = {}
    for solver in solvers:
        ok = [c[solver] for c in cases if "error" not in c.get(solver, {"error": 1})]
        exponents[solver] = _fit_exponent([r["dofs"] for r in ok], [r["step_s_median"] for r in ok])
    result = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
        "command": " ".join([".venv/bin/python", "benchmarks/pulsatile.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "settings": {"dt_s": args.dt, "warmup_steps": args.warmup, "timed_steps": args.steps,
                     "heart_rate_bpm": HEART_RATE_BPM, "stroke_volume_ml": STROKE_VOLUME_ML,
                     "elements": "P2-P1",
                     "outlets": "RCR (physiological)" if args.cycle else "zero pressure",
                     "backflow_beta": 1.0 if args.cycle else 0.0,
                     "smagorinsky_cs": SMAGORINSKY_CS if args.cycle else 0.0,
                     "convection": "semi-implicit (AB2 advecting velocity, Crank-Nicolson)",
                     "quick": args.quick},
        "cases": cases, "cost_exponent_vs_dofs": exponents,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = (f"pulsatile-{datetime.now(UTC):%Y%m%d-%H%M%S}" + ("-quick" if args.quick else "")
            + ("-cycle" if args.cycle else ""))
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(result, indent=1, default=_json_default))
    print(f"\n{'h_max/h_min':>11} {'cells':>7} {'dofs':>8} {'ours ms':>8} {'oasisx ms':>9} "
          f"{'ratio':>6} {'PETSc%':>11} {'RSS MiB':>11} {'dQ':>8} {'dp_in':>8}")
    for c in cases:
        o = c.get("cardiotwin") or c.get("cardiotwin-physiological") or {}
        b = c.get("oasisx", {})
        acc = c.get("accuracy", {})
        dq = max(acc.get("outlet_flow_rel_l2_timed_steps", {"-": float("nan")}).values())
        print(f"{c['h_max_mm']:>5g}/{c['h_min_mm']:<5g} {c['cells']:>7} {o.get('dofs', 0):>8} "
              f"{o.get('step_s_median', float('nan')) * 1e3:>8.0f} "
              f"{b.get('step_s_median', float('nan')) * 1e3:>9.0f} "
              f"{c.get('ratio_median', float('nan')):>6.2f} "
              f"{o.get('petsc_solve_share', float('nan')):>5.0%}/{b.get('petsc_solve_share', float('nan')):<5.0%} "
              f"{o.get('peak_rss_mib', float('nan')):>5.0f}/{b.get('peak_rss_mib', float('nan')):<5.0f} "
              f"{dq:>8.1e} {acc.get("inlet_pressure_rel_l2_timed_steps", float("nan")):>8.1e}")
    print(f"cost exponent (time/step ∝ dofs^k): {exponents}")
    print(f"written {path}")


if __name__ == "__main__":
    main()

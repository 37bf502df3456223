"""Pulsatile flow of a twin over a cardiac cycle, with Windkessel outlets fitted to its pressure.

:func:`run_cycle` is the whole-cycle run of a rehearsal: it checkpoints as it goes and resumes an
interrupted run, writes per-step traces, and says in its warnings what limits the result.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.fileio import atomic_write_bytes
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.physics.brinkman import BrinkmanRegion
from cardiotwin.provenance import sha256_file
from cardiotwin.study.jsonio import to_json
from cardiotwin.study.progress import Progress, no_progress
from cardiotwin.study.results import CycleSummary, FlowRun
from cardiotwin.twin.calibrate import calibrate_windkessel
from cardiotwin.twin.state import Physiology

__all__ = ["LEAK_WARNING_FRACTION", "CycleSettings", "run_cycle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleSettings:
    """Options of a pulsatile (whole-cycle) flow run, :func:`run_cycle`.

    Parameters
    ----------
    dt_ms : time step in ms. 0.5 ms keeps the CFL number of a stenotic jet (6–8 m/s at peak
        systole through a 0.8 cm² orifice) within the solver's guard on the demo twin's mesh
        (1.2–3 mm); 1 ms stops there with a CFL error in early systole.
    t_end_ms : simulated time in ms; ``None`` (default) is one cardiac cycle ``60000/HR``.
        Shorter runs (e.g. the first 100 ms of systole) are for trials: the cycle statistics are
        then taken over what was run.
    smagorinsky_cs : LES constant of the solver (``docs/pulsatile.md``: the Galerkin scheme
        without it blows up in early systole on twin meshes; with 0.1 the stenotic jet of the
        demo twin still diverged at 75 ms, with 0.17 it passed peak systole).
    write_every : write velocity and pressure (VTX, for ParaView) every this many steps
        (0: only the time-averaged wall shear stress and OSI at the end).
    checkpoint_every_ms : write a restart checkpoint every this much simulated time (the newest
        one is kept; 0: none). A run that is interrupted (Ctrl-C, a closed session, a crash)
        resumes from it when :func:`run_cycle` is called again with the same inputs; the
        checkpoints are deleted when the run has finished. Default 100 ms: on the demo twin's
        mesh a checkpoint takes about 0.5 s and 47 MiB, and 100 ms of flow about 8 minutes.
    """

    dt_ms: float = 0.5
    t_end_ms: float | None = None
    smagorinsky_cs: float = 0.17
    write_every: int = 40
    checkpoint_every_ms: float = 100.0

    def __post_init__(self) -> None:
        if not (isinstance(self.dt_ms, int | float) and 0.05 <= self.dt_ms <= 5.0):
            raise InputError(f"CycleSettings.dt_ms must be in [0.05, 5] ms; got {self.dt_ms!r}")
        if self.t_end_ms is not None and not (isinstance(self.t_end_ms, int | float)
                                              and self.t_end_ms >= self.dt_ms):
            raise InputError(f"CycleSettings.t_end_ms must be >= dt_ms ({self.dt_ms:g} ms) or "
                             f"None (one cardiac cycle); got {self.t_end_ms!r}")
        if not (isinstance(self.write_every, int) and self.write_every >= 0):
            raise InputError(f"CycleSettings.write_every must be an integer >= 0; got "
                             f"{self.write_every!r}")
        if not (isinstance(self.checkpoint_every_ms, int | float)
                and (self.checkpoint_every_ms == 0 or self.checkpoint_every_ms >= self.dt_ms)):
            raise InputError(f"CycleSettings.checkpoint_every_ms must be 0 (no checkpoints) or "
                             f">= dt_ms ({self.dt_ms:g} ms); got {self.checkpoint_every_ms!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_traces(res, path: Path, p_aortic_pa: np.ndarray) -> None:
    """One CSV row per time step: flows in mL/s, pressures in mmHg."""
    outlets = sorted(res.outlet_flows_m3_s)
    cols = ["t_s", "inflow_ml_s"] + [f"flow_{k}_ml_s" for k in outlets] \
        + [f"pressure_{k}_mmhg" for k in outlets] + ["aortic_pressure_mmhg", "inlet_pressure_mmhg"]
    have_valve = res.valve_gradient_pa is not None
    if have_valve:
        cols += ["valve_gradient_mmhg", "jet_velocity_m_s"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, t in enumerate(res.times_s):
            row = [f"{t:.6f}", f"{units.m3_s_to_ml_s(res.inlet_flow_m3_s[i]):.6g}"]
            row += [f"{units.m3_s_to_ml_s(res.outlet_flows_m3_s[k][i]):.6g}" for k in outlets]
            row += [f"{units.pa_to_mmhg(res.outlet_pressures_pa[k][i]):.6g}" for k in outlets]
            row.append(f"{units.pa_to_mmhg(p_aortic_pa[i]):.6g}")
            row.append(f"{units.pa_to_mmhg(res.boundary_pressures_pa['inlet'][i]):.6g}")
            if have_valve:
                row += [f"{units.pa_to_mmhg(res.valve_gradient_pa[i]):.6g}",
                        f"{res.jet_velocity_m_s[i]:.6g}"]
            w.writerow(row)


LEAK_WARNING_FRACTION = 0.10
"""Flow through a valve's solid (porous) part, as a fraction of the inflow, above which a
pulsatile result warns that the mesh is too coarse for the valve. A blocking plate on a fine
mesh carries about 3 % while the flow accelerates (docs/pulsatile.md)."""


def _warnings(*, leak: float | None, whole_cycle: bool, simulated_ms: float, period_ms: float,
              region: BrinkmanRegion | None) -> tuple[str, ...]:
    out = []
    if region is not None and leak is not None and leak > LEAK_WARNING_FRACTION:
        out.append(f"up to {100 * leak:.0f} % of the inflow crosses the solid part of the "
                   f"{region.name} on this mesh (its cells are too coarse to block it), so the "
                   "gradients are underestimated and the EOA overestimated; rebuild the twin "
                   "with a finer mesh at the valve (the default `twin build --h-min 1.2` blocks "
                   "the demo patient's valve)")
    if not whole_cycle:
        out.append(f"only {simulated_ms:g} ms of the {period_ms:.0f} ms "
                   "cycle were simulated: the cycle figures cover that part only")
    return tuple(out)


_CYCLE_KEY_FILE = "cycle_inputs.json"


def _resume_point(out_dir: Path, key: dict[str, Any], n_steps: int) -> Path | None:
    """The newest checkpoint of an interrupted :func:`run_cycle` in ``out_dir`` with the same
    inputs ``key``, or None. Checkpoints of other inputs are deleted and the new key written, so
    a run never continues from a state that another configuration produced."""
    from cardiotwin.physics.pulsatile import latest_checkpoint

    ck_dir = out_dir / "checkpoints"
    key_file = out_dir / _CYCLE_KEY_FILE
    try:
        same = key_file.is_file() and json.loads(key_file.read_text()) == json.loads(to_json(key))
    except (OSError, ValueError):
        same = False
    if same:
        return latest_checkpoint(out_dir, before_step=n_steps)
    shutil.rmtree(ck_dir, ignore_errors=True)
    atomic_write_bytes(key_file, to_json(key).encode())
    return None


def run_cycle(domain: FluidDomain, landmarks: AorticRootLandmarks, physiology: Physiology,
              region: BrinkmanRegion | None, *, label: str, out_dir: Path,
              settings: CycleSettings = CycleSettings(),
              progress: Progress = no_progress) -> FlowRun:
    """Pulsatile flow over a cardiac cycle with Windkessel outlets fitted to the blood pressure.

    The inflow is the patient's aortic flow waveform (heart rate, stroke volume, ejection time)
    with a parabolic profile; each outlet is an RCR from
    :func:`~cardiotwin.twin.calibrate.calibrate_windkessel`, started at its periodic pressure.
    The summary (:class:`~cardiotwin.study.results.CycleSummary`) holds the clinical cycle
    figures: mean and peak transvalvular gradient, EOA by Gorlin and by continuity, peak jet
    velocity, aortic (flow-weighted outlet) systolic, diastolic and mean pressure, LV-outflow
    (inlet) systolic pressure, outlet flows and split, TAWSS and OSI, and the leak check of the
    valve region with its warnings. Files: ``traces.csv`` (one row per step) and the VTX series
    in ``out_dir`` (``velocity.bp``, ``pressure.bp``, ``wall.bp``).

    Every ``settings.checkpoint_every_ms`` the state is checkpointed in ``out_dir/checkpoints``.
    Called again after an interruption with the same inputs (mesh, landmarks, physiology,
    region, settings), the run continues from the newest checkpoint; its traces, cycle figures
    and TAWSS/OSI are those of an uninterrupted run (``summary.resumed_from_step`` says where
    it resumed), but the VTX velocity/pressure series restarts there.

    Raises
    ------
    InputError
        Blood pressure no Windkessel can give (:func:`calibrate_windkessel`), bad settings.
    SolverError
        A diverging run (the message names the step and suggests a smaller ``dt_ms`` or a larger
        ``smagorinsky_cs``); nothing is stored then.
    """
    import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx)

    from cardiotwin.physics import mesh
    from cardiotwin.physics.pulsatile import Inflow, PulsatileSettings, ValvePlanes, solve_pulsatile

    t0 = time.perf_counter()
    cal = calibrate_windkessel(physiology, domain)
    period_s = cal.waveform.period_s
    dt_s = units.ms_to_s(settings.dt_ms)
    t_end_s = period_s if settings.t_end_ms is None else units.ms_to_s(settings.t_end_ms)
    n_steps = max(1, round(t_end_s / dt_s))
    fm = mesh.load_domain(domain)
    valve = ValvePlanes(centre_mm=tuple(landmarks.annulus_centre_mm), axis=landmarks.annulus_normal,
                        radius_mm=1.3 * landmarks.annulus_max_diameter_mm / 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    ck_every = (max(1, round(settings.checkpoint_every_ms / settings.dt_ms))
                if settings.checkpoint_every_ms else 0)
    restart = None
    if ck_every:
        key = {"mesh_sha256": sha256_file(domain.mesh_path), "landmarks": landmarks.to_dict(),
               "physiology": physiology.to_dict(), "region": region.to_dict() if region else {},
               "settings": settings.to_dict(), "n_steps": n_steps}
        restart = _resume_point(out_dir, key, n_steps)
    step0 = int(restart.name.removeprefix("step_")) if restart is not None else 0
    if restart is not None:
        log.info("%s: resuming the interrupted cycle from step %d (%s)", label, step0, restart)
        progress(step0 / n_steps, f"resuming at step {step0}/{n_steps}")
    res = solve_pulsatile(
        fm, inflow=Inflow(flow_m3_s=cal.waveform, profile="parabolic"), outlets=cal.outlets,
        dt_s=dt_s, t_end_s=n_steps * dt_s, period_s=period_s,
        regions=(region,) if region is not None else (), valve=valve,
        settings=PulsatileSettings(smagorinsky_cs=settings.smagorinsky_cs, backflow_beta=1.0,
                                   checkpoint_keep=1),
        initial_outlet_pressures_pa=cal.initial_pressures_pa, out_dir=out_dir,
        write_every=settings.write_every, checkpoint_every=ck_every, restart_from=restart,
        progress=lambda k, n: progress(k / n, f"step {k}/{n}, t = {k * settings.dt_ms:g} ms"))
    if ck_every:  # finished: the checkpoints (tens of MiB each) are no longer needed
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    s = res.summary()
    last = res.last_cycle()
    shares = cal.flow_shares
    p_aortic_all = sum(w * res.outlet_pressures_pa[k.removeprefix("outlet:")]
                       for k, w in shares.items())
    p_aortic = p_aortic_all[last]
    p_inlet = res.boundary_pressures_pa["inlet"][last]
    vm = s.get("valve", {})
    ws = s.get("wall_shear", {})
    traces = out_dir / "traces.csv"
    _write_traces(res, traces, p_aortic_all)
    leak_by_region = s.get("region_leak", {})
    leak = max(leak_by_region.values()) if leak_by_region else None
    simulated_ms = units.s_to_ms(s["t_end_s"])
    period_ms = units.s_to_ms(period_s)
    whole_cycle = bool(n_steps * dt_s >= period_s - 0.5 * dt_s)
    summary = CycleSummary(
        label=label,
        mean_gradient_mmhg=vm.get("mean_gradient_mmhg"),
        peak_gradient_mmhg=vm.get("peak_gradient_mmhg"),
        eoa_gorlin_cm2=vm.get("eoa_gorlin_cm2"),
        eoa_continuity_cm2=vm.get("eoa_continuity_cm2"),
        peak_jet_velocity_m_s=vm.get("peak_jet_velocity_m_s"),
        aortic_systolic_mmhg=units.pa_to_mmhg(float(p_aortic.max())),
        aortic_diastolic_mmhg=units.pa_to_mmhg(float(p_aortic.min())),
        aortic_mean_mmhg=units.pa_to_mmhg(float(p_aortic.mean())),
        lvot_systolic_mmhg=units.pa_to_mmhg(float(p_inlet.max())),
        stroke_volume_ml=s["stroke_volume_ml"],
        inflow_peak_ml_s=units.m3_s_to_ml_s(s["inlet_flow_peak_m3_s"]),
        outlet_flows_l_min={f"outlet:{k}": units.m3_s_to_l_min(v)
                            for k, v in s["outlet_flow_mean_m3_s"].items()},
        flow_split=s.get("flow_split", {}),
        tawss_mean_pa=ws.get("tawss_pa_mean"), tawss_max_pa=ws.get("tawss_pa_max"),
        osi_mean=ws.get("osi_mean"), osi_max=ws.get("osi_max"),
        mass_imbalance_max=s["mass_imbalance_max"], cfl_max=s["cfl_max"],
        n_steps=s["n_steps"], dt_ms=settings.dt_ms, simulated_ms=simulated_ms,
        period_ms=period_ms, whole_cycle=whole_cycle,
        n_dofs=int(sum(res.n_dofs.values())), solve_time_s=time.perf_counter() - t0,
        fields_dir=str(out_dir), settings=settings.to_dict(), resumed_from_step=step0,
        calibration=cal.to_dict(),
        orifice_area_cm2=(units.mm2_to_cm2(region.metadata["orifice_area_mm2"])
                          if region is not None and "orifice_area_mm2" in region.metadata else None),
        valve_leak_fraction=leak,
        warnings=_warnings(leak=leak, whole_cycle=whole_cycle, simulated_ms=simulated_ms,
                           period_ms=period_ms, region=region),
    )
    for w in summary.warnings:
        log.warning("%s (%s): %s", label, domain.mesh_path.name, w)
    prov = res.provenance.to_dict() if hasattr(res.provenance, "to_dict") else dict(res.provenance)
    prov.setdefault("inputs", {})["mesh"] = domain.provenance.get("inputs", {}).get("surface", "")
    return FlowRun(summary, region.to_dict() if region else {}, {"traces": str(traces)}, prov)

"""The use cases of cardiotwin, each taking an :class:`~cardiotwin.store.Actor` and audited.

The CLI, the app and batch pipelines call these functions and nothing below them that touches
patient data. Every read and write of patient-linked data goes through :class:`cardiotwin.store.Store`,
which writes the audit record in the same transaction.

Use cases
---------
build_twin
    DICOM series → pseudonymised volume → segmentation → aortic-root landmarks → fluid surface →
    tetrahedral mesh → calibrated boundary conditions → baseline (native valve) flow → stored twin.
rehearse
    A device of the catalog placed on the twin's annulus → flow with the device → before/after
    comparison, stored as a result. Steady flow at mean systolic flow by default; whole cardiac
    cycles of pulsatile flow with Windkessel outlets fitted to the blood pressure
    (:func:`run_cycle`) when given a :class:`CycleSettings`.
deidentify_dicom
    A folder of identified DICOM → de-identified copies (PS3.15 Annex E) with the store's
    pseudonym key, so the pseudonyms match the twins; audited.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cardiotwin import units
from cardiotwin.devices.catalog import load_catalog
from cardiotwin.devices.placement import device_region, place_device
from cardiotwin.devices.sizing import SizingReport, assess_sizes
from cardiotwin.errors import CardiotwinError, InputError
from cardiotwin.fileio import atomic_write_bytes
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.physics.brinkman import BrinkmanRegion, native_valve_region
from cardiotwin.provenance import Provenance, sha256_file, sha256_tree
from cardiotwin.store import Actor, Store
from cardiotwin.twin.calibrate import calibrate_outlets, calibrate_windkessel
from cardiotwin.twin.state import PatientTwin, Physiology

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""Progress callback: fraction done in [0, 1] and a short message."""

DEFAULT_FAMILY = "balloon_expandable_thv"


def _noop(_f: float, _m: str) -> None:
    pass


@dataclass(frozen=True)
class BuildSettings:
    """Options of :func:`build_twin` (mm for geometry).

    Attributes
    ----------
    h_max_mm, h_min_mm : tetrahedron size away from / near the valve.
    refine_radius_mm : radius of the refined zone around the valve.
    inlet_offset_mm : the LVOT inlet plane lies this far below the annulus.
    run_baseline : solve the native-valve flow as part of the build.
    """

    h_max_mm: float = 3.0
    h_min_mm: float = 1.2
    refine_radius_mm: float = 16.0
    inlet_offset_mm: float = 12.0
    run_baseline: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.h_min_mm <= self.h_max_mm:
            raise InputError(f"need 0 < h_min_mm <= h_max_mm; got {self.h_min_mm}, {self.h_max_mm}")


@dataclass
class FlowRun:
    """Summary of one flow solve stored with the twin (SI inside, clinical units for display)."""

    label: str
    region: dict[str, Any]
    summary: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def login(store: Store, username: str, password: str, *, client: str) -> Actor:
    """Authenticate a user of the store and return the actor to pass to the other use cases.

    The attempt (success, failure, lockout) is audited by the store; raises ``AccessDenied``.
    """
    from cardiotwin.store import users

    return users.authenticate(store, username, password, client=client)


def open_store(root: str | Path, **kwargs: Any) -> Store:
    """Open (or create) the twin store at ``root`` for the use cases in this module."""
    return Store(Path(root), twin_type=PatientTwin, **kwargs)


def _store_files(store: Store, files: dict[str, str]) -> dict[str, str]:
    """Put result files into the content-addressed store: file name → SHA-256."""
    out = {}
    for path in files.values():
        p = Path(path)
        if p.is_file():
            out[p.name] = store.put_artifact(p, kind="flow-field")
            if p.suffix == ".xdmf" and p.with_suffix(".h5").is_file():
                out[p.with_suffix(".h5").name] = store.put_artifact(p.with_suffix(".h5"),
                                                                    kind="flow-field")
    return out


def _work_dir(store: Store, pseudonym: str, name: str) -> Path:
    d = Path(store.root) / "runs" / pseudonym / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def default_physiology() -> Physiology:
    """A resting adult with severe aortic stenosis (used when no vitals are given)."""
    return Physiology(heart_rate_bpm=70.0, stroke_volume_ml=70.0, systolic_bp_mmhg=130.0,
                      diastolic_bp_mmhg=75.0)


def native_region(landmarks: AorticRootLandmarks) -> BrinkmanRegion:
    """The stenotic native valve of the twin as a Brinkman plate at its measured orifice."""
    return native_valve_region(
        orifice_centre_mm=landmarks.valve_orifice_centre_mm,
        axis=landmarks.annulus_normal,
        orifice_area_mm2=landmarks.valve_orifice_area_mm2,
        outer_radius_mm=1.6 * max(landmarks.annulus_max_diameter_mm, landmarks.sinus_diameter_mm) / 2,
    )


def bernoulli_gradient_mmhg(flow_m3_s: float, orifice_area_cm2: float) -> float:
    """Simplified Bernoulli gradient 4·v² (mmHg, v in m/s) for a flow through an orifice.

    The clinical Doppler relation (Hatle L, Angelsen B, Tromsdal A. Br Heart J 1980;43:284–292),
    shown beside the 3-D result as an independent order-of-magnitude check.
    """
    v = flow_m3_s / units.cm2_to_m2(orifice_area_cm2)
    return 4.0 * v * v


def clinical_flow_settings():
    """Solver settings of the twin's flow runs.

    At a stenotic jet (Re ≈ 10⁴) the steady iteration reaches a state whose integral quantities
    (outlet flows, pressures) stop changing while the jet still fluctuates locally; such a run
    ends as ``status = "settled"`` with the measured spread, rather than iterating on. Measured on
    the demo twin: settled in 18 iterations, inlet pressure within ±0.3 % over the last 6.
    """
    from cardiotwin.physics.steady import SteadySettings

    return SteadySettings(max_iterations=40, settle_rtol=2e-2, settle_window=6,
                          settle_min_iterations=12)


def run_flow(domain: FluidDomain, landmarks: AorticRootLandmarks, physiology: Physiology,
             region: BrinkmanRegion | None, *, label: str, out_dir: Path,
             progress: Progress = _noop) -> FlowRun:
    """Steady flow at mean systolic flow with calibrated resistance outlets; metrics in clinical units."""
    import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx)

    from cardiotwin.physics import mesh, metrics, steady, windkessel

    t0 = time.perf_counter()
    cal = calibrate_outlets(physiology, domain)
    fm = mesh.load_domain(domain)
    outlets = {name: windkessel.OutletResistance(r, cal.p0_pa) for name, r in cal.resistances_pa_s_m3.items()}
    res = steady.solve_steady(fm, inflow_m3_s=cal.inflow_m3_s, outlets=outlets, region=region,
                              settings=clinical_flow_settings(), progress=progress)
    radius = 1.3 * landmarks.annulus_max_diameter_mm / 2
    grad = metrics.transvalvular_gradient(
        res, centre_mm=landmarks.annulus_centre_mm, axis=landmarks.annulus_normal, radius_mm=radius)
    wss = metrics.wall_shear_stress(res)
    split = metrics.flow_split(res)
    profile_s = np.arange(-10.0, 45.0, 2.5)
    profile = [
        units.pa_to_mmhg(metrics.section_mean_pressure(
            res, centre_mm=tuple(np.asarray(landmarks.annulus_centre_mm)
                                 + s * np.asarray(landmarks.annulus_normal)),
            axis=landmarks.annulus_normal, radius_mm=1.6 * landmarks.sinus_diameter_mm / 2))
        for s in profile_s
    ]
    files = {k: str(v) for k, v in res.write(out_dir).items()}
    q_in = res.inlet_flow_m3_s
    summary = {
        "label": label,
        "peak_gradient_mmhg": units.pa_to_mmhg(grad.peak_pa),
        "net_gradient_mmhg": units.pa_to_mmhg(grad.net_pa),
        "inflow_l_min": units.m3_s_to_l_min(q_in),
        "inflow_ml_s": units.m3_s_to_ml_s(q_in),
        "outlet_flows_l_min": {k: units.m3_s_to_l_min(v) for k, v in res.outlet_flows_m3_s.items()},
        "flow_split": split,
        "mass_imbalance": (sum(res.outlet_flows_m3_s.values()) - q_in) / q_in,
        "wss_mean_pa": wss["mean_pa"], "wss_max_pa": wss["max_pa"], "wss_p99_pa": wss["p99_pa"],
        "pressure_profile_mm": profile_s.tolist(), "pressure_profile_mmhg": profile,
        "converged": bool(res.converged), "iterations": int(res.iterations),
        "status": getattr(res, "status", "converged" if res.converged else "max_iterations"),
        "status_reason": getattr(res, "reason", ""),
        "bernoulli_gradient_mmhg": None,
        "n_dofs": int(res.n_dofs), "solve_time_s": time.perf_counter() - t0,
        "calibration": cal.to_dict(),
    }
    if region is not None and "orifice_area_mm2" in region.metadata:
        summary["orifice_area_cm2"] = units.mm2_to_cm2(region.metadata["orifice_area_mm2"])
        summary["bernoulli_gradient_mmhg"] = bernoulli_gradient_mmhg(
            q_in, units.mm2_to_cm2(region.metadata["orifice_area_mm2"]))
    prov = res.provenance.to_dict() if hasattr(res.provenance, "to_dict") else dict(res.provenance)
    prov.setdefault("inputs", {})["mesh"] = domain.provenance.get("inputs", {}).get("surface", "")
    return FlowRun(label, region.to_dict() if region else {}, summary, files, prov)


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


def _write_cycle_traces(res, path: Path, p_aortic_pa: np.ndarray) -> None:
    """One CSV row per time step: flows in mL/s, pressures in mmHg."""
    import csv

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


def _cycle_warnings(summary: dict[str, Any], region: BrinkmanRegion | None) -> list[str]:
    out = []
    leak = summary.get("valve_leak_fraction")
    if region is not None and leak is not None and leak > LEAK_WARNING_FRACTION:
        out.append(f"up to {100 * leak:.0f} % of the inflow crosses the solid part of the "
                   f"{region.name} on this mesh (its cells are too coarse to block it), so the "
                   "gradients are underestimated and the EOA overestimated; rebuild the twin "
                   "with a finer mesh at the valve (the default `twin build --h-min 1.2` blocks "
                   "the demo patient's valve)")
    if not summary["whole_cycle"]:
        out.append(f"only {summary['simulated_ms']:g} ms of the {summary['period_ms']:.0f} ms "
                   "cycle were simulated: the cycle figures cover that part only")
    return out


_CYCLE_KEY_FILE = "cycle_inputs.json"


def _resume_point(out_dir: Path, key: dict[str, Any], n_steps: int) -> Path | None:
    """The newest checkpoint of an interrupted :func:`run_cycle` in ``out_dir`` with the same
    inputs ``key``, or None. Checkpoints of other inputs are deleted and the new key written, so
    a run never continues from a state that another configuration produced."""
    ck_dir = out_dir / "checkpoints"
    key_file = out_dir / _CYCLE_KEY_FILE
    same = False
    if key_file.is_file():
        try:
            same = json.loads(key_file.read_text()) == json.loads(to_json(key))
        except (OSError, ValueError):
            same = False
    if same:
        usable = [d for d in sorted(ck_dir.glob("step_[0-9]*[0-9]"))
                  if (d / "state.json").is_file() and int(d.name.removeprefix("step_")) < n_steps]
        return usable[-1] if usable else None
    shutil.rmtree(ck_dir, ignore_errors=True)
    atomic_write_bytes(key_file, to_json(key).encode())
    return None


def run_cycle(domain: FluidDomain, landmarks: AorticRootLandmarks, physiology: Physiology,
              region: BrinkmanRegion | None, *, label: str, out_dir: Path,
              settings: CycleSettings = CycleSettings(), progress: Progress = _noop) -> FlowRun:
    """Pulsatile flow over a cardiac cycle with Windkessel outlets fitted to the blood pressure.

    The inflow is the patient's aortic flow waveform (heart rate, stroke volume, ejection time)
    with a parabolic profile; each outlet is an RCR from
    :func:`~cardiotwin.twin.calibrate.calibrate_windkessel`, started at its periodic pressure.
    The summary holds the clinical cycle figures: mean and peak transvalvular gradient, EOA by
    Gorlin and by continuity, peak jet velocity, aortic (flow-weighted outlet) systolic, diastolic
    and mean pressure, LV-outflow (inlet) systolic pressure, outlet flows and split, TAWSS and
    OSI, and the leak check of the valve region with its warnings. Files: ``traces.csv`` (one row
    per step) and the VTX series in ``out_dir`` (``velocity.bp``, ``pressure.bp``, ``wall.bp``).

    Every ``settings.checkpoint_every_ms`` the state is checkpointed in ``out_dir/checkpoints``.
    Called again after an interruption with the same inputs (mesh, landmarks, physiology,
    region, settings), the run continues from the newest checkpoint; its traces, cycle figures
    and TAWSS/OSI are those of an uninterrupted run (``summary["resumed_from_step"]`` says
    where it resumed), but the VTX velocity/pressure series restarts there.

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
    dt_s = settings.dt_ms * 1e-3
    t_end_s = period_s if settings.t_end_ms is None else settings.t_end_ms * 1e-3
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
    _write_cycle_traces(res, traces, p_aortic_all)
    summary = {
        "label": label, "mode": "pulsatile",
        "mean_gradient_mmhg": vm.get("mean_gradient_mmhg"),
        "peak_gradient_mmhg": vm.get("peak_gradient_mmhg"),
        "eoa_gorlin_cm2": vm.get("eoa_gorlin_cm2"),
        "eoa_continuity_cm2": vm.get("eoa_continuity_cm2"),
        "peak_jet_velocity_m_s": vm.get("peak_jet_velocity_m_s"),
        "aortic_systolic_mmhg": units.pa_to_mmhg(float(p_aortic.max())),
        "aortic_diastolic_mmhg": units.pa_to_mmhg(float(p_aortic.min())),
        "aortic_mean_mmhg": units.pa_to_mmhg(float(p_aortic.mean())),
        "lvot_systolic_mmhg": units.pa_to_mmhg(float(p_inlet.max())),
        "stroke_volume_ml": s["stroke_volume_ml"],
        "inflow_peak_ml_s": units.m3_s_to_ml_s(s["inlet_flow_peak_m3_s"]),
        "outlet_flows_l_min": {f"outlet:{k}": units.m3_s_to_l_min(v)
                               for k, v in s["outlet_flow_mean_m3_s"].items()},
        "flow_split": s.get("flow_split", {}),
        "tawss_mean_pa": ws.get("tawss_pa_mean"), "tawss_max_pa": ws.get("tawss_pa_max"),
        "osi_mean": ws.get("osi_mean"), "osi_max": ws.get("osi_max"),
        "mass_imbalance_max": s["mass_imbalance_max"], "cfl_max": s["cfl_max"],
        "n_steps": s["n_steps"], "dt_ms": settings.dt_ms, "simulated_ms": 1e3 * s["t_end_s"],
        "period_ms": 1e3 * period_s, "whole_cycle": bool(n_steps * dt_s >= period_s - 0.5 * dt_s),
        "n_dofs": int(sum(res.n_dofs.values())), "solve_time_s": time.perf_counter() - t0,
        "fields_dir": str(out_dir), "settings": settings.to_dict(), "resumed_from_step": step0,
        "calibration": cal.to_dict(),
    }
    if region is not None and "orifice_area_mm2" in region.metadata:
        summary["orifice_area_cm2"] = units.mm2_to_cm2(region.metadata["orifice_area_mm2"])
    leak = s.get("region_leak", {})
    summary["valve_leak_fraction"] = max(leak.values()) if leak else None
    summary["warnings"] = _cycle_warnings(summary, region)
    for w in summary["warnings"]:
        log.warning("%s (%s): %s", label, domain.mesh_path.name, w)
    files = {"traces": str(traces)}
    prov = res.provenance.to_dict() if hasattr(res.provenance, "to_dict") else dict(res.provenance)
    prov.setdefault("inputs", {})["mesh"] = domain.provenance.get("inputs", {}).get("surface", "")
    return FlowRun(label, region.to_dict() if region else {}, summary, files, prov)


def build_twin(dicom_dir: str | Path, *, store: Store, actor: Actor,
               physiology: Physiology | None = None, settings: BuildSettings = BuildSettings(),
               purpose: str = "treatment planning", progress: Progress = _noop,
               series: str | None = None) -> PatientTwin:
    """Build (or rebuild) the twin of the patient in a DICOM series and store it.

    Returns the stored twin (its ``version`` set). The patient is known only by the keyed pseudonym
    of its DICOM PatientID from here on.

    ``dicom_dir`` may hold several series: ``series`` is a SeriesInstanceUID or a selection rule
    of :func:`cardiotwin.imaging.discovery.select_series` (``"largest-contrast-ct"``,
    ``"phase=75"``...); without it a folder with one series is read as it is and a folder with
    several uses ``"largest-contrast-ct"``. The series must be CT.
    """
    from cardiotwin.geometry import landmarks as lm_mod
    from cardiotwin.geometry import surface as surface_mod
    from cardiotwin.geometry import volume_mesh
    from cardiotwin.imaging import deid, dicom, discovery, segment

    physiology = physiology or default_physiology()
    store.check_permission("twin.write", actor=actor, purpose=purpose, obj="twin/build")
    prov = Provenance("build_twin", parameters={"settings": settings.__dict__,
                                                "physiology": physiology.to_dict()})
    progress(0.0, "reading DICOM")
    with prov.timed("read_dicom"):
        catalog = discovery.scan_tree(dicom_dir)
        if series is None and len(catalog.series) > 1:
            series = "largest-contrast-ct"
        is_uid = series is not None and series[:1].isdigit() and "=" not in series
        chosen = discovery.select_series(catalog, uid=series if is_uid else None,
                                         rule=None if is_uid else series)
        log.info("reading series …%s (%s)", chosen.series_uid[-12:], chosen.reason)
        uid = None if chosen.series_uid.startswith("<") else chosen.series_uid
        files = sorted(Path(f) for f in chosen.files)
        ct_raw = dicom.read_series(files, series_uid=uid, modality="CT")
        prov.inputs["dicom"] = sha256_tree(files)
        prov.parameters["series_selection"] = chosen.reason
    key = store.pseudonym_key()
    ct = deid.deidentify_volume(ct_raw, key)
    del ct_raw
    pseudo = ct.metadata["pseudonym"]
    log.info("building twin %s from %d slices", pseudo, ct.shape[0])
    progress(0.1, "segmenting")
    with prov.timed("segment"):
        seg = segment.segment_heart(ct)
    progress(0.25, "measuring the aortic root")
    with prov.timed("landmarks"):
        lms = lm_mod.measure_aortic_root(ct, seg)
    progress(0.35, "extracting the fluid surface")
    with prov.timed("surface"):
        fsurf = surface_mod.fluid_surface(seg.labels, lms, inlet_offset_mm=settings.inlet_offset_mm)
    progress(0.45, "meshing")
    wd = _work_dir(store, pseudo, "anatomy")
    with prov.timed("mesh"):
        refine = tuple(np.asarray(lms.annulus_centre_mm) + 8.0 * np.asarray(lms.annulus_normal))
        domain = volume_mesh.mesh_fluid_domain(
            fsurf, wd / "fluid.msh", h_max_mm=settings.h_max_mm, h_min_mm=settings.h_min_mm,
            refine_centre_mm=refine, refine_radius_mm=settings.refine_radius_mm)
        volume_mesh.write_vtu(domain, wd / "fluid_mesh.vtu")
        fsurf.mesh.export(wd / "lumen_surface.stl")
    mesh_sha = store.put_artifact(domain.mesh_path, kind="mesh")
    surf_sha = store.put_artifact(wd / "lumen_surface.stl", kind="surface")
    sizing = assess_sizes(lms, load_catalog().family(DEFAULT_FAMILY), family_key=DEFAULT_FAMILY)
    twin = PatientTwin(
        pseudonym=pseudo,
        anatomy={
            "landmarks": lms.to_dict(),
            "volumes_ml": {"lv_blood": seg.labels.volume_ml("lv_blood"),
                           "aorta": seg.labels.volume_ml("aorta")},
            "segmentation": {"blood_threshold_hu": seg.blood_threshold_hu,
                             "calcium_threshold_hu": seg.calcium_threshold_hu},
            "ct": {"shape": list(ct.shape), "spacing_mm": list(ct.spacing_mm),
                   "modality": ct.metadata.get("modality", "CT")},
            "sizing": sizing.to_dict(),
        },
        mesh={**domain.to_dict(), "artifact_sha256": mesh_sha, "surface_sha256": surf_sha,
              "work_dir": str(wd)},
        physiology=physiology,
        provenance=prov.to_dict(),
    )
    existed = not store.ensure_patient(pseudo, actor=actor, purpose=purpose)
    if settings.run_baseline:
        progress(0.55, "solving baseline flow (native valve)")
        run = run_flow(domain, lms, physiology, native_region(lms), label="baseline",
                       out_dir=_work_dir(store, pseudo, "baseline"),
                       progress=lambda f, m: progress(0.55 + 0.4 * f, m))
        twin.results.append({"label": "baseline", "summary": run.summary, "files": run.files,
                             "region": run.region})
        prov.timings_s["baseline_flow"] = run.summary["solve_time_s"]
        twin.provenance = prov.to_dict()
    store.save_twin(twin, actor=actor, purpose=purpose, supersede=existed,
                    reason="rebuilt from DICOM" if existed else "built from DICOM")
    if settings.run_baseline:
        store.add_result(pseudo, kind="flow", label="baseline", summary=twin.results[-1]["summary"],
                         provenance=run.provenance, artifacts=_store_files(store, run.files),
                         twin_version=twin.version, actor=actor, purpose=purpose)
    progress(1.0, "twin stored")
    return twin


@contextmanager
def _audited_dicom(store: Store, permission: str, action: str, *, actor: Actor,
                   purpose: str) -> Iterator[dict[str, Any]]:
    """Check ``permission``, run the block and audit it on the object "dicom": a success with
    the details the block put in the yielded dict, or a failure naming only the error type
    (the :class:`CardiotwinError` is re-raised). When the details name exactly one patient
    (``pseudonym``, or a one-element ``pseudonyms``), the record is filed under that patient."""
    store.check_permission(permission, actor=actor, purpose=purpose, obj="dicom")
    details: dict[str, Any] = {}
    try:
        yield details
    except CardiotwinError as exc:
        store.record_event(permission, actor=actor, purpose=purpose, action=action, obj="dicom",
                           outcome="failure", details={"error": type(exc).__name__})
        raise
    patients = details.get("pseudonyms") or [details.get("pseudonym")]
    store.record_event(permission, actor=actor, purpose=purpose, action=action, obj="dicom",
                       details=details, pseudonym=patients[0] if len(patients) == 1 else None)


def deidentify_dicom(in_dir: str | Path, out_dir: str | Path, *, store: Store, actor: Actor,
                     retain_dates: bool = False, clean_descriptors: bool = False,
                     record_path: str | Path | None = None, key: bytes | None = None,
                     purpose: str = "de-identification"):
    """De-identify a DICOM folder (PS3.15 Annex E Basic profile) and audit it.

    The pseudonyms are keyed with the store's key (or ``key``), so a patient de-identified here
    maps to the same twin as one scanned by :func:`build_twin`. The audit record names the
    pseudonyms, the file counts and the hash of the de-identification record, never a name or
    an input path. A refusal (e.g. burned-in annotation) is audited as a failure and re-raised;
    nothing is left in ``out_dir`` then.

    Returns
    -------
    cardiotwin.imaging.deid.DeidReport
    """
    from cardiotwin.imaging import deid

    with _audited_dicom(store, "dicom.deidentify", "deidentify", actor=actor,
                        purpose=purpose) as details:
        report = deid.deidentify_tree(
            in_dir, out_dir, key=key if key is not None else store.pseudonym_key(),
            retain_dates=retain_dates, clean_descriptors=clean_descriptors,
            record_path=record_path)
        details.update({"files": len(report.files), "skipped": len(report.skipped),
                        "pseudonyms": sorted({f.pseudonym for f in report.files}),
                        "retain_dates": retain_dates, "clean_descriptors": clean_descriptors,
                        "record_sha256": sha256_file(report.record_path)})
    return report


def scan_dicom(path: str | Path, *, store: Store, actor: Actor, rule: str | None = None,
               purpose: str = "data management", progress: Progress | None = None):
    """Catalogue the DICOM series under a folder (headers only) and audit the read.

    Patients are labelled with the store's keyed pseudonyms (those their twins get). ``rule``
    (:func:`cardiotwin.imaging.discovery.select_series`) also picks a series. The audit record
    holds the counts and the pseudonyms, never a name or the folder's path.

    Returns
    -------
    (SeriesCatalog, SeriesSelection or None)
    """
    from cardiotwin.imaging import discovery

    with _audited_dicom(store, "dicom.read", "scan", actor=actor, purpose=purpose) as details:
        catalog = discovery.scan_tree(path, key=store.pseudonym_key(), progress=progress)
        selection = discovery.select_series(catalog, rule=rule) if rule else None
        details.update({"files": catalog.n_files, "series": len(catalog.series),
                        "pseudonyms": sorted({p.label for p in catalog.patients})})
    return catalog, selection


def convert_dicom(source: str | Path, out: str | Path, *, store: Store, actor: Actor,
                  rule: str | None = None, series_uid: str | None = None,
                  resample: bool = False, phase: float | None = None,
                  purpose: str = "research export") -> tuple[Any, Path, str]:
    """Write one DICOM series as a NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``) volume.

    The series is chosen by ``series_uid`` or ``rule`` (else ``source`` must hold one series).
    The written header carries geometry only (see :mod:`cardiotwin.imaging.export`). The audit
    record names the patient's pseudonym, the format, the shape and the output's SHA-256, never
    a name or a path. A refused series is audited as a failure and re-raised; nothing is written.

    Returns
    -------
    (Volume, Path, str)
        The volume (identifying metadata removed, ``metadata["pseudonym"]`` set when the
        series has a PatientID), the file written and the selection reason ('' without ``rule``).
    """
    from cardiotwin.imaging import deid, dicom, discovery, export

    out = Path(out)
    fmt = "nrrd" if out.name.lower().endswith(".nrrd") else "nifti"
    with _audited_dicom(store, "dicom.read", "convert", actor=actor, purpose=purpose) as details:
        picked = ""
        files: str | Path | list[Path] = source
        if rule is not None:
            sel = discovery.select_series(discovery.scan_tree(source), rule=rule)
            files, series_uid, picked = list(sel.files), sel.series_uid, sel.reason
        raw = dicom.read_series(files, series_uid=series_uid, resample=resample, phase=phase)
        vol = (deid.deidentify_volume(raw, store.pseudonym_key())
               if raw.metadata.get("patient_id") else deid.strip_identifiers(raw))
        del raw
        written = export.write_nrrd(vol, out) if fmt == "nrrd" else export.write_nifti(vol, out)
        details.update({"pseudonym": vol.metadata.get("pseudonym"), "format": fmt,
                        "shape": list(vol.shape), "output_sha256": sha256_file(written)})
    return vol, written, picked


def open_twin(pseudonym: str, *, store: Store, actor: Actor,
              purpose: str = "treatment planning") -> PatientTwin:
    """Load the latest version of a twin (audited)."""
    return store.load_twin(pseudonym, actor=actor, purpose=purpose)


def list_patients(*, store: Store, actor: Actor, purpose: str = "treatment planning") -> list[dict]:
    """Pseudonymised list of patients with twins (audited)."""
    return store.list_patients(actor=actor, purpose=purpose)


def size_device(pseudonym: str, *, store: Store, actor: Actor, family: str = DEFAULT_FAMILY,
                purpose: str = "treatment planning") -> SizingReport:
    """Sizing of every size of a family on the twin's annulus (audited read)."""
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    lms = AorticRootLandmarks.from_dict(twin.anatomy["landmarks"])
    return assess_sizes(lms, load_catalog().family(family), family_key=family)


@dataclass
class Rehearsal:
    """Before/after comparison of one device placement."""

    pseudonym: str
    placement: dict[str, Any]
    sizing: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    files: dict[str, str]
    result_id: int | None = None

    @property
    def pulsatile(self) -> bool:
        """True when both runs are whole-cycle (pulsatile) runs of :func:`run_cycle`."""
        return self.after.get("mode") == "pulsatile"

    def comparison(self) -> list[dict[str, Any]]:
        """Rows of (metric, before, after, unit) for tables."""
        rows, flow_label = (_CYCLE_ROWS, "Mean flow") if self.pulsatile else (_STEADY_ROWS, "Flow")
        out = [{"metric": name, "before": self.before.get(k), "after": self.after.get(k), "unit": u}
               for name, k, u in rows]
        for name, q in self.before.get("outlet_flows_l_min", {}).items():
            out.append({"metric": f"{flow_label} {name.removeprefix('outlet:')}", "before": q,
                        "after": self.after.get("outlet_flows_l_min", {}).get(name), "unit": "L/min"})
        return out


_STEADY_ROWS = [
    ("Peak transvalvular gradient", "peak_gradient_mmhg", "mmHg"),
    ("Net pressure loss", "net_gradient_mmhg", "mmHg"),
    ("Simplified Bernoulli 4v² at the orifice (check)", "bernoulli_gradient_mmhg", "mmHg"),
    ("Valve orifice area", "orifice_area_cm2", "cm²"),
    ("Mean systolic flow (SV / ejection time)", "inflow_ml_s", "mL/s"),
    ("Mean wall shear stress", "wss_mean_pa", "Pa"),
    ("Max wall shear stress", "wss_max_pa", "Pa"),
]
_CYCLE_ROWS = [
    ("Mean transvalvular gradient (forward flow)", "mean_gradient_mmhg", "mmHg"),
    ("Peak transvalvular gradient", "peak_gradient_mmhg", "mmHg"),
    ("EOA, Gorlin", "eoa_gorlin_cm2", "cm²"),
    ("EOA, continuity", "eoa_continuity_cm2", "cm²"),
    ("Valve orifice area (geometric)", "orifice_area_cm2", "cm²"),
    ("Peak jet velocity", "peak_jet_velocity_m_s", "m/s"),
    ("Aortic systolic pressure", "aortic_systolic_mmhg", "mmHg"),
    ("Aortic diastolic pressure", "aortic_diastolic_mmhg", "mmHg"),
    ("LV outflow (inlet) systolic pressure", "lvot_systolic_mmhg", "mmHg"),
    ("Stroke volume (simulated)", "stroke_volume_ml", "mL"),
    ("Time-averaged WSS, mean", "tawss_mean_pa", "Pa"),
    ("Oscillatory shear index, mean", "osi_mean", ""),
    ("Flow through the valve's solid part (leak check)", "valve_leak_fraction", "of Q"),
]


def rehearse(pseudonym: str, *, store: Store, actor: Actor, nominal_diameter_mm: float | None = None,
             family: str = DEFAULT_FAMILY, depth_mm: float | None = None, tilt_deg: float = 0.0,
             rotation_deg: float = 0.0, purpose: str = "procedure rehearsal",
             cycle: CycleSettings | None = None, progress: Progress = _noop) -> Rehearsal:
    """Place a device on the twin, solve the flow with it and compare with the baseline.

    ``nominal_diameter_mm=None`` takes the recommended size. ``cycle=None`` compares steady flow
    at mean systolic flow (about a minute per solve on a twin mesh); a :class:`CycleSettings`
    compares whole cardiac cycles of pulsatile flow (:func:`run_cycle`; minutes to tens of
    minutes per run, see ``docs/pulsatile.md``). The native-valve cycle is stored as a
    ``flow.cycle`` result and reused by later rehearsals with the same settings on the same
    twin version.
    """
    store.check_permission("rehearsal.run", actor=actor, purpose=purpose, pseudonym=pseudonym,
                           obj="rehearsal")
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    lms = AorticRootLandmarks.from_dict(twin.anatomy["landmarks"])
    sizing = assess_sizes(lms, load_catalog().family(family), family_key=family)
    size = nominal_diameter_mm if nominal_diameter_mm is not None else sizing.recommended_mm
    if size is None:
        raise InputError("no size of this family fits the annulus; choose a size explicitly "
                         f"({', '.join(f'{s.nominal_diameter_mm:g}' for s in sizing.sizes)} mm)")
    placement = place_device(lms, family=family, nominal_diameter_mm=size, depth_mm=depth_mm,
                             tilt_deg=tilt_deg, rotation_deg=rotation_deg)
    region = device_region(placement, lms)
    domain = _domain_from_twin(twin, store)
    tag = f"{family}_{size:g}mm_d{placement.depth_mm:g}_t{tilt_deg:g}_r{rotation_deg:g}"
    if cycle is not None:
        tag += "_cycle"
        before, run = _cycle_runs(twin, lms, placement, region, domain, store=store, actor=actor,
                                  purpose=purpose, cycle=cycle, tag=tag, progress=progress)
    else:
        baseline = next((r for r in twin.results if r.get("label") == "baseline"), None)
        if baseline is None:
            progress(0.0, "solving baseline flow (native valve)")
            run0 = run_flow(domain, lms, twin.physiology, native_region(lms), label="baseline",
                            out_dir=_work_dir(store, pseudonym, "baseline"),
                            progress=lambda f, m: progress(0.45 * f, m))
            baseline = {"label": "baseline", "summary": run0.summary, "files": run0.files}
        before = baseline["summary"]
        progress(0.5, f"solving flow with the {size:g} mm valve")
        run = run_flow(domain, lms, twin.physiology, region, label=tag,
                       out_dir=_work_dir(store, pseudonym, tag),
                       progress=lambda f, m: progress(0.5 + 0.48 * f, m))
        run.summary["bernoulli_gradient_mmhg"] = bernoulli_gradient_mmhg(
            units.ml_to_m3(run.summary["inflow_ml_s"]), units.mm2_to_cm2(placement.orifice_area_mm2))
    run.summary["orifice_area_cm2"] = units.mm2_to_cm2(placement.orifice_area_mm2)
    reh = Rehearsal(pseudonym, placement.to_dict(), sizing.assessment(size).__dict__,
                    before, run.summary, run.files)
    reh.result_id = store.add_result(
        pseudonym, kind="rehearsal", label=tag,
        summary={"placement": reh.placement, "sizing": reh.sizing, "before": reh.before,
                 "after": reh.after},
        provenance=run.provenance, artifacts=_store_files(store, run.files),
        twin_version=twin.version, actor=actor, purpose=purpose)
    progress(1.0, "done")
    return reh


def _cycle_runs(twin: PatientTwin, lms: AorticRootLandmarks, placement, region: BrinkmanRegion,
                domain: FluidDomain, *, store: Store, actor: Actor, purpose: str,
                cycle: CycleSettings, tag: str, progress: Progress) -> tuple[dict[str, Any], FlowRun]:
    """The pulsatile runs of :func:`rehearse`: the native-valve cycle (stored as a ``flow.cycle``
    result, or reused when one with the same settings exists) and the device cycle."""
    pseudonym = twin.pseudonym
    key = {"twin_version": twin.version, "settings": cycle.to_dict(),
           "physiology": twin.physiology.to_dict()}
    baseline = next(
        (r for r in store.list_results(pseudonym, actor=actor, purpose=purpose, kind="flow.cycle")
         if r["label"] == "baseline" and r["summary"].get("key") == key), None)
    if baseline is None:
        progress(0.0, "pulsatile cycle with the native valve")
        run0 = run_cycle(domain, lms, twin.physiology, native_region(lms), label="baseline",
                         out_dir=_work_dir(store, pseudonym, "baseline_cycle"), settings=cycle,
                         progress=lambda f, m: progress(0.48 * f, f"native valve: {m}"))
        run0.summary["key"] = key
        store.add_result(pseudonym, kind="flow.cycle", label="baseline", summary=run0.summary,
                         provenance=run0.provenance, artifacts=_store_files(store, run0.files),
                         twin_version=twin.version, actor=actor, purpose=purpose)
        before = run0.summary
    else:
        log.info("%s: reusing the stored native-valve cycle (result %s)", pseudonym, baseline["id"])
        before = baseline["summary"]
    progress(0.5, f"pulsatile cycle with the {placement.nominal_diameter_mm:g} mm valve")
    run = run_cycle(domain, lms, twin.physiology, region, label=tag,
                    out_dir=_work_dir(store, pseudonym, tag), settings=cycle,
                    progress=lambda f, m: progress(0.5 + 0.48 * f, f"device: {m}"))
    run.summary["key"] = key
    return before, run


def list_rehearsals(pseudonym: str, *, store: Store, actor: Actor,
                    purpose: str = "treatment planning") -> list[dict[str, Any]]:
    """Earlier rehearsals of a patient (oldest first), as stored results (audited read)."""
    return store.list_results(pseudonym, actor=actor, purpose=purpose, kind="rehearsal")


def _domain_from_twin(twin: PatientTwin, store: Store) -> FluidDomain:
    """The twin's mesh as a FluidDomain whose file is the verified stored artifact."""
    if not twin.mesh:
        raise InputError(f"twin {twin.pseudonym} has no mesh; rebuild it with `cardiotwin twin build`")
    d = dict(twin.mesh)
    sha = d.pop("artifact_sha256")
    d.pop("surface_sha256", None)
    d.pop("work_dir", None)
    d["mesh_path"] = str(store.artifact_path(sha))
    return FluidDomain.from_dict(d)


def to_json(obj: Any) -> str:
    """JSON for results (numpy scalars converted)."""
    return json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o), indent=2)


__all__ = [
    "Actor", "BuildSettings", "CycleSettings", "Store", "login", "open_store", "FlowRun", "Rehearsal", "build_twin",
    "default_physiology", "bernoulli_gradient_mmhg", "list_patients", "list_rehearsals", "native_region", "open_twin",
    "rehearse", "run_cycle", "run_flow", "size_device",
]

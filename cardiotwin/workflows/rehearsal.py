"""Use cases of a stored twin: open it, list the patients, size a device family on its annulus,
rehearse a device (flow with the device against the native valve) and list the rehearsals."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cardiotwin.devices.sizing import SizingReport
from cardiotwin.errors import InputError
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.store import Actor, Store
from cardiotwin.study import (
    DEFAULT_FAMILY,
    CycleSettings,
    CycleSummary,
    FlowSummary,
    Progress,
    RehearsalComparison,
    no_progress,
    plan_device,
    rehearse_device,
    size_family,
)
from cardiotwin.twin.state import PatientTwin
from cardiotwin.workflows._common import store_run, work_dir


def open_twin(pseudonym: str, *, store: Store, actor: Actor,
              purpose: str = "treatment planning") -> PatientTwin:
    """Load the latest version of a twin (audited)."""
    return store.load_twin(pseudonym, actor=actor, purpose=purpose)


@dataclass(frozen=True)
class PatientEntry:
    """One pseudonymised patient of the store: ``latest_version`` is 0 when no twin is stored
    yet; ``created_utc`` is ISO 8601."""

    pseudonym: str
    latest_version: int
    created_utc: str


def list_patients(*, store: Store, actor: Actor,
                  purpose: str = "treatment planning") -> list[PatientEntry]:
    """Pseudonymised list of the store's patients (audited)."""
    return [PatientEntry(str(p["pseudonym"]), int(p.get("latest_version") or 0),
                         str(p.get("created_utc", "")))
            for p in store.list_patients(actor=actor, purpose=purpose)]


def size_device(pseudonym: str, *, store: Store, actor: Actor, family: str = DEFAULT_FAMILY,
                purpose: str = "treatment planning", diameter_mm: float | None = None,
                catalog: str | Path | None = None) -> SizingReport:
    """Sizing of every size of a family on the twin (audited read).

    Valves are sized on the twin's CT annulus, with the coronary-obstruction risk from the sinus
    diameter and, when the twin was built with planning landmarks that include the coronary
    ostia, the ostium heights. Stents and occluders are sized on ``diameter_mm`` (reference vessel,
    LAA ostium or stretched defect diameter, mm), which the user supplies and the report marks as
    such. ``catalog`` is a user catalog TOML merged over the shipped one.

    Raises
    ------
    InputError
        A stent or occluder without ``diameter_mm``, or a valve with it.
    DeviceError, ConfigError
        An unknown family; an invalid user catalog (the message names the key).
    """
    from cardiotwin.devices.catalog import load_catalog

    cat = load_catalog(catalog)
    fam = cat.family(family)  # an unknown family fails before the patient's record is read
    if fam.kind != "transcatheter_aortic_valve" or diameter_mm is not None:
        # sized on the user's diameter alone: bad input fails before the record is read
        report = size_family(None, family, catalog=cat, diameter_mm=diameter_mm)
        store.load_twin(pseudonym, actor=actor, purpose=purpose)  # the patient exists (audited)
        return report
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    heights = (twin.anatomy.get("planning") or {}).get("coronary_ostia_height_mm")
    return size_family(twin.landmarks, family, catalog=cat, coronary_ostia_height_mm=heights)


def rehearse(pseudonym: str, *, store: Store, actor: Actor, nominal_diameter_mm: float | None = None,
             family: str = DEFAULT_FAMILY, depth_mm: float | None = None, tilt_deg: float = 0.0,
             rotation_deg: float = 0.0, purpose: str = "procedure rehearsal",
             cycle: CycleSettings | None = None,
             progress: Progress = no_progress) -> RehearsalComparison:
    """Place a device on the twin, solve the flow with it and compare with the native valve.

    ``nominal_diameter_mm=None`` takes the recommended size. ``cycle=None`` compares steady flow
    at mean systolic flow (about a minute per solve on a twin mesh); a
    :class:`~cardiotwin.study.CycleSettings` compares whole cardiac cycles of pulsatile flow
    (:func:`cardiotwin.study.run_cycle`; see ``docs/pulsatile.md`` for the cost). The steady
    native-valve run stored with the twin is reused; the native-valve cycle is stored as a
    ``flow.cycle`` result and reused by later rehearsals with the same settings on the same twin
    version. The comparison is stored as a ``rehearsal`` result (its id in ``result_id``).
    """
    store.check_permission("rehearsal.run", actor=actor, purpose=purpose, pseudonym=pseudonym,
                           obj="rehearsal")
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    lms = twin.landmarks
    plan = plan_device(lms, family=family, nominal_diameter_mm=nominal_diameter_mm,
                       depth_mm=depth_mm, tilt_deg=tilt_deg, rotation_deg=rotation_deg)
    domain = twin_fluid_domain(twin, store)
    cycle_key = None
    if cycle is not None:
        cycle_key = {"twin_version": twin.version, "settings": cycle.to_dict(),
                     "physiology": twin.physiology.to_dict()}
        stored = next((r for r in store.list_results(pseudonym, actor=actor, purpose=purpose,
                                                     kind="flow.cycle")
                       if r["label"] == "baseline" and r["summary"].get("key") == cycle_key), None)
        baseline = CycleSummary.from_dict(stored["summary"]) if stored else None
    else:
        baseline = FlowSummary.baseline_of(twin)
    runs = rehearse_device(domain, lms, twin.physiology, plan, pseudonym=pseudonym,
                           work_dir=lambda name: work_dir(store, pseudonym, name),
                           baseline=baseline, cycle=cycle, cycle_key=cycle_key, progress=progress)
    if cycle is not None and runs.baseline_run is not None:
        store_run(store, pseudonym, runs.baseline_run, kind="flow.cycle",
                   twin_version=twin.version, actor=actor, purpose=purpose)
    comparison = runs.comparison
    result_id = store_run(store, pseudonym, runs.device_run, kind="rehearsal",
                           twin_version=twin.version, actor=actor, purpose=purpose,
                           summary=comparison.to_dict())
    progress(1.0, "done")
    return replace(comparison, result_id=result_id)


def list_rehearsals(pseudonym: str, *, store: Store, actor: Actor,
                    purpose: str = "treatment planning") -> list[RehearsalComparison]:
    """Earlier rehearsals of a patient (oldest first), as stored (audited read)."""
    return [RehearsalComparison.from_stored(pseudonym, r["summary"], result_id=r.get("id"))
            for r in store.list_results(pseudonym, actor=actor, purpose=purpose, kind="rehearsal")]


def twin_fluid_domain(twin: PatientTwin, store: Store) -> FluidDomain:
    """The twin's mesh as a FluidDomain whose file is the verified stored artifact."""
    if not twin.mesh:
        raise InputError(f"twin {twin.pseudonym} has no mesh; rebuild it with `cardiotwin twin build`")
    d = dict(twin.mesh)
    sha = d.pop("artifact_sha256")
    d.pop("surface_sha256", None)
    d.pop("root_surface_sha256", None)
    d.pop("work_dir", None)
    d["mesh_path"] = str(store.artifact_path(sha))
    return FluidDomain.from_dict(d)


def device_catalog(path: str | Path | None = None):
    """The device catalog (:class:`~cardiotwin.devices.catalog.Catalog`) with its sources;
    ``path``: a user catalog TOML merged over the shipped one (validated on load)."""
    from cardiotwin.devices.catalog import load_catalog

    return load_catalog(path)


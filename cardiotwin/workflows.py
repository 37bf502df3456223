"""The use cases of cardiotwin, each taking an :class:`~cardiotwin.store.Actor` and audited.

The CLI, the app and batch pipelines call these functions and nothing below them that touches
patient data. A use case authorises, audits, calls the domain and stores what it returns —
nothing else: the haemodynamic study (runs, settings, results) lives in :mod:`cardiotwin.study`.
Every read and write of patient-linked data goes through :class:`cardiotwin.store.Store`, which
writes the audit record in the same transaction.

Use cases
---------
build_twin
    DICOM series → pseudonymised volume → segmentation → aortic-root landmarks → fluid surface →
    tetrahedral mesh → calibrated boundary conditions → baseline (native valve) flow → stored twin.
rehearse
    A device of the catalog placed on the twin's annulus → flow with the device → before/after
    comparison (:class:`~cardiotwin.study.RehearsalComparison`), stored as a result. Steady flow
    at mean systolic flow by default; whole cardiac cycles of pulsatile flow when given a
    :class:`~cardiotwin.study.CycleSettings`.
ingest_observations, ingest_file, ingest_fhir, twin_status, twin_events, replay_twin
    Monitoring observations checked, stored and assimilated into new twin versions (from
    readers, files or a FHIR document posted to the REST API); what the twin says at a time
    (physiology with spread, data age, stale and drift) and when its flags changed; replay of
    a version from the stored observations.
deidentify_dicom, scan_dicom, convert_dicom
    DICOM folders de-identified (PS3.15 Annex E) with the store's pseudonym key, catalogued or
    converted; audited.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cardiotwin.devices.sizing import SizingReport
from cardiotwin.errors import CardiotwinError, InputError
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.provenance import Provenance, sha256_file, sha256_tree
from cardiotwin.store import Actor, Store
from cardiotwin.study import (
    DEFAULT_FAMILY,
    CycleSettings,
    CycleSummary,
    FlowRun,
    FlowSummary,
    Progress,
    RehearsalComparison,
    default_physiology,
    native_region,
    no_progress,
    plan_device,
    rehearse_device,
    run_flow,
    size_family,
)
from cardiotwin.twin.state import PatientTwin, Physiology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSettings:
    """Options of :func:`build_twin` (mm for geometry).

    Attributes
    ----------
    h_max_mm, h_min_mm : tetrahedron size away from / near the valve.
    refine_radius_mm : radius of the refined zone around the valve.
    inlet_offset_mm : the LVOT inlet plane lies this far below the annulus.
    run_baseline : solve the native-valve flow as part of the build.
    mesh_timeout_s : time bound of the mesher (gmsh runs in a child process that is stopped
        after this long, with a message naming the step it was in).
    mesh_algorithm, surface_mesh_algorithm, optimize_netgen : gmsh's 3-D and surface
        algorithms and Netgen optimisation (:func:`cardiotwin.geometry.volume_mesh.mesh_fluid_domain`).
    blood_threshold_hu, calcium_threshold_hu, neck_ratio, blood_search_range_hu : overrides of
        the segmentation's :class:`~cardiotwin.imaging.segment.SegmentationSettings` (None: its
        defaults, the thresholds found from the scan; the search range is (low, high) in HU).
    heart_structures : also segment the structures around the left heart (myocardium, LA, right
        heart, SVC; :mod:`cardiotwin.imaging.heart_structures`); False keeps the LV blood pool,
        aorta and calcium only.
    segmenters : installed segmentation plug-ins that replace the default for the structures
        they provide, ``"NAME"`` or ``"NAME:aorta+myocardium"``
        (:func:`cardiotwin.imaging.plugins.segment_with_plugins`).
    """

    h_max_mm: float = 3.0
    h_min_mm: float = 1.2
    refine_radius_mm: float = 16.0
    inlet_offset_mm: float = 12.0
    run_baseline: bool = True
    mesh_timeout_s: float = 900.0
    mesh_algorithm: str = "delaunay"
    surface_mesh_algorithm: str = "meshadapt"
    optimize_netgen: bool = True
    blood_threshold_hu: float | None = None
    calcium_threshold_hu: float | None = None
    neck_ratio: float | None = None
    segmenters: tuple[str, ...] = ()
    blood_search_range_hu: tuple[float, float] | None = None
    heart_structures: bool = True

    def segmentation_settings(self):
        """The :class:`~cardiotwin.imaging.segment.SegmentationSettings` these options give."""
        from cardiotwin.imaging.segment import SegmentationSettings

        over = {k: getattr(self, k) for k in ("blood_threshold_hu", "calcium_threshold_hu",
                                              "neck_ratio", "blood_search_range_hu")
                if getattr(self, k) is not None}
        return SegmentationSettings(**over, heart_structures=self.heart_structures)

    def __post_init__(self) -> None:
        if not 0 < self.h_min_mm <= self.h_max_mm:
            raise InputError(f"need 0 < h_min_mm <= h_max_mm; got {self.h_min_mm}, {self.h_max_mm}")
        if not self.mesh_timeout_s > 0:
            raise InputError(f"mesh_timeout_s must be > 0 s; got {self.mesh_timeout_s}")


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


def _store_run(store: Store, pseudonym: str, run: FlowRun, *, kind: str, twin_version: int,
               actor: Actor, purpose: str, summary: dict[str, Any] | None = None) -> int:
    """Store one run as a result of the twin (its files as artifacts); returns the result id."""
    return store.add_result(
        pseudonym, kind=kind, label=run.label,
        summary=run.summary.to_dict() if summary is None else summary,
        provenance=dict(run.provenance), artifacts=_store_files(store, dict(run.files)),
        twin_version=twin_version, actor=actor, purpose=purpose)


def build_twin(dicom_dir: str | Path, *, store: Store, actor: Actor,
               physiology: Physiology | None = None, settings: BuildSettings = BuildSettings(),
               purpose: str = "treatment planning", progress: Progress = no_progress,
               series: str | None = None, resample: bool = False,
               phase: float | None = None, volume: int | str | None = None,
               labels: str | Path | None = None,
               label_map: str | Mapping[str, tuple[int, ...]] | None = None,
               landmarks: str | Path | None = None, surface: str | Path | None = None,
               surface_convention: str = "auto") -> PatientTwin:
    """Build (or rebuild) the twin of the patient in a DICOM series and store it.

    Returns the stored twin (its ``version`` set). The patient is known only by the keyed pseudonym
    of its DICOM PatientID from here on.

    ``dicom_dir`` may hold several series: ``series`` is a SeriesInstanceUID or a selection rule
    of :func:`cardiotwin.imaging.discovery.select_series` (``"largest-contrast-ct"``,
    ``"phase=75"``...); without it a folder with one series is read as it is and a folder with
    several uses ``"largest-contrast-ct"``. The series must be CT. ``resample`` regrids a
    gantry-tilted or unevenly spaced series (refused otherwise). ``phase`` picks one phase of a
    multi-phase (4-D) series by its label (trigger time in ms, else temporal position) and
    ``volume`` one volume of a multi-volume series (the same slice positions repeated with
    another acquisition, echo, b-value or temporal position), by 0-based index or selector
    such as ``"acquisition=2"`` (:func:`cardiotwin.imaging.dicom.read_series`); without them
    such a series is refused with a message listing its phases or volumes.

    ``labels`` (NIfTI, NRRD or DICOM SEG: TotalSegmentator's, 3D Slicer's, your own) replaces the
    built-in segmentation; ``label_map`` says which of its values are which structure
    (``"aorta=52,lv_blood=3"``, :func:`cardiotwin.imaging.labels.parse_label_map`; ``lv_blood``
    and ``aorta`` are needed, ``branches`` and ``calcium`` are used when given). The labels are
    resampled onto the CT and refused when they do not lie in it.

    ``landmarks`` (JSON: three annulus hinge points, optionally the coronary ostia, LPS or RAS;
    or a 3D Slicer markups file; :func:`cardiotwin.geometry.landmarks.read_planning_landmarks`)
    sets the annulus plane instead of the automatic one; the ostia heights above it are stored
    with the twin (``anatomy["planning"]``).

    ``surface`` (STL, PLY, OBJ, VTP: a lumen surface from vmtk, SimVascular or 3D Slicer) is
    meshed instead of the surface built from the labels
    (:func:`cardiotwin.geometry.surface_import.import_lumen_surface`): its convention (LPS or
    RAS; ``surface_convention``) is checked against the scan's lumen, its ends get flow
    extensions and flat caps, named from the anatomy.

    Before anything is meshed the anatomy passes a quality gate
    (:func:`cardiotwin.geometry.anatomy_gate.run_gate`: structure volumes and positions, annulus
    size, aortic continuity, outlet caps, each against a documented range): a failure raises
    :class:`~cardiotwin.errors.SegmentationError` saying what looked wrong and what to do, and
    nothing is stored; warnings are stored with the twin (``twin.quality_gate``).
    """
    from cardiotwin.geometry import anatomy_gate, volume_mesh
    from cardiotwin.geometry import landmarks as lm_mod
    from cardiotwin.geometry import surface as surface_mod
    from cardiotwin.imaging import labels as labels_mod

    physiology = physiology or default_physiology()
    store.check_permission("twin.write", actor=actor, purpose=purpose, obj="twin/build")
    prov = Provenance("build_twin", parameters={"settings": settings.__dict__,
                                                "physiology": physiology.to_dict()})
    user_spec = labels_mod.user_label_spec(labels, label_map)
    planned = lm_mod.read_planning_landmarks(landmarks) if landmarks is not None else None
    progress(0.0, "reading DICOM")
    with prov.timed("read_dicom"):
        ct = _read_ct(dicom_dir, store=store, series=series, resample=resample, prov=prov,
                      phase=phase, volume=volume)
    pseudo = ct.metadata["pseudonym"]
    log.info("building twin %s from %d slices", pseudo, ct.shape[0])
    progress(0.1, "segmenting" if labels is None else "reading your labels")
    with prov.timed("segment"):
        seg, seg_record = labels_mod.twin_segmentation(
            ct, labels=labels, spec=user_spec, settings=settings.segmentation_settings(),
            segmenters=settings.segmenters)
        if labels is not None:
            prov.inputs["labels"] = seg_record["labels_sha256"]
    progress(0.25, "measuring the aortic root")
    with prov.timed("landmarks"):
        lms = lm_mod.measure_aortic_root(
            ct, seg, hinge_points_mm=None if planned is None else planned.hinge_points_mm)
    planning = {}
    if planned is not None:
        prov.inputs["landmarks"] = sha256_file(landmarks)
        planning = {"source": "user hinge points", "landmarks_sha256": prov.inputs["landmarks"],
                    "coronary_ostia_height_mm": planned.ostium_heights_mm(lms)}
    progress(0.35, "extracting the fluid surface")
    with prov.timed("surface"):
        if surface is None:
            fsurf = surface_mod.fluid_surface(seg.labels, lms,
                                              inlet_offset_mm=settings.inlet_offset_mm)
        else:
            from cardiotwin.geometry.surface_import import import_lumen_surface

            prov.inputs["surface_file"] = sha256_file(surface)
            fsurf = import_lumen_surface(surface, lumen=seg.labels, landmarks=lms,
                                         convention=surface_convention)
    progress(0.42, "checking the anatomy")
    with prov.timed("quality_gate"):
        gate = anatomy_gate.run_gate(seg.labels, lms, caps=fsurf.caps)
    for message in gate.messages():
        log.warning("%s: anatomy %s", pseudo, message)
    gate.raise_if_failed()
    progress(0.45, "meshing")
    wd = _work_dir(store, pseudo, "anatomy")
    with prov.timed("mesh"):
        refine = tuple(np.asarray(lms.annulus_centre_mm) + 8.0 * np.asarray(lms.annulus_normal))
        domain = volume_mesh.mesh_fluid_domain(
            fsurf, wd / "fluid.msh", h_max_mm=settings.h_max_mm, h_min_mm=settings.h_min_mm,
            refine_centre_mm=refine, refine_radius_mm=settings.refine_radius_mm,
            timeout_s=settings.mesh_timeout_s, algorithm=settings.mesh_algorithm,
            surface_algorithm=settings.surface_mesh_algorithm,
            optimize_netgen=settings.optimize_netgen)
        volume_mesh.write_vtu(domain, wd / "fluid_mesh.vtu")
        fsurf.mesh.export(wd / "lumen_surface.stl")
    mesh_sha = store.put_artifact(domain.mesh_path, kind="mesh")
    surf_sha = store.put_artifact(wd / "lumen_surface.stl", kind="surface")
    sizing = size_family(lms, DEFAULT_FAMILY)
    twin = PatientTwin(
        pseudonym=pseudo,
        anatomy={
            "landmarks": lms.to_dict(),
            "volumes_ml": {"lv_blood": seg.labels.volume_ml("lv_blood"),
                           "aorta": seg.labels.volume_ml("aorta")},
            "segmentation": seg_record,
            "quality_gate": gate.to_dict(),
            "surface": {"source": "user surface" if surface is not None else "labels",
                        **{k: v for k, v in fsurf.provenance.items()
                           if k in ("convention", "overlap_lps", "overlap_ras", "n_ends")}},
            **({"planning": planning} if planning else {}),
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
        twin.results.append({"label": "baseline", "summary": run.summary.to_dict(),
                             "files": dict(run.files), "region": dict(run.region)})
        prov.timings_s["baseline_flow"] = run.summary.solve_time_s
        twin.provenance = prov.to_dict()
    store.save_twin(twin, actor=actor, purpose=purpose, supersede=existed,
                    reason="rebuilt from DICOM" if existed else "built from DICOM")
    if settings.run_baseline:
        _store_run(store, pseudo, run, kind="flow", twin_version=twin.version, actor=actor,
                   purpose=purpose, summary=twin.results[-1]["summary"])
    progress(1.0, "twin stored")
    return twin


def _read_ct(dicom_dir: str | Path, *, store: Store, series: str | None, resample: bool,
             prov: Provenance, phase: float | None = None, volume: int | str | None = None):
    """The chosen CT series of a folder (one phase or volume of it when given), de-identified
    with the store's key."""
    from cardiotwin.imaging import deid, dicom, discovery

    catalog = discovery.scan_tree(dicom_dir)
    if series is None and len(catalog.series) > 1:
        series = "largest-contrast-ct"
    is_uid = series is not None and series[:1].isdigit() and "=" not in series
    chosen = discovery.select_series(catalog, uid=series if is_uid else None,
                                     rule=None if is_uid else series)
    log.info("reading series …%s (%s)", chosen.series_uid[-12:], chosen.reason)
    others = discovery.check_skipped(catalog, chosen)
    if others:
        log.warning("building from series …%s without the damaged files of other series: %s",
                    chosen.series_uid[-12:], catalog.skipped_text(others))
    uid = None if chosen.series_uid.startswith("<") else chosen.series_uid
    files = sorted(Path(f) for f in chosen.files)
    ct_raw = dicom.read_series(files, series_uid=uid, modality="CT", headers=chosen.headers,
                               resample=resample, phase=phase, volume=volume)
    prov.inputs["dicom"] = sha256_tree(files)
    prov.parameters["series_selection"] = chosen.reason
    for key in ("phase", "volume"):
        if ct_raw.metadata.get(key) is not None:
            prov.parameters[key] = ct_raw.metadata[key]
    return deid.deidentify_volume(ct_raw, store.pseudonym_key(),
                                  fallback_id="dicom-files:" + prov.inputs["dicom"])


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
                     record_path: str | Path | None = None, key: bytes | Path | None = None,
                     refuse_unknown_burned_in: bool = True,
                     purpose: str = "de-identification"):
    """De-identify a DICOM folder (PS3.15 Annex E Basic profile) and audit it.

    The pseudonyms are keyed with the store's key (or ``key``: the key's bytes, or a key file
    read with :func:`cardiotwin.imaging.deid.read_key_file`), so a patient de-identified here
    maps to the same twin as one scanned by :func:`build_twin`. The audit record names the
    pseudonyms, the file counts and the hash of the de-identification record, never a name or
    an input path. A refusal (e.g. burned-in annotation) is audited as a failure and re-raised;
    nothing is left in ``out_dir`` then.

    Returns
    -------
    cardiotwin.imaging.deid.DeidReport
    """
    from cardiotwin.imaging import deid

    if isinstance(key, Path):
        key = deid.read_key_file(key)
    with _audited_dicom(store, "dicom.deidentify", "deidentify", actor=actor,
                        purpose=purpose) as details:
        report = deid.deidentify_tree(
            in_dir, out_dir, key=key if key is not None else store.pseudonym_key(),
            retain_dates=retain_dates, clean_descriptors=clean_descriptors,
            record_path=record_path, refuse_unknown_burned_in=refuse_unknown_burned_in)
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
                  volume: int | str | None = None, min_slices: int = 2,
                  purpose: str = "research export") -> tuple[Any, Path, str]:
    """Write one DICOM series as a NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``) volume.

    The series is chosen by ``series_uid`` or ``rule`` (else ``source`` must hold one series);
    ``phase`` picks a phase of a 4-D series and ``volume`` one volume of a multi-volume series
    (index or selector such as ``"b=1000"``; see :func:`cardiotwin.imaging.dicom.read_series`);
    ``min_slices=1`` converts a single 2-D image.
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
        headers = None
        if rule is not None:
            sel = discovery.select_series(discovery.scan_tree(source), rule=rule)
            files, series_uid, picked = list(sel.files), sel.series_uid, sel.reason
            headers = sel.headers
        raw = dicom.read_series(files, series_uid=series_uid, resample=resample, phase=phase,
                                headers=headers, volume=volume, min_slices=min_slices)
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
                purpose: str = "treatment planning") -> SizingReport:
    """Sizing of every size of a family on the twin's annulus (audited read)."""
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    return size_family(twin.landmarks, family)


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
                           work_dir=lambda name: _work_dir(store, pseudonym, name),
                           baseline=baseline, cycle=cycle, cycle_key=cycle_key, progress=progress)
    if cycle is not None and runs.baseline_run is not None:
        _store_run(store, pseudonym, runs.baseline_run, kind="flow.cycle",
                   twin_version=twin.version, actor=actor, purpose=purpose)
    comparison = runs.comparison
    result_id = _store_run(store, pseudonym, runs.device_run, kind="rehearsal",
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
    d.pop("work_dir", None)
    d["mesh_path"] = str(store.artifact_path(sha))
    return FluidDomain.from_dict(d)


@dataclass(frozen=True)
class SegmentationOutput:
    """What :func:`segment_dicom` wrote: the label file, its JSON sidecar and the structures."""

    labels_path: Path
    sidecar_path: Path
    pseudonym: str
    structures: Mapping[str, int]
    volumes_ml: Mapping[str, float]


def segment_dicom(dicom_dir: str | Path, out: str | Path, *, store: Store, actor: Actor,
                  series: str | None = None, resample: bool = False,
                  phase: float | None = None, volume: int | str | None = None,
                  settings: BuildSettings = BuildSettings(),
                  purpose: str = "research export") -> SegmentationOutput:
    """Segment the CT series of a folder and write the label map (NIfTI ``.nii``/``.nii.gz`` or
    NRRD ``.nrrd``) with a JSON sidecar (``<name>.json``: structure names → values, volumes in
    mL, how the blood pool was found). ``series``, ``resample``, ``phase`` and ``volume``
    choose what is read, as for :func:`build_twin`. ``settings`` supplies the segmentation
    overrides (``blood_threshold_hu``...). Audited like a DICOM read; the files carry the
    patient's pseudonym, never a name.
    """
    from cardiotwin.fileio import atomic_write_bytes
    from cardiotwin.imaging import export, plugins
    from cardiotwin.study.jsonio import to_json

    out = Path(out)
    name = out.name.lower()
    if not name.endswith((".nii", ".nii.gz", ".nrrd")):
        raise InputError(f"{out}: write the labels as .nii, .nii.gz or .nrrd")
    prov = Provenance("segment_dicom", parameters={"series": series, "resample": resample})
    with _audited_dicom(store, "dicom.read", "segment", actor=actor, purpose=purpose) as details:
        ct = _read_ct(dicom_dir, store=store, series=series, resample=resample, prov=prov,
                      phase=phase, volume=volume)
        seg = plugins.segment_with_plugins(ct, use=settings.segmenters,
                                           settings=settings.segmentation_settings())
        lab = seg.labels
        written = export.write_nrrd(lab, out) if name.endswith(".nrrd") else export.write_nifti(lab, out)
        structures = {k: v for k, v in lab.names.items() if k != "background"}
        volumes = {k: lab.volume_ml(k) for k in structures}
        sidecar = out.with_name(out.name.removesuffix(".gz").rsplit(".", 1)[0] + ".json")
        atomic_write_bytes(sidecar, to_json({
            "pseudonym": ct.metadata["pseudonym"], "structures": structures,
            "volumes_ml": volumes, "blood_threshold_hu": seg.blood_threshold_hu,
            "calcium_threshold_hu": seg.calcium_threshold_hu, "report": seg.report,
            "provenance": prov.to_dict()}).encode())
        details.update({"pseudonym": ct.metadata["pseudonym"], "output_sha256": sha256_file(written)})
    return SegmentationOutput(written, sidecar, ct.metadata["pseudonym"], structures, volumes)


def evaluate_segmentation(labels: str | Path, reference: str | Path, *,
                          label_map: str | None = None, reference_map: str | None = None):
    """Score a label file against a reference label file per structure (Dice, HD95, mean surface
    distance; :func:`cardiotwin.imaging.labels.evaluate_labels`).

    ``label_map`` / ``reference_map`` (``"aorta=3,lv_blood=1"``) say which values are which
    structure in each file; without them a file's own names are used (cardiotwin's files and
    DICOM SEGs carry them). Both are files the user holds; nothing is read from the store.

    Returns
    -------
    cardiotwin.imaging.labels.SegmentationQuality
    """
    from cardiotwin.imaging import labels as labels_mod

    mine = labels_mod.read_labels(labels)
    theirs = labels_mod.read_labels(reference)
    return labels_mod.evaluate_labels(
        mine, theirs,
        structures=labels_mod.parse_label_map(label_map) if label_map else None,
        reference_structures=labels_mod.parse_label_map(reference_map) if reference_map else None)


@dataclass(frozen=True)
class MeasurementOutput:
    """What :func:`measure_anatomy` measured (and wrote, when asked)."""

    measurements: Any  # cardiotwin.geometry.measure.AnatomyMeasurements
    pseudonym: str
    json_path: Path | None
    segmentation: Mapping[str, Any]


def measure_anatomy(dicom_dir: str | Path, *, store: Store, actor: Actor,
                    series: str | None = None, resample: bool = False,
                    phase: float | None = None, volume: str | int | None = None,
                    labels: str | Path | None = None,
                    label_map: str | Mapping[str, tuple[int, ...]] | None = None,
                    landmarks: str | Path | None = None,
                    settings: BuildSettings = BuildSettings(),
                    out: str | Path | None = None,
                    purpose: str = "treatment planning") -> MeasurementOutput:
    """Measure the TAVR-planning anatomy of the CT series of a folder (nothing is meshed or stored).

    Reads the series (``series``, ``resample``, ``phase``, ``volume`` as for
    :func:`build_twin`), segments it (or takes
    the user's ``labels`` with ``label_map``, resampled onto the CT), and measures the annulus
    (from the three hinge points of ``landmarks`` when given), LVOT, sinus, STJ, ascending aorta
    and arch, coronary ostia heights and valve calcium
    (:func:`cardiotwin.geometry.measure.measure_anatomy`). ``out`` (``.json``) receives the
    measurements with the patient's pseudonym, how the segmentation was obtained and the
    provenance. Audited like a DICOM read.
    """
    from cardiotwin.fileio import atomic_write_bytes
    from cardiotwin.geometry import landmarks as lm_mod
    from cardiotwin.geometry import measure
    from cardiotwin.imaging import labels as labels_mod
    from cardiotwin.study.jsonio import to_json

    if out is not None and not str(out).lower().endswith(".json"):
        raise InputError(f"{out}: write the measurements as .json")
    spec = labels_mod.user_label_spec(labels, label_map)
    planned = lm_mod.read_planning_landmarks(landmarks) if landmarks is not None else None
    prov = Provenance("measure_anatomy", parameters={"series": series, "resample": resample,
                                                     "landmarks": planned is not None})
    if landmarks is not None:
        prov.inputs["landmarks"] = sha256_file(landmarks)
    with _audited_dicom(store, "dicom.read", "measure", actor=actor, purpose=purpose) as details:
        ct = _read_ct(dicom_dir, store=store, series=series, resample=resample, prov=prov,
                      phase=phase, volume=volume)
        seg, record = labels_mod.twin_segmentation(
            ct, labels=labels, spec=spec, settings=settings.segmentation_settings(),
            segmenters=settings.segmenters)
        if labels is not None:
            prov.inputs["labels"] = record["labels_sha256"]
        result = measure.measure_anatomy(ct, seg, landmarks=planned)
        pseudonym = ct.metadata["pseudonym"]
        path = None
        if out is not None:
            path = Path(out)
            atomic_write_bytes(path, to_json({
                "pseudonym": pseudonym, "measurements": result.to_dict(),
                "segmentation": record, "provenance": prov.to_dict()}).encode())
        details.update({"pseudonym": pseudonym, "annulus_source": result.annulus_source})
        if path is not None:
            details["output_sha256"] = sha256_file(path)
    return MeasurementOutput(result, pseudonym, path, record)


# ------------------------------------------------------------------------ no patient data
def serve_observations(broker: str | None, *, handler: Any = None, embedded: bool = False,
                       topic: str | None = None, client_id: str | None = None,
                       max_seconds: float | None = None, connect_timeout_s: float = 10.0,
                       on_ready: Any = None, batch_handler: Any = None,
                       batch_window_s: float | None = None):
    """Serve live observations over MQTT until ``max_seconds`` or Ctrl-C (``twin serve``).

    Parameters
    ----------
    broker : str or None
        ``HOST:PORT`` of the broker; None starts the embedded broker (amqtt) on 127.0.0.1:1883.
    handler : callable
        ``handler(pseudonym, observations)`` for every message's accepted observations
        (:data:`cardiotwin.monitoring.mqtt.Handler`).
    embedded : bool
        Start the embedded broker on ``broker``'s address (default 127.0.0.1:1883).
    topic, client_id : str, optional
        Topic filter and fixed client id (``monitoring.mqtt`` defaults).
    max_seconds : float, optional
        Stop after this long.
    connect_timeout_s : float
        Bound of starting the broker and of connecting, s.
    on_ready : callable, optional
        ``on_ready(service, embedded_broker_or_None)`` once subscribed.
    batch_handler : callable, optional
        Instead of ``handler``: ``batch_handler({pseudonym: observations})`` for the messages of
        each ``batch_window_s`` (:class:`~cardiotwin.monitoring.mqtt.ObservationService` batch
        mode: acknowledged after it returned).

    Returns
    -------
    ObservationService
        The stopped service (its ``stats`` and ``quarantine``).
    """
    from cardiotwin.monitoring.broker import EmbeddedBroker
    from cardiotwin.monitoring.mqtt import (
        DEFAULT_PORT,
        SERVICE_CLIENT_ID,
        SUBSCRIPTION,
        ObservationService,
        parse_broker,
    )

    host, port = parse_broker(broker or f"127.0.0.1:{DEFAULT_PORT}")
    local = None
    if embedded or broker is None:
        local = EmbeddedBroker(host=host, port=port).start(timeout_s=connect_timeout_s)
    try:
        batch = {} if batch_handler is None else {"batch_handler": batch_handler}
        if batch_handler is not None and batch_window_s is not None:
            batch["batch_window_s"] = batch_window_s
        service = ObservationService(host, port, handler=handler, topic=topic or SUBSCRIPTION,
                                     client_id=client_id or SERVICE_CLIENT_ID, **batch)
        service.start(timeout_s=connect_timeout_s)
        if on_ready is not None:
            on_ready(service, local)
        service.run(max_seconds=max_seconds, timeout_s=connect_timeout_s)
    finally:
        if local is not None:
            local.stop()
    return service


def replay_record(record: str | Path, *, broker: str, subject: str, speed: float = 1.0,
                  max_beats: int | None = None, start_time: Any = None):
    """Replay a WFDB record as a live MQTT stream (``monitor replay``); see
    :func:`cardiotwin.monitoring.mqtt.replay_wfdb`. ``broker`` is ``HOST:PORT``."""
    from cardiotwin.monitoring.mqtt import parse_broker, replay_wfdb

    host, port = parse_broker(broker)
    return replay_wfdb(record, host=host, port=port, subject=subject, speed=speed,
                       max_beats=max_beats, start_time=start_time)


@dataclass(frozen=True)
class LiveUpdate:
    """What :func:`live_update` did.

    Attributes
    ----------
    record : the synthetic WFDB record replayed (path without extension).
    broker : ``host:port`` of the embedded broker it went through.
    published : messages published (one Observation each), all acknowledged by the broker.
    received : messages the service received.
    versions_before, version_after : the twin's version before and after.
    ingests : ingests that made a new version (one per message with new observations).
    seconds : wall-clock time of the whole step, s.
    status : :class:`TwinStatus` of the twin after the update (estimate ± SD, data age, flags).
    """

    record: Path
    broker: str
    published: int
    received: int
    versions_before: int
    version_after: int
    ingests: int
    seconds: float
    status: TwinStatus


def live_update(pseudonym: str, *, store: Store, actor: Actor, folder: str | Path,
                seconds: float = 20.0, speed: float = 10.0, timeout_s: float = 30.0,
                purpose: str = "patient monitoring") -> LiveUpdate:
    """Show a twin following its patient: a short bedside record replayed over MQTT into it.

    The step of ``cardiotwin demo`` after the rehearsal. It writes a synthetic ECG + arterial
    pressure record of ``seconds`` (:func:`cardiotwin.monitoring.synthetic.write_vitals_record`)
    into ``folder``, starts the embedded broker (amqtt) on a free loopback port, subscribes an
    :class:`~cardiotwin.monitoring.mqtt.ObservationService` whose handler applies every message
    to the stored twin (:func:`ingest_observations`, as ``twin serve`` does), replays the
    record's per-beat vitals at ``speed`` with times ending now, waits until every message was
    handled, and stops both. Every wait is bounded by ``timeout_s``.

    The replay is paced (``speed`` 10: about 55 messages/s) because amqtt 0.12 was seen to drop
    QoS-1 messages to the subscriber when a publisher sends them back to back (40 sent, 23-39
    delivered in 3 of 5 runs; none lost in 15 paced runs). Should it lose some anyway, the step
    logs a warning and reports ``received < published`` instead of failing the demo.

    Returns
    -------
    LiveUpdate

    Raises
    ------
    BrokerError
        The broker did not start, or the messages were not all handled within ``timeout_s``.
    StoreError
        No twin ``pseudonym`` in ``store``.
    """
    from datetime import UTC, datetime, timedelta

    from cardiotwin.errors import BrokerError
    from cardiotwin.monitoring.broker import EmbeddedBroker
    from cardiotwin.monitoring.mqtt import ObservationService, replay_wfdb
    from cardiotwin.monitoring.synthetic import write_vitals_record

    t_start = time.monotonic()
    before = store.load_twin(pseudonym, actor=actor, purpose=purpose).version
    vitals = write_vitals_record(folder, seconds=seconds)
    new_versions: list[int] = []

    def apply(subject: str, observations: Any) -> None:
        res = ingest_observations(subject, observations, store=store, actor=actor,
                                  purpose=purpose)
        if res.version is not None:
            new_versions.append(res.version)

    with EmbeddedBroker() as broker:
        service = ObservationService(broker.host, broker.port, handler=apply,
                                     client_id=f"cardiotwin-demo-{os.getpid()}")
        with service.running(timeout_s=timeout_s):
            summary = replay_wfdb(vitals.record, host=broker.host, port=broker.port,
                                  subject=pseudonym, speed=speed,
                                  start_time=datetime.now(UTC) - timedelta(seconds=seconds),
                                  connect_timeout_s=timeout_s, ack_timeout_s=timeout_s)
            left = max(timeout_s - (time.monotonic() - t_start), 1.0)
            try:
                service.wait_for(lambda s: s.messages >= summary.observations, timeout_s=left,
                                 what=f"{summary.observations} messages received")
            except BrokerError:
                log.warning("the embedded broker delivered %d of %d messages within %.0f s",
                            service.stats.messages, summary.observations, timeout_s)
        # stopping joined the network thread, so the last handler has returned
        address = broker.address
    status = twin_status(pseudonym, store=store, actor=actor, purpose=purpose)
    return LiveUpdate(record=vitals.record, broker=address, published=summary.observations,
                      received=service.stats.messages, versions_before=before,
                      version_after=status.version, ingests=len(new_versions),
                      seconds=time.monotonic() - t_start, status=status)


def log_observations(pseudonym: str, observations: Any) -> None:
    """The handler that only logs an accepted batch (``twin serve`` until it ingests)."""
    from cardiotwin.monitoring.mqtt import log_handler

    log_handler(pseudonym, observations)


def can(actor: Actor, permission: str) -> bool:
    """Whether ``actor``'s role holds ``permission`` (e.g. ``"rehearsal.run"``), to show or hide
    an action; the use case itself still checks and audits."""
    from cardiotwin.store import is_allowed

    return is_allowed(actor.role, permission)


def segmenters():
    """The segmentation plug-ins installed here, each with whether it can run and why not
    (:func:`cardiotwin.imaging.plugins.available_segmenters`)."""
    from cardiotwin.imaging.plugins import available_segmenters

    return available_segmenters()


def device_catalog():
    """The device catalog (:class:`~cardiotwin.devices.catalog.Catalog`) with its sources."""
    from cardiotwin.devices.catalog import load_catalog

    return load_catalog()


@dataclass(frozen=True)
class PhantomStudy:
    """A phantom CT written as DICOM (:func:`write_phantom`): its files, its labels file and the
    phantom itself (ground truth in ``phantom.truth``)."""

    dicom_dir: Path
    files: tuple[Path, ...]
    labels_path: Path | None
    phantom: Any


def write_phantom(out_dir: str | Path, *, seed: int = 0, spacing_mm: float = 1.0,
                  annulus_diameter_mm: float | None = None,
                  valve_orifice_area_mm2: float | None = None,
                  write_labels: bool = True) -> PhantomStudy:
    """Write the parametric contrast-CT phantom as a DICOM series in ``out_dir/dicom`` (replacing
    an earlier one) and, with ``write_labels``, its ground-truth labels as ``out_dir/labels.nii.gz``.

    The phantom is no patient's data: nothing is audited. Options left None keep the
    :class:`~cardiotwin.imaging.phantom.PhantomParameters` defaults.
    """
    import shutil

    from cardiotwin.imaging import dicom, phantom

    out_dir = Path(out_dir)
    opts: dict[str, Any] = {"spacing_mm": (spacing_mm,) * 3}
    if annulus_diameter_mm is not None:
        opts["annulus_diameter_mm"] = annulus_diameter_mm
    if valve_orifice_area_mm2 is not None:
        opts["valve_orifice_area_mm2"] = valve_orifice_area_mm2
    ph = phantom.make_phantom(phantom.PhantomParameters(**opts), seed=seed)
    dicom_dir = out_dir / "dicom"
    if dicom_dir.exists():
        shutil.rmtree(dicom_dir)
    files = tuple(Path(f) for f in dicom.write_ct_series(ph.ct, dicom_dir))
    labels_path = None
    if write_labels:
        import SimpleITK as sitk

        lab = ph.labels.volume
        img = sitk.GetImageFromArray(lab.array)
        img.SetSpacing(lab.spacing_mm)
        img.SetOrigin(lab.origin_mm)
        img.SetDirection(lab.direction.flatten().tolist())
        labels_path = out_dir / "labels.nii.gz"
        sitk.WriteImage(img, str(labels_path))
    return PhantomStudy(dicom_dir, files, labels_path, ph)


def add_user(store: Store, username: str, password: str, role: str) -> None:
    """Add a staff account that can log in (audited by the store)."""
    from cardiotwin.store import users

    users.add_user(store, username, password, role)


def list_users(store: Store) -> list[dict[str, Any]]:
    """Staff accounts and their roles (never passwords)."""
    from cardiotwin.store import users

    return users.list_users(store)



# ------------------------------------------------------------------------ monitoring and the twin
@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_observations` did for one twin.

    Attributes
    ----------
    pseudonym : the twin.
    accepted : observations stored (and assimilated when their code is one the filter reads).
    duplicates : observations already stored, or given twice (idempotent: not stored again).
    quarantined : the refused records with their reasons (also stored in the quarantine).
    version : the new twin version, or None when nothing new was accepted.
    base_version : the version the update started from.
    stale, stale_reason : the twin is stale now (its newest observation is too old).
    drift, drift_reasons : predicted metrics moved beyond the thresholds since the last 3-D run.
    status : the twin's estimate now (:class:`~cardiotwin.twin.assimilate.TwinEstimate`).
    """

    pseudonym: str
    accepted: int
    duplicates: int
    quarantined: tuple[Any, ...]
    version: int | None
    base_version: int
    stale: bool
    stale_reason: str
    drift: bool
    drift_reasons: tuple[str, ...]
    status: Any = None


@dataclass(frozen=True)
class TwinStatus:
    """What a twin says at a time (:func:`twin_status`).

    Attributes
    ----------
    pseudonym, version : the twin version in force at ``as_of_utc``.
    saved_utc, reason : when and why that version was saved.
    as_of_utc : the time spoken for (ISO 8601 UTC).
    estimate : :class:`~cardiotwin.twin.assimilate.TwinEstimate` (physiology with ± one SD,
        outlets, data age, stale and drift flags).
    physiology : the physiology of the last 3-D run (the twin's build values).
    versions : the version list up to this one (``version``, ``created_utc``, ``reason``).
    twin : that twin version itself.
    """

    pseudonym: str
    version: int
    saved_utc: str
    reason: str
    as_of_utc: str
    estimate: Any
    physiology: Physiology
    versions: tuple[Mapping[str, Any], ...] = ()
    twin: PatientTwin | None = field(default=None, repr=False, compare=False)

    @property
    def stale(self) -> bool:
        return bool(self.estimate.stale)

    @property
    def drift(self) -> bool:
        return bool(self.estimate.drift)


def _utc_iso(t: Any) -> str:
    from datetime import UTC

    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _screen_twin(pseudonym: str, observations: Any, rejected: Any = ()):
    """The checks of one twin's ingest: ``(screen, observation rows, rejection dicts)``."""
    from cardiotwin.monitoring import Rejection, Screen
    from cardiotwin.store import check_pseudonym
    from cardiotwin.twin import history

    check_pseudonym(pseudonym)
    screen = Screen()
    screen.quarantine.extend(rejected)
    for obs in observations:
        if obs.subject != pseudonym:
            screen.quarantine.add(Rejection(
                kind="subject", source=obs.source, record=obs.record, field="subject",
                reason=f"{obs.where}: the observation is of another subject than twin "
                       f"{pseudonym} (not repeated here)",
                expected=f"subject {pseudonym}"))
            continue
        screen.offer(obs)
    rows = [history.observation_row(o) for o in screen.accepted]
    return screen, rows, [r.to_dict() for r in screen.quarantine]


@dataclass(frozen=True)
class BatchIngest:
    """One twin's part of :func:`ingest_batches`.

    Attributes
    ----------
    pseudonym : the twin.
    accepted, duplicates, quarantined : observations stored, already stored, quarantined.
    version : the new twin version, None when nothing new was accepted or on ``error``.
    error : why the store refused this twin's part ("" when it did not).
    """

    pseudonym: str
    accepted: int
    duplicates: int
    quarantined: int
    version: int | None
    error: str = ""


def ingest_batches(batches: Mapping[str, Any], *, store: Store, actor: Actor,
                   purpose: str = "patient monitoring") -> list[BatchIngest]:
    """:func:`ingest_observations` for many twins in **one** store transaction (audited per twin).

    ``batches`` maps each pseudonym to its observations. Each twin's observations are checked,
    stored and assimilated into a new version exactly as :func:`ingest_observations` does
    (same rows, same filter update, same duplicate and order checks, its own audit record);
    the whole lot is committed with one disk sync, which is what lets a live service keep up
    with hundreds of twins a second. A twin the store refuses (unknown pseudonym, no twin) is
    reported in its :class:`BatchIngest` and does not stop the others. No estimate is
    computed (:func:`twin_status` gives it).
    """
    from cardiotwin.twin import history

    items, screens = [], []
    for pseudonym, observations in batches.items():
        screen, rows, rejections = _screen_twin(pseudonym, observations)
        items.append((pseudonym, rows, rejections))
        screens.append(screen)
    records = store.ingest_observations_many(items, update=history.apply_batch, actor=actor,
                                             purpose=purpose)
    out = []
    for (pseudonym, _rows, rejections), screen, rec in zip(items, screens, records, strict=True):
        if isinstance(rec, CardiotwinError):
            out.append(BatchIngest(pseudonym, 0, screen.duplicates, len(rejections), None,
                                   error=str(rec)))
        else:
            out.append(BatchIngest(pseudonym, len(rec.accepted),
                                   rec.duplicates + screen.duplicates, len(rec.rejections),
                                   rec.version))
    return out


def ingest_observations(pseudonym: str, observations: Any, *, store: Store, actor: Actor,
                        rejected: Any = (), purpose: str = "patient monitoring",
                        now: Any = None) -> IngestResult:
    """Check monitoring observations of one twin, store them and update the twin (audited).

    The observations pass the checks of :class:`cardiotwin.monitoring.Screen` (plausible,
    monotone per stream, duplicates idempotent) and those against the stored ones; an
    observation of another subject is quarantined without repeating its subject. The accepted
    ones are assimilated (:mod:`cardiotwin.twin.assimilate`) into a new twin version, stored
    with the observations and the quarantined records in one transaction. ``rejected``:
    records a reader already refused (:class:`~cardiotwin.monitoring.Rejection`), stored in the
    quarantine too. ``now`` (timezone-aware; default the clock) is the time the stale flag is
    judged at.
    """
    from datetime import UTC, datetime

    from cardiotwin.monitoring import Rejection
    from cardiotwin.twin import assimilate as assim
    from cardiotwin.twin import history

    screen, rows, rejections = _screen_twin(pseudonym, observations, rejected)
    record = store.ingest_observations(pseudonym, observations=rows, rejections=rejections,
                                       update=history.apply_batch, actor=actor, purpose=purpose)
    quarantined = tuple(Rejection.from_dict({**r, "subject": ""}) for r in record.rejections)
    now = now or datetime.now(UTC)
    estimate = None
    if record.state is not None:
        twin = PatientTwin.from_dict(record.state)
        estimate = assim.status(assim.state_of(twin), twin, as_of=now)
    else:
        twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
        estimate = assim.status(assim.state_of(twin), twin, as_of=now)
    return IngestResult(pseudonym=pseudonym, accepted=len(record.accepted),
                        duplicates=record.duplicates + screen.duplicates,
                        quarantined=quarantined, version=record.version,
                        base_version=record.base_version, stale=estimate.stale,
                        stale_reason=estimate.stale_reason, drift=estimate.drift,
                        drift_reasons=estimate.drift_reasons, status=estimate)


_FORMATS = {".json": "fhir", ".hl7": "hl7", ".er7": "hl7", ".txt": "hl7", ".csv": "csv",
            ".hea": "wfdb"}


def _read_monitoring_file(path: Path, *, fmt: str | None, subject: str | None,
                          columns: Any, default_timezone: Any, start_time: Any = None):
    from cardiotwin.monitoring import read_fhir, read_hl7v2, read_table, read_wfdb
    from cardiotwin.monitoring.table import ColumnMap, parse_column_map

    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt == "fhir":
        return read_fhir(path, subject=subject)
    if fmt == "hl7":
        return read_hl7v2(path, subject=subject, default_timezone=default_timezone)
    if fmt == "csv":
        if columns is None:
            raise InputError(f"{path}: a CSV file needs its column map (--columns "
                             "time=t,hr=8867-4:/min,sbp=8480-6:mm[Hg])")
        cmap = columns if isinstance(columns, ColumnMap) else parse_column_map(columns)
        return read_table(path, columns=cmap, subject=subject, default_timezone=default_timezone)
    if fmt == "wfdb":
        if subject is None:
            raise InputError(f"{path}: a WFDB record names no patient; give the twin's "
                             "pseudonym (--subject)")
        return read_wfdb(path.with_suffix("") if path.suffix == ".hea" else path,
                         subject=subject, start_time=start_time,
                         default_timezone=default_timezone)
    raise InputError(f"{path}: cannot tell the format from the extension {path.suffix!r}; give "
                     "--format fhir, hl7, wfdb or csv")


def ingest_file(path: str | Path, *, store: Store, actor: Actor, subject: str | None = None,
                format: str | None = None, columns: Any = None, default_timezone: Any = None,
                start_time: Any = None, purpose: str = "patient monitoring",
                now: Any = None) -> list[IngestResult]:
    """Read a monitoring file, or every file of a folder, and ingest it per twin (audited).

    ``format`` is ``fhir``, ``hl7``, ``wfdb`` or ``csv`` (default: from the extension:
    ``.json``, ``.hl7``/``.er7``/``.txt``, ``.hea``, ``.csv``; in a folder, files of other
    extensions are skipped). ``subject`` is the twin's pseudonym for records that carry none
    (WFDB, CSV without a subject column). ``columns``: the CSV column map
    (:class:`~cardiotwin.monitoring.ColumnMap` or ``"time=t,hr=8867-4:/min"``). Records a
    reader refuses go to the quarantine of the file's one twin; in a file of several twins,
    refused records whose subject is unknown are reported and logged but cannot be filed under
    a twin. ``default_timezone`` (a ``tzinfo``) is the zone of times that carry no offset (HL7
    v2, CSV, a WFDB header); ``start_time`` the time of a WFDB record's first sample when its
    header has none.

    Returns
    -------
    list of IngestResult
        One per twin per file, in file order.
    """
    path = Path(path)
    if format is not None and format not in ("fhir", "hl7", "wfdb", "csv"):
        raise InputError(f"--format {format!r} is not one of fhir, hl7, wfdb, csv")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and (format or _FORMATS.get(p.suffix.lower())) is not None
                       and (format != "wfdb" or p.suffix == ".hea"))
    elif path.exists() or path.with_suffix(".hea").exists():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or folder")
    results: list[IngestResult] = []
    for f in files:
        batch = _read_monitoring_file(f, fmt=format, subject=subject, columns=columns,
                                      default_timezone=default_timezone, start_time=start_time)
        by_subject: dict[str, list[Any]] = {}
        for o in batch.observations:
            by_subject.setdefault(o.subject, []).append(o)
        subjects = sorted(by_subject) or ([subject] if subject else [])
        if not subjects:
            log.warning("%s: no observation with a subject; %d refused records not filed: %s",
                        f.name, len(batch.rejections),
                        "; ".join(r.reason for r in batch.rejections[:3]))
            continue
        for s in subjects:
            mine = [r for r in batch.rejections
                    if r.subject == s or (len(subjects) == 1 and r.subject not in by_subject)]
            results.append(ingest_observations(s, by_subject.get(s, []), store=store,
                                               actor=actor, rejected=mine, purpose=purpose,
                                               now=now))
        unfiled = [r for r in batch.rejections if len(subjects) > 1 and r.subject not in by_subject]
        if unfiled:
            log.warning("%s: %d refused records name no known twin and were not filed",
                        f.name, len(unfiled))
    return results


def twin_status(pseudonym: str, *, store: Store, actor: Actor, as_of: Any = None,
                purpose: str = "patient monitoring") -> TwinStatus:
    """What the twin says at ``as_of`` (timezone-aware datetime; default now): the version in
    force then, its physiology with spread, data age, stale and drift flags (audited reads)."""
    from datetime import UTC, datetime

    from cardiotwin.twin import assimilate as assim

    if as_of is not None and (not isinstance(as_of, datetime) or as_of.tzinfo is None):
        raise InputError(f"as_of must be a timezone-aware time (2024-05-01T10:42:00+02:00), got "
                         f"{as_of!r}")
    when = as_of or datetime.now(UTC)
    iso = _utc_iso(when)
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose,
                           as_of=None if as_of is None else iso)
    estimate = assim.status(assim.state_of(twin), twin, as_of=when)
    entry = twin.history[-1] if twin.history else {}
    versions = tuple(v for v in store.twin_versions(pseudonym, actor=actor, purpose=purpose)
                     if v["version"] <= twin.version)
    return TwinStatus(pseudonym=pseudonym, version=twin.version,
                      saved_utc=str(entry.get("time_utc", "")), reason=str(entry.get("reason", "")),
                      as_of_utc=iso, estimate=estimate, physiology=twin.physiology,
                      versions=versions, twin=twin)


def replay_twin(pseudonym: str, *, store: Store, actor: Actor, version: int | None = None,
                purpose: str = "patient monitoring"):
    """Recompute a twin version's filter state from the stored observations (audited reads).

    Returns ``(replayed, stored)``: two
    :class:`~cardiotwin.twin.assimilate.AssimilationState` (``stored`` None when the version has
    none); they are equal bit for bit when the history is intact.
    """
    from cardiotwin.twin import history

    target = store.load_twin(pseudonym, actor=actor, purpose=purpose, version=version)
    stored = history.stored_state(target)
    versions = {target.version: target}
    if stored is not None and stored.reference.version not in versions:
        start = stored.reference.version
        versions[start] = store.load_twin(pseudonym, actor=actor, purpose=purpose, version=start)
    rows = store.list_observations(pseudonym, actor=actor, purpose=purpose,
                                   upto_version=target.version)
    return history.replay(versions, rows, upto_version=target.version), stored


def ingest_fhir(pseudonym: str, document: Mapping[str, Any], *, store: Store, actor: Actor,
                purpose: str = "patient monitoring", source: str = "api",
                now: Any = None) -> IngestResult:
    """Ingest a FHIR R4 Observation or Bundle given as parsed JSON (the body of a REST call)
    into twin ``pseudonym`` (audited; see :func:`ingest_observations`).

    Records the reader refuses (unknown code or unit, no timezone, wrong status…) and
    observations of another subject are quarantined under this twin with their reasons.

    Raises
    ------
    InputError
        The document is not a FHIR Observation or Bundle (nothing is stored).
    AccessDenied
        The role may not write twins (audited as denied).
    StoreError
        No twin of that pseudonym (audited as a failure).
    """
    from cardiotwin.monitoring import read_fhir
    from cardiotwin.store import check_pseudonym

    check_pseudonym(pseudonym)
    store.check_permission("twin.write", actor=actor, purpose=purpose, pseudonym=pseudonym,
                           obj="observations", action="write")
    if not isinstance(document, Mapping):
        raise InputError(f"the body must be a FHIR Observation or Bundle JSON object, got "
                         f"{type(document).__name__}")
    batch = read_fhir(dict(document), subject=pseudonym, name=source)
    return ingest_observations(pseudonym, batch.observations, store=store, actor=actor,
                               rejected=batch.rejections, purpose=purpose, now=now)


@dataclass(frozen=True)
class TwinEvent:
    """A change of a twin's stale or drift flag (:func:`twin_events`).

    Attributes
    ----------
    pseudonym : the twin.
    kind : ``"stale"``, ``"current"`` (data again), ``"drift"`` or ``"drift-cleared"``.
    time_utc : data time of the change (ISO 8601 UTC); None for "stale since the build".
    version : the twin version in force after the change.
    detail : why, in words.
    """

    pseudonym: str
    kind: str
    time_utc: str | None
    version: int
    detail: str


def twin_events(pseudonym: str, *, store: Store, actor: Actor, now: Any = None,
                purpose: str = "patient monitoring") -> tuple[TwinEvent, ...]:
    """The stale and drift events of a twin since its filter started (its last 3-D run),
    recomputed from the stored observations (:func:`cardiotwin.twin.history.flag_events`;
    audited reads). ``now`` (timezone-aware, default the clock) ends the last gap."""
    from datetime import UTC, datetime

    from cardiotwin.twin import history

    latest = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    stored = history.stored_state(latest)
    start = latest
    if stored is not None and stored.reference.version != latest.version:
        start = store.load_twin(pseudonym, actor=actor, purpose=purpose,
                                version=stored.reference.version)
    rows = store.list_observations(pseudonym, actor=actor, purpose=purpose,
                                   after_version=start.version, upto_version=latest.version)
    found = history.flag_events(start, rows, now=now or datetime.now(UTC))
    return tuple(TwinEvent(pseudonym=pseudonym, **e) for e in found)


def all_events(*, store: Store, actor: Actor, now: Any = None,
               purpose: str = "patient monitoring") -> tuple[TwinEvent, ...]:
    """:func:`twin_events` of every twin in the store (audited), ordered by time (events
    without a time first)."""
    out: list[TwinEvent] = []
    for p in store.list_patients(actor=actor, purpose=purpose):
        if p.get("latest_version"):
            out += twin_events(p["pseudonym"], store=store, actor=actor, now=now,
                               purpose=purpose)
    return tuple(sorted(out, key=lambda e: (e.time_utc or "", e.pseudonym)))


def refuse_request(store: Store, *, client: str, reason: str, username: str | None = None
                   ) -> None:
    """Audit a request refused before any password was checked (no credentials, an unknown or
    expired token) as a failed login; see :func:`cardiotwin.store.users.record_refused`."""
    from cardiotwin.store import users

    users.record_refused(store, client=client, reason=reason, username=username)


__all__ = [
    "Actor", "BatchIngest", "BuildSettings", "IngestResult", "LiveUpdate", "TwinEvent",
    "all_events", "ingest_batches", "ingest_fhir", "live_update", "refuse_request",
    "twin_events", "PatientEntry", "TwinStatus", "ingest_file",
    "ingest_observations", "replay_twin", "twin_status", "PhantomStudy", "Store", "add_user", "build_twin", "can",
    "SegmentationOutput", "convert_dicom", "deidentify_dicom", "device_catalog",
    "evaluate_segmentation", "segment_dicom", "segmenters", "list_patients", "list_rehearsals",
    "list_users", "login", "open_store", "open_twin", "rehearse", "scan_dicom", "size_device",
    "twin_fluid_domain", "write_phantom",
]

"""Anatomy use cases: the twin built from a DICOM series (:func:`build_twin`), segmentations
written and scored, and the TAVR-planning anatomy measured."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cardiotwin.errors import InputError
from cardiotwin.provenance import Provenance, sha256_file
from cardiotwin.store import Actor, Store
from cardiotwin.study import (
    DEFAULT_FAMILY,
    Progress,
    default_physiology,
    native_region,
    no_progress,
    run_flow,
    size_family,
)
from cardiotwin.twin.state import PatientTwin, Physiology
from cardiotwin.workflows._common import audited_dicom, read_ct, store_run, work_dir

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
        ct = read_ct(dicom_dir, store=store, series=series, resample=resample, prov=prov,
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
    wd = work_dir(store, pseudo, "anatomy")
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
        root_sha = _root_wall_surface(seg.labels, lms, wd, store)
    mesh_sha = store.put_artifact(domain.mesh_path, kind="mesh")
    surf_sha = store.put_artifact(wd / "lumen_surface.stl", kind="surface")
    sizing = size_family(lms, DEFAULT_FAMILY,
                         coronary_ostia_height_mm=planning.get("coronary_ostia_height_mm") or None)
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
            "device_context": device_context(seg.labels, lms),
        },
        mesh={**domain.to_dict(), "artifact_sha256": mesh_sha, "surface_sha256": surf_sha,
              **({"root_surface_sha256": root_sha} if root_sha else {}),
              "work_dir": str(wd)},
        physiology=physiology,
        provenance=prov.to_dict(),
    )
    existed = not store.ensure_patient(pseudo, actor=actor, purpose=purpose)
    if settings.run_baseline:
        progress(0.55, "solving baseline flow (native valve)")
        run = run_flow(domain, lms, physiology, native_region(lms), label="baseline",
                       out_dir=work_dir(store, pseudo, "baseline"),
                       progress=lambda f, m: progress(0.55 + 0.4 * f, m))
        twin.results.append({"label": "baseline", "summary": run.summary.to_dict(),
                             "files": dict(run.files), "region": dict(run.region)})
        prov.timings_s["baseline_flow"] = run.summary.solve_time_s
        twin.provenance = prov.to_dict()
    store.save_twin(twin, actor=actor, purpose=purpose, supersede=existed,
                    reason="rebuilt from DICOM" if existed else "built from DICOM")
    if settings.run_baseline:
        store_run(store, pseudo, run, kind="flow", twin_version=twin.version, actor=actor,
                   purpose=purpose, summary=twin.results[-1]["summary"])
    progress(1.0, "twin stored")
    return twin


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
    with audited_dicom(store, "dicom.read", "segment", actor=actor, purpose=purpose) as details:
        ct = read_ct(dicom_dir, store=store, series=series, resample=resample, prov=prov,
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
    with audited_dicom(store, "dicom.read", "measure", actor=actor, purpose=purpose) as details:
        ct = read_ct(dicom_dir, store=store, series=series, resample=resample, prov=prov,
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


def segmenters():
    """The segmentation plug-ins installed here, each with whether it can run and why not
    (:func:`cardiotwin.imaging.plugins.available_segmenters`)."""
    from cardiotwin.imaging.plugins import available_segmenters

    return available_segmenters()



def device_context(labels, landmarks, *, radius_mm: float = 25.0,
                   max_points: int = 4000) -> dict[str, object]:
    """What the device mechanics needs from the segmentation, stored with the twin.

    * ``calcium_points_mm``: LPS centres of the calcium voxels within ``radius_mm`` of the annulus
      centre (evenly subsampled to at most ``max_points``), which the wall mesh marks as calcium;
      ``calcium_voxel_mm3`` their voxel volume.
    * ``right_heart_centroid_mm``: centroid of the segmented right heart (None when not
      segmented); the membranous septum lies on its side of the LVOT.
    """
    vol = labels.volume
    centre = np.asarray(landmarks.annulus_centre_mm, dtype=float)
    points: list[list[float]] = []
    if "calcium" in labels.names:
        kji = np.argwhere(labels.mask("calcium"))
        if len(kji):
            xyz = vol.index_to_physical(kji[:, ::-1])
            xyz = xyz[np.linalg.norm(xyz - centre, axis=1) <= radius_mm]
            step = max(1, int(np.ceil(len(xyz) / max_points)))
            points = np.round(xyz[::step], 2).tolist()
    rh = None
    if "right_heart" in labels.names:
        kji = np.argwhere(labels.mask("right_heart"))
        if len(kji):
            rh = [round(float(v), 2) for v in vol.index_to_physical(kji[:, ::-1]).mean(axis=0)]
    return {"calcium_points_mm": points, "calcium_voxel_mm3": vol.voxel_volume_mm3,
            "right_heart_centroid_mm": rh}


def _root_wall_surface(labels, landmarks, wd: Path, store: Store) -> str | None:
    """The root's wall surface for the device mechanics, stored as an artifact (its SHA-256);
    None, with a warning, when it cannot be built (the twin is still usable for flow)."""
    from cardiotwin.errors import GeometryError
    from cardiotwin.geometry.wall_mesh import root_wall_surface

    try:
        surf = root_wall_surface(labels, landmarks)
    except GeometryError as exc:
        log.warning("no root wall surface for the device mechanics: %s", exc)
        return None
    path = wd / "root_wall_surface.stl"
    surf.export(path)
    return store.put_artifact(path, kind="surface")

"""The use cases of cardiotwin, each taking an :class:`~cardiotwin.store.Actor` and audited.

The CLI, the app and batch pipelines call these functions and nothing below them that touches
patient data. A use case authorises, audits, calls the domain and stores what it returns —
nothing else: the haemodynamic study (runs, settings, results) lives in :mod:`cardiotwin.study`.
Every read and write of patient-linked data goes through :class:`cardiotwin.store.Store`, which
writes the audit record in the same transaction.

Callers import this package (``from cardiotwin import workflows; workflows.build_twin(...)``);
the use cases live in one module per area and are re-exported here:

:mod:`~cardiotwin.workflows.session`
    open_store, login, add_user, list_users, can, refuse_request: the store and its users.
:mod:`~cardiotwin.workflows.dicom`
    deidentify_dicom, scan_dicom, convert_dicom: DICOM folders de-identified (PS3.15 Annex E)
    with the store's pseudonym key, catalogued or converted; audited. write_phantom: the
    phantom CT as a DICOM series.
:mod:`~cardiotwin.workflows.anatomy`
    build_twin: DICOM series → pseudonymised volume → segmentation → aortic-root landmarks →
    fluid surface → tetrahedral mesh → calibrated boundary conditions → baseline (native valve)
    flow → stored twin. segment_dicom, evaluate_segmentation, measure_anatomy, segmenters.
:mod:`~cardiotwin.workflows.rehearsal`
    rehearse: a device of the catalog placed on the twin's annulus → flow with the device →
    before/after comparison (:class:`~cardiotwin.study.RehearsalComparison`), stored as a
    result. Steady flow at mean systolic flow by default; whole cardiac cycles of pulsatile
    flow when given a :class:`~cardiotwin.study.CycleSettings`. open_twin, list_patients,
    size_device, list_rehearsals, twin_fluid_domain, device_catalog.
:mod:`~cardiotwin.workflows.devices`
    place_on_twin: a catalog device of any family placed on the twin (valves on the annulus,
    stents along the centreline, occluders on a user-given site), checked against the lumen,
    its surface exported (STL, VTP) and stored; simulate_on_twin: device–wall mechanics,
    complications and flow.
:mod:`~cardiotwin.workflows.observations`
    ingest_observations, ingest_file, ingest_fhir, ingest_batches: monitoring observations
    checked, stored and assimilated into new twin versions (from readers, files, a FHIR
    document posted to the REST API or a live service's batches).
:mod:`~cardiotwin.workflows.live`
    twin_status, twin_events, all_events, replay_twin: what the twin says at a time
    (physiology with spread, data age, stale and drift) and when its flags changed; replay of
    a version from the stored observations. serve_observations, replay_record, live_update,
    log_observations: the live MQTT service and the demo's live step.
:mod:`~cardiotwin.workflows._common`
    helpers the modules share (the CT read, the DICOM audit wrapper, storing a run).
"""

from __future__ import annotations

from cardiotwin.store import Actor, Store
from cardiotwin.workflows.anatomy import (
    BuildSettings,
    MeasurementOutput,  # noqa: F401 (public, not in __all__)
    SegmentationOutput,
    build_twin,
    evaluate_segmentation,
    measure_anatomy,  # noqa: F401 (public, not in __all__)
    segment_dicom,
    segmenters,
)
from cardiotwin.workflows.devices import (
    DeviceSimulation,
    PlacedDevice,
    place_on_twin,
    simulate_on_twin,
)
from cardiotwin.workflows.dicom import (
    PhantomStudy,
    convert_dicom,
    deidentify_dicom,
    scan_dicom,
    write_phantom,
)
from cardiotwin.workflows.live import (
    LiveUpdate,
    TwinEvent,
    TwinStatus,
    all_events,
    live_update,
    log_observations,  # noqa: F401 (public, not in __all__)
    replay_record,  # noqa: F401 (public, not in __all__)
    replay_twin,
    serve_observations,  # noqa: F401 (public, not in __all__)
    twin_events,
    twin_status,
)
from cardiotwin.workflows.observations import (
    BatchIngest,
    IngestResult,
    ingest_batches,
    ingest_fhir,
    ingest_file,
    ingest_observations,
)
from cardiotwin.workflows.rehearsal import (
    PatientEntry,
    device_catalog,
    list_patients,
    list_rehearsals,
    open_twin,
    rehearse,
    size_device,
    twin_fluid_domain,
)
from cardiotwin.workflows.session import (
    add_user,
    can,
    list_users,
    login,
    open_store,
    refuse_request,
)

# public but outside __all__, as before the split (hence the noqa above): measure_anatomy,
# MeasurementOutput, serve_observations, replay_record, log_observations
__all__ = [
    "Actor", "BatchIngest", "BuildSettings", "IngestResult", "LiveUpdate", "TwinEvent",
    "all_events", "ingest_batches", "ingest_fhir", "live_update", "refuse_request",
    "twin_events", "PatientEntry", "TwinStatus", "ingest_file",
    "ingest_observations", "replay_twin", "twin_status", "PhantomStudy", "Store", "add_user",
    "build_twin", "can",
    "SegmentationOutput", "convert_dicom", "deidentify_dicom", "device_catalog",
    "evaluate_segmentation", "segment_dicom", "segmenters", "list_patients", "list_rehearsals",
    "list_users", "login", "open_store", "open_twin", "rehearse", "scan_dicom", "size_device",
    "twin_fluid_domain", "write_phantom",
    # added after the split
    "PlacedDevice", "place_on_twin", "DeviceSimulation", "simulate_on_twin",
]

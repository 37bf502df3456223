"""The workflows package keeps the public names of the one module it was split from."""

from __future__ import annotations

import importlib

from cardiotwin import workflows

# ``cardiotwin.workflows.__all__`` of the single module workflows.py before the split, hard-coded.
MODULE_ALL = [
    "Actor", "BatchIngest", "BuildSettings", "IngestResult", "LiveUpdate", "TwinEvent",
    "all_events", "ingest_batches", "ingest_fhir", "live_update", "refuse_request",
    "twin_events", "PatientEntry", "TwinStatus", "ingest_file",
    "ingest_observations", "replay_twin", "twin_status", "PhantomStudy", "Store", "add_user",
    "build_twin", "can",
    "SegmentationOutput", "convert_dicom", "deidentify_dicom", "device_catalog",
    "evaluate_segmentation", "segment_dicom", "segmenters", "list_patients", "list_rehearsals",
    "list_users", "login", "open_store", "open_twin", "rehearse", "scan_dicom", "size_device",
    "twin_fluid_domain", "write_phantom",
]
# use cases added after the split
ADDED = ["PlacedDevice", "place_on_twin", "DeviceSimulation", "simulate_on_twin"]
# public names the module defined outside its __all__, which callers use as workflows.X
MODULE_EXTRA = ["MeasurementOutput", "measure_anatomy", "serve_observations", "replay_record",
                "log_observations"]
SUBMODULES = ("session", "dicom", "anatomy", "rehearsal", "observations", "live", "devices",
              "_common")


def test_the_package_exports_what_the_module_exported():
    assert workflows.__all__ == MODULE_ALL + ADDED


def test_every_name_resolves_to_the_object_of_its_submodule():
    for name in MODULE_ALL + ADDED + MODULE_EXTRA:
        obj = getattr(workflows, name)
        assert obj is not None, name
        home = getattr(obj, "__module__", "")
        if home.startswith("cardiotwin.workflows."):
            assert getattr(importlib.import_module(home), name) is obj, name


def test_each_use_case_lives_in_exactly_one_submodule():
    owners: dict[str, list[str]] = {}
    for sub in SUBMODULES:
        mod = importlib.import_module(f"cardiotwin.workflows.{sub}")
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) == mod.__name__ and not name.startswith("_"):
                owners.setdefault(name, []).append(sub)
    assert all(len(v) == 1 for v in owners.values()), owners
    assert set(MODULE_ALL + ADDED + MODULE_EXTRA) - {"Actor", "Store"} <= set(owners)

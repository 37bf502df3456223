"""Helpers shared by the use-case modules of :mod:`cardiotwin.workflows`.

The module is private to the package; its names are public within it so that the use-case
modules can import them (``tests/test_layers.py`` forbids importing another module's ``_name``).
The CT read of a build, the audit wrapper of DICOM operations and the storage of a run's files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cardiotwin.errors import CardiotwinError
from cardiotwin.provenance import Provenance, sha256_tree
from cardiotwin.store import Actor, Store
from cardiotwin.study import (
    FlowRun,
)

log = logging.getLogger(__name__)


def store_files(store: Store, files: dict[str, str]) -> dict[str, str]:
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


def work_dir(store: Store, pseudonym: str, name: str) -> Path:
    d = Path(store.root) / "runs" / pseudonym / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def store_run(store: Store, pseudonym: str, run: FlowRun, *, kind: str, twin_version: int,
               actor: Actor, purpose: str, summary: dict[str, Any] | None = None) -> int:
    """Store one run as a result of the twin (its files as artifacts); returns the result id."""
    return store.add_result(
        pseudonym, kind=kind, label=run.label,
        summary=run.summary.to_dict() if summary is None else summary,
        provenance=dict(run.provenance), artifacts=store_files(store, dict(run.files)),
        twin_version=twin_version, actor=actor, purpose=purpose)


def read_ct(dicom_dir: str | Path, *, store: Store, series: str | None, resample: bool,
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
def audited_dicom(store: Store, permission: str, action: str, *, actor: Actor,
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

